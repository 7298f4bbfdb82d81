"""The benchmarks run end to end with ``--quick``, and their implementations agree."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "gfi_overhead.py"


def test_quick_benchmark_prints_the_table_and_the_implementations_agree():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,  # 40-50 s on 2 cores shared with other jobs; the bound catches a hang
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    lines = output.splitlines()
    assert any("median run" in line and "compile" in line for line in lines)
    for model in ("hierarchical regression", "state-space model"):
        for method in ("assess", "simulate"):
            for implementation in ("hand-written JAX", "ppl (ours)", "NumPyro", "GenJAX"):
                assert any(
                    model in line and f" {method} " in line and implementation in line
                    for line in lines
                ), f"no {implementation} {method} row for the {model}"
    assert "targets:" in output
    assert output.count(": ok") == 4
    assert "agreement check: passed" in output


VI_SCRIPT = ROOT / "benchmarks" / "vi_step.py"


def test_quick_vi_step_benchmark_prints_every_row_and_ours_agrees():
    result = subprocess.run(
        [sys.executable, str(VI_SCRIPT), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,  # ~40 s of CPU; 60-100 s on 2 cores shared with other jobs; catches a hang
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    lines = output.splitlines()
    assert any("median step" in line and "compile" in line for line in lines)
    rows = {
        "Gaussian VAE": ("hand-written JAX", "ppl (ours)", "NumPyro", "GenJAX"),
        "), enum": ("hand-written JAX", "ppl (ours)", "GenJAX"),
        "), reinforce": ("hand-written JAX", "ppl (ours)", "GenJAX"),
    }
    for benchmark, implementations in rows.items():
        for implementation in implementations:
            assert any(benchmark in line and implementation in line for line in lines), (
                f"no {implementation} row for {benchmark}"
            )
    for coins in (1, 2):
        for implementation in ("hand-written JAX", "ppl (ours)", "GenJAX"):
            assert any(f"{coins} coins" in line and implementation in line for line in lines)
    assert not any("ppl (ours)" in line and "failed" in line for line in lines), output
    # The ops column: the compiled step's top-level operations, a count for every step row.
    steps = [line for line in lines if line.startswith(("(a)", "(b)")) and "failed" not in line]
    assert steps and all(line.split()[-1].isdigit() for line in steps), output
    assert "targets:" in output
    for check in ("Gaussian VAE", "enum: ELBO", "reinforce: ELBO", "chain of 2 coins"):
        assert any(
            check in line and "ppl (ours)" in line and line.endswith(": ok") for line in lines
        ), f"no passed agreement check of ours for {check}"
    assert "agreement check: passed" in output


NUTS_SCRIPT = ROOT / "benchmarks" / "nuts.py"


def test_quick_nuts_leapfrog_costs_print_both_densities():
    result = subprocess.run(
        [sys.executable, str(NUTS_SCRIPT), "--leapfrog", "--quick", "--model", "eight"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,  # ~30 s on 2 cores; catches a hang
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("eight schools")]
    assert "ours" in line and "hand-written" in line and line.endswith("x"), line
