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
    ``flip_enum_parallel``, the hand-written forward recursion (the exact answer), and
    hand-written JAX that enumerates as ``enum`` does ("every path": coin by coin, all ``2^n``
    paths along one axis, reduced coin by coin from the last with the same surrogate). Ours
    and the hand-written ones compile in turns (medians); GenJAX's ``flip_enum`` re-traces the
    rest of the program for each value of each coin (2^n traces), so it compiles once per
    length, and a length whose predicted time (growth per coin from the last two lengths) is
    over the budget, or that runs past it, is skipped. Chains of 1, 5, 10, 20 and 40 coins;
    the values and gradients of those up to 20 coins are computed and checked, the 40-coin
    ones only compiled (all 2^40 paths would not fit in memory: on a GPU, XLA's
    rematerialization pass warns so while compiling them). Growth between the two longest
    chains is judged against "every path", i.e. "linear" means no faster than hand-written
    JAX doing the same work: XLA's compile time is not proportional to a program's length (on
    a 2-core CPU the forward recursion, O(n) code, grew x2.2-4.1 from 20 to 40 coins between
    runs).

    The same chain with ``mvd`` at every coin (``flip.mvd()``): ours against GenJAX's
    ``flip_mvd`` (which traces the rest of the program at ``x``, ``x⁺`` and ``x⁻``: 3^n
    traces) and hand-written JAX taking the derivative as ``mvd`` does ("every path": each
    coin turns the paths into three, its draw, 1 and 0, folded back from the last coin).
    Chains of 1, 5, 10 and 20 coins, only compiled (their values are Monte Carlo estimates,
    whose unbiasedness the test suite checks; 3^40 paths would be more than an array can
    index).

Measured as ``benchmarks/gfi_overhead.py`` does, with ``benchmarks/_timing.py``: the median step
time over rounds in which the implementations take turns in a shuffled order, and
``jax.jit(step).lower(...).compile()`` after ``jax.clear_caches()`` (median of up to five, the
implementations taking turns); the timed calls are of the executables compiled for the compile
time. Each verdict on a ratio of medians gives its 95% bootstrap interval (each system's
timings resampled on their own), which says whether the verdict is clear of the machine's
noise. The ``ops`` column counts the compiled step's top-level operations: on a GPU each is
about one kernel launch, and a step this small is bound by them (on an H100, 38 for the
hand-written (a) step and ~10 us each), where a CPU's step time follows the flops and bytes.

Agreement: at the same initial parameters, every implementation's ELBO estimate (the loss of
its step, over many keys) agrees with the hand-written one within 5 standard errors (float32
tolerance where exact); in the full run, exact (``enum``) gradients agree element by element
and Monte Carlo gradients agree along a fixed random direction within 5 standard errors (the
gradients computed with float32 matrix products, not a GPU's default TF32 ones); chain
values and gradients agree with the forward recursion. The script exits with status 1 if one
does not, or if ours fails (a peer's failure is a row of the table). The issue's targets (ours
at most 1.05x hand-written JAX's step time and no slower than GenJAX and NumPyro; our compile
time at most NumPyro's; our enumeration cost growing with the number of coins no faster than
hand-written "every path"'s) are reported, never enforced.

Run: ``python benchmarks/vi_step.py``; ``--quick`` (a smoke test): tiny sizes, one compilation
each, few keys, no diagnostic rows; ``--parts c``: part (c) alone (any of ``abc``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.metadata
import math
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
from _timing import (
    bootstrap_medians,
    compile_functions,
    interval95,
    median_ratio_interval,
    met,
    run_samples,
    show_seconds,
    top_level_operations,
)
from _vi_chain import ChainRow, measure_chains
from _vi_systems import (
    COMPILE_TARGET,
    FULL,
    GENJAX,
    HAND,
    HAND_EVERY_PATH,
    HAND_PER_DATAPOINT,
    NUMPYRO,
    OURS,
    QUICK,
    RELATIVE_TOLERANCE,
    STEP_TARGET,
    Agreement,
    Sizes,
    System,
    Z,
    categorical_genjax_enum,
    categorical_genjax_reinforce,
    categorical_hand_enum,
    categorical_hand_enum_per_datapoint,
    categorical_hand_reinforce,
    categorical_ours_enum,
    categorical_ours_reinforce,
    failure,
    gaussian_genjax,
    gaussian_hand,
    gaussian_numpyro,
    gaussian_ours,
    gaussian_ours_plate,
    initial_parameters,
    random_data,
)

# -- measurement of (a) and (b) ------------------------------------------------------------------


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
        steps: seconds of every timed step.
        compiles: seconds of every timed compilation.
        operations: top-level operations of the compiled step (``top_level_operations``).
    """

    title: str
    name: str
    step: float | None = None
    compile: float | None = None
    lower: float | None = None
    repeats: int = 0
    note: str = ""
    steps: tuple[float, ...] = ()
    compiles: tuple[float, ...] = ()
    operations: int | None = None


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
    states = {system.name: system.initial_state(benchmark.params) for system in benchmark.systems}
    functions = {
        system.name: (system.training_step(), (states[system.name], key, x))
        for system in benchmark.systems
    }
    compiled, errors = compile_functions(functions, sizes)
    notes = {name: failure(error) for name, error in errors.items()}
    steps = {name: compilation.executable for name, compilation in compiled.items()}
    value_keys = jax.random.split(jax.random.key(4), 3 if benchmark.exact else sizes.value_keys)
    agreements = check_values(benchmark, steps, states, x, value_keys)
    if sizes.gradient_keys:
        gradient_keys = jax.random.split(jax.random.key(5), sizes.gradient_keys)
        # In float32 throughout: a GPU's default matrix products round to TF32 (~1e-3
        # relative), which would pass for a difference between the estimators.
        with jax.default_matmul_precision("highest"):
            agreements += check_gradients(benchmark, set(notes), x, gradient_keys)
    calls = {name: functools.partial(step, states[name], key, x) for name, step in steps.items()}
    runs = run_samples(calls, sizes)
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
                statistics.median(runs[system.name]),
                statistics.median(compilation.totals),
                statistics.median(compilation.lowers),
                len(compilation.totals),
                steps=tuple(runs[system.name]),
                compiles=tuple(compilation.totals),
                operations=top_level_operations(compilation.executable),
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


# -- report --------------------------------------------------------------------------------------


def find(rows: list[Row], title: str, name: str) -> Row | None:
    """The row of one benchmark and implementation, if it ran."""
    return next((r for r in rows if (r.title, r.name) == (title, name) and r.step), None)


def print_table(rows: list[Row]) -> None:
    """Step and compile times, each also as a multiple of hand-written JAX's."""
    header = (
        f"{'benchmark':<50} {'implementation':<34} {'median step':>11} {'x hand':>7} "
        f"{'compile':>8} {'x hand':>7} {'(lower)':>8} {'n':>2} {'ops':>4}"
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
            f"{show_seconds(row.lower):>8} {row.repeats:>2} {row.operations or '-':>4}"
        )
    print(
        "step: jitted value, gradient and adam update; compile: jax.jit(step).lower(...)"
        ".compile() from cleared caches, median of n; (lower): its tracing and lowering part; "
        "ops: operations of the compiled step (a GPU's kernel launches, roughly)"
    )


def print_chain_table(rows: list[ChainRow], strategy: str) -> None:
    """Trace and compile time per chain length and implementation."""
    title = f"(c) coins, {strategy}"
    print(f"\n{title:<22} {'implementation':<34} {'lower':>8} {'compile':>9}")
    for row in rows:
        start = f"{row.sites:>4} coins{'':<13} {row.name:<34}"
        if row.total is None or row.lower is None:
            print(f"{start} {'-':>8}  ({row.note})")
            continue
        print(f"{start} {show_seconds(row.lower):>8} {show_seconds(row.total):>9}")
    print("compile: trace, lower and compile of jax.jit(value_and_grad); lower: its first part")


def print_targets(rows: list[Row], chains: dict[str, list[ChainRow]]) -> None:
    """Whether ours meets the issue's targets."""
    print(
        f"\ntargets: ours <= {STEP_TARGET:.2f}x hand-written JAX step time and no slower than "
        f"NumPyro and GenJAX; ours <= {COMPILE_TARGET:.2f}x NumPyro compile time; our "
        f"enumeration and mvd cost growing no faster than {HAND_EVERY_PATH}'s"
    )
    for title in dict.fromkeys(row.title for row in rows):
        ours, hand = find(rows, title, OURS), find(rows, title, HAND)
        if ours is None or hand is None or not ours.step or not hand.step:
            print(f"  {title}: not measured (see the table)")
            continue
        ratio = ours.step / hand.step
        parts = [
            f"step {ratio:.2f}x hand-written ({spread(ours.steps, hand.steps)}"
            f"{met(ratio <= STEP_TARGET)})"
        ]
        for peer in (NUMPYRO, GENJAX):
            other = find(rows, title, peer)
            if other is not None and other.step:
                ratio = ours.step / other.step
                parts.append(
                    f"{ratio:.2f}x {peer}'s ({spread(ours.steps, other.steps)}"
                    f"{met(ours.step <= other.step)})"
                )
        same_work = find(rows, title, HAND_PER_DATAPOINT)
        if same_work is not None and same_work.step:
            ratio = ours.step / same_work.step
            parts.append(f"{ratio:.2f}x {HAND_PER_DATAPOINT}")
        numpyro_row = find(rows, title, NUMPYRO)
        if numpyro_row is not None and numpyro_row.compile and ours.compile:
            ratio = ours.compile / numpyro_row.compile
            parts.append(
                f"compile {ratio:.2f}x NumPyro's ({spread(ours.compiles, numpyro_row.compiles)}"
                f"{met(ratio <= COMPILE_TARGET)})"
            )
        print(f"  {title}: " + "; ".join(parts))
    for strategy, rows_of in chains.items():
        print_chain_targets(rows_of, strategy)


def spread(ours: tuple[float, ...], theirs: tuple[float, ...]) -> str:
    """The 95% bootstrap interval of a ratio of medians, as a verdict's prefix (none for a
    single measurement): whether a verdict is clear of the machine's noise."""
    if len(ours) < 2 or len(theirs) < 2:
        return ""
    low, high = median_ratio_interval(list(ours), list(theirs))
    return f"95% interval {low:.2f}-{high:.2f}; "


def print_chain_targets(chains: list[ChainRow], strategy: str) -> None:
    """How each implementation's compile time grew with the chain (target (c))."""
    growth = {name: chain_growth(chains, name) for name in dict.fromkeys(r.name for r in chains)}
    for name, measured in growth.items():
        if measured is None:
            print(f"  (c) {strategy}, {name}: fewer than two chain lengths measured")
            continue
        small, large, factor = measured
        line = f"  (c) {strategy}, {name}: {small} -> {large} coins, compile time x{factor:.2f}"
        reference = growth.get(HAND_EVERY_PATH)
        if name == OURS and reference is not None and reference[:2] == (small, large):
            verdict = met(factor <= reference[2])
            line += (
                f" (no faster than {HAND_EVERY_PATH}'s x{reference[2]:.2f}: "
                f"{growth_spread(chains, small, large)}{verdict})"
            )
        print(line)
    ours_growth, hand_growth = growth.get(OURS), growth.get(HAND)
    if ours_growth is not None:
        proportional = ours_growth[1] / ours_growth[0]
        line = (
            f"  (c) {strategy}: proportional growth would be x{proportional:.2f}; the target "
            f"compares ours with {HAND_EVERY_PATH}, which branches as ours does"
        )
        if hand_growth is not None and hand_growth[2] > proportional:
            line += f" ({HAND}'s forward recursion, O(n) code, grows x{hand_growth[2]:.2f} here)"
        print(line)


def growth_spread(chains: list[ChainRow], small: int, large: int) -> str:
    """The 95% bootstrap interval of ours' growth over hand-written every path's (each
    compilation list resampled on its own), as a verdict's prefix."""
    totals = {
        (row.name, row.sites): row.totals
        for row in chains
        if row.name in (OURS, HAND_EVERY_PATH) and row.sites in (small, large)
    }
    if len(totals) < 4 or min(len(t) for t in totals.values()) < 2:
        return ""
    ours_small, ours_large, their_small, their_large = bootstrap_medians(
        *(totals[(name, sites)] for name in (OURS, HAND_EVERY_PATH) for sites in (small, large))
    )
    low, high = interval95((ours_large / ours_small) / (their_large / their_small))
    return f"ours' growth / its: 95% interval {low:.2f}-{high:.2f}; "


def chain_growth(chains: list[ChainRow], name: str) -> tuple[int, int, float] | None:
    """``(shorter, longer, factor)``: how an implementation's compile time grew between its
    two longest measured chains."""
    done = {row.sites: row.total for row in chains if row.name == name and row.total}
    if len(done) < 2:
        return None
    small, large = sorted(done)[-2:]
    return small, large, done[large] / done[small]


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


def main(quick: bool, parts: str = "abc") -> int:
    """Measures the parts and prints the report.

    Args:
        quick: tiny sizes and one repeat (a smoke test), instead of the issue's sizes.
        parts: which of the parts ``a``, ``b`` (the VAE steps) and ``c`` (the chains) to run.

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
        if benchmark.title[1] not in parts:
            continue
        more_rows, more_agreements = measure(benchmark, sizes, x)
        rows += more_rows
        agreements += more_agreements
    chains: dict[str, list[ChainRow]] = {}
    if "c" in parts:
        for strategy in ("enum", "mvd"):
            chains[strategy], chain_agreements = measure_chains(sizes, strategy)
            agreements += chain_agreements
    print()
    print_table(rows)
    for strategy, rows_of in chains.items():
        print_chain_table(rows_of, strategy)
    print_targets(rows, chains)
    passed = print_agreement(agreements)
    failed = [f"{row.title}: {row.note}" for row in rows if row.name == OURS and row.step is None]
    failed += [
        f"(c) {row.sites} coins, {strategy}: {row.note}"
        for strategy, rows_of in chains.items()
        for row in rows_of
        if row.name == OURS and row.total is None
    ]
    for each in failed:
        print(f"ours failed: {each}")
    return 0 if passed and not failed else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one repeat")
    parser.add_argument("--parts", default="abc", help="which parts to run, e.g. c (default abc)")
    arguments = parser.parse_args()
    sys.exit(main(arguments.quick, arguments.parts))
