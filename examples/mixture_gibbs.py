"""A Gaussian mixture by Gibbs (assignments, by enumeration) cycled with NUTS (the means).

Run: ``python examples/mixture_gibbs.py [--points 150 --samples 400]``.
"""

from __future__ import annotations

import argparse

import arviz
import jax
import jax.numpy as jnp
import numpy as np

from inference import mcmc
from ppl import Vmap, categorical, gen, normal, select

TRUE_MEANS = jnp.array([-3.0, 0.5, 4.0])
WEIGHTS = jnp.array([0.3, 0.3, 0.4])


@gen
def point(means):
    z = categorical(WEIGHTS) @ "z"
    return normal(means[z], 1.0) @ "x"


def make_mixture(num_points: int):
    """The model for a data set of ``num_points`` (a shape, so fixed when the model is built)."""

    @gen
    def mixture():
        means = normal(jnp.zeros(3), 5.0) @ "means"
        return Vmap(point, in_axes=None, axis_size=num_points)(means) @ "points"

    return mixture


def main(num_points: int, num_samples: int, num_chains: int = 4) -> np.ndarray:
    mixture = make_mixture(num_points)
    data_trace = mixture.generate(jax.random.key(0), {"means": TRUE_MEANS}, ())[0]
    xs = data_trace.choices["points", "x"]
    observations = {"points": {"x": xs}}
    # One adaptation of NUTS on the means with assignments held at an initial draw.
    init, _ = mixture.generate(jax.random.key(1), observations, ())
    _, parameters = mcmc.window_adaptation(mixture, select("means"), init, jax.random.key(2), 200)
    kernel = mcmc.cycle(
        mcmc.gibbs(mixture, ("points", "z")),
        mcmc.nuts(
            mixture, select("means"), parameters["step_size"], parameters["inverse_mass_matrix"]
        ),
    )
    data = mcmc.run(
        mixture,
        observations,
        jax.random.key(3),
        kernel=kernel,
        num_chains=num_chains,
        num_warmup=50,
        num_samples=num_samples,
    )
    # The labels of mixture components are exchangeable: summarise the sorted means.
    ordered = np.sort(data.posterior["means"].values, axis=-1)
    print(mcmc.summary(arviz.from_dict({"posterior": {"sorted_means": ordered}})))
    estimate = ordered.reshape(-1, 3).mean(axis=0)
    print(f"true means {np.asarray(TRUE_MEANS)}; posterior means (sorted) {estimate.round(2)}")
    return estimate


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=150)
    parser.add_argument("--samples", type=int, default=400)
    args = parser.parse_args()
    main(args.points, args.samples)
