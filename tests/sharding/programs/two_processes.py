"""One process of a JAX cluster on localhost: sharded SMC, VI and MCMC across all processes.

``python two_processes.py PROCESS_ID NUM_PROCESSES PORT``, each process with its own simulated
CPU devices (XLA_FLAGS). The processes form one global mesh (gloo collectives on CPU) and run
the sharded particle filter, data-parallel ``vi.fit`` and ``mcmc.run`` over it; each process
also runs the unsharded algorithms on one local device for the same keys. Prints one JSON
object comparing the two.
"""

from __future__ import annotations

import json
import sys

import jax

process_id, num_processes, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(
    coordinator_address=f"localhost:{port}", num_processes=num_processes, process_id=process_id
)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from inference import mcmc, sharding, smc, vi  # noqa: E402
from ppl import Vmap, gen, normal, select  # noqa: E402
from ppl.adev import expectation  # noqa: E402


@gen
def step(z, _):
    z = normal(0.9 * z, 1.0) @ "z"
    return z, normal(z, 0.5) @ "y"


@gen
def location():
    mu = normal(0.0, 2.0) @ "mu"
    return Vmap(normal, in_axes=(None, None), axis_size=4)(mu, 1.0) @ "ys"


@gen
def guide(params):
    return normal(params["loc"], jnp.exp(params["log_scale"])) @ "slope"


@expectation
def elbo(key, params, batch, scale):
    trace = guide.simulate(key, (params,))
    x, y = batch
    log_likelihood = jnp.sum(jax.scipy.stats.norm.logpdf(y, trace.retval * x, 0.5))
    log_prior = jax.scipy.stats.norm.logpdf(trace.retval)
    return log_prior + scale * log_likelihood - trace.score


def main() -> dict:
    out: dict = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
    }
    local = jax.local_devices()[0]

    # Particle filter: particles split over every device of every process.
    mesh = sharding.make_mesh(axis_names=("particles",))
    ys = 2.0 * jnp.sin(jnp.arange(20.0) / 3.0)
    n = 64 * jax.device_count()
    sharded = jax.jit(
        lambda key: sharding.bootstrap_filter(key, step, 0.0, {"y": ys}, num_particles=n, mesh=mesh)
    )(jax.random.key(0))
    with jax.default_device(local):
        single = jax.jit(
            lambda key: smc.bootstrap_filter(key, step, 0.0, {"y": ys}, num_particles=n)
        )(jax.random.key(0))
    out["filter_fully_addressable"] = sharded.log_weights.is_fully_addressable
    out["filter_log_weights_identical"] = bool(
        np.array_equal(sharding.gather(sharded.log_weights), np.asarray(single.log_weights))
    )
    out["filter_ancestors_identical"] = bool(
        np.array_equal(sharding.gather(sharded.ancestors), np.asarray(single.ancestors))
    )
    out["filter_lml"] = float(sharded.log_marginal_likelihood)
    out["filter_lml_single"] = float(single.log_marginal_likelihood)

    # Data-parallel VI: the batch split over every device of every process.
    data_mesh = sharding.make_mesh(axis_names=("data",))
    x = jax.random.normal(jax.random.key(1), (64,))
    y = 0.7 * x + 0.5 * jax.random.normal(jax.random.key(2), (64,))
    params = {"loc": jnp.array(0.0), "log_scale": jnp.array(-1.0)}
    settings = dict(args=(4.0,), data=(x, y), batch_size=16, progress=False, chunk_size=50)
    fitted = vi.fit(
        elbo,
        params,
        optax.adam(1e-2),
        50,
        jax.random.key(3),
        sharding=sharding.DataParallel(data_mesh),
        **settings,
    )
    with jax.default_device(local):
        reference = vi.fit(elbo, params, optax.adam(1e-2), 50, jax.random.key(3), **settings)
    out["vi_loss_relative"] = float(
        np.max(np.abs(fitted.losses - reference.losses) / np.abs(reference.losses))
    )
    out["vi_loc"] = float(sharding.gather(fitted.params["loc"]))
    out["vi_loc_single"] = float(reference.params["loc"])

    # MCMC: chains split over every device of every process, gathered into arviz on each.
    chain_mesh = sharding.make_mesh(axis_names=("chains",))
    kernel = mcmc.mh(location, select("mu"))
    settings = dict(
        kernel=kernel,
        num_chains=jax.device_count(),
        num_warmup=20,
        num_samples=20,
        num_chunks=1,
        progress_bar=False,
    )
    observations = {"ys": jnp.array([0.3, 1.1, 0.7, 1.6])}
    chains = mcmc.run(location, observations, jax.random.key(4), mesh=chain_mesh, **settings)
    with jax.default_device(local):
        chains_single = mcmc.run(location, observations, jax.random.key(4), **settings)
    out["mcmc_identical"] = bool(
        np.array_equal(chains.posterior["mu"], chains_single.posterior["mu"])
    )
    out["mcmc_shape"] = list(chains.posterior["mu"].shape)
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
    jax.distributed.shutdown()
