"""NUTS throughput: ours vs NumPyro vs plain BlackJAX on a hand-written log density.

For each model, every implementation runs the same Stan-style window adaptation and NUTS,
4 chains vectorised. Each configuration is run once to compile and then ``--repeats`` times
(31; NumPyro 5, as it is 10-20x slower), the repeats of a model's samplers interleaved, each
repeat with its own key; we report the medians over the repeats of the wall time of warm-up +
sampling after compilation, of the minimum bulk ESS over parameters and of each repeat's ESS
per second, and the compile time (first call minus the median time).

BlackJAX and ours run twice each: returning the draws alone ("blackjax", the reference of the
ratios; "ours, draws only", ``mcmc.run(..., sample_stats=(), log_likelihood=False)``), and
returning them with the sample stats ours returns by default ("blackjax+stats", "ours":
acceptance rate, divergence, energy, tree depth, number of steps). The stats are computed
inside NUTS's trajectory loop, which XLA leaves out when nothing uses them: the acceptance rate
alone (a running log-sum-exp over the leapfrog steps) is ~5% of a draw of eight schools. "ours"
also returns the pointwise log-likelihood, which BlackJAX does not compute. The ``same output``
column compares each of ours with the BlackJAX run that returns the same (but for that
log-likelihood); the targets are judged so, each ratio with a 95% bootstrap interval over the
keys: a key's adaptation moves a run's ESS/s by ~10% (and the trajectories of ours and
BlackJAX part within the first draws however alike their starts), which 31 keys do not
average away.

Chains start where each library starts them by default: ours at prior draws, NumPyro
uniformly in (-2, 2) on the unconstrained space; BlackJAX, which has no default, where ours
starts, with ours' keys (``starts``). A second table times 1,000 vectorised HMC chains on the
Gaussian (draws per second), ours against NumPyro.

Models: eight schools (non-centered, 10 dims), a hierarchical logistic regression (25 dims,
generated data), a 100-dim Gaussian with scales from 0.01 to 100 (ill-conditioned).

``--leapfrog`` prints instead the seconds per leapfrog step of blackjax's NUTS on ours' log
density and on the hand-written one (``leapfrog_costs``): the cost of the density apart from
the trajectories' lengths, which a key's adaptation sets.

Run: ``python benchmarks/nuts.py [--quick] [--model gaussian] [--repeats 5] [--leapfrog]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import arviz
import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
from _timing import median_ratio_interval, met
from numpyro.infer import HMC, MCMC, NUTS

from inference import mcmc
from ppl import ChoiceMap, Distribution, bernoulli, gen, normal, select

CHAINS = 4
HalfCauchy = Distribution(nd.HalfCauchy, "half_cauchy")
HalfNormal = Distribution(nd.HalfNormal, "half_normal")


# -- the models, three ways each ------------------------------------------------------------


def eight_schools():
    y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])

    @gen
    def ours():
        mu = normal(0.0, 5.0) @ "mu"
        tau = HalfCauchy(5.0) @ "tau"
        eta = normal(jnp.zeros(8), 1.0) @ "eta"
        return normal(mu + tau * eta, sigma) @ "y"

    def peer():
        mu = numpyro.sample("mu", nd.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", nd.HalfCauchy(5.0))
        eta = numpyro.sample("eta", nd.Normal(jnp.zeros(8), 1.0))
        numpyro.sample("y", nd.Normal(mu + tau * eta, sigma), obs=y)

    def logdensity(p):  # p = (mu, log_tau, eta): unconstrained
        tau = jnp.exp(p["log_tau"])
        return (
            nd.Normal(0.0, 5.0).log_prob(p["mu"])
            + nd.HalfCauchy(5.0).log_prob(tau)
            + p["log_tau"]
            + jnp.sum(nd.Normal(0.0, 1.0).log_prob(p["eta"]))
            + jnp.sum(nd.Normal(p["mu"] + tau * p["eta"], sigma).log_prob(y))
        )

    def named(position):  # ours' unconstrained choices -> logdensity's parameters
        return {"mu": position["mu"], "log_tau": position["tau"], "eta": position["eta"]}

    return ours, {"y": y}, peer, logdensity, named


def logistic_regression():
    groups, per_group, n = 4, 5, 400
    key_x, key_y, key_b = jax.random.split(jax.random.key(42), 3)
    x = jax.random.normal(key_x, (n, groups * per_group))
    true_beta = jax.random.normal(key_b, (groups * per_group,))
    y = jax.random.bernoulli(key_y, jax.nn.sigmoid(x @ true_beta)).astype(jnp.int32)
    group_of = jnp.repeat(jnp.arange(groups), per_group)

    @gen
    def ours():
        mu = normal(jnp.zeros(groups), 1.0) @ "mu"
        sigma = HalfNormal(1.0) @ "sigma"
        beta = normal(mu[group_of], sigma) @ "beta"
        return bernoulli(logits=x @ beta) @ "y"

    def peer():
        mu = numpyro.sample("mu", nd.Normal(jnp.zeros(groups), 1.0))
        sigma = numpyro.sample("sigma", nd.HalfNormal(1.0))
        beta = numpyro.sample("beta", nd.Normal(mu[group_of], sigma))
        numpyro.sample("y", nd.Bernoulli(logits=x @ beta), obs=y)

    def logdensity(p):
        sigma = jnp.exp(p["log_sigma"])
        return (
            jnp.sum(nd.Normal(0.0, 1.0).log_prob(p["mu"]))
            + nd.HalfNormal(1.0).log_prob(sigma)
            + p["log_sigma"]
            + jnp.sum(nd.Normal(p["mu"][group_of], sigma).log_prob(p["beta"]))
            + jnp.sum(nd.Bernoulli(logits=x @ p["beta"]).log_prob(y))
        )

    def named(position):
        return {"mu": position["mu"], "log_sigma": position["sigma"], "beta": position["beta"]}

    return ours, {"y": y}, peer, logdensity, named


def gaussian(dims: int = 100):
    scales = jnp.logspace(-2.0, 2.0, dims)

    @gen
    def ours():
        return normal(jnp.zeros(dims), scales) @ "x"

    def peer():
        numpyro.sample("x", nd.Normal(jnp.zeros(dims), scales))

    def logdensity(p):
        return jnp.sum(nd.Normal(0.0, scales).log_prob(p["x"]))

    return ours, {}, peer, logdensity, lambda position: {"x": position["x"]}


MODELS: dict[str, Callable] = {
    "eight schools (10-d)": eight_schools,
    "hier. logistic (25-d)": logistic_regression,
    "ill-cond. Gaussian (100-d)": gaussian,
}


# -- the three samplers ----------------------------------------------------------------------


def run_ours(model, observations, warmup, samples, key, draws_only=False):
    data = mcmc.run(
        model,
        observations,
        key,
        num_chains=CHAINS,
        num_warmup=warmup,
        num_samples=samples,
        num_chunks=1,  # warm-up and draws as one program, as BlackJAX's below
        progress_bar=False,
        sample_stats=() if draws_only else None,
        log_likelihood=not draws_only,
    )
    return {name: np.asarray(data.posterior[name].values) for name in data.posterior.data_vars}


def make_numpyro(peer, warmup, samples):
    sampler = MCMC(
        NUTS(peer),
        num_warmup=warmup,
        num_samples=samples,
        num_chains=CHAINS,
        chain_method="vectorized",
        progress_bar=False,
        jit_model_args=True,  # keep the compiled sampler across runs
    )

    def run(key):
        sampler.run(key)
        return {k: np.asarray(v) for k, v in sampler.get_samples(group_by_chain=True).items()}

    return run


# The NUTS info fields that ``mcmc.run`` returns as sample stats.
STATS = (
    "acceptance_rate",
    "is_divergent",
    "energy",
    "num_trajectory_expansions",
    "num_integration_steps",
)


def prior_starts(model, observations, init_key):
    """Where ``mcmc.run`` starts its chains with ``init_key``: its prior draws (one trace per
    chain), the selection of the latent choices, and the traces' unconstrained positions."""
    from inference.mcmc import _run, _starts

    choices = ChoiceMap.from_dict(observations)
    observed = _run._observed_addresses(model, choices, init_key, ())  # cached per model
    latent = ~select(*observed)
    traces = _starts.initial_traces(model, choices, observed, None, init_key, (), CHAINS)
    positions = jax.vmap(lambda t: mcmc.Unconstrained(model, t, latent).position(t))(traces)
    return traces, latent, positions


def starts(model, observations, named, keys):
    """Where ``mcmc.run`` starts its chains for each key (``prior_starts`` with the key's
    initialisation key), in ``logdensity``'s parameters, by key. BlackJAX starts there too,
    with the same keys, so that neither has an easier start. The chains still part within the
    first draws: the two log densities round differently, and NUTS's discrete choices amplify
    that."""
    out = {}
    for key in keys:
        init_key = jax.random.split(key, 3)[0]
        _, _, positions = prior_starts(model, observations, init_key)
        out[_key_id(key)] = named(positions.to_dict())
    return out


def _key_id(key) -> tuple:
    return tuple(np.asarray(jax.random.key_data(key)).tolist())


def make_blackjax(logdensity, start, warmup, samples, stats=False):
    """Plain BlackJAX, with ``mcmc.run``'s keys (``split(key, 3)`` for the start, the warm-up
    and the sampling; per chain, ``window_adaptation.run``'s key and the draws' keys as
    ``mcmc.run`` splits them) from ``start[key]``."""

    def one_chain(warm_key, sample_key, position):
        adaptation = blackjax.window_adaptation(blackjax.nuts, logdensity)
        (state, parameters), _ = adaptation.run(warm_key, position, warmup)
        kernel = blackjax.nuts(logdensity, **parameters)

        def step(state, key):
            state, info = kernel.step(key, state)
            return state, (state.position, [getattr(info, name) for name in STATS if stats])

        return jax.lax.scan(step, state, jax.random.split(sample_key, samples))[1]

    def keyed(key, position):
        _, warmup_key, sample_key = jax.random.split(key, 3)
        chunk_key = jax.random.split(sample_key, 1)[0]  # mcmc.run with num_chunks=1
        warm_keys = jax.random.split(warmup_key, CHAINS)
        sample_keys = jax.random.split(chunk_key, CHAINS)
        return jax.vmap(one_chain)(warm_keys, sample_keys, position)

    program = jax.jit(keyed)

    def run(key):
        draws, _ = jax.tree.map(np.asarray, program(key, start[_key_id(key)]))
        return draws

    return run


# Which run returns what each of ours returns (the "same output" column).
SAME_OUTPUT = {"ours": "blackjax+stats", "ours, draws only": "blackjax"}
TARGET = 0.95  # ours' ESS/s over plain BlackJAX's, the same output compared


def run_keys(repeats: int) -> list[jax.Array]:
    """The keys of ``measure``: the first for the compiling call, one more per repeat."""
    return [jax.random.key(i) for i in range(repeats + 1)]


def min_bulk_ess(draws: dict[str, np.ndarray]) -> float:
    dataset = arviz.from_dict({"posterior": draws})
    ess = arviz.ess(dataset)
    return float(min(np.min(ess[name].values) for name in ess.data_vars))


@contextlib.contextmanager
def _no_gc():
    """Python's garbage collector off while timing (as ``timeit`` does), after a collection:
    a cycle collection triggered by the previous sampler's garbage (or by ESS computation)
    would otherwise land in whichever run comes next."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def measure(
    runs: dict[str, Callable[[Any], dict]], repeats: int, fewer: dict[str, int]
) -> dict[str, tuple]:
    """Per sampler: medians over the repeats of (seconds after compilation, min bulk ESS,
    ESS per second), the compile seconds, and every repeat's ESS per second; ``fewer[name]``
    caps a slow sampler's repeats.

    The repeats are interleaved (round ``i`` runs every sampler once, with ``run_keys``'s
    ``i + 1``-th key), so
    a change of load on a shared machine falls on all samplers alike rather than on whichever
    ran during it. Each repeat's ESS per second is its own ESS over its own time: a key's
    adaptation sets both the tree depths (the time) and the ESS, so the median of the ratios
    is steadier than a ratio of medians.
    """
    keys = run_keys(repeats)
    first = {}
    for name, run in runs.items():
        start = time.perf_counter()
        run(keys[0])
        first[name] = time.perf_counter() - start
    times: dict[str, list[float]] = {name: [] for name in runs}
    ess: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(repeats):
        for name, run in runs.items():
            if i >= fewer.get(name, repeats):
                continue
            with _no_gc():
                start = time.perf_counter()
                draws = run(keys[i + 1])
                times[name].append(time.perf_counter() - start)
            ess[name].append(min_bulk_ess(draws))
    results = {}
    for name in runs:
        median = statistics.median(times[name])
        rates = [e / t for e, t in zip(ess[name], times[name], strict=True)]
        compile_seconds = max(first[name] - median, 0.0)
        results[name] = (
            median,
            compile_seconds,
            statistics.median(ess[name]),
            statistics.median(rates),
            rates,
        )
    return results


def leapfrog_costs(
    build: Callable, warmup: int, draws: int, repeats: int
) -> dict[str, tuple[int, float]]:
    """Seconds per leapfrog step of blackjax's NUTS on ours' log density (``Unconstrained``'s
    ``logdensity_fn``) and on the hand-written one, which separates the cost of a density
    from the length of the trajectories that ``measure``'s ESS/s mixes in.

    Each density gets its own window adaptation (``warmup`` steps, one chain), then ``draws`` draws
    of ``CHAINS`` vectorised chains from the same starts (``mcmc.run``'s prior draws), timed
    ``repeats`` times with their own keys, the two densities taking turns. Vectorised chains
    step together until the longest trajectory of a draw ends, so a run's leapfrogs are the
    sum over draws of the most any chain took.

    Returns:
        By density: (the median run's leapfrogs, the median of seconds per leapfrog).
    """
    model, observations, _, logdensity, named = build()
    key = jax.random.key(0)
    traces, latent, positions = prior_starts(model, observations, key)
    first = jax.tree.map(lambda x: x[0], traces)  # the observations are every chain's
    densities = {
        "ours": (mcmc.Unconstrained(model, first, latent).logdensity_fn(first), positions),
        "hand-written": (logdensity, named(positions.to_dict())),
    }
    runs = {}
    for name, (density, starts_at) in densities.items():
        start = jax.tree.map(lambda x: x[0], starts_at)
        (_, parameters), _ = blackjax.window_adaptation(blackjax.nuts, density).run(
            key, start, warmup
        )
        kernel = blackjax.nuts(density, **parameters)

        @jax.jit
        def run(key, starts_at, kernel=kernel):
            def chain(position, key):
                def step(state, key):
                    state, info = kernel.step(key, state)
                    return state, info.num_integration_steps

                return jax.lax.scan(step, kernel.init(position), jax.random.split(key, draws))[1]

            steps = jax.vmap(chain)(starts_at, jax.random.split(key, CHAINS))
            return jnp.sum(jnp.max(steps, axis=0))

        runs[name] = functools.partial(run, starts_at=starts_at)
        jax.block_until_ready(runs[name](key))  # compile (called as timed: keyword and all)
    leapfrogs: dict[str, list[int]] = {name: [] for name in runs}
    per_step: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(repeats):  # the densities take turns, as in ``measure``
        for name, run_one in runs.items():
            with _no_gc():
                begin = time.perf_counter()
                count = int(run_one(jax.random.key(i + 1)))
                per_step[name].append((time.perf_counter() - begin) / count)
            leapfrogs[name].append(count)
    return {
        name: (int(statistics.median(leapfrogs[name])), statistics.median(per_step[name]))
        for name in runs
    }


def vectorised_hmc(chains: int, steps: int, repeats: int) -> list[tuple[str, float]]:
    ours_model, _, peer, _, _ = gaussian()
    kernel = mcmc.hmc(ours_model, select("x"), 0.01, jnp.ones(100), 10)

    @jax.jit
    def ours(key):
        traces = jax.vmap(lambda k: ours_model.simulate(k, ()))(jax.random.split(key, chains))

        def one(trace, key):
            return jax.lax.scan(
                lambda t, k: (kernel.step(k, t)[0], None), trace, jax.random.split(key, steps)
            )[0]

        return jax.vmap(one)(traces, jax.random.split(key, chains)).choices["x"]

    sampler = MCMC(
        HMC(peer, step_size=0.01, num_steps=10, adapt_step_size=False, adapt_mass_matrix=False),
        num_warmup=0,
        num_samples=steps,
        num_chains=chains,
        chain_method="vectorized",
        progress_bar=False,
        jit_model_args=True,
    )

    def numpyro_run(key):
        sampler.run(key)
        return sampler.get_samples()["x"]

    rows = []
    for name, run in (("ours", ours), ("numpyro", numpyro_run)):
        jax.block_until_ready(run(jax.random.key(0)))
        times = []
        for i in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(run(jax.random.key(i + 1)))
            times.append(time.perf_counter() - start)
        rows.append((name, chains * steps / statistics.median(times)))
    return rows


def main(quick: bool, models: list[str], repeats: int | None, leapfrog: bool = False) -> None:
    warmup, samples, default_repeats = (100, 100, 1) if quick else (500, 1000, 31)
    repeats = repeats or default_repeats
    chosen = {
        label: build
        for label, build in MODELS.items()
        if not models or any(name.lower() in label.lower() for name in models)
    }
    if leapfrog:
        runs = 3 if quick else 11
        print(
            f"blackjax NUTS per leapfrog step, {CHAINS} chains x {samples} draws, median of {runs}"
        )
        for label, build in chosen.items():
            costs = leapfrog_costs(build, warmup, samples, runs)
            (ours_count, ours), (hand_count, hand) = costs["ours"], costs["hand-written"]
            print(
                f"{label:28} ours {ours * 1e6:7.2f} us ({ours_count} leapfrogs), hand-written "
                f"{hand * 1e6:7.2f} us ({hand_count}): {ours / hand:.2f}x"
            )
        return
    print(
        f"NUTS, {CHAINS} chains, {warmup} warm-up + {samples} draws; medians over {repeats} "
        "keys (ESS/s: the median of each run's ESS over its time)"
    )
    header = f"{'model':28} {'sampler':17} {'run s':>8} {'compile s':>10} {'min ESS':>8} "
    print(header + f"{'ESS/s':>9} {'vs blackjax':>12} {'same output':>12}")
    verdicts = []
    for label, build in chosen.items():
        model, observations, peer, logdensity, named = build()
        start = starts(model, observations, named, run_keys(repeats))
        runs = {
            "ours": lambda key, m=model, o=observations: run_ours(m, o, warmup, samples, key),
            "ours, draws only": lambda key, m=model, o=observations: run_ours(
                m, o, warmup, samples, key, draws_only=True
            ),
            "numpyro": make_numpyro(peer, warmup, samples),
            "blackjax": make_blackjax(logdensity, start, warmup, samples),
            "blackjax+stats": make_blackjax(logdensity, start, warmup, samples, stats=True),
        }
        # NumPyro is 10-20x slower here; its ratio needs no precision, ours against
        # BlackJAX's does (a key's adaptation moves a run's ESS/s by ~10%).
        results = measure(runs, repeats, {"numpyro": min(repeats, 5)})
        reference = results["blackjax"][3]
        for name, (seconds, compile_seconds, ess, rate, _) in results.items():
            same = SAME_OUTPUT.get(name)
            versus = f"{rate / results[same][3]:11.2f}x" if same else f"{'-':>12}"
            print(
                f"{label:28} {name:17} {seconds:8.3f} {compile_seconds:10.2f} {ess:8.0f} "
                f"{rate:9.0f} {rate / reference:11.2f}x {versus}"
            )
        ours, numpyro_rate = results["ours, draws only"][3], results["numpyro"][3]
        low, high = median_ratio_interval(results["ours, draws only"][4], results["blackjax"][4])
        verdicts.append(
            f"  {label}: ours, draws only {ours / reference:.2f}x blackjax (95% interval "
            f"{low:.2f}-{high:.2f}; {met(ours >= TARGET * reference)}), "
            f"{ours / numpyro_rate:.2f}x numpyro "
            f"({met(ours >= numpyro_rate)}); with every stat "
            f"{results['ours'][3] / results['blackjax+stats'][3]:.2f}x blackjax+stats"
        )
    print(
        f"\ntargets: ESS/s >= {TARGET:.2f}x plain BlackJAX and >= NumPyro, the same output compared"
    )
    print("\n".join(verdicts))
    if models:
        return
    chains, steps = (100, 20) if quick else (1000, 200)
    print(f"\nHMC, {chains} vectorised chains x {steps} steps (10 leapfrog), 100-d Gaussian")
    rows = vectorised_hmc(chains, steps, min(repeats, 7))
    numpyro_rate = dict(rows)["numpyro"]
    for name, rate in rows:
        print(f"{name:9} {rate:12.0f} draws/s {rate / numpyro_rate:6.2f}x numpyro")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for smoke tests")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="run only the rows whose label contains this (repeatable), e.g. 'gaussian'; "
        "the HMC table is then left out",
    )
    parser.add_argument(
        "--repeats", type=int, help="timed runs per sampler (default 31; NumPyro at most 5)"
    )
    parser.add_argument(
        "--leapfrog",
        action="store_true",
        help="only the seconds per leapfrog step of ours' and the hand-written log density",
    )
    arguments = parser.parse_args()
    main(arguments.quick, arguments.model, arguments.repeats, arguments.leapfrog)
