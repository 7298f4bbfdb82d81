"""SNGP's output layer, one generative function, four posteriors: Laplace, VI, MCMC.

Over fixed random Fourier features, SNGP's output layer is Bayesian logistic regression.
``models.last_layer.bayesian_last_layer`` writes it once as a ``@gen`` function, and every
inference in the library reads that program:

* Laplace: Newton's method on ``-assess`` and the exact Hessian at the mode (what SNGP uses,
  ``sngp.LaplacePrecision`` gives the same matrix);
* VI: ``vi.fit`` of ``vi.elbo`` with a full-rank and with a mean-field Gaussian guide;
* MCMC: ``inference.mcmc.run`` (adapted NUTS, 4 chains), the reference.

The table gives each approximation's predictive logit mean and variance at a few test points
(near the data and farther out), and the largest gap to the NUTS estimates.

Run: ``python examples/sngp_last_layer.py`` (``--quick``: a smaller problem, Laplace and a
short NUTS run only).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from inference import mcmc
from models.last_layer import (
    FullRankGaussian,
    MeanFieldGaussian,
    bayesian_last_layer,
    fit_variational_last_layer,
    laplace_last_layer,
)
from models.sngp import RandomFeatureGaussianProcess

TEST_POINTS = np.array([[0.0, 0.0], [1.0, 1.0], [-1.5, 0.5], [2.5, -2.5], [4.0, 4.0]], np.float32)


def problem(points: int, num_features: int):
    """A noisy binary problem over random Fourier features of 2-d inputs."""
    x = jax.random.normal(jax.random.key(1), (points, 2))
    noise = 0.7 * jax.random.normal(jax.random.key(2), (points,))
    labels = (x[:, 0] + 0.5 * x[:, 1] + noise > 0).astype(jnp.int32)
    layer = RandomFeatureGaussianProcess(
        2, 1, num_features=num_features, length_scale=2.0, key=jax.random.key(3)
    )
    scale = np.sqrt(num_features / 2)  # features of size O(1)
    features = scale * jax.vmap(layer.features)(x)
    return features, labels, scale * jax.vmap(layer.features)(jnp.asarray(TEST_POINTS))


def main(quick: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Returns ``method -> (predictive means, predictive variances)`` at ``TEST_POINTS``."""
    points, num_features = (100, 4) if quick else (200, 8)
    warmup, samples = (50, 50) if quick else (500, 1000)
    features, labels, test = problem(points, num_features)
    results = {}
    results["Laplace"] = laplace_last_layer(features, labels, 1).predict(test)
    families = [("VI full rank", FullRankGaussian()), ("VI mean field", MeanFieldGaussian())]
    # --quick compares Laplace with NUTS only: VI is tested in tests/models/test_last_layer.py
    for name, family in [] if quick else families:
        posterior = fit_variational_last_layer(
            features, labels, 1, family=family, steps=3000, key=jax.random.key(4)
        )
        results[name] = posterior.predict(test)
    data = mcmc.run(
        bayesian_last_layer(1),
        {"labels": labels},
        jax.random.key(5),
        args=(features,),
        num_chains=4,
        num_warmup=warmup,
        num_samples=samples,
        progress_bar=False,
    )
    weights = mcmc.posterior_choices(data)["weights"].reshape(-1, num_features)
    logits = np.asarray(test) @ weights.T
    results["NUTS"] = (logits.mean(1)[:, None], logits.var(1)[:, None])
    results = {name: (np.asarray(m)[:, 0], np.asarray(v)[:, 0]) for name, (m, v) in results.items()}

    print(f"{points} points, {num_features} random features; predictive logit mean / variance")
    header = "".join(f"{tuple(p)!s:>18}" for p in TEST_POINTS.tolist())
    print(f"{'method':<15}{header}{'max |Δmean|':>13}{'max Δvar/var':>14}")
    reference_mean, reference_variance = results["NUTS"]
    for name, (mean, variance) in results.items():
        cells = "".join(f"{f'{m:+.2f} / {v:.3f}':>18}" for m, v in zip(mean, variance, strict=True))
        gap = np.abs(mean - reference_mean).max()
        relative = np.abs(variance / reference_variance - 1).max()
        print(f"{name:<15}{cells}{gap:>13.3f}{relative:>14.2f}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problem, few steps")
    main(parser.parse_args().quick)
