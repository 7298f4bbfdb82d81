"""Sharded chains, particles and data-parallel VI against the unsharded runs, on 8 devices.

Run by tests/sharding/test_eight_devices.py with 8 simulated CPU devices; prints one JSON
object of measurements that the tests assert on. ``python eight_devices.py mcmc smc`` runs
only some of the parts.
"""

from __future__ import annotations

import contextlib
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from inference import sharding, smc, vi
from inference.sharding import _chains, _populations, _smc
from ppl import Vmap, gen, normal, select
from ppl.adev import expectation

assert jax.device_count() == 8, jax.devices()
jax.config.update("jax_numpy_rank_promotion", "raise")


def spec(array) -> str:
    return str(array.sharding.spec)


def max_relative(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-30)))


# -- MCMC chains -----------------------------------------------------------------------------
@gen
def location():
    mu = normal(0.0, 2.0) @ "mu"
    return Vmap(normal, in_axes=(None, None), axis_size=4)(mu, 1.0) @ "ys"


YS = jnp.array([0.3, 1.1, 0.7, 1.6])
POSTERIOR_MEAN = float(YS.sum() / (4 + 1 / 4))  # mu ~ N(0, 2^2), y_i ~ N(mu, 1)
POSTERIOR_SD = float((4 + 1 / 4) ** -0.5)


def mcmc_checks() -> dict:
    import arviz

    from inference import mcmc

    mesh = sharding.make_mesh(axis_names=("chains",))
    fetched: list = []
    fetch = _chains.ChainPlacement.fetch

    def recording_fetch(self, tree):
        if self.mesh is not None:
            fetched.extend(spec(leaf) for leaf in jax.tree.leaves(tree))
        return fetch(self, tree)

    _chains.ChainPlacement.fetch = recording_fetch  # type: ignore[method-assign]
    out: dict = {}
    settings = dict(num_chains=16, num_warmup=100, num_samples=100, num_chunks=2)

    def run(kernel, mesh):
        data = mcmc.run(
            location,
            {"ys": YS},
            jax.random.key(0),
            kernel=kernel,
            mesh=mesh,
            progress_bar=False,
            **settings,
        )
        ess = float(arviz.ess(data, var_names=["mu"])["mu"])
        z = (float(data.posterior["mu"].mean()) - POSTERIOR_MEAN) / (POSTERIOR_SD / np.sqrt(ess))
        return np.asarray(data.posterior["mu"]), float(z)

    # A dynamic-length kernel with given parameters: each device runs its chains' program.
    fixed = mcmc.nuts(location, select("mu"), 0.5, jnp.ones(1))
    single, out["nuts_fixed_single_z"] = run(fixed, None)
    sharded, out["nuts_fixed_sharded_z"] = run(fixed, mesh)
    out["nuts_fixed_identical"] = bool(np.array_equal(single, sharded))
    # A sharded run interrupted after its first chunk resumes from the checkpoint to the same
    # draws (the compiled programs are cached, so this costs no compilation).
    import tempfile

    from inference.mcmc import _run

    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/run.ckpt"

        def interrupt(done):
            if done == 1:
                raise KeyboardInterrupt

        _run._after_chunk = interrupt
        with contextlib.suppress(KeyboardInterrupt):
            mcmc.run(
                location,
                {"ys": YS},
                jax.random.key(0),
                kernel=fixed,
                mesh=mesh,
                checkpoint=path,
                progress_bar=False,
                **settings,
            )
        _run._after_chunk = lambda done: None
        resumed = mcmc.run(
            location,
            {"ys": YS},
            jax.random.key(0),
            kernel=fixed,
            mesh=mesh,
            checkpoint=path,
            progress_bar=False,
            **settings,
        )
    out["nuts_fixed_resumed_identical"] = bool(
        np.array_equal(np.asarray(resumed.posterior["mu"]), sharded)
    )
    # Window adaptation (kernel=None) rounds differently when compiled for 8 devices, and the
    # chains amplify it; the sharded run must still sample the posterior.
    _, out["nuts_adapted_sharded_z"] = run(None, mesh)
    out["fetched_specs"] = sorted(set(fetched))
    try:
        mcmc.run(location, {"ys": YS}, jax.random.key(0), num_chains=12, mesh=mesh)
    except ValueError as error:
        out["indivisible_chains_error"] = str(error)
    _chains.ChainPlacement.fetch = fetch  # type: ignore[method-assign]
    return out


# -- SMC particles ---------------------------------------------------------------------------
@gen
def step(z, _):
    z = normal(0.9 * z, 1.0) @ "z"
    return z, normal(z, 0.5) @ "y"


def kalman_log_evidence(ys) -> float:
    """log p(y_{0:T-1}) of ``step`` (z_{-1} = 0), by the Kalman filter."""
    mean, var, total = 0.0, 0.0, 0.0
    for y in np.asarray(ys, np.float64):
        mean, var = 0.9 * mean, 0.81 * var + 1.0
        s = var + 0.25
        total += -0.5 * (np.log(2 * np.pi * s) + (y - mean) ** 2 / s)
        gain = var / s
        mean, var = mean + gain * (y - mean), (1 - gain) * var
    return float(total)


class ForgetfulIslands(_populations.IslandResampling):
    """A broken island resampler (the mutant): it resets the island's log weights to 0 instead
    of the island's log mean weight, so the evidence estimate forgets the island's mass."""

    def resample(self, key, log_weights, particles, allowed, ess_threshold, scheme):
        particles, ancestors, new, any_island = super().resample(
            key, log_weights, particles, allowed, ess_threshold, scheme
        )
        return particles, ancestors, jnp.where(new == log_weights, new, 0.0), any_island


def smc_checks() -> dict:
    from inference import mcmc

    mesh = sharding.make_mesh(axis_names=("particles",))
    ys = 2.0 * jnp.sin(jnp.arange(20.0) / 3.0)
    n = 1024
    out: dict = {}

    def single(key):
        return smc.bootstrap_filter(key, step, 0.0, {"y": ys}, num_particles=n)

    def sharded(key, resampling=smc.systematic):
        return sharding.bootstrap_filter(
            key, step, 0.0, {"y": ys}, num_particles=n, mesh=mesh, resampling=resampling
        )

    a = jax.jit(single)(jax.random.key(0))
    b = jax.jit(sharded)(jax.random.key(0))
    for field in ("log_weights", "ancestors", "resampled"):
        out[f"filter_{field}_identical"] = bool(
            np.array_equal(getattr(a, field), getattr(b, field))
        )
    out["filter_particles_identical"] = bool(np.array_equal(a.particles["z"], b.particles["z"]))
    out["filter_resampling_steps"] = int(np.sum(a.resampled))
    out["filter_ess_relative"] = max_relative(a.ess, b.ess)
    out["filter_lml_difference"] = float(abs(a.log_marginal_likelihood - b.log_marginal_likelihood))
    out["filter_specs"] = {
        "log_weights": spec(b.log_weights),
        "particles": spec(b.particles["z"]),
        "ancestors": spec(b.ancestors),
        "final_carry": spec(b.final_carry),
        "ess": spec(b.ess),
        "log_marginal_likelihood": spec(b.log_marginal_likelihood),
    }
    # The smoother's genealogy follows ancestors across devices.
    smoothing = jax.jit(lambda result: result.smoothing_mean(lambda c: c["z"]))
    out["smoothing_difference"] = float(jnp.max(jnp.abs(smoothing(a) - smoothing(b))))

    # Tempered SMC with MH rejuvenation, on the conjugate location model.
    def tempered(sharded_run):
        run = sharding.tempered_smc if sharded_run else smc.tempered_smc
        extra = {"mesh": mesh} if sharded_run else {}
        return jax.jit(
            lambda key: run(
                key,
                location,
                {"ys": YS},
                lambda target: mcmc.mh(target, select("mu")),
                schedule=jnp.linspace(0.0, 1.0, 6),
                num_particles=n,
                num_mcmc_steps=2,
                **extra,
            )
        )(jax.random.key(5))

    single_t, sharded_t = tempered(False), tempered(True)
    # Each particle's log likelihood sums over the plate of 4 observations; with 128 instead
    # of 1024 particles per program that sum may be vectorised differently: rounding level.
    out["tempered_log_weights_relative"] = max_relative(
        single_t.particles.log_weights, sharded_t.particles.log_weights
    )
    out["tempered_mu_difference"] = float(
        np.max(
            np.abs(
                single_t.particles.traces.choices["mu"] - sharded_t.particles.traces.choices["mu"]
            )
        )
    )
    out["tempered_resampled_identical"] = bool(
        np.array_equal(single_t.resampled, sharded_t.resampled)
    )
    out["tempered_resampling_steps"] = int(np.sum(single_t.resampled))
    out["tempered_ess_relative"] = max_relative(single_t.ess, sharded_t.ess)
    out["tempered_lml_difference"] = float(
        abs(single_t.log_marginal_likelihood - sharded_t.log_marginal_likelihood)
    )
    out["tempered_spec"] = spec(sharded_t.particles.traces.choices["mu"])

    # Importance sampling, and the collectives on their own.
    single_is = smc.importance_sampling(
        jax.random.key(3), step, {"y": 1.0}, num_particles=n, args=(0.0, None)
    )
    sharded_is = sharding.importance_sampling(
        jax.random.key(3), step, {"y": 1.0}, num_particles=n, mesh=mesh, args=(0.0, None)
    )
    out["is_log_weights_identical"] = bool(
        np.array_equal(single_is.log_weights, sharded_is.log_weights)
    )
    out["is_lml_difference"] = float(
        abs(single_is.log_marginal_likelihood - sharded_is.log_marginal_likelihood)
    )
    out["is_spec"] = spec(sharded_is.traces.choices["z"])
    weights = 30.0 * jax.random.normal(jax.random.key(4), (3, n))
    weights = weights.at[1, :5].set(-jnp.inf)
    collectives = jax.jit(
        jax.shard_map(
            lambda w: (
                sharding.log_mean_exp(w, "particles"),
                sharding.effective_sample_size(w, "particles"),
            ),
            mesh=mesh,
            in_specs=jax.sharding.PartitionSpec(None, "particles"),
            out_specs=jax.sharding.PartitionSpec(),
        )
    )(weights)
    out["collective_lml_relative"] = max_relative(smc.log_mean_exp(weights), collectives[0])
    out["collective_ess_relative"] = max_relative(
        smc.effective_sample_size(weights), collectives[1]
    )
    try:
        sharding.bootstrap_filter(
            jax.random.key(0), step, 0.0, {"y": ys}, num_particles=100, mesh=mesh
        )
    except ValueError as error:
        out["indivisible_particles_error"] = str(error)
    return out


def island_checks() -> dict:
    mesh = sharding.make_mesh(axis_names=("particles",))
    ys = 2.0 * jnp.sin(jnp.arange(20.0) / 3.0)
    n = 1024
    out: dict = {}
    # Unbiasedness of exp(log evidence) across replications with island resampling, and the
    # mutant that the same check must reject. (Global resampling gives the unsharded filter's
    # particles, whose evidence tests/inference/test_smc.py checks against the Kalman filter.)
    exact = kalman_log_evidence(ys)
    keys = jax.random.split(jax.random.key(2), 64)
    populations = {
        "islands": _populations.population_for("particles", sharding.Islands(smc.systematic)),
        "mutant": (ForgetfulIslands("particles"), smc.systematic),
    }
    for name, (population, scheme) in populations.items():

        def replicate(key, population=population, scheme=scheme):
            return _smc._filter(
                key, step, None, 0.0, {"y": ys}, None, n, mesh, population, scheme, 0.5
            )

        runs = jax.jit(lambda keys, run=replicate: jax.lax.map(run, keys))(keys)
        ratios = np.exp(np.asarray(runs.log_marginal_likelihood, np.float64) - exact)
        out[f"evidence_z_{name}"] = float(
            (ratios.mean() - 1.0) / (ratios.std(ddof=1) / np.sqrt(ratios.size))
        )
        out[f"resampling_steps_{name}"] = float(np.mean(np.sum(runs.resampled, axis=1)))

    return out


# -- data-parallel VI ------------------------------------------------------------------------
ROWS, FEATURES, HIDDEN, BATCH = 64, 3, 8, 16


@gen
def guide(params):
    return {
        name: normal(params[name]["loc"], jnp.exp(params[name]["log_scale"])) @ name
        for name in ("w1", "w2")
    }


BATCH_SHARD_SHAPES: list = []


@expectation
def elbo(key, params, batch, scale):
    trace = guide.simulate(key, (params,))
    weights = trace.retval
    x, y = batch
    jax.debug.inspect_array_sharding(
        x, callback=lambda s: BATCH_SHARD_SHAPES.append(s.shard_shape(x.shape))
    )
    prediction = jnp.tanh(x @ weights["w1"]) @ weights["w2"]
    log_likelihood = jnp.sum(jax.scipy.stats.norm.logpdf(y, prediction, 0.5))
    log_prior = sum(jnp.sum(jax.scipy.stats.norm.logpdf(w)) for w in weights.values())
    return log_prior + scale * log_likelihood - trace.score


def vi_checks() -> dict:
    mesh = sharding.make_mesh(axis_names=("data",))
    params = {
        "w1": {
            "loc": jnp.zeros((FEATURES, HIDDEN)),
            "log_scale": -2 * jnp.ones((FEATURES, HIDDEN)),
        },
        "w2": {"loc": jnp.zeros(HIDDEN), "log_scale": -2 * jnp.ones(HIDDEN)},
    }
    kx, ky = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (ROWS, FEATURES))
    y = jnp.sin(x[:, 0]) + 0.1 * jax.random.normal(ky, (ROWS,))
    settings = dict(
        args=(ROWS / BATCH,), data=(x, y), batch_size=BATCH, progress=False, chunk_size=100
    )
    out: dict = {}
    results = {}
    for name, placement in {
        "single": None,
        "data_parallel": sharding.DataParallel(mesh),
        "weight_update": sharding.ShardedWeightUpdate(mesh),
    }.items():
        BATCH_SHARD_SHAPES.clear()
        results[name] = vi.fit(
            elbo, params, optax.adam(1e-2), 100, jax.random.key(1), sharding=placement, **settings
        )
        out[f"{name}_batch_shard_shapes"] = sorted(set(BATCH_SHARD_SHAPES))
    single = results["single"]
    for name in ("data_parallel", "weight_update"):
        result = results[name]
        out[f"{name}_loss_relative"] = max_relative(single.losses, result.losses)
        out[f"{name}_param_difference"] = max(
            jax.tree.leaves(
                jax.tree.map(
                    lambda u, v: float(jnp.max(jnp.abs(u - v))), single.params, result.params
                )
            )
        )
        out[f"{name}_param_specs"] = sorted({spec(v) for v in jax.tree.leaves(result.params)})
    moments = results["weight_update"].opt_state[0].mu
    out["weight_update_moment_specs"] = jax.tree.map(spec, moments)
    out["data_parallel_moment_specs"] = sorted(
        {spec(v) for v in jax.tree.leaves(results["data_parallel"].opt_state[0].mu)}
    )
    try:
        vi.fit(
            elbo,
            params,
            optax.adam(1e-2),
            1,
            jax.random.key(1),
            args=(1.0,),
            data=(x, y),
            batch_size=12,
            progress=False,
            sharding=sharding.DataParallel(mesh),
        )
    except ValueError as error:
        out["indivisible_batch_error"] = str(error)
    return out


PARTS = {
    "mcmc": mcmc_checks,
    "smc": smc_checks,
    "islands": island_checks,
    "vi": vi_checks,
}

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(PARTS)
    result: dict = {}
    for part in chosen:
        result |= PARTS[part]()
    print(json.dumps(result))
