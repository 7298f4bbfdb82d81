"""Sharded vs single-device runs: throughput, memory per device, and agreement of results.

(a) SMC: a bootstrap particle filter with 8,192 particles on a linear-Gaussian state-space
    model (2-dim state, 200 steps), particles split along ``"particles"``, with global and
    with island resampling.
(b) Data-parallel VI: a mean-field Gaussian over the weights of a Bayesian MLP (16 inputs,
    512 hidden units, ~9,000 weights) fitted by a minibatch ELBO with Adam; batches split
    along ``"data"`` (``DataParallel``), and optimizer state split too
    (``ShardedWeightUpdate``).

Each configuration runs once to compile, then ``--repeats`` times; we report the median wall
time, throughput (particle-steps/s, or training rows/s) and the ratio to one device. Memory
per device: the optimizer state held by device 0 (its shards' bytes) and, on accelerators,
the device's peak memory in use.

On CPU the devices are simulated (``--devices``, default 8): they share the same cores, so
a sharded run cannot be faster than one device, and the ratio measures the overhead of
partitioning and collectives. On accelerators it is the real speed-up.

Run: ``python benchmarks/sharding.py [--quick] [--devices 8] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="small sizes, one repeat (a smoke run)")
parser.add_argument("--devices", type=int, default=8, help="simulated CPU devices")
parser.add_argument("--repeats", type=int, default=3)
options = parser.parse_args()
# The simulated CPU devices must be asked for before JAX starts; accelerators ignore the flag.
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={options.devices}")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from inference import sharding, smc, vi  # noqa: E402
from ppl import gen, mv_normal_diag, normal  # noqa: E402
from ppl.adev import expectation  # noqa: E402

QUICK = options.quick
REPEATS = 1 if QUICK else options.repeats
PARTICLES = 1024 if QUICK else 8192
STEPS = 20 if QUICK else 200
ROWS, BATCH = (1024, 128) if QUICK else (16384, 2048)
FEATURES, HIDDEN = 16, 64 if QUICK else 512
FIT_STEPS = 10 if QUICK else 100
failures: list[str] = []


def check(name: str, passed: bool, detail: str) -> None:
    print(f"  check {name}: {'ok' if passed else 'FAILED'} ({detail})")
    if not passed:
        failures.append(name)


def timed(run, *args):
    """(first call seconds, median seconds of REPEATS further calls, last result)."""
    start = time.perf_counter()
    result = jax.block_until_ready(run(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = jax.block_until_ready(run(*args))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), result


def peak_memory(device) -> str:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if not stats or "peak_bytes_in_use" not in stats:
        return "n/a"
    return f"{stats['peak_bytes_in_use'] / 2**20:.1f} MiB"


def row(name: str, first: float, median: float, work: float, unit: str, baseline: float | None):
    ratio = "" if baseline is None else f"{median / baseline:6.2f}x"
    print(
        f"  {name:<34} compile+run {first:7.2f} s   median {median * 1e3:9.1f} ms   "
        f"{work / median:12.4g} {unit}   {ratio}"
    )


# -- (a) SMC ---------------------------------------------------------------------------------
A = jnp.array([[1.0, 0.5], [0.0, 0.9]])
SCALES = jnp.array([0.5, 0.3])


@gen
def tracking(state, _):
    state = mv_normal_diag(A @ state, SCALES) @ "x"
    return state, normal(state[0], 0.6) @ "y"


def smc_benchmark() -> None:
    mesh = sharding.make_mesh(axis_names=("particles",))
    print(
        f"(a) bootstrap filter, {PARTICLES} particles, {STEPS} steps, "
        f"{mesh.size} device(s) along 'particles'"
    )
    truth = jax.jit(
        lambda key: jax.lax.scan(
            lambda s, k: (lambda t: (t.retval[0], t.choices["y"]))(tracking.simulate(k, (s, None))),
            jnp.zeros(2),
            jax.random.split(key, STEPS),
        )[1]
    )(jax.random.key(0))
    observations = {"y": truth}
    init = jnp.zeros(2)
    runs = {
        "one device": jax.jit(
            lambda key: smc.bootstrap_filter(
                key, tracking, init, observations, num_particles=PARTICLES
            )
        ),
        "sharded, global resampling": jax.jit(
            lambda key: sharding.bootstrap_filter(
                key, tracking, init, observations, num_particles=PARTICLES, mesh=mesh
            )
        ),
        "sharded, island resampling": jax.jit(
            lambda key: sharding.bootstrap_filter(
                key,
                tracking,
                init,
                observations,
                num_particles=PARTICLES,
                mesh=mesh,
                resampling=sharding.Islands(smc.systematic),
            )
        ),
    }
    results, baseline = {}, None
    for name, run in runs.items():
        first, median, results[name] = timed(run, jax.random.key(1))
        row(name, first, median, PARTICLES * STEPS, "particle-steps/s", baseline)
        baseline = median if baseline is None else baseline
    single, sharded = results["one device"], results["sharded, global resampling"]
    islands = results["sharded, island resampling"]
    check(
        "global resampling: log weights and ancestors bit-identical to one device",
        bool(
            np.array_equal(single.log_weights, sharded.log_weights)
            and np.array_equal(single.ancestors, sharded.ancestors)
        ),
        f"{int(np.sum(single.resampled))} resampling steps",
    )
    difference = abs(float(single.log_marginal_likelihood - sharded.log_marginal_likelihood))
    check(
        "global resampling: log evidence to rounding", difference < 1e-3, f"|diff| {difference:.2g}"
    )
    island_evidence = float(islands.log_marginal_likelihood)
    single_evidence = float(single.log_marginal_likelihood)
    check(
        "islands: log evidence within Monte Carlo error",
        abs(island_evidence - single_evidence) < 2.0,
        f"{island_evidence:.3f} vs {single_evidence:.3f}",
    )
    print(f"  peak memory of device 0: {peak_memory(jax.devices()[0])}")


# -- (b) data-parallel VI --------------------------------------------------------------------
SHAPES = {"w1": (FEATURES, HIDDEN), "b1": (HIDDEN,), "w2": (HIDDEN,), "b2": ()}


@gen
def mean_field(params):
    return {
        name: normal(params[name]["loc"], jnp.exp(params[name]["log_scale"])) @ name
        for name in SHAPES
    }


@expectation
def minibatch_elbo(key, params, batch, scale):
    trace = mean_field.simulate(key, (params,))
    w = trace.retval
    x, y = batch
    prediction = jnp.tanh(x @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"]
    log_likelihood = jnp.sum(jax.scipy.stats.norm.logpdf(y, prediction, 0.1))
    log_prior = sum(jnp.sum(jax.scipy.stats.norm.logpdf(v)) for v in w.values())
    return log_prior + scale * log_likelihood - trace.score


def optimizer_bytes_on(device, opt_state) -> int:
    return sum(
        shard.data.nbytes
        for leaf in jax.tree.leaves(opt_state)
        for shard in leaf.addressable_shards
        if shard.device == device
    )


def vi_benchmark() -> None:
    mesh = sharding.make_mesh(axis_names=("data",))
    weights = sum(int(np.prod(s)) for s in SHAPES.values())
    print(
        f"(b) mean-field VI of a Bayesian MLP ({weights} weights), {ROWS} rows, batch {BATCH}, "
        f"{FIT_STEPS} Adam steps, {mesh.size} device(s) along 'data'"
    )
    kx, kw, ky = jax.random.split(jax.random.key(2), 3)
    x = jax.random.normal(kx, (ROWS, FEATURES))
    y = jnp.tanh(x @ jax.random.normal(kw, (FEATURES,)) / 4) + 0.1 * jax.random.normal(ky, (ROWS,))
    params = {
        name: {"loc": 0.1 * jnp.ones(shape), "log_scale": -3.0 * jnp.ones(shape)}
        for name, shape in SHAPES.items()
    }
    optimizer = optax.adam(1e-3)
    placements = {
        "one device": None,
        "DataParallel": sharding.DataParallel(mesh),
        "ShardedWeightUpdate": sharding.ShardedWeightUpdate(mesh),
    }
    results, baseline = {}, None
    for name, placement in placements.items():

        def fit(placement=placement):
            return vi.fit(
                minibatch_elbo,
                params,
                optimizer,
                FIT_STEPS,
                jax.random.key(3),
                args=(ROWS / BATCH,),
                data=(x, y),
                batch_size=BATCH,
                chunk_size=FIT_STEPS,
                progress=False,
                sharding=placement,
            )

        first, median, results[name] = timed(fit)
        row(name, first, median, FIT_STEPS * BATCH, "rows/s", baseline)
        baseline = median if baseline is None else baseline
        device = jax.devices()[0]
        print(
            f"    optimizer state on device 0: "
            f"{optimizer_bytes_on(device, results[name].opt_state) / 2**10:.1f} KiB"
        )
    single = results["one device"]
    for name in ("DataParallel", "ShardedWeightUpdate"):
        loss = float(np.max(np.abs(results[name].losses - single.losses) / np.abs(single.losses)))
        param = max(
            float(jnp.max(jnp.abs(u - v)))
            for u, v in zip(
                jax.tree.leaves(results[name].params), jax.tree.leaves(single.params), strict=True
            )
        )
        check(
            f"{name}: losses and parameters to rounding",
            loss < 1e-4 and param < 1e-4,
            f"max relative loss diff {loss:.2g}, max parameter diff {param:.2g}",
        )
    print(f"  peak memory of device 0: {peak_memory(jax.devices()[0])}")


if __name__ == "__main__":
    devices = jax.devices()
    print(
        f"jax {jax.__version__}, {len(devices)} {devices[0].platform} device(s) "
        f"({devices[0].device_kind}), {jax.process_count()} process(es)"
    )
    smc_benchmark()
    vi_benchmark()
    print("agreement check: " + ("passed" if not failures else f"FAILED {failures}"))
    sys.exit(1 if failures else 0)
