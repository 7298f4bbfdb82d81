"""Compilation settings for every test and doctest (set before JAX starts its backend).

The suite compiles far more than it runs: with LLVM at optimisation level 1 instead of 2,
XLA's CPU compilations take about a third less time (the MCMC run tests and the random ADEV
programs: 167 s -> 107 s), and programs run the same computations. Subprocesses that tests
start (benchmarks, sharded programs) inherit the setting through the environment.
"""

import os

_FLAG = "--xla_backend_optimization_level=1"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()
