"""Overhead of ppl's generative function interface against hand-written JAX, NumPyro and GenJAX.

Two models, written as the same model in every implementation:

* a hierarchical regression with 1,000 random choices: four global choices
  ``mu ~ N(0, 1)``, ``tau ~ HalfNormal(1)``, ``sigma ~ HalfNormal(1)``, ``slope ~ N(0, 1)``;
  20 group effects ``effect_g ~ N(mu, tau)``; 976 observations
  ``y_i ~ N(effect_{group(i)} + slope * x_i, sigma)`` (``sigma`` is half-normal, not gamma:
  ``jax.random.gamma``'s rejection sampler alone takes seconds to compile on CPU and would
  hide the interface's share of the compile time);
* a state-space model of 10,000 steps written as a scan: ``z_t ~ N(0.9 z_{t-1}, 1)``,
  ``y_t ~ N(z_t, 0.5)``, ``z_0 = 0`` (20,000 random choices).

Two methods of each, jitted:

* ``assess``: the log density of a full set of choices; the jitted function returns the scalar
  only, in every implementation;
* ``simulate``: sample every choice and its log density; the jitted function returns what the
  implementation's own simulate returns (a trace for ppl and GenJAX; the values and the log
  density for NumPyro and hand-written JAX).

Implementations:

* ``ppl`` (ours): ``@gen`` with ``Vmap`` plates and a ``Scan`` chain;
* hand-written JAX, the reference of the run-time ratios: ``jax.scipy.stats`` log densities,
  ``jax.random`` sampling (one key split per step in the chain), ``lax.scan`` for the chain;
* NumPyro: ``numpyro.infer.util.log_density`` (assess: with the choices substituted; simulate:
  of the seeded model, which samples every site and scores it), with
  ``numpyro.contrib.control_flow.scan`` for the chain;
* GenJAX 1.0: ``@gen``, ``.vmap`` and ``Scan``; simulate through ``genjax.seed``.

Three more rows locate where time goes (they are not the targets' subjects):

* hand-written JAX with NumPyro's ``log_prob`` (assess): the same log density computed with the
  distributions ppl uses, so ours against it is the interface's overhead alone;
* ppl returning only the choices and the score from its simulate (XLA then drops the rest of
  the trace): ours against it is the cost of building the trace;
* hand-written JAX, vectorised (state-space assess): with every ``z`` given, the chain's log
  density needs no scan.

Measured:

* run time: the median wall time of many calls of the jitted function, each blocked until
  ready, taken in rounds in which the implementations take turns in a shuffled order, so drift
  in machine load is shared;
* compile time: ``jax.jit(f).lower(*args)`` then ``.compile()``, each repeat after
  ``jax.clear_caches()`` (which empties JAX's tracing, lowering and executable caches and the
  libraries' own ``lu.cache``), the median of up to three repeats; the ``(lower)`` column is the
  tracing and lowering part, the rest is XLA.

The implementations must agree, which shows they are the same model: every ``assess`` of the
same choices, and every ``simulate`` score against the hand-written log density of its own
sample, within a float32 tolerance; the report ends with the largest differences, and the
script exits with status 1 if any is too large. The issue's targets (our run time at most 1.05x
hand-written JAX's; our compile time no worse than NumPyro's) are measured and reported, never
enforced.

Run: ``python benchmarks/gfi_overhead.py``. With ``--quick`` (a smoke test): tiny sizes, one
compilation per function, no diagnostic rows, and the executables compiled for the compile time
are the ones timed (the full run times a new ``jax.jit`` of each, as users call it).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.metadata
import statistics
import sys
from collections.abc import Callable
from typing import Any

import genjax
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as numpyro_distributions
from _timing import Compilation, compile_function, met, run_times, show_seconds
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
    compile_repeats=3,
    compile_seconds=3.0,
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


# -- compilation and run time --------------------------------------------------------------------


def compile_method(
    benchmark: Benchmark, method: str, arguments: tuple, sizes: Sizes
) -> dict[str, Compilation]:
    """Every implementation of ``method``, compiled for ``arguments``, by name."""
    return {
        implementation.name: compile_function(function, arguments, sizes)
        for implementation in benchmark.implementations
        if (function := implementation.method(method)) is not None
    }


def runnable(
    benchmark: Benchmark, method: str, compiled: dict[str, Compilation], sizes: Sizes
) -> dict[str, Callable[..., Any]]:
    """The functions to run, by name: a new ``jax.jit`` of each, or the compiled executables."""
    if not sizes.fresh_jit:
        return {name: compilation.executable for name, compilation in compiled.items()}
    return {
        implementation.name: jax.jit(function)
        for implementation in benchmark.implementations
        if implementation.name in compiled
        and (function := implementation.method(method)) is not None
    }


# -- agreement -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How far one method's log densities are from the hand-written ones.

    Attributes:
        title: the model.
        method: "assess" or "simulate".
        difference: the largest absolute difference of log p over implementations.
        scale: the largest |log p| compared.
        compared: the implementations compared.
    """

    title: str
    method: str
    difference: float
    scale: float
    compared: int

    @property
    def passed(self) -> bool:
        """Whether the difference is within the float32 tolerance."""
        return self.difference <= RELATIVE_TOLERANCE * max(self.scale, 1.0)


def agree_assess(
    benchmark: Benchmark, functions: dict[str, Callable[..., Any]], choices: dict
) -> Agreement:
    """Every ``assess`` of the same choices, against the hand-written log density."""
    values = {name: float(assess(choices, *benchmark.data)) for name, assess in functions.items()}
    expected = values[HAND]
    differences = [abs(value - expected) for value in values.values()]
    return Agreement(benchmark.title, "assess", max(differences), abs(expected), len(values))


def agree_simulate(
    benchmark: Benchmark,
    functions: dict[str, Callable[..., Any]],
    reference_assess: Callable[..., Any],
    key: jax.Array,
) -> Agreement:
    """Every ``simulate``'s score, against the hand-written log density of its own sample.

    Raises:
        AssertionError: if the samples' addresses or shapes differ between implementations.
    """
    by_name = {each.name: each for each in benchmark.implementations}
    expected_shapes = None
    differences, scales = [], []
    for name, function in functions.items():
        choices, score = by_name[name].read(function(key, *benchmark.data))
        shapes = {address: jnp.shape(value) for address, value in sorted(choices.items())}
        expected_shapes = expected_shapes or shapes
        if shapes != expected_shapes:
            raise AssertionError(f"{name} samples {shapes}, not {expected_shapes}")
        expected = float(reference_assess(choices, *benchmark.data))
        differences.append(abs(float(score) - expected))
        scales.append(abs(expected))
    return Agreement(benchmark.title, "simulate", max(differences), max(scales), len(functions))


# -- measurement ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table: a model, a method and an implementation.

    Attributes:
        title: the model.
        method: "assess" or "simulate".
        name: the implementation.
        run: median seconds per call, or ``None`` where not written.
        compile: median seconds to lower and compile, or ``None`` where not written.
        lower: median seconds to trace and lower, or ``None`` where not written.
        repeats: how many compilations were timed.
        note: why it is not written.
    """

    title: str
    method: str
    name: str
    run: float | None = None
    compile: float | None = None
    lower: float | None = None
    repeats: int = 0
    note: str = ""


def rows_of(
    benchmark: Benchmark, method: str, compiled: dict[str, Compilation], runs: dict[str, float]
) -> list[Row]:
    """The table's rows for one method of one model, in the implementations' order."""
    rows = []
    for implementation in benchmark.implementations:
        compilation = compiled.get(implementation.name)
        if compilation is None:
            note = implementation.missing.get(method, "")
            rows.append(Row(benchmark.title, method, implementation.name, note=note))
            continue
        rows.append(
            Row(
                benchmark.title,
                method,
                implementation.name,
                runs[implementation.name],
                statistics.median(compilation.totals),
                statistics.median(compilation.lowers),
                len(compilation.totals),
            )
        )
    return rows


def measure(benchmark: Benchmark, sizes: Sizes) -> tuple[list[Row], list[Agreement]]:
    """Compiles, checks agreement and times both methods of every implementation of a model.

    Returns:
        The table's rows (assess, then simulate) and the two agreement checks.
    """
    key = jax.random.key(0)
    simulate_arguments = (key, *benchmark.data)
    simulate_compiled = compile_method(benchmark, "simulate", simulate_arguments, sizes)
    reference_sample = simulate_compiled[HAND].executable(*simulate_arguments)
    choices, _ = benchmark.reference.read(reference_sample)
    assess_arguments = (choices, *benchmark.data)
    assess_compiled = compile_method(benchmark, "assess", assess_arguments, sizes)

    assess = runnable(benchmark, "assess", assess_compiled, sizes)
    simulate = runnable(benchmark, "simulate", simulate_compiled, sizes)
    agreements = [
        agree_assess(benchmark, assess, choices),
        agree_simulate(benchmark, simulate, assess[HAND], key),
    ]
    rows = []
    for method, functions, compiled, arguments in (
        ("assess", assess, assess_compiled, assess_arguments),
        ("simulate", simulate, simulate_compiled, simulate_arguments),
    ):
        calls = {name: functools.partial(call, *arguments) for name, call in functions.items()}
        rows += rows_of(benchmark, method, compiled, run_times(calls, sizes))
    return rows, agreements


# -- report --------------------------------------------------------------------------------------


def find(rows: list[Row], title: str, method: str, name: str) -> Row | None:
    """The row of one model, method and implementation, if measured."""
    wanted = (title, method, name)
    return next((row for row in rows if (row.title, row.method, row.name) == wanted), None)


def ratio(rows: list[Row], row: Row, name: str) -> float:
    """``row``'s run time over that of implementation ``name`` for the same model and method."""
    other = find(rows, row.title, row.method, name)
    assert row.run is not None and other is not None and other.run is not None
    return row.run / other.run


def print_table(rows: list[Row]) -> None:
    """Run and compile times, with run time as a multiple of hand-written JAX's."""
    header = (
        f"{'model':<38} {'method':<8} {'implementation':<30} {'median run':>10} "
        f"{'x hand':>7} {'compile':>8} {'(lower)':>8} {'n':>2}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        start = f"{row.title:<38} {row.method:<8} {row.name:<30}"
        if row.run is None or row.compile is None or row.lower is None:
            print(f"{start} {'-':>10}  ({row.note})")
            continue
        print(
            f"{start} {show_seconds(row.run):>10} {ratio(rows, row, HAND):>6.2f}x "
            f"{show_seconds(row.compile):>8} {show_seconds(row.lower):>8} {row.repeats:>2}"
        )
    print(
        "compile: jax.jit(f).lower(...).compile() from cleared caches, median of n; "
        "(lower): its tracing and lowering part"
    )


def print_targets(rows: list[Row]) -> None:
    """Whether ours meets the issue's run-time and compile-time targets, per model and method."""
    print(
        f"\ntargets: ours <= {RUN_TIME_TARGET:.2f}x hand-written JAX run time; "
        f"ours <= {COMPILE_TIME_TARGET:.2f}x NumPyro compile time"
    )
    for title in dict.fromkeys(row.title for row in rows):
        for method in METHODS:
            ours = find(rows, title, method, OURS)
            numpyro_row = find(rows, title, method, NUMPYRO)
            assert ours is not None and ours.compile is not None
            assert numpyro_row is not None and numpyro_row.compile is not None
            run_ratio = ratio(rows, ours, HAND)
            compile_ratio = ours.compile / numpyro_row.compile
            print(
                f"  {title:<38} {method:<8} run {run_ratio:.2f}x hand-written "
                f"({met(run_ratio <= RUN_TIME_TARGET)}{diagnosis(rows, ours)}); compile "
                f"{compile_ratio:.2f}x NumPyro's ({met(compile_ratio <= COMPILE_TIME_TARGET)})"
            )


def diagnosis(rows: list[Row], ours: Row) -> str:
    """Ours against the diagnostic rows, where they were measured."""
    if ours.method == "assess":
        if find(rows, ours.title, ours.method, HAND_NUMPYRO_DENSITY) is None:
            return ""
        return (
            f"; {ratio(rows, ours, HAND_NUMPYRO_DENSITY):.2f}x hand-written with NumPyro's log_prob"
        )
    choices_only = find(rows, ours.title, ours.method, OURS_CHOICES_ONLY)
    if choices_only is None:
        return ""
    return f"; {ratio(rows, choices_only, HAND):.2f}x returning only the choices and score"


def print_agreement(agreements: list[Agreement]) -> bool:
    """The largest log-density differences between implementations.

    Returns:
        Whether every check passed.
    """
    print(f"\nagreement of log densities (tolerance {RELATIVE_TOLERANCE:g} x |log p|):")
    for agreement in agreements:
        print(
            f"  {agreement.title:<38} {agreement.method:<8} max |difference| "
            f"{agreement.difference:.3g} over {agreement.compared} implementations, |log p| up "
            f"to {agreement.scale:.6g}: {'ok' if agreement.passed else 'FAILED'}"
        )
    passed = all(agreement.passed for agreement in agreements)
    print(f"agreement check: {'passed' if passed else 'FAILED'}")
    return passed


def main(quick: bool) -> int:
    """Measures every model, method and implementation and prints the report.

    Args:
        quick: tiny sizes and few repeats (a smoke test), instead of the issue's sizes.

    Returns:
        The exit status: 0 if the implementations agree, 1 otherwise (targets never fail it).
    """
    sizes = QUICK if quick else FULL
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, numpyro {numpyro.__version__}, "
        f"genjax {importlib.metadata.version('genjax')}; {'quick' if quick else 'full'} sizes"
    )
    rows: list[Row] = []
    agreements: list[Agreement] = []
    for benchmark in benchmarks(sizes):
        model_rows, model_agreements = measure(benchmark, sizes)
        rows += model_rows
        agreements += model_agreements
    print()
    print_table(rows)
    print_targets(rows)
    return 0 if print_agreement(agreements) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats")
    sys.exit(main(parser.parse_args().quick))
