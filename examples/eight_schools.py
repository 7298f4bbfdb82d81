"""Eight schools (non-centered) with NUTS: many chains, arviz summary, trace and rank plots.

Run: ``python examples/eight_schools.py [--chains 8 --samples 1000 --out examples/out]``.
"""

from __future__ import annotations

import argparse
import os

import arviz
import jax
import jax.numpy as jnp
from numpyro.distributions import HalfCauchy

from inference import mcmc
from ppl import Distribution, Vmap, gen, normal

Y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


half_cauchy = Distribution(HalfCauchy, "half_cauchy")


@gen
def eight_schools(sigma):
    """mu ~ N(0, 5), tau ~ HalfCauchy(5), theta_j = mu + tau * eta_j, y_j ~ N(theta_j, s_j)."""
    mu = normal(0.0, 5.0) @ "mu"
    tau = half_cauchy(5.0) @ "tau"
    eta = Vmap(normal, in_axes=None, axis_size=8)(0.0, 1.0) @ "eta"
    return Vmap(normal, in_axes=(0, 0))(mu + tau * eta, sigma) @ "y"


def main(chains: int, warmup: int, samples: int, out: str | None) -> arviz.DataTree:
    data = mcmc.run(
        eight_schools,
        {"y": Y},
        jax.random.key(0),
        args=(SIGMA,),
        num_chains=chains,
        num_warmup=warmup,
        num_samples=samples,
    )
    print(mcmc.summary(data, var_names=["mu", "tau"]))
    divergences = int(data.sample_stats["diverging"].sum())
    print(f"divergences: {divergences} of {chains * samples} draws")
    if out is not None:
        import arviz_plots

        os.makedirs(out, exist_ok=True)
        for name, plot in (("trace", arviz_plots.plot_trace_dist), ("rank", arviz_plots.plot_rank)):
            collection = plot(data, var_names=["mu", "tau"], backend="matplotlib")
            path = os.path.join(out, f"eight_schools_{name}.png")
            collection.savefig(path)
            print(f"wrote {path}")
    return data


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--out", default="examples/out")
    args = parser.parse_args()
    main(args.chains, args.warmup, args.samples, args.out)
