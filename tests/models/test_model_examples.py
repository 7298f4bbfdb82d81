"""The SNGP example scripts and the benchmark run end to end with their tiny settings."""

import importlib.util
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).parents[2]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_two_moons_sngp_is_uncertain_far_from_the_data(tmp_path):
    results = load("sngp_two_moons").main(quick=True, out=tmp_path)
    assert (tmp_path / "sngp_two_moons.png").stat().st_size > 10_000
    for rows in results.values():
        # even after 30 steps the GP's logits fall back to the prior mean 0 away from the
        # data: entropy near its maximum log 2 = 0.693, above the deterministic network's
        assert rows["SNGP"]["far"] > 0.6
        assert rows["SNGP"]["far"] > rows["deterministic"]["far"]


def test_digits_table_has_every_model_and_sensible_values():
    example = load("sngp_digits")
    table = example.main(quick=True, seeds=1)
    assert set(table) == set(example.MODELS)
    for name, row in table.items():
        assert set(row) == set(example.METRICS)
        assert row["accuracy"][0] > 0.5, name  # 5 classes: chance is 0.2
        for metric in ("ECE", "AUROC 5-9", "AUROC noise", "AUROC rotated"):
            assert 0.0 <= row[metric][0] <= 1.0
        assert row["accuracy"][1] == 0.0  # one seed: no spread


def test_gnn_benchmark_runs_and_ranks_better_than_chance():
    table = load("gnn_sngp").main(quick=True, seeds=1)
    assert set(table) == {"GNN", "GNN-SNGP"}
    for row in table.values():
        assert ("new scaffolds", "OOD AUROC") in row
        values = np.array([mean for mean, _ in row.values()])
        assert np.all((values >= 0) & (values <= 1))


def test_quick_benchmark_prints_the_ratios():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sngp.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for row in ("train step, SNGP", "predict, SNGP mean + variance", "low rank"):
        assert row in result.stdout, row


def test_last_layer_laplace_agrees_with_nuts():
    results = load("sngp_last_layer").main(quick=True)
    laplace_mean, laplace_variance = results["Laplace"]
    nuts_mean, nuts_variance = results["NUTS"]
    # 200 NUTS draws: Monte Carlo error of the means about 0.03 at variances near 0.1
    np.testing.assert_array_less(np.abs(laplace_mean - nuts_mean), 0.15)
    np.testing.assert_allclose(laplace_variance, nuts_variance, rtol=0.5)
