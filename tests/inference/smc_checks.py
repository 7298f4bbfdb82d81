"""Checks shared by the SMC tests: many replications compiled once, and z-scores over them."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

Z_LIMIT = 5.0
ROOT = Path(__file__).resolve().parents[2]


def many_runs(run, keys):
    """``run`` on every key, compiled once. ``lax.map`` rather than ``vmap``: each run is itself
    vectorised over particles, and mapping the runs halves the compile time (measured)."""
    return jax.jit(lambda keys: jax.lax.map(run, keys))(keys)


def z_score(samples, truth) -> float:
    """(mean - truth) / standard error of the mean, over independent replications."""
    samples = np.asarray(samples, dtype=np.float64)
    return float((samples.mean() - truth) / (samples.std(ddof=1) / np.sqrt(samples.size)))
