"""SNGP's cost against the deterministic network of the same size, and the digits table.

(a) Training: the time of one step of ``models.training.train`` (forward, backward, Adam; a
    batch of 128) for the deterministic residual network and for SNGP (the same network with
    spectral normalization and a random-feature GP output layer): the time of an already
    compiled run of ``steps`` steps divided by ``steps``.
(b) Prediction: examples per second of the jitted predictive of a batch of 1,024 — the
    deterministic softmax, SNGP's posterior-mean logits alone, and SNGP's mean and variance
    (``sngp.predict``, the ``[D, D]`` covariance quadratic form), and the same with the
    rank-64 covariance (``LaplacePrecision.low_rank_covariance``).
    The ratio to the deterministic network is the overhead; the target is ≤ 1.3× for the
    mean and variance.
(c) The digits table of ``examples/sngp_digits.py`` (accuracy, ECE, NLL and OOD AUROC over
    seeds for every model).

Every function runs in several rounds in which the functions compared take turns in a
shuffled order (``interleaved``): the machine may be shared, and a load spike then slows
every function alike. The table gives the median time and its ratio, and the ratio of the
fastest times.

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

import equinox as eqx
import jax
import optax
from _timing import interleaved_samples

from models import sngp
from models.baselines import DeterministicClassifier, softmax_probabilities
from models.training import train

ROOT = pathlib.Path(__file__).resolve().parents[1]
INPUTS, CLASSES = 64, 5
RANK = 64  # eigenpairs kept by the low-rank covariance


def interleaved(functions: dict, rounds: int) -> dict[str, tuple[float, float]]:
    """The median and the fastest wall time of each function (blocking on its result) over
    ``rounds`` rounds in which all of them run once, in a shuffled order: on a shared
    machine, load spikes hit every function alike, and the minimum is the least disturbed
    run."""
    for function in functions.values():
        jax.block_until_ready(function())  # compile
    times = interleaved_samples(functions, rounds)
    return {name: (statistics.median(values), min(values)) for name, values in times.items()}


def measure(width: int, depth: int, features: int, steps: int, rounds: int) -> dict:
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
    rank = min(RANK, features)
    low_rank = precision.low_rank_covariance(rank)
    frozen = eqx.nn.inference_mode(model)
    mean_only = eqx.filter_jit(lambda m, s, inputs: jax.vmap(lambda v: m(v, s)[0])(inputs))
    optimizer = optax.adam(1e-3)

    def training(network, network_state):
        return lambda: (
            train(
                network,
                network_state,
                x,
                y,
                optimizer=optimizer,
                steps=steps,
                batch_size=128,
                key=jax.random.key(0),
            ).losses
        )

    rows = interleaved(
        {
            "train step, deterministic": training(deterministic, det_state),
            "train step, SNGP": training(model, state),
        },
        rounds,
    )
    rows = {name: (median / steps, fastest / steps) for name, (median, fastest) in rows.items()}
    rows |= interleaved(
        {
            "predict, deterministic": lambda: softmax_probabilities(deterministic, det_state, x),
            "predict, SNGP mean": lambda: mean_only(frozen, state, x),
            "predict, SNGP mean + variance": lambda: (
                sngp.predict(model, state, covariance, x).variance
            ),
            f"predict, SNGP low rank {rank}": lambda: (
                sngp.predict(model, state, low_rank, x).variance
            ),
        },
        3 * rounds,
    )
    return rows


def main(quick: bool = False) -> dict:
    # (width, depth, random features, training steps per timed run, rounds)
    sizes = (
        [(32, 2, 128, 20, 3)]
        if quick
        else [(128, 3, 1024, 100, 10), (512, 6, 1024, 20, 10), (1024, 8, 1024, 5, 6)]
    )
    results = {}
    print(f"{jax.devices()[0].device_kind}, {jax.device_count()} device(s)")
    print(
        f"{'network':<18}{'measurement':<32}{'median':>12}{'per second':>14}{'ratio':>8}"
        f"{'fastest':>9}"
    )
    for width, depth, features, steps, rounds in sizes:
        rows = measure(width, depth, features, steps, rounds)
        name = f"{width}x{depth}, D={features}"
        for label, (seconds, fastest) in rows.items():
            median_reference, fastest_reference = rows[
                "train step, deterministic" if "train" in label else "predict, deterministic"
            ]
            rate = "steps" if "train" in label else "examples"
            per_second = 1 / seconds if "train" in label else 1024 / seconds
            print(
                f"{name:<18}{label:<32}{seconds * 1e3:>10.3f}ms{per_second:>12.0f}/s"
                f"{seconds / median_reference:>7.2f}x{fastest / fastest_reference:>8.2f}x"
                f"  ({rate})"
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
