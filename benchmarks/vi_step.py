"""One jitted ELBO-gradient training step of a VAE in ppl, hand-written JAX, NumPyro and GenJAX.

Three parts, in one run:

(a) an MNIST-sized VAE: 784-dimensional binary data (random, fixed seed), a batch of 64, an
    encoder and a decoder with one hidden layer of 256 ``tanh`` units, a 10-dimensional Gaussian
    latent (reparameterized), a Bernoulli likelihood. One training step is the value and the
    gradient of the ELBO (per datapoint, averaged over the batch) with respect to every
    parameter, and an ``optax.adam`` update.

    * ``ppl`` (ours): ``@gen`` model and guide, the batch as one vectorised ``normal`` whose
      arguments have shape ``[batch, latent]`` (what a user writes for a VAE: the networks
      already work on batches); an ``@expectation`` ELBO and its ``value_and_grad``;
    * hand-written JAX, the reference of the ratios: ``jax.random.normal`` reparameterization,
      ``jax.nn``, ``jax.value_and_grad``;
    * NumPyro: ``SVI(model, guide, optax.adam, Trace_ELBO()).update`` (its own
      ``value_and_grad`` and optimizer step; the step's key is put in the SVI state, and the
      loss, NumPyro's sum over the batch, is divided by the batch size);
    * GenJAX 1.0: ``genjax.adev.expectation`` over a guide with ``normal_reparam``; the batch
      is a ``.vmap`` plate, since a GenJAX distribution scores a batch of values elementwise.
      GenJAX has ``grad_estimate`` and no value-and-gradient, so the step calls
      ``jax.value_and_grad`` on ``genjax.adev.invoke_closed_over``, as ``grad_estimate`` does
      inside; like ``grad_estimate`` it differentiates the data too, because differentiating
      the parameters alone fails in GenJAX's ADEV (a rank-0 tangent meets a matrix product);
    * diagnostic (full run): ``ppl`` with the batch as a ``Vmap`` plate of a per-datapoint
      model and guide.

(b) the same VAE with a discrete latent: one categorical of 10 classes per datapoint (uniform
    prior, the decoder reads its one-hot code), two gradient strategies for it:

    * ``enum``, exact: hand-written JAX sums over the classes for the whole batch at once.
      ``enum`` in ppl enumerates a draw's elements *jointly* (10^64 values for a batched
      draw), so ours is a per-datapoint expectation made a batch objective with
      ``Expectation.vmap`` (each copy enumerated on its own, one gradient of the averaged
      surrogate). The diagnostic row "hand-written, per-datapoint grads" is what vmapping a
      per-datapoint ``value_and_grad`` costs instead. GenJAX's ``categorical_enum_parallel``
      (unbatched only), per datapoint with a vmapped ``value_and_grad``;
    * ``reinforce`` with a constant baseline ``784 log(1/2)`` (the ELBO of a decoder that says
      1/2 everywhere), whole batch: ours ``with_estimators({"c": reinforce(constant(b))})``;
      hand-written, the same estimator (the batch's score times the batch's ELBO minus ``b``);
      GenJAX, ``genjax.adev.reinforce`` on its categorical, which has no baseline, so the
      integrand returns ``ELBO - b`` (the same estimator) and ``b`` is added back.

(c) trace and compile time of ``value_and_grad`` of ``E[c_1 + ... + c_n]`` for a chain of ``n``
    coins, ``c_i ~ flip(sigmoid(theta_i + 2 c_{i-1} - 1))``, every coin enumerated: ours
    (``flip.enum()`` in a ``@gen`` chain) against GenJAX's ``flip_enum`` and
    ``flip_enum_parallel``, and the hand-written forward recursion (the exact answer). GenJAX's
    ``flip_enum`` re-traces the rest of the program for each value of each coin (2^n traces);
    a size whose predicted time (growth per coin from the last two sizes) is over the budget,
    or that runs past it, is skipped.

Measured as ``benchmarks/gfi_overhead.py`` does, with ``benchmarks/_timing.py``: the median step
time over rounds in which the implementations take turns in a shuffled order, and
``jax.jit(step).lower(...).compile()`` after ``jax.clear_caches()`` (median of up to three);
the timed calls are of the executables compiled for the compile time.

Agreement: at the same initial parameters, every implementation's ELBO estimate (the loss of
its step, over many keys) agrees with the hand-written one within 5 standard errors (float32
tolerance where exact); in the full run, exact (``enum``) gradients agree element by element
and Monte Carlo gradients agree along a fixed random direction within 5 standard errors; chain
values and gradients agree with the forward recursion. The script exits with status 1 if one
does not, or if ours fails (a peer's failure is a row of the table). The issue's targets (ours
at most 1.05x hand-written JAX's step time and no slower than GenJAX and NumPyro; our compile
time at most NumPyro's; our enumeration cost growing linearly in the number of coins) are
reported, never enforced.

Run: ``python benchmarks/vi_step.py``; ``--quick`` (a smoke test): tiny sizes, one compilation
each, few keys, no diagnostic rows.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.metadata
import math
import re
import signal
import statistics
import sys
from collections.abc import Callable, Iterator
from typing import Any

import genjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as numpyro_distributions
import optax
from _timing import compile_function, compile_once, met, run_times, show_seconds
from genjax.adev import categorical_enum_parallel, flip_enum, flip_enum_parallel, normal_reparam
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
        enum_sites: chain lengths of part (c).
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
    genjax_budget: float
    value_keys: int
    gradient_keys: int
    diagnostics: bool
    seconds_per_function: float
    minimum_calls: int
    compile_repeats: int
    compile_seconds: float


FULL = Sizes(64, 784, 256, 10, 10, (1, 5, 10, 20), 60.0, 200, 100, True, 1.0, 10, 3, 15.0)
QUICK = Sizes(8, 16, 8, 2, 3, (1, 2), 10.0, 20, 0, False, 0.02, 3, 1, 0.0)


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


# -- measurement of (a) and (b) ------------------------------------------------------------------


def random_data(sizes: Sizes) -> jax.Array:
    """Binary data, each pixel 1 with probability 1/2, from a fixed seed."""
    return jax.random.bernoulli(jax.random.key(1), 0.5, (sizes.batch, sizes.data)).astype(
        jnp.float32
    )


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One ELBO in every implementation.

    Attributes:
        title: how the table names it.
        params: the initial parameters, shared by every implementation.
        systems: the implementations; the one named ``HAND`` is the reference.
        exact: whether the ELBO and its gradient are computed exactly (enumeration).
    """

    title: str
    params: dict
    systems: tuple[System, ...]
    exact: bool = False


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the step-time table.

    Attributes:
        title: the benchmark.
        name: the implementation.
        step: median seconds per step, or ``None`` if it failed.
        compile: median seconds to lower and compile.
        lower: median seconds to trace and lower.
        repeats: compilations timed.
        note: why it failed.
    """

    title: str
    name: str
    step: float | None = None
    compile: float | None = None
    lower: float | None = None
    repeats: int = 0
    note: str = ""


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


def mean_and_error(samples: np.ndarray) -> tuple[float, float]:
    """The sample mean and its standard error."""
    return float(samples.mean()), float(samples.std(ddof=1) / math.sqrt(len(samples)))


def compare(what: str, name: str, estimate: tuple, reference: tuple) -> Agreement:
    """Means (with standard errors) within ``Z`` standard errors plus the float32 tolerance."""
    (mean, error), (expected, expected_error) = estimate, reference
    allowed = Z * math.hypot(error, expected_error) + RELATIVE_TOLERANCE * max(abs(expected), 1.0)
    return Agreement(what, name, abs(mean - expected), allowed)


def check_values(benchmark: Benchmark, steps: dict, states: dict, x, keys) -> list[Agreement]:
    """Every step's ELBO estimate at the initial parameters, averaged over ``keys``."""
    estimates = {}
    for name, step in steps.items():
        losses = np.array([float(step(states[name], key, x)[1]) for key in keys])
        estimates[name] = (-losses.mean(), 0.0) if benchmark.exact else mean_and_error(-losses)
    reference = estimates[HAND]
    return [
        compare(f"{benchmark.title}: ELBO", name, estimate, reference)
        for name, estimate in estimates.items()
        if name != HAND
    ]


def check_gradients(benchmark: Benchmark, failed: set, x, keys) -> list[Agreement]:
    """Gradients at the initial parameters: element by element (exact), or along a fixed
    random direction averaged over ``keys`` (Monte Carlo)."""
    leaves, tree = jax.tree.flatten(benchmark.params)
    direction_keys = jax.random.split(jax.random.key(2), len(leaves))
    direction = [
        jax.random.normal(k, leaf.shape) for k, leaf in zip(direction_keys, leaves, strict=True)
    ]
    scale = math.sqrt(sum(float(jnp.sum(d**2)) for d in direction))
    direction = jax.tree.unflatten(tree, [d / scale for d in direction])
    gradients = {}
    for system in benchmark.systems:
        if system.name in failed:
            continue
        value_and_grad = jax.jit(system.value_and_grad)
        if benchmark.exact:
            gradients[system.name] = value_and_grad(benchmark.params, keys[0], x)[1]
            continue
        projections = np.array(
            [
                float(optax.tree.vdot(value_and_grad(benchmark.params, key, x)[1], direction))
                for key in keys
            ]
        )
        gradients[system.name] = mean_and_error(projections)
    reference = gradients[HAND]
    agreements = []
    for name, gradient in gradients.items():
        if name == HAND:
            continue
        if benchmark.exact:
            differences = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), gradient, reference)
            largest = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(reference))
            difference = max(float(d) for d in jax.tree.leaves(differences))
            allowed = RELATIVE_TOLERANCE * max(largest, 1.0)
            agreements.append(Agreement(f"{benchmark.title}: gradient", name, difference, allowed))
        else:
            what = f"{benchmark.title}: gradient along a direction"
            agreements.append(compare(what, name, gradient, reference))
    return agreements


def measure(benchmark: Benchmark, sizes: Sizes, x: jax.Array) -> tuple[list, list]:
    """Compiles, checks and times every implementation's training step.

    Returns:
        The table's rows and the agreement checks.
    """
    key = jax.random.key(3)
    states, compiled, notes = {}, {}, {}
    for system in benchmark.systems:
        states[system.name] = system.initial_state(benchmark.params)
        arguments = (states[system.name], key, x)
        try:
            compiled[system.name] = compile_function(system.training_step(), arguments, sizes)
        except Exception as error:  # a peer's failure is a row of the table, not a crash
            notes[system.name] = failure(error)
    steps = {name: compilation.executable for name, compilation in compiled.items()}
    value_keys = jax.random.split(jax.random.key(4), 3 if benchmark.exact else sizes.value_keys)
    agreements = check_values(benchmark, steps, states, x, value_keys)
    if sizes.gradient_keys:
        gradient_keys = jax.random.split(jax.random.key(5), sizes.gradient_keys)
        agreements += check_gradients(benchmark, set(notes), x, gradient_keys)
    calls = {name: functools.partial(step, states[name], key, x) for name, step in steps.items()}
    runs = run_times(calls, sizes)
    rows = []
    for system in benchmark.systems:
        if system.name in notes:
            rows.append(Row(benchmark.title, system.name, note=notes[system.name]))
            continue
        compilation = compiled[system.name]
        rows.append(
            Row(
                benchmark.title,
                system.name,
                runs[system.name],
                statistics.median(compilation.totals),
                statistics.median(compilation.lowers),
                len(compilation.totals),
            )
        )
    return rows, agreements


def benchmarks(sizes: Sizes) -> list[Benchmark]:
    """Parts (a) and (b), with the diagnostic rows if asked."""
    gaussian = [gaussian_hand, gaussian_ours, gaussian_numpyro, gaussian_genjax]
    enumerated = [categorical_hand_enum, categorical_ours_enum, categorical_genjax_enum]
    if sizes.diagnostics:
        gaussian.insert(2, gaussian_ours_plate)
        enumerated.insert(1, categorical_hand_enum_per_datapoint)
    scored = [categorical_hand_reinforce, categorical_ours_reinforce, categorical_genjax_reinforce]
    gaussian_params = initial_parameters(sizes, sizes.latent, 2 * sizes.latent)
    categorical_params = initial_parameters(sizes, sizes.classes, sizes.classes)
    shape = f"batch {sizes.batch}, {sizes.data} pixels"
    return [
        Benchmark(
            f"(a) Gaussian VAE, {shape}, latent {sizes.latent}",
            gaussian_params,
            tuple(build(sizes) for build in gaussian),
        ),
        Benchmark(
            f"(b) categorical VAE ({sizes.classes} classes), enum",
            categorical_params,
            tuple(build(sizes) for build in enumerated),
            exact=True,
        ),
        Benchmark(
            f"(b) categorical VAE ({sizes.classes} classes), reinforce",
            categorical_params,
            tuple(build(sizes) for build in scored),
        ),
    ]


# -- (c) a chain of enumerated coins -------------------------------------------------------------


def chain_exact(theta: jax.Array) -> jax.Array:
    """``E[c_1 + ... + c_n]`` by the forward recursion on ``P(c_i = 1)``."""
    heads, total = jnp.zeros(()), jnp.zeros(())
    for theta_i in theta:
        heads = (1 - heads) * jax.nn.sigmoid(theta_i - 1.0) + heads * jax.nn.sigmoid(
            theta_i + COUPLING - 1.0
        )
        total = total + heads
    return total


def chain_hand(n: int) -> Callable:
    """Hand-written: the gradient of the forward recursion."""
    del n
    return lambda key, theta: jax.value_and_grad(chain_exact)(theta)


def chain_ours(n: int) -> Callable:
    """ppl: ``flip.enum()`` at every coin of a ``@gen`` chain."""

    @ppl.gen
    def coins(theta):
        previous, total = jnp.zeros(()), jnp.zeros(())
        for i in range(n):
            p = jax.nn.sigmoid(theta[i] + COUPLING * previous - 1.0)
            previous = ppl.flip.enum()(p) @ ("c", i)
            previous = previous.astype(jnp.float32)
            total = total + previous
        return total

    @expectation
    def heads(key, theta):
        return coins.simulate(key, (theta,)).retval

    return lambda key, theta: heads.value_and_grad(key, theta, argnums=0)


def chain_genjax(primitive: Any) -> Callable[[int], Callable]:
    """GenJAX: an enumerating primitive (``flip_enum``, ``flip_enum_parallel``) at every coin."""

    def build(n: int) -> Callable:
        @genjax_expectation
        def heads(theta):
            previous, total = jnp.zeros(()), jnp.zeros(())
            for i in range(n):
                p = jax.nn.sigmoid(theta[i] + COUPLING * previous - 1.0)
                previous = primitive(p).astype(jnp.float32)
                total = total + previous
            return total

        def value_and_grad(theta):
            return jax.value_and_grad(lambda theta: genjax_invoke(heads, (theta,)))(theta)

        return lambda key, theta: genjax.seed(value_and_grad)(key, theta)

    return build


class OverBudget(BaseException):
    """Raised by the alarm when a measurement runs past its budget (a ``BaseException`` so
    that no library's ``except Exception`` swallows it)."""


@contextlib.contextmanager
def budget(seconds: float | None) -> Iterator[None]:
    """Interrupts the Python part of the work (tracing) after ``seconds``."""
    if seconds is None:
        yield
        return

    def interrupt(signum, frame):
        raise OverBudget

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclasses.dataclass(frozen=True)
class ChainRow:
    """One chain length of one implementation.

    Attributes:
        sites: coins in the chain.
        name: the implementation.
        lower: seconds to trace and lower, or ``None`` if not measured.
        total: seconds to lower and compile.
        note: why it was not measured.
    """

    sites: int
    name: str
    lower: float | None = None
    total: float | None = None
    note: str = ""


def predicted(rows: list[ChainRow], sites: int) -> float | None:
    """Extrapolated total time at ``sites``, growing per coin as between the last two sizes."""
    done = [row for row in rows if row.total is not None]
    if len(done) < 2:
        return None
    (first, last) = done[-2:]
    per_site = (last.total / first.total) ** (1 / (last.sites - first.sites))
    return last.total * per_site ** (sites - last.sites)


def measure_chains(sizes: Sizes) -> tuple[list[ChainRow], list[Agreement]]:
    """Trace and compile time, and exactness, of every implementation at every length."""
    implementations: dict[str, tuple[Callable[[int], Callable], float | None]] = {
        HAND: (chain_hand, None),
        OURS: (chain_ours, None),
        GENJAX: (chain_genjax(flip_enum), sizes.genjax_budget),
        GENJAX_PARALLEL: (chain_genjax(flip_enum_parallel), sizes.genjax_budget),
    }
    rows: list[ChainRow] = []
    agreements: list[Agreement] = []
    key = jax.random.key(6)
    for name, (build, seconds) in implementations.items():
        mine: list[ChainRow] = []
        for sites in sizes.enum_sites:
            theta = jnp.linspace(-1.0, 1.0, sites)
            if any(row.note for row in mine):
                mine.append(ChainRow(sites, name, note="skipped (over budget)"))
                continue
            guess = predicted(mine, sites)
            if seconds is not None and guess is not None and guess > seconds:
                note = f"skipped (over budget: predicted {guess:.3g} s)"
                mine.append(ChainRow(sites, name, note=note))
                continue
            try:
                with budget(seconds):
                    executable, lowered, total = compile_once(build(sites), (key, theta))
            except OverBudget:
                assert seconds is not None
                note = f"skipped (over budget: stopped at {show_seconds(seconds)})"
                mine.append(ChainRow(sites, name, note=note))
                continue
            except Exception as error:  # a peer's failure is a row of the table
                mine.append(ChainRow(sites, name, note=failure(error)))
                mine += [ChainRow(n, name, note="not run") for n in sizes.enum_sites if n > sites]
                break
            mine.append(ChainRow(sites, name, lowered, total))
            value, gradient = executable(key, theta)
            exact_value, exact_gradient = jax.value_and_grad(chain_exact)(theta)
            allowed = RELATIVE_TOLERANCE * 10 * max(float(exact_value), 1.0)  # sums of 2^n paths
            what = f"(c) chain of {sites} coins: value and gradient"
            difference = max(
                abs(float(value - exact_value)),
                float(jnp.max(jnp.abs(gradient - exact_gradient))),
            )
            agreements.append(Agreement(what, name, difference, allowed))
        rows += mine
    return rows, agreements


# -- report --------------------------------------------------------------------------------------


def find(rows: list[Row], title: str, name: str) -> Row | None:
    """The row of one benchmark and implementation, if it ran."""
    return next((r for r in rows if (r.title, r.name) == (title, name) and r.step), None)


def print_table(rows: list[Row]) -> None:
    """Step and compile times, each also as a multiple of hand-written JAX's."""
    header = (
        f"{'benchmark':<50} {'implementation':<34} {'median step':>11} {'x hand':>7} "
        f"{'compile':>8} {'x hand':>7} {'(lower)':>8} {'n':>2}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        start = f"{row.title:<50} {row.name:<34}"
        if row.step is None or row.compile is None or row.lower is None:
            print(f"{start} {'-':>11}  ({row.note})")
            continue
        hand = find(rows, row.title, HAND)
        assert hand is not None and hand.step is not None and hand.compile is not None
        print(
            f"{start} {show_seconds(row.step):>11} {row.step / hand.step:>6.2f}x "
            f"{show_seconds(row.compile):>8} {row.compile / hand.compile:>6.2f}x "
            f"{show_seconds(row.lower):>8} {row.repeats:>2}"
        )
    print(
        "step: jitted value, gradient and adam update; compile: jax.jit(step).lower(...)"
        ".compile() from cleared caches, median of n; (lower): its tracing and lowering part"
    )


def print_chain_table(rows: list[ChainRow]) -> None:
    """Trace and compile time per chain length and implementation."""
    print(f"\n{'(c) enumerated coins':<22} {'implementation':<34} {'lower':>8} {'compile':>9}")
    for row in rows:
        start = f"{row.sites:>4} coins{'':<13} {row.name:<34}"
        if row.total is None or row.lower is None:
            print(f"{start} {'-':>8}  ({row.note})")
            continue
        print(f"{start} {show_seconds(row.lower):>8} {show_seconds(row.total):>9}")
    print("compile: trace, lower and compile of jax.jit(value_and_grad); lower: its first part")


def print_targets(rows: list[Row], chains: list[ChainRow]) -> None:
    """Whether ours meets the issue's targets."""
    print(
        f"\ntargets: ours <= {STEP_TARGET:.2f}x hand-written JAX step time and no slower than "
        f"NumPyro and GenJAX; ours <= {COMPILE_TARGET:.2f}x NumPyro compile time; our "
        "enumeration cost linear in the number of coins"
    )
    for title in dict.fromkeys(row.title for row in rows):
        ours, hand = find(rows, title, OURS), find(rows, title, HAND)
        if ours is None or hand is None or not ours.step or not hand.step:
            print(f"  {title}: not measured (see the table)")
            continue
        ratio = ours.step / hand.step
        parts = [f"step {ratio:.2f}x hand-written ({met(ratio <= STEP_TARGET)})"]
        for peer in (NUMPYRO, GENJAX):
            other = find(rows, title, peer)
            if other is not None and other.step:
                ratio = ours.step / other.step
                parts.append(f"{ratio:.2f}x {peer}'s ({met(ours.step <= other.step)})")
        same_work = find(rows, title, HAND_PER_DATAPOINT)
        if same_work is not None and same_work.step:
            ratio = ours.step / same_work.step
            parts.append(f"{ratio:.2f}x {HAND_PER_DATAPOINT}")
        numpyro_row = find(rows, title, NUMPYRO)
        if numpyro_row is not None and numpyro_row.compile and ours.compile:
            ratio = ours.compile / numpyro_row.compile
            parts.append(f"compile {ratio:.2f}x NumPyro's ({met(ratio <= COMPILE_TARGET)})")
        print(f"  {title}: " + "; ".join(parts))
    for name in (OURS, GENJAX):
        done = {row.sites: row.total for row in chains if row.name == name and row.total}
        if len(done) < 2:
            print(f"  (c) {name}: fewer than two chain lengths measured")
            continue
        small, large = sorted(done)[-2:]
        growth = done[large] / done[small]
        linear = large / small
        line = (
            f"  (c) {name}: {small} -> {large} coins, compile time x{growth:.2f} "
            f"(linear: at most x{linear:.2f})"
        )
        print(line + (f" ({met(growth <= linear)})" if name == OURS else ""))


def print_agreement(agreements: list[Agreement]) -> bool:
    """Every comparison with the reference, and whether all passed."""
    print(f"\nagreement with the reference ({Z:g} standard errors; float32 tolerance):")
    for each in agreements:
        verdict = "ok" if each.passed else "FAILED"
        print(
            f"  {each.what:<72} {each.name:<34} |difference| {each.difference:.3g} "
            f"(allowed {each.allowed:.3g}): {verdict}"
        )
    passed = all(each.passed for each in agreements)
    print(f"agreement check: {'passed' if passed else 'FAILED'}")
    return passed


def main(quick: bool) -> int:
    """Measures every part and prints the report.

    Args:
        quick: tiny sizes and one repeat (a smoke test), instead of the issue's sizes.

    Returns:
        The exit status: 0 if ours ran and the implementations agree, 1 otherwise (targets
        never fail it).
    """
    sizes = QUICK if quick else FULL
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, numpyro {numpyro.__version__}, "
        f"genjax {importlib.metadata.version('genjax')}; {'quick' if quick else 'full'} sizes",
        flush=True,
    )
    x = random_data(sizes)
    rows: list[Row] = []
    agreements: list[Agreement] = []
    for benchmark in benchmarks(sizes):
        more_rows, more_agreements = measure(benchmark, sizes, x)
        rows += more_rows
        agreements += more_agreements
    chains, chain_agreements = measure_chains(sizes)
    agreements += chain_agreements
    print()
    print_table(rows)
    print_chain_table(chains)
    print_targets(rows, chains)
    passed = print_agreement(agreements)
    failed = [f"{row.title}: {row.note}" for row in rows if row.name == OURS and row.step is None]
    failed += [
        f"(c) {row.sites} coins: {row.note}"
        for row in chains
        if row.name == OURS and row.total is None
    ]
    for each in failed:
        print(f"ours failed: {each}")
    return 0 if passed and not failed else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one repeat")
    sys.exit(main(parser.parse_args().quick))
