"""SNGP's cost against the deterministic network of the same size, and the digits table.

(a) Training: the time of one step of ``models.training.train`` (forward, backward, Adam; a
    batch of 128) for the deterministic residual network and for SNGP (the same network with
    spectral normalization and a random-feature GP output layer), measured as the time of a
    second, already compiled run of ``steps`` steps divided by ``steps``.
(b) Prediction: examples per second of the jitted predictive of a batch of 1,024 — the
    deterministic softmax, SNGP's posterior-mean logits alone, and SNGP's mean and variance
    (``sngp.predict``, the ``[D, D]`` covariance quadratic form), and the same with the
    rank-64 covariance (``LaplacePrecision.low_rank_covariance``) — median of repeated calls.
    The ratio to the deterministic network is the overhead; the target is ≤ 1.3× for the
    mean and variance.
(c) The digits table of ``examples/sngp_digits.py`` (accuracy, ECE, NLL and OOD AUROC over
    seeds for every model).

Sizes: 64 inputs, 5 classes, three networks (``width × depth``): the experiments' 128 × 3,
512 × 6 and 1024 × 8, each with ``D = 1024`` random features. SNGP's extra work per example
is fixed (``width·D`` for the features, ``D²`` or ``D·rank`` for the variance), so its
relative overhead falls as the network grows.

Run: ``python benchmarks/sngp.py`` (``--quick``: small sizes, without the table).
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import statistics
import sys
import time

import equinox as eqx
import jax
import optax

from models import sngp
from models.baselines import DeterministicClassifier, softmax_probabilities
from models.training import train

ROOT = pathlib.Path(__file__).resolve().parents[1]
INPUTS, CLASSES = 64, 5
RANK = 64  # eigenpairs kept by the low-rank covariance


def timed(function, repeats: int) -> float:
    """The median wall time of ``function()`` (blocking on its result) over ``repeats``."""
    jax.block_until_ready(function())  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def training_step_time(model, state, x, y, steps: int) -> float:
    optimizer = optax.adam(1e-3)

    def run():
        return train(
            model,
            state,
            x,
            y,
            optimizer=optimizer,
            steps=steps,
            batch_size=128,
            key=jax.random.key(0),
        ).losses

    return timed(run, repeats=3) / steps


def measure(width: int, depth: int, features: int, steps: int, repeats: int) -> dict:
    keys = jax.random.split(jax.random.key(0), 4)
    x = jax.random.uniform(keys[0], (1024, INPUTS))
    y = jax.random.randint(keys[1], (1024,), 0, CLASSES)
    common = dict(width=width, depth=depth)
    deterministic, det_state = eqx.nn.make_with_state(DeterministicClassifier)(
        INPUTS, CLASSES, key=keys[2], **common
    )
    model, state = eqx.nn.make_with_state(sngp.SNGPClassifier)(
        INPUTS, CLASSES, num_features=features, key=keys[3], **common
    )
    precision = sngp.fit_laplace(model, state, x)
    covariance = precision.covariance()
    low_rank = precision.low_rank_covariance(min(RANK, features))
    frozen = eqx.nn.inference_mode(model)
    mean_only = eqx.filter_jit(lambda m, s, inputs: jax.vmap(lambda v: m(v, s)[0])(inputs))
    rows = {
        "train step, deterministic": training_step_time(deterministic, det_state, x, y, steps),
        "train step, SNGP": training_step_time(model, state, x, y, steps),
        "predict, deterministic": timed(
            lambda: softmax_probabilities(deterministic, det_state, x), repeats
        ),
        "predict, SNGP mean": timed(lambda: mean_only(frozen, state, x), repeats),
        "predict, SNGP mean + variance": timed(
            lambda: sngp.predict(model, state, covariance, x).variance, repeats
        ),
        f"predict, SNGP low rank {min(RANK, features)}": timed(
            lambda: sngp.predict(model, state, low_rank, x).variance, repeats
        ),
    }
    return rows


def main(quick: bool = False) -> dict:
    # (width, depth, random features, training steps timed, prediction repeats)
    sizes = (
        [(32, 2, 128, 20, 5)]
        if quick
        else [(128, 3, 1024, 200, 30), (512, 6, 1024, 50, 10), (1024, 8, 1024, 10, 5)]
    )
    results = {}
    print(f"{jax.devices()[0].device_kind}, {jax.device_count()} device(s)")
    print(f"{'network':<18}{'measurement':<32}{'time':>12}{'per second':>14}{'ratio':>8}")
    for width, depth, features, steps, repeats in sizes:
        rows = measure(width, depth, features, steps, repeats)
        name = f"{width}x{depth}, D={features}"
        for label, seconds in rows.items():
            reference = rows[
                "train step, deterministic" if "train" in label else "predict, deterministic"
            ]
            rate = "steps" if "train" in label else "examples"
            per_second = 1 / seconds if "train" in label else 1024 / seconds
            print(
                f"{name:<18}{label:<32}{seconds * 1e3:>10.3f}ms{per_second:>12.0f}/s"
                f"{seconds / reference:>7.2f}x  ({rate})"
            )
        results[name] = rows
    print()
    if quick:  # the table's code path is smoke-tested by tests/models/test_examples.py
        print("digits table: run without --quick (examples/sngp_digits.py, 3 seeds)")
        return results
    spec = importlib.util.spec_from_file_location(
        "sngp_digits", ROOT / "examples" / "sngp_digits.py"
    )
    digits = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = digits  # its dataclasses look their module up there
    spec.loader.exec_module(digits)
    results["digits"] = digits.main(seeds=3)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    main(parser.parse_args().quick)
