"""Running programs on simulated devices and on a two-process cluster, in subprocesses.

The test process imported JAX with one CPU device; the number of (simulated) devices is fixed
when JAX starts, so programs that need 8 devices run in a fresh Python with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before JAX is imported. Each program
does many checks in one process (start-up and compilation dominate its time) and prints one
JSON object, its last line of output, for the tests to assert on.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

PROGRAMS = pathlib.Path(__file__).resolve().parent / "programs"
ROOT = PROGRAMS.parents[2]

# The programs are scripts run in subprocesses, never imported by the test process.
collect_ignore_glob = ["programs/*"]


def _environment(devices: int) -> dict[str, str]:
    env = dict(os.environ)
    # The test process's own flags (e.g. the compiler's optimisation level) are kept.
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _result(completed: subprocess.CompletedProcess, name: str) -> dict:
    if completed.returncode != 0:
        raise AssertionError(
            f"{name} exited with {completed.returncode}:\n{completed.stdout[-3000:]}\n"
            f"{completed.stderr[-6000:]}"
        )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"{name} printed no JSON result:\n{completed.stdout[-3000:]}")
    return json.loads(lines[-1])


def run_program(name: str, *arguments: str, devices: int = 8, timeout: float = 600) -> dict:
    """Runs ``programs/<name>`` on ``devices`` simulated CPU devices; its JSON result."""
    completed = subprocess.run(
        [sys.executable, str(PROGRAMS / name), *arguments],
        env=_environment(devices),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    return _result(completed, name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def run_cluster(
    name: str, num_processes: int, devices_per_process: int, timeout: float = 600
) -> list[dict]:
    """Runs ``programs/<name> <process_id> <num_processes> <port>`` as ``num_processes``
    processes that form one JAX cluster on localhost; their JSON results, by process id."""
    port = str(free_port())
    processes = [
        subprocess.Popen(
            [sys.executable, str(PROGRAMS / name), str(i), str(num_processes), port],
            env=_environment(devices_per_process),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for i in range(num_processes)
    ]
    results = []
    try:
        for i, process in enumerate(processes):
            stdout, stderr = process.communicate(timeout=timeout)
            results.append(
                _result(
                    subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr),
                    f"{name} (process {i})",
                )
            )
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results
