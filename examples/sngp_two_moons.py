"""Distance awareness on two moons and two ovals: where is each model uncertain?

A deterministic residual network, SNGP (the same network with spectral normalization and a
random-feature GP output layer) and a deep ensemble are trained on each 2-d data set by the
same ``models.training.train``. The figure ``sngp_two_moons.png`` shows the predictive
entropy over the plane; the table gives the mean entropy near the data (grid points within
0.25 of a training point) and far from it (more than 2 away). SNGP's entropy must rise
towards its maximum, log 2 = 0.693, away from the data; a deterministic network stays
confident there.

Run: ``python examples/sngp_two_moons.py`` (``--quick`` for a smoke run, ``--out DIR``).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from sklearn.datasets import make_moons

from models import metrics, sngp
from models.baselines import DeterministicClassifier, ensemble_probabilities, softmax_probabilities
from models.training import train

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MODELS = ("deterministic", "SNGP", "deep ensemble")
LOW, HIGH, NEAR, FAR = -5.0, 6.0, 0.25, 2.0


@dataclasses.dataclass(frozen=True)
class Config:
    points: int = 1000
    width: int = 128
    depth: int = 4
    steps: int = 1000
    batch_size: int = 128
    num_features: int = 1024
    length_scale: float = 1.0
    ensemble_size: int = 5
    grid: int = 120


# One optimizer object for every run: train compiles once per optimizer object.
OPTIMIZER = optax.adam(3e-3)
QUICK = Config(
    points=100,
    width=16,
    depth=1,
    steps=30,
    batch_size=50,
    num_features=32,
    ensemble_size=2,
    grid=20,
)


def two_moons(points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = make_moons(points, noise=0.1, random_state=seed)
    return x.astype(np.float32), y


def two_ovals(points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two elongated Gaussian clusters side by side."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, points)
    x = np.stack(
        [
            np.where(y == 1, 1.0, -1.0) + 0.3 * rng.normal(size=points),
            1.5 * rng.normal(size=points),
        ],
        axis=1,
    )
    return (x + np.array([0.5, 0.25])).astype(np.float32), y


DATASETS = {"two moons": two_moons, "two ovals": two_ovals}


def fit(x: np.ndarray, y: np.ndarray, config: Config, seed: int) -> dict:
    """Trains the three models; returns ``name -> (inputs -> [N, 2] probabilities)``."""
    keys = iter(jax.random.split(jax.random.key(seed), 16))
    x, y = jnp.asarray(x), jnp.asarray(y)
    training = dict(optimizer=OPTIMIZER, steps=config.steps, batch_size=config.batch_size)
    common = dict(width=config.width, depth=config.depth)

    def deterministic():
        model, state = eqx.nn.make_with_state(DeterministicClassifier)(
            2, 2, key=next(keys), **common
        )
        result = train(model, state, x, y, key=next(keys), **training)
        return result.model, result.state

    members = [deterministic() for _ in range(config.ensemble_size)]
    model, state = eqx.nn.make_with_state(sngp.SNGPClassifier)(
        2,
        2,
        num_features=config.num_features,
        length_scale=config.length_scale,
        key=next(keys),
        **common,
    )
    result = train(model, state, x, y, key=next(keys), **training)
    covariance = sngp.fit_laplace(result.model, result.state, x).covariance()
    return {
        "deterministic": lambda inputs: softmax_probabilities(*members[0], inputs),
        "SNGP": lambda inputs: sngp.predict(
            result.model, result.state, covariance, inputs
        ).probabilities(),
        "deep ensemble": lambda inputs: ensemble_probabilities(members, inputs),
    }


def main(
    quick: bool = False,
    out: pathlib.Path = pathlib.Path("."),
    seed: int = 0,
    config: Config | None = None,
) -> dict:
    """Trains, plots and returns ``data set -> model -> {"near": H, "far": H, "accuracy": a}``.

    ``config`` overrides the sizes (``QUICK`` with ``quick=True``, else ``Config()``).
    """
    config = config or (QUICK if quick else Config())
    axis = np.linspace(LOW, HIGH, config.grid, dtype=np.float32)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    results: dict = {}
    fig, axes = plt.subplots(
        len(DATASETS),
        len(MODELS),
        figsize=(4 * len(MODELS), 3.6 * len(DATASETS)),
        squeeze=False,
    )
    for row, (dataset, make) in zip(axes, DATASETS.items(), strict=True):
        x, y = make(config.points, seed)
        test_x, test_y = make(config.points, seed + 1)
        distance = np.min(np.linalg.norm(grid[:, None] - x[None], axis=-1), axis=1)
        near, far = distance < NEAR, distance > FAR
        results[dataset] = {}
        for ax, (name, predict) in zip(row, fit(x, y, config, seed).items(), strict=True):
            entropy = np.asarray(metrics.predictive_entropy(predict(jnp.asarray(grid))))
            accuracy = float(metrics.accuracy(predict(jnp.asarray(test_x)), jnp.asarray(test_y)))
            results[dataset][name] = {
                "near": float(entropy[near].mean()),
                "far": float(entropy[far].mean()),
                "accuracy": accuracy,
            }
            image = ax.imshow(
                entropy.reshape(config.grid, config.grid),
                origin="lower",
                extent=(LOW, HIGH, LOW, HIGH),
                vmin=0.0,
                vmax=np.log(2),
                cmap="viridis",
            )
            ax.scatter(x[:, 0], x[:, 1], c=y, s=2, cmap="coolwarm", alpha=0.5)
            ax.set_title(f"{dataset}: {name}")
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(image, ax=row.tolist(), label="predictive entropy (nats)", shrink=0.9)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "sngp_two_moons.png", dpi=80)
    plt.close(fig)

    print(
        f"mean predictive entropy near (< {NEAR}) and far (> {FAR}) from the training data; "
        "maximum log 2 = 0.693"
    )
    print(f"{'data set':<11}{'model':<15}{'accuracy':>10}{'near':>8}{'far':>8}")
    for dataset, rows in results.items():
        for name, r in rows.items():
            print(f"{dataset:<11}{name:<15}{r['accuracy']:>10.3f}{r['near']:>8.3f}{r['far']:>8.3f}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny networks, few steps")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("."))
    arguments = parser.parse_args()
    main(arguments.quick, arguments.out)
