"""``run``'s checkpoint file: the chains' state, saved atomically after each chunk, and
refused to a run other than the one that wrote it."""

from __future__ import annotations

import hashlib
import os
import pickle
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from inference.mcmc._kernel import Kernel
from ppl import ChoiceMap


def _fingerprint(key, *sizes) -> list:
    return [np.asarray(jax.random.key_data(key)).tolist(), *sizes]


def digest(observations: ChoiceMap, args: tuple, init: Any, kernel: Kernel | None) -> str:
    """A hash of the observations, arguments and starts (their structure and values) and of
    the kind of kernel: a checkpoint of one run must not be resumed by another."""
    digest = hashlib.sha256()
    leaves, tree = jax.tree.flatten((observations, args, init))
    digest.update(str(tree).encode())
    for leaf in leaves:
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if isinstance(leaf, jax.Array | np.ndarray):
            value = np.asarray(leaf)
            digest.update(f"{value.dtype}{value.shape}".encode() + value.tobytes())
        else:
            digest.update(repr(leaf).encode())
    step = None if kernel is None else getattr(kernel.step, "__qualname__", type(kernel).__name__)
    digest.update(repr(step).encode())
    return digest.hexdigest()


def save(path, key, *rest) -> None:
    *sizes, state = rest
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as handle:
        pickle.dump(
            {"fingerprint": _fingerprint(key, *sizes), "state": jax.device_get(state)}, handle
        )
    os.replace(tmp, path)  # atomic: an interruption never leaves half a checkpoint


def load(path, key, *sizes):
    if path is None or not os.path.exists(path):
        return None
    with open(path, "rb") as handle:
        saved = pickle.load(handle)
    if saved["fingerprint"] != _fingerprint(key, *sizes):
        raise ValueError(
            f"checkpoint {path} was written by another run: another key, other observations, "
            "args, init or kernel, or other sizes (num_chains, num_warmup, num_samples, "
            "num_chunks, thinning, sample_stats, log_likelihood, dense_mass); delete it or "
            "use another path"
        )
    return saved["state"]
