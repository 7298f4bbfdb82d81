"""SNGP against its baselines on digits (``sklearn.datasets.load_digits``, offline).

Every model is trained on the digits 0–4 by the same ``models.training.train`` and judged on
held-out digits 0–4 (accuracy, ECE, NLL) and on telling them apart, by predictive entropy,
from three out-of-distribution sets (OOD AUROC): the digits 5–9, the held-out digits with
Gaussian pixel noise, and the held-out digits rotated by 90°.

Models: a deterministic residual network; the same network with spectral normalization and
a random-feature GP output layer (SNGP, Laplace posterior, mean-field probabilities); MC
dropout; a deep ensemble; a mean-field VI Bayesian last layer on the deterministic network
(``inference.vi``). All share one prior precision ``τ`` (weight decay ``τ/N``; the prior of
the Laplace and VI last layers). SNGP is reported twice: with the mean-field factor
``λ = π/8`` and with ``λ`` chosen from a small grid by NLL on a validation split of the
training digits (as in the SNGP paper; no out-of-distribution data is used). Prints a table
of mean ± standard deviation over seeds.

Run: ``python examples/sngp_digits.py`` (``--quick`` for a smoke run, ``--seeds N``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

from models import metrics, sngp
from models.baselines import (
    DeterministicClassifier,
    ensemble_probabilities,
    fit_variational_last_layer_baseline,
    mc_dropout_probabilities,
    softmax_probabilities,
)
from models.training import train


@dataclasses.dataclass(frozen=True)
class Config:
    width: int = 128
    depth: int = 3
    steps: int = 1500
    batch_size: int = 128
    learning_rate: float = 3e-3
    prior_precision: float = 0.1
    num_features: int = 1024
    length_scale: float = 2.0
    norm_bound: float = 0.95
    dropout_rate: float = 0.1
    mc_samples: int = 30
    ensemble_size: int = 5
    vi_steps: int = 3000


QUICK = Config(
    width=16, depth=1, steps=30, num_features=32, mc_samples=2, ensemble_size=2, vi_steps=30
)

MODELS = (
    "deterministic",
    "SNGP (λ=π/8)",
    "SNGP (λ tuned)",
    "MC dropout",
    "deep ensemble",
    "VI last layer",
)
FACTORS = (0.0, 0.02, 0.05, 0.1, 0.2, math.pi / 8)
METRICS = ("accuracy", "ECE", "NLL", "AUROC 5-9", "AUROC noise", "AUROC rotated")


def load(seed: int) -> dict[str, np.ndarray]:
    """Digits 0–4 split 60/10/30 into training, validation and test rows (by ``seed``), and
    the three out-of-distribution sets."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target
    rng = np.random.default_rng(seed)
    inside = np.flatnonzero(y < 5)
    rng.shuffle(inside)
    cut, validation_cut = int(0.6 * len(inside)), int(0.7 * len(inside))
    train_rows, test_rows = inside[:cut], inside[validation_cut:]
    validation_rows = inside[cut:validation_cut]
    test_x = x[test_rows]
    noisy = np.clip(test_x + rng.normal(0.0, 0.5, test_x.shape), 0.0, 1.0).astype(np.float32)
    rotated = np.rot90(test_x.reshape(-1, 8, 8), axes=(1, 2)).reshape(-1, 64).copy()
    return {
        "train_x": x[train_rows],
        "train_y": y[train_rows],
        "validation_x": x[validation_rows],
        "validation_y": y[validation_rows],
        "test_x": test_x,
        "test_y": y[test_rows],
        "AUROC 5-9": x[y >= 5],
        "AUROC noise": noisy,
        "AUROC rotated": rotated,
    }


@functools.cache
def adam(learning_rate: float) -> optax.GradientTransformation:
    """One optimizer object per step size: ``train`` compiles once per optimizer object."""
    return optax.adam(learning_rate)


def fit(data: dict, seed: int, config: Config) -> dict:
    """Trains every model; returns ``name -> (inputs -> [N, 5] probabilities)``."""
    x, y = jnp.asarray(data["train_x"]), jnp.asarray(data["train_y"])
    keys = iter(jax.random.split(jax.random.key(seed), 32))
    common = dict(width=config.width, depth=config.depth)
    tau = config.prior_precision
    training = dict(
        optimizer=adam(config.learning_rate),
        steps=config.steps,
        batch_size=config.batch_size,
        prior_precision=tau,
    )

    def deterministic(dropout_rate=0.0):
        model, state = eqx.nn.make_with_state(DeterministicClassifier)(
            64, 5, dropout_rate=dropout_rate, key=next(keys), **common
        )
        result = train(model, state, x, y, key=next(keys), **training)
        return result.model, result.state

    predictors = {}
    base = deterministic()
    predictors["deterministic"] = lambda inputs: softmax_probabilities(*base, inputs)

    model, state = eqx.nn.make_with_state(sngp.SNGPClassifier)(
        64,
        5,
        num_features=config.num_features,
        length_scale=config.length_scale,
        norm_bound=config.norm_bound,
        key=next(keys),
        **common,
    )
    result = train(model, state, x, y, key=next(keys), **training)
    covariance = sngp.fit_laplace(result.model, result.state, x, prior_precision=tau).covariance()

    def gp(factor):
        return lambda inputs: sngp.predict(
            result.model, result.state, covariance, inputs
        ).probabilities(factor)

    validation_x, validation_y = jnp.asarray(data["validation_x"]), data["validation_y"]
    tuned = min(
        FACTORS,
        key=lambda f: float(metrics.negative_log_likelihood(gp(f)(validation_x), validation_y)),
    )
    print(f"  SNGP mean-field factor chosen on validation: λ = {tuned:.3f}")
    predictors["SNGP (λ=π/8)"] = gp(math.pi / 8)
    predictors["SNGP (λ tuned)"] = gp(tuned)

    dropout = deterministic(config.dropout_rate)
    dropout_key = next(keys)
    predictors["MC dropout"] = lambda inputs: mc_dropout_probabilities(
        *dropout, inputs, samples=config.mc_samples, key=dropout_key
    )

    members = [base] + [deterministic() for _ in range(config.ensemble_size - 1)]
    predictors["deep ensemble"] = lambda inputs: ensemble_probabilities(members, inputs)

    last_layer = fit_variational_last_layer_baseline(
        *base, x, y, prior_precision=tau, steps=config.vi_steps, key=next(keys)
    )
    predictors["VI last layer"] = last_layer.probabilities
    return predictors


def evaluate(predict, data: dict) -> dict[str, float]:
    probs = predict(jnp.asarray(data["test_x"]))
    labels = jnp.asarray(data["test_y"])
    inside = metrics.predictive_entropy(probs)
    scores = {
        "accuracy": metrics.accuracy(probs, labels),
        "ECE": metrics.expected_calibration_error(probs, labels),
        "NLL": metrics.negative_log_likelihood(probs, labels),
    }
    for name in METRICS[3:]:
        outside = metrics.predictive_entropy(predict(jnp.asarray(data[name])))
        scores[name] = metrics.ood_auroc(inside, outside)
    return {name: float(value) for name, value in scores.items()}


def main(
    quick: bool = False, seeds: int = 3, config: Config | None = None
) -> dict[str, dict[str, tuple[float, float]]]:
    """Runs the comparison; returns ``model -> metric -> (mean, sd over seeds)``.

    ``config`` overrides the sizes (``QUICK`` with ``quick=True``, else ``Config()``).
    """
    config = config or (QUICK if quick else Config())
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in MODELS}
    for seed in range(seeds):
        start = time.perf_counter()
        data = load(seed)
        for name, predict in fit(data, seed, config).items():
            runs[name].append(evaluate(predict, data))
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    table = {
        name: {
            metric: (
                float(np.mean([r[metric] for r in rs])),
                float(np.std([r[metric] for r in rs])),
            )
            for metric in METRICS
        }
        for name, rs in runs.items()
    }
    print(f"\ndigits 0-4, {seeds} seed(s), mean ± sd; AUROC by predictive entropy")
    print(f"{'model':<16}" + "".join(f"{metric:>17}" for metric in METRICS))
    for name, row in table.items():
        cells = "".join(f"{f'{m:.3f} ± {s:.3f}':>17}" for m, s in row.values())
        print(f"{name:<16}{cells}")
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny networks, few steps")
    parser.add_argument("--seeds", type=int, default=3)
    arguments = parser.parse_args()
    main(arguments.quick, arguments.seeds)
