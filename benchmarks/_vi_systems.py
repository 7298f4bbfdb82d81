"""The VAE step benchmarks' problem sizes, networks and implementations: parts (a) and (b) of
``benchmarks/vi_step.py`` (see its docstring for what each implementation does)."""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable
from typing import Any

import genjax
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as numpyro_distributions
import optax
from genjax.adev import categorical_enum_parallel, normal_reparam
from genjax.adev import expectation as genjax_expectation
from genjax.adev import invoke_closed_over as genjax_invoke
from genjax.adev import reinforce as genjax_reinforce
from genjax.core import distribution as genjax_distribution
from numpyro.infer import SVI, Trace_ELBO
from tensorflow_probability.substrates import jax as tfp

import ppl
from ppl.adev import constant, enum, expectation, reinforce

LEARNING_RATE = 1e-3
COUPLING = 2.0  # chain: c_i ~ flip(sigmoid(theta_i + COUPLING c_{i-1} - 1))
Z = 5.0  # standard errors allowed between Monte Carlo averages
RELATIVE_TOLERANCE = 1e-4  # float32, relative to the reference's scale
STEP_TARGET = 1.05  # ours / hand-written JAX
COMPILE_TARGET = 1.0  # ours / NumPyro

HAND = "hand-written JAX"
HAND_PER_DATAPOINT = "hand-written, per-datapoint grads"
HAND_EVERY_PATH = "hand-written JAX, every path"
OURS = "ppl (ours)"
OURS_PLATE = "ppl, Vmap plate"
NUMPYRO = "NumPyro"
GENJAX = "GenJAX"
GENJAX_PARALLEL = "GenJAX, flip_enum_parallel"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Problem sizes and measurement effort (the last four as ``gfi_overhead.Sizes``).

    Attributes:
        batch: datapoints per step.
        data: binary pixels per datapoint.
        hidden: hidden units of the encoder and of the decoder.
        latent: dimensions of the Gaussian latent.
        classes: classes of the categorical latent.
        enum_sites: chain lengths of part (c), every coin enumerated.
        mvd_sites: chain lengths of part (c), every coin with ``mvd`` (``3^n`` paths: 40 coins
            would be more than an array can index).
        checked_sites: the longest chain whose value and gradient are computed and checked
            (every path of a chain of n coins is held in memory: 2^n values); longer ones are
            only compiled.
        genjax_budget: seconds GenJAX may take for one chain length.
        value_keys: keys over which ELBO estimates are averaged.
        gradient_keys: keys over which gradients are averaged (0: no gradient checks).
        diagnostics: include the rows that locate where time goes.
        seconds_per_function: timed calls per implementation add up to about this long.
        minimum_calls: at least this many timed calls per implementation.
        compile_repeats: compilations timed per function, at most.
        compile_seconds: no further compilation is timed once they would add up to more.
    """

    batch: int
    data: int
    hidden: int
    latent: int
    classes: int
    enum_sites: tuple[int, ...]
    mvd_sites: tuple[int, ...]
    checked_sites: int
    genjax_budget: float
    value_keys: int
    gradient_keys: int
    diagnostics: bool
    seconds_per_function: float
    minimum_calls: int
    compile_repeats: int
    compile_seconds: float


FULL = Sizes(
    64,
    784,
    256,
    10,
    10,
    (1, 5, 10, 20, 40),
    (1, 5, 10, 20),
    20,
    60.0,
    200,
    100,
    True,
    1.0,
    10,
    5,
    40.0,
)
QUICK = Sizes(8, 16, 8, 2, 3, (1, 2), (1, 2), 2, 10.0, 20, 0, False, 0.02, 3, 1, 0.0)


def random_data(sizes: Sizes) -> jax.Array:
    """Binary data, each pixel 1 with probability 1/2, from a fixed seed."""
    return jax.random.bernoulli(jax.random.key(1), 0.5, (sizes.batch, sizes.data)).astype(
        jnp.float32
    )


# -- what an implementation reports ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Agreement:
    """One implementation's estimate against the reference's.

    Attributes:
        what: the benchmark and the quantity compared.
        name: the implementation.
        difference: ``|estimate - reference|``.
        allowed: the largest difference allowed (standard errors and float32 tolerance).
    """

    what: str
    name: str
    difference: float
    allowed: float

    @property
    def passed(self) -> bool:
        """Whether the difference is within what is allowed."""
        return self.difference <= self.allowed


def failure(error: Exception) -> str:
    """A one-line note of why an implementation failed (without terminal colour codes)."""
    message = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    first = message.splitlines()[0] if message else ""
    return f"failed: {type(error).__name__}: {first[:120]}"


# -- networks ------------------------------------------------------------------------------------


def dense(key: jax.Array, fan_in: int, fan_out: int) -> dict:
    """A dense layer with ``1/sqrt(fan_in)``-scaled normal weights and zero biases."""
    return {
        "w": jax.random.normal(key, (fan_in, fan_out)) / math.sqrt(fan_in),
        "b": jnp.zeros(fan_out),
    }


def mlp_init(key: jax.Array, sizes: tuple[int, int, int]) -> dict:
    """An MLP with one hidden layer: ``in -> hidden -> out``."""
    hidden_key, out_key = jax.random.split(key)
    return {"hidden": dense(hidden_key, *sizes[:2]), "out": dense(out_key, *sizes[1:])}


def mlp(net: dict, inputs: jax.Array) -> jax.Array:
    """``tanh`` hidden layer, linear output."""
    hidden = jnp.tanh(inputs @ net["hidden"]["w"] + net["hidden"]["b"])
    return hidden @ net["out"]["w"] + net["out"]["b"]


def initial_parameters(sizes: Sizes, code: int, out: int) -> dict:
    """Encoder ``data -> out`` and decoder ``code -> data``, from a fixed seed."""
    encoder_key, decoder_key = jax.random.split(jax.random.key(0))
    return {
        "encoder": mlp_init(encoder_key, (sizes.data, sizes.hidden, out)),
        "decoder": mlp_init(decoder_key, (code, sizes.hidden, sizes.data)),
    }


def encode_gaussian(params: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The guide's location and scale, ``[..., latent]`` each."""
    loc, log_scale = jnp.split(mlp(params["encoder"], x), 2, axis=-1)
    return loc, jnp.exp(log_scale)


def decode_class(params: dict, c: jax.Array, classes: int) -> jax.Array:
    """Pixel logits from the one-hot code of class ``c``."""
    return mlp(params["decoder"], jax.nn.one_hot(c, classes))


def bernoulli_log_likelihood(x: jax.Array, logits: jax.Array) -> jax.Array:
    """``log p(x | logits)`` summed over the last axis."""
    return jnp.sum(x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits), -1)


# -- systems -------------------------------------------------------------------------------------

ValueAndGrad = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, Any]]


@dataclasses.dataclass(frozen=True)
class System:
    """One implementation of one ELBO.

    Attributes:
        name: how the table names it.
        value_and_grad: ``(params, key, x) -> (ELBO estimate per datapoint, its gradient)``.
        step: ``(state, key, x) -> (state, loss)``, the loss being minus the ELBO estimate at
            the state's parameters; ``None``: an adam step on ``value_and_grad``.
        init: ``params -> state`` for ``step``; ``None``: ``(params, adam state)``.
    """

    name: str
    value_and_grad: ValueAndGrad
    step: Callable[..., tuple[Any, jax.Array]] | None = None
    init: Callable[[Any], Any] | None = None

    def training_step(self) -> Callable[..., tuple[Any, jax.Array]]:
        """The jittable training step."""
        if self.step is not None:
            return self.step

        def step(state, key, x):
            params, opt_state = state
            elbo, grads = self.value_and_grad(params, key, x)
            updates, opt_state = OPTIMIZER.update(
                jax.tree.map(jnp.negative, grads), opt_state, params
            )
            return (optax.apply_updates(params, updates), opt_state), -elbo

        return step

    def initial_state(self, params: Any) -> Any:
        """The state the step starts from."""
        return self.init(params) if self.init is not None else (params, OPTIMIZER.init(params))


OPTIMIZER = optax.adam(LEARNING_RATE)


def genjax_value_and_grad(objective: Any) -> ValueAndGrad:
    """Value and gradient of a GenJAX expectation, seeded (see the module docstring)."""

    def value_and_grad(params, x):
        return jax.value_and_grad(
            lambda params, x: genjax_invoke(objective, (params, x)), argnums=(0, 1)
        )(params, x)

    def run(params, key, x):
        value, (grads, _) = genjax.seed(value_and_grad)(key, params, x)
        return value, grads

    return run


def per_datapoint(value_and_grad: Callable[..., tuple[jax.Array, Any]]) -> ValueAndGrad:
    """``value_and_grad(params, key, x_i)`` vmapped over the batch, averaged."""

    def run(params, key, x):
        keys = jax.random.split(key, x.shape[0])
        values, grads = jax.vmap(value_and_grad, in_axes=(None, 0, 0))(params, keys, x)
        return jnp.mean(values), jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)

    return run


# -- (a) Gaussian latent -------------------------------------------------------------------------


def gaussian_hand(sizes: Sizes) -> System:
    """Hand-written: reparameterized draw, log densities written out."""
    del sizes

    def elbo(params, key, x):
        loc, scale = encode_gaussian(params, x)
        noise = jax.random.normal(key, loc.shape)
        z = loc + scale * noise
        log_prior = jnp.sum(jax.scipy.stats.norm.logpdf(z), -1)
        log_guide = jnp.sum(jax.scipy.stats.norm.logpdf(z, loc, scale), -1)
        log_likelihood = bernoulli_log_likelihood(x, mlp(params["decoder"], z))
        return jnp.mean(log_likelihood + log_prior - log_guide)

    return System(HAND, jax.value_and_grad(elbo))


def gaussian_ours(sizes: Sizes) -> System:
    """ppl: one vectorised ``normal`` for the batch's latents."""

    @ppl.gen
    def guide(params, x):
        loc, scale = encode_gaussian(params, x)
        return ppl.normal(loc, scale) @ "z"

    @ppl.gen
    def model(params, batch):
        z = ppl.normal(jnp.zeros((batch, sizes.latent)), 1.0) @ "z"
        return ppl.bernoulli(logits=mlp(params["decoder"], z)) @ "x"

    @expectation
    def elbo(key, params, x):
        trace = guide.simulate(key, (params, x))
        log_joint, _ = model.assess(trace.choices | {"x": x}, (params, x.shape[0]))
        return (log_joint - trace.score) / x.shape[0]

    return System(OURS, lambda params, key, x: elbo.value_and_grad(key, params, x, argnums=0))


def gaussian_ours_plate(sizes: Sizes) -> System:
    """ppl: a per-datapoint model and guide, the batch a ``Vmap`` plate."""

    @ppl.gen
    def guide_one(params, x):
        loc, scale = encode_gaussian(params, x)
        return ppl.normal(loc, scale) @ "z"

    @ppl.gen
    def model_one(params):
        z = ppl.normal(jnp.zeros(sizes.latent), 1.0) @ "z"
        return ppl.bernoulli(logits=mlp(params["decoder"], z)) @ "x"

    guide = ppl.Vmap(guide_one, in_axes=(None, 0))
    model = ppl.Vmap(model_one, in_axes=None, axis_size=sizes.batch)

    @expectation
    def elbo(key, params, x):
        trace = guide.simulate(key, (params, x))
        log_joint, _ = model.assess(trace.choices | {"x": x}, (params,))
        return (log_joint - trace.score) / x.shape[0]

    return System(OURS_PLATE, lambda params, key, x: elbo.value_and_grad(key, params, x, argnums=0))


def gaussian_numpyro(sizes: Sizes) -> System:
    """NumPyro: ``SVI.update`` with ``Trace_ELBO``; parameters as two ``numpyro.param`` trees."""
    start = initial_parameters(sizes, sizes.latent, 2 * sizes.latent)

    def model(x):
        decoder = numpyro.param("decoder", start["decoder"])
        with numpyro.plate("batch", x.shape[0]):
            prior = numpyro_distributions.Normal(0.0, 1.0).expand([sizes.latent]).to_event(1)
            z = numpyro.sample("z", prior)
            likelihood = numpyro_distributions.Bernoulli(logits=mlp(decoder, z)).to_event(1)
            numpyro.sample("x", likelihood, obs=x)

    def guide(x):
        encoder = numpyro.param("encoder", start["encoder"])
        loc, scale = encode_gaussian({"encoder": encoder}, x)
        with numpyro.plate("batch", x.shape[0]):
            numpyro.sample("z", numpyro_distributions.Normal(loc, scale).to_event(1))

    svi = SVI(model, guide, OPTIMIZER, Trace_ELBO())

    def step(state, key, x):
        state, loss = svi.update(state._replace(rng_key=key), x)
        return state, loss / x.shape[0]

    def value_and_grad(params, key, x):
        loss = lambda params: Trace_ELBO().loss(key, params, model, guide, x) / x.shape[0]
        value, grads = jax.value_and_grad(loss)(params)
        return -value, jax.tree.map(jnp.negative, grads)

    def init(params):
        return svi.init(jax.random.key(0), random_data(sizes), init_params=params)

    return System(NUMPYRO, value_and_grad, step, init)


def gaussian_genjax(sizes: Sizes) -> System:
    """GenJAX: ``normal_reparam`` in a per-datapoint guide, ``.vmap`` over the batch."""

    @genjax.gen
    def guide_one(params, x):
        loc, scale = encode_gaussian(params, x)
        return normal_reparam.vmap(in_axes=(0, 0))(loc, scale) @ "z"

    @genjax.gen
    def model_one(params):
        z = genjax.normal.vmap(in_axes=(None, None), axis_size=sizes.latent)(0.0, 1.0) @ "z"
        return genjax.bernoulli.vmap(in_axes=(0,))(mlp(params["decoder"], z)) @ "x"

    guide = guide_one.vmap(in_axes=(None, 0))
    model = model_one.vmap(in_axes=None, axis_size=sizes.batch)

    @genjax_expectation
    def elbo(params, x):
        trace = guide.simulate(params, x)
        log_joint, _ = model.assess({**trace.get_choices(), "x": x}, params)
        return (jnp.sum(log_joint) + jnp.sum(trace.get_score())) / x.shape[0]  # score = -log q

    return System(GENJAX, genjax_value_and_grad(elbo))


# -- (b) categorical latent ----------------------------------------------------------------------


def baseline(sizes: Sizes) -> float:
    """The ELBO of a decoder that says 1/2 for every pixel: the REINFORCE baseline."""
    return sizes.data * math.log(0.5)


def categorical_exact(sizes: Sizes, params: dict, x: jax.Array) -> jax.Array:
    """The exact ELBO: a sum over every class of every datapoint (``x``: ``[batch, data]``)."""
    log_guide = jax.nn.log_softmax(mlp(params["encoder"], x))  # [batch, classes]
    logits = decode_class(params, jnp.arange(sizes.classes), sizes.classes)  # [classes, data]
    log_likelihood = x @ jax.nn.log_sigmoid(logits).T + (1 - x) @ jax.nn.log_sigmoid(-logits).T
    terms = log_likelihood - math.log(sizes.classes) - log_guide
    return jnp.mean(jnp.sum(jnp.exp(log_guide) * terms, -1))


def categorical_hand_enum(sizes: Sizes) -> System:
    """Hand-written: the exact sum, vectorised over the batch and the classes."""
    exact = jax.value_and_grad(functools.partial(categorical_exact, sizes))
    return System(HAND, lambda params, key, x: exact(params, x))


def categorical_hand_enum_per_datapoint(sizes: Sizes) -> System:
    """Hand-written: the exact sum per datapoint, its gradient vmapped over the batch."""
    exact = jax.value_and_grad(lambda params, key, x: categorical_exact(sizes, params, x[None]))
    return System(HAND_PER_DATAPOINT, per_datapoint(exact))


def categorical_ours_enum(sizes: Sizes) -> System:
    """ppl: a per-datapoint ELBO with ``enum`` at ``"c"``, its copies over the batch made
    with ``Expectation.vmap``."""

    @ppl.gen
    def guide(params, x):
        return ppl.categorical(logits=mlp(params["encoder"], x)) @ "c"

    @ppl.gen
    def model(params):
        c = ppl.categorical(logits=jnp.zeros(sizes.classes)) @ "c"
        return ppl.bernoulli(logits=decode_class(params, c, sizes.classes)) @ "x"

    @expectation
    def elbo(key, params, x):
        trace = guide.simulate(key, (params, x))
        log_joint, _ = model.assess(trace.choices | {"x": x}, (params,))
        return log_joint - trace.score

    batch = elbo.with_estimators({"c": enum()}).vmap(in_axes=(None, 0))
    return System(OURS, lambda params, key, x: batch.value_and_grad(key, params, x, argnums=0))


def categorical_genjax_enum(sizes: Sizes) -> System:
    """GenJAX: ``categorical_enum_parallel`` per datapoint, vmapped over the batch."""

    @genjax.gen
    def model(params):
        c = genjax.categorical(jnp.zeros(sizes.classes)) @ "c"
        return genjax.bernoulli.vmap(in_axes=(0,))(decode_class(params, c, sizes.classes)) @ "x"

    @genjax_expectation
    def elbo(params, x):
        logits = mlp(params["encoder"], x)
        c = categorical_enum_parallel(logits)
        log_joint, _ = model.assess({"c": c, "x": x}, params)
        return log_joint - genjax.categorical.logpdf(c, logits)

    return System(GENJAX, per_datapoint(genjax_value_and_grad(elbo)))


def categorical_hand_reinforce(sizes: Sizes) -> System:
    """Hand-written REINFORCE: ``ELBO + (sum_i log q(c_i) - sg) * sg(ELBO - b)``."""

    def surrogate(params, key, x):
        log_guide = jax.nn.log_softmax(mlp(params["encoder"], x))
        c = jax.random.categorical(key, jax.lax.stop_gradient(log_guide))
        log_q = jnp.take_along_axis(log_guide, c[:, None], axis=1)[:, 0]
        log_likelihood = bernoulli_log_likelihood(x, decode_class(params, c, sizes.classes))
        elbo = jnp.mean(log_likelihood - math.log(sizes.classes) - log_q)
        score = jnp.sum(log_q - jax.lax.stop_gradient(log_q))
        signal = jax.lax.stop_gradient(elbo - baseline(sizes))
        return elbo + score * signal, elbo

    def value_and_grad(params, key, x):
        grads, elbo = jax.grad(surrogate, has_aux=True)(params, key, x)
        return elbo, grads

    return System(HAND, value_and_grad)


def categorical_ours_reinforce(sizes: Sizes) -> System:
    """ppl: one vectorised ``categorical`` for the batch, ``reinforce`` with a constant."""

    @ppl.gen
    def guide(params, x):
        return ppl.categorical(logits=mlp(params["encoder"], x)) @ "c"

    @ppl.gen
    def model(params, batch):
        c = ppl.categorical(logits=jnp.zeros((batch, sizes.classes))) @ "c"
        return ppl.bernoulli(logits=decode_class(params, c, sizes.classes)) @ "x"

    @expectation
    def elbo(key, params, x):
        trace = guide.simulate(key, (params, x))
        log_joint, _ = model.assess(trace.choices | {"x": x}, (params, x.shape[0]))
        return (log_joint - trace.score) / x.shape[0]

    scored = elbo.with_estimators({"c": reinforce(constant(baseline(sizes)))})
    return System(OURS, lambda params, key, x: scored.value_and_grad(key, params, x, argnums=0))


def categorical_genjax_reinforce(sizes: Sizes) -> System:
    """GenJAX: ``genjax.adev.reinforce`` on a categorical; the baseline by subtraction."""

    def sample(key, logits, sample_shape=()):
        categorical = tfp.distributions.Categorical(logits=logits)
        return categorical.sample(seed=key, sample_shape=sample_shape)

    logpdf = genjax.categorical.logpdf
    categorical_reinforce = genjax_distribution(
        genjax_reinforce(genjax.categorical.sample, logpdf, sample), logpdf
    )

    @genjax.gen
    def guide(params, x):
        return categorical_reinforce(mlp(params["encoder"], x)) @ "c"

    @genjax.gen
    def model_one(params):
        c = genjax.categorical(jnp.zeros(sizes.classes)) @ "c"
        return genjax.bernoulli.vmap(in_axes=(0,))(decode_class(params, c, sizes.classes)) @ "x"

    model = model_one.vmap(in_axes=None, axis_size=sizes.batch)

    @genjax_expectation
    def centred_elbo(params, x):
        trace = guide.simulate(params, x)
        log_joint, _ = model.assess({**trace.get_choices(), "x": x}, params)
        elbo = (jnp.sum(log_joint) + jnp.sum(trace.get_score())) / x.shape[0]
        return elbo - baseline(sizes)

    centred = genjax_value_and_grad(centred_elbo)

    def value_and_grad(params, key, x):
        value, grads = centred(params, key, x)
        return value + baseline(sizes), grads

    return System(GENJAX, value_and_grad)
