"""The GFI overhead benchmark's sizes, models and implementations (hand-written JAX, ppl,
NumPyro, GenJAX) of ``assess`` and ``simulate``: see ``benchmarks/gfi_overhead.py``."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import genjax
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as numpyro_distributions
from jax.scipy import stats
from numpyro import handlers
from numpyro.contrib.control_flow import scan as numpyro_scan
from numpyro.infer.util import log_density

import ppl

MU_SCALE = 1.0
TAU_SCALE = 1.0
SIGMA_SCALE = 1.0
SLOPE_SCALE = 1.0
GLOBAL_CHOICES = 4  # mu, tau, sigma, slope

AUTOREGRESSION = 0.9
PROCESS_SCALE = 1.0
OBSERVATION_SCALE = 0.5
INITIAL_STATE = 0.0

RELATIVE_TOLERANCE = 1e-5  # float32 sums of thousands of terms, relative to |log p|
RUN_TIME_TARGET = 1.05  # ours / hand-written JAX
COMPILE_TIME_TARGET = 1.0  # ours / NumPyro

HAND = "hand-written JAX"
HAND_NUMPYRO_DENSITY = "hand-written, NumPyro log_prob"
HAND_VECTORISED = "hand-written JAX, vectorised"
OURS = "ppl (ours)"
OURS_CHOICES_ONLY = "ppl, choices and score only"
NUMPYRO = "NumPyro"
GENJAX = "GenJAX"
METHODS = ("assess", "simulate")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Problem sizes and measurement effort.

    Attributes:
        groups: group effects in the hierarchical regression.
        choices: random choices in the hierarchical regression (globals + groups + data).
        steps: steps of the state-space model.
        seconds_per_function: timed calls per implementation add up to about this long.
        minimum_calls: at least this many timed calls per implementation.
        compile_repeats: compilations timed per function, at most (the median is reported).
        compile_seconds: no further compilation is timed once they would add up to more.
        fresh_jit: time calls of a new ``jax.jit`` of each function (the path users take)
            rather than of the executable compiled for the compile time, at the price of
            compiling everything once more.
        diagnostics: include the rows that locate where time goes.
    """

    groups: int
    choices: int
    steps: int
    seconds_per_function: float
    minimum_calls: int
    compile_repeats: int
    compile_seconds: float
    fresh_jit: bool
    diagnostics: bool

    @property
    def observations(self) -> int:
        """Observed choices of the hierarchical regression."""
        return self.choices - GLOBAL_CHOICES - self.groups


FULL = Sizes(
    groups=20,
    choices=1_000,
    steps=10_000,
    seconds_per_function=1.0,
    minimum_calls=10,
    compile_repeats=5,
    compile_seconds=6.0,
    fresh_jit=True,
    diagnostics=True,
)
QUICK = Sizes(
    groups=4,
    choices=40,
    steps=50,
    seconds_per_function=0.02,
    minimum_calls=5,
    compile_repeats=1,
    compile_seconds=0.0,
    fresh_jit=False,
    diagnostics=False,
)


@dataclasses.dataclass(frozen=True)
class Implementation:
    """One implementation of one model.

    Attributes:
        name: how the table names it.
        assess: ``(choices, *data) -> log p``, or ``None`` where it is not written.
        simulate: ``(key, *data) -> output``, or ``None`` where it is not written.
        read: ``output -> (choices as a dict of arrays, log p)`` for the agreement check.
        missing: why a method is ``None``, by method name.
    """

    name: str
    assess: Callable[..., jax.Array] | None
    simulate: Callable[..., Any] | None
    read: Callable[[Any], tuple[dict, jax.Array]]
    missing: dict[str, str] = dataclasses.field(default_factory=dict)

    def method(self, method: str) -> Callable[..., Any] | None:
        """The function of ``method`` ("assess" or "simulate")."""
        return self.assess if method == "assess" else self.simulate


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One model: its data and its implementations.

    Attributes:
        title: how the table names the model.
        data: the model's arguments after the choices (assess) or the key (simulate).
        implementations: every implementation; the one named ``HAND`` is the reference.
    """

    title: str
    data: tuple
    implementations: tuple[Implementation, ...]

    @property
    def reference(self) -> Implementation:
        """The hand-written implementation, against which the others are compared."""
        return next(each for each in self.implementations if each.name == HAND)


def identity(output: Any) -> Any:
    """Reads an output that already is ``(choices, log p)``."""
    return output


def scipy_normal(value: jax.Array, loc: Any, scale: Any) -> jax.Array:
    """Normal log density by ``jax.scipy.stats``."""
    return stats.norm.logpdf(value, loc, scale)


def numpyro_normal(value: jax.Array, loc: Any, scale: Any) -> jax.Array:
    """Normal log density by NumPyro's ``Normal.log_prob``, as ppl's ``normal`` computes it."""
    return numpyro_distributions.Normal(loc, scale).log_prob(value)


NormalLogDensity = Callable[[jax.Array, Any, Any], jax.Array]


# -- hierarchical regression ---------------------------------------------------------------------


def hierarchical_data(sizes: Sizes) -> tuple[jax.Array, jax.Array]:
    """Covariates in [-2, 2] and group labels assigned in turn."""
    xs = jnp.linspace(-2.0, 2.0, sizes.observations)
    groups = jnp.arange(sizes.observations) % sizes.groups
    return xs, groups


def hand_hierarchical_log_density(
    choices: dict, xs: jax.Array, groups: jax.Array, normal: NormalLogDensity = scipy_normal
) -> jax.Array:
    """The hierarchical regression's log density, written out.

    Args:
        choices: the six addresses' values.
        xs: covariates.
        groups: each observation's group.
        normal: the normal log density (a half-normal is ``log 2`` plus a normal's).
    """
    mean = choices["effects"][groups] + choices["slope"] * xs
    return (
        normal(choices["mu"], 0.0, MU_SCALE)
        + jnp.log(2.0)
        + normal(choices["tau"], 0.0, TAU_SCALE)
        + jnp.log(2.0)
        + normal(choices["sigma"], 0.0, SIGMA_SCALE)
        + normal(choices["slope"], 0.0, SLOPE_SCALE)
        + jnp.sum(normal(choices["effects"], choices["mu"], choices["tau"]))
        + jnp.sum(normal(choices["ys"], mean, choices["sigma"]))
    )


def hand_hierarchical(sizes: Sizes) -> Implementation:
    """Hand-written JAX: a vectorised log density and a ``jax.random`` sampler."""

    def simulate(key, xs, groups):
        keys = jax.random.split(key, 6)
        mu = MU_SCALE * jax.random.normal(keys[0])
        tau = TAU_SCALE * jnp.abs(jax.random.normal(keys[1]))
        sigma = SIGMA_SCALE * jnp.abs(jax.random.normal(keys[2]))
        slope = SLOPE_SCALE * jax.random.normal(keys[3])
        effects = mu + tau * jax.random.normal(keys[4], (sizes.groups,))
        noise = jax.random.normal(keys[5], xs.shape)
        ys = effects[groups] + slope * xs + sigma * noise
        choices = {
            "mu": mu,
            "tau": tau,
            "sigma": sigma,
            "slope": slope,
            "effects": effects,
            "ys": ys,
        }
        return choices, hand_hierarchical_log_density(choices, xs, groups)

    return Implementation(HAND, hand_hierarchical_log_density, simulate, identity)


def hand_hierarchical_numpyro_density() -> Implementation:
    """Hand-written JAX, but with NumPyro's normal log density (assess only)."""
    return Implementation(
        HAND_NUMPYRO_DENSITY,
        functools.partial(hand_hierarchical_log_density, normal=numpyro_normal),
        None,
        identity,
        missing={"simulate": "the hand-written sampler"},
    )


def ours_hierarchical(sizes: Sizes) -> Implementation:
    """ppl: ``@gen`` with a ``Vmap`` plate for the group effects and one for the data."""

    @ppl.gen
    def model(xs, groups):
        mu = ppl.normal(0.0, MU_SCALE) @ "mu"
        tau = ppl.half_normal(TAU_SCALE) @ "tau"
        sigma = ppl.half_normal(SIGMA_SCALE) @ "sigma"
        slope = ppl.normal(0.0, SLOPE_SCALE) @ "slope"
        effects = ppl.Vmap(ppl.normal, in_axes=None, axis_size=sizes.groups)(mu, tau) @ "effects"
        mean = effects[groups] + slope * xs
        return ppl.Vmap(ppl.normal, in_axes=(0, None))(mean, sigma) @ "ys"

    def read(trace):
        names = ("mu", "tau", "sigma", "slope", "effects", "ys")
        return {name: trace.choices[name] for name in names}, trace.score

    return Implementation(
        OURS,
        lambda choices, xs, groups: model.assess(choices, (xs, groups))[0],
        lambda key, xs, groups: model.simulate(key, (xs, groups)),
        read,
    )


def numpyro_hierarchical(sizes: Sizes) -> Implementation:
    """NumPyro: plates for the group effects and the data."""

    def model(xs, groups):
        mu = numpyro.sample("mu", numpyro_distributions.Normal(0.0, MU_SCALE))
        tau = numpyro.sample("tau", numpyro_distributions.HalfNormal(TAU_SCALE))
        sigma = numpyro.sample("sigma", numpyro_distributions.HalfNormal(SIGMA_SCALE))
        slope = numpyro.sample("slope", numpyro_distributions.Normal(0.0, SLOPE_SCALE))
        with numpyro.plate("groups", sizes.groups):
            effects = numpyro.sample("effects", numpyro_distributions.Normal(mu, tau))
        with numpyro.plate("data", xs.shape[0]):
            mean = effects[groups] + slope * xs
            numpyro.sample("ys", numpyro_distributions.Normal(mean, sigma))

    return numpyro_implementation(model)


def genjax_hierarchical(sizes: Sizes) -> Implementation:
    """GenJAX 1.0: ``@gen`` with ``.vmap`` plates."""

    @genjax.gen
    def model(xs, groups):
        mu = genjax.normal(0.0, MU_SCALE) @ "mu"
        tau = genjax.half_normal(TAU_SCALE) @ "tau"
        sigma = genjax.half_normal(SIGMA_SCALE) @ "sigma"
        slope = genjax.normal(0.0, SLOPE_SCALE) @ "slope"
        plate = genjax.normal.vmap(in_axes=(None, None), axis_size=sizes.groups)
        effects = plate(mu, tau) @ "effects"
        mean = effects[groups] + slope * xs
        return genjax.normal.vmap(in_axes=(0, None))(mean, sigma) @ "ys"

    return genjax_implementation(model)


# -- state-space model ---------------------------------------------------------------------------


def hand_state_space_log_density(
    choices: dict, normal: NormalLogDensity = scipy_normal
) -> jax.Array:
    """The state-space log density as a ``lax.scan`` over steps, as every GFI computes it.

    Args:
        choices: ``{"z": states, "y": observations}``.
        normal: the normal log density.
    """

    def step(previous, state_and_observation):
        state, observation = state_and_observation
        log_density = normal(state, AUTOREGRESSION * previous, PROCESS_SCALE) + normal(
            observation, state, OBSERVATION_SCALE
        )
        return state, log_density

    _, terms = jax.lax.scan(step, INITIAL_STATE, (choices["z"], choices["y"]))
    return jnp.sum(terms)


def vectorised_state_space_log_density(choices: dict) -> jax.Array:
    """The state-space log density without a scan: every ``z`` is given, so steps are parallel."""
    states = choices["z"]
    previous = jnp.concatenate([jnp.full((1,), INITIAL_STATE), states[:-1]])
    return jnp.sum(scipy_normal(states, AUTOREGRESSION * previous, PROCESS_SCALE)) + jnp.sum(
        scipy_normal(choices["y"], states, OBSERVATION_SCALE)
    )


def hand_state_space(sizes: Sizes) -> Implementation:
    """Hand-written JAX: ``lax.scan`` over steps, one key split per step."""

    def simulate(key):
        def step(previous, step_key):
            process_key, observation_key = jax.random.split(step_key)
            state = AUTOREGRESSION * previous + PROCESS_SCALE * jax.random.normal(process_key)
            observation = state + OBSERVATION_SCALE * jax.random.normal(observation_key)
            log_density = scipy_normal(state, AUTOREGRESSION * previous, PROCESS_SCALE) + (
                scipy_normal(observation, state, OBSERVATION_SCALE)
            )
            return state, (state, observation, log_density)

        keys = jax.random.split(key, sizes.steps)
        _, (states, observations, terms) = jax.lax.scan(step, INITIAL_STATE, keys)
        return {"z": states, "y": observations}, jnp.sum(terms)

    return Implementation(HAND, hand_state_space_log_density, simulate, identity)


def hand_state_space_numpyro_density() -> Implementation:
    """Hand-written JAX, but with NumPyro's normal log density (assess only)."""
    return Implementation(
        HAND_NUMPYRO_DENSITY,
        functools.partial(hand_state_space_log_density, normal=numpyro_normal),
        None,
        identity,
        missing={"simulate": "the hand-written sampler"},
    )


def vectorised_state_space() -> Implementation:
    """Hand-written JAX with a vectorised log density (assess only)."""
    return Implementation(
        HAND_VECTORISED,
        vectorised_state_space_log_density,
        None,
        identity,
        missing={"simulate": "sampling a chain is sequential"},
    )


def ours_state_space(sizes: Sizes) -> Implementation:
    """ppl: a ``@gen`` kernel under ``Scan``."""

    @ppl.gen
    def step(previous, _):
        state = ppl.normal(AUTOREGRESSION * previous, PROCESS_SCALE) @ "z"
        observation = ppl.normal(state, OBSERVATION_SCALE) @ "y"
        return state, observation

    chain = ppl.Scan(step, length=sizes.steps)
    arguments = (INITIAL_STATE, None)

    def read(trace):
        return {"z": trace.choices["z"], "y": trace.choices["y"]}, trace.score

    return Implementation(
        OURS,
        lambda choices: chain.assess(choices, arguments)[0],
        lambda key: chain.simulate(key, arguments),
        read,
    )


def numpyro_state_space(sizes: Sizes) -> Implementation:
    """NumPyro: ``numpyro.contrib.control_flow.scan`` over a transition function."""

    def transition(previous, _):
        state = numpyro.sample(
            "z", numpyro_distributions.Normal(AUTOREGRESSION * previous, PROCESS_SCALE)
        )
        observation = numpyro.sample("y", numpyro_distributions.Normal(state, OBSERVATION_SCALE))
        return state, observation

    def model():
        numpyro_scan(transition, INITIAL_STATE, None, length=sizes.steps)

    return numpyro_implementation(model)


def genjax_state_space(sizes: Sizes) -> Implementation:
    """GenJAX 1.0: a ``@gen`` kernel under ``Scan``."""

    @genjax.gen
    def step(previous, _):
        state = genjax.normal(AUTOREGRESSION * previous, PROCESS_SCALE) @ "z"
        observation = genjax.normal(state, OBSERVATION_SCALE) @ "y"
        return state, observation

    chain = genjax.Scan(step, length=genjax.const(sizes.steps))
    return genjax_implementation(chain, fixed=(INITIAL_STATE, None))


# -- adapters ------------------------------------------------------------------------------------


def choices_and_score_only(ours: Implementation) -> Implementation:
    """Ours, with a simulate that returns only the choices and the score of the trace."""
    simulate = ours.simulate
    assert simulate is not None
    return Implementation(
        OURS_CHOICES_ONLY,
        None,
        lambda key, *data: ours.read(simulate(key, *data)),
        identity,
        missing={"assess": "ours already returns log p only"},
    )


def numpyro_implementation(model: Callable[..., Any]) -> Implementation:
    """NumPyro's ``log_density``: of substituted choices (assess), of a seeded run (simulate)."""

    def assess(choices, *data):
        return log_density(model, data, {}, choices)[0]

    def simulate(key, *data):
        log_joint, model_trace = log_density(handlers.seed(model, rng_seed=key), data, {}, {})
        values = {name: site["value"] for name, site in model_trace.items() if is_sample(site)}
        return values, log_joint

    return Implementation(NUMPYRO, assess, simulate, identity)


def is_sample(site: dict) -> bool:
    """Whether a NumPyro trace site is a random choice."""
    return site["type"] == "sample"


def genjax_implementation(gen_fn: Any, fixed: tuple = ()) -> Implementation:
    """GenJAX's ``assess`` and seeded ``simulate``; its trace score is ``-log p``.

    Args:
        gen_fn: the GenJAX generative function.
        fixed: arguments after the data (the state-space model's initial state and ``xs``).
    """

    def read(trace):
        return dict(trace.get_choices()), -trace.get_score()

    return Implementation(
        GENJAX,
        lambda choices, *data: gen_fn.assess(choices, *data, *fixed)[0],
        lambda key, *data: genjax.seed(gen_fn.simulate)(key, *data, *fixed),
        read,
    )


def benchmarks(sizes: Sizes) -> tuple[Benchmark, ...]:
    """The two models, each in every implementation (with the diagnostic rows if asked)."""
    ours = ours_hierarchical(sizes)
    hierarchical: tuple[Implementation, ...] = (
        hand_hierarchical(sizes),
        hand_hierarchical_numpyro_density(),
        ours,
        choices_and_score_only(ours),
        numpyro_hierarchical(sizes),
        genjax_hierarchical(sizes),
    )
    ours = ours_state_space(sizes)
    state_space: tuple[Implementation, ...] = (
        hand_state_space(sizes),
        hand_state_space_numpyro_density(),
        vectorised_state_space(),
        ours,
        choices_and_score_only(ours),
        numpyro_state_space(sizes),
        genjax_state_space(sizes),
    )
    kept = {HAND, OURS, NUMPYRO, GENJAX}
    if not sizes.diagnostics:
        hierarchical = tuple(each for each in hierarchical if each.name in kept)
        state_space = tuple(each for each in state_space if each.name in kept)
    return (
        Benchmark(
            f"hierarchical regression, {sizes.choices:,} choices",
            hierarchical_data(sizes),
            hierarchical,
        ),
        Benchmark(f"state-space model, {sizes.steps:,} steps", (), state_space),
    )
