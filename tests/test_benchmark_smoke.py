"""The GFI overhead benchmark runs end to end with ``--quick``, and its implementations agree."""

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
