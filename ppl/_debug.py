"""Non-finite score detection for ``ppl.debug()``."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ppl._address import Path, show
from ppl._context import current_prefix, debugging
from ppl._errors import NonFiniteScoreError


def _raise_if_nonfinite(path: Path, name: str, score) -> None:
    score = np.asarray(score)
    if not np.all(np.isfinite(score)):
        bad = score[~np.isfinite(score)].ravel()[0] if score.ndim else score
        raise NonFiniteScoreError(
            f"non-finite log density {bad} at {show(path) if path else 'the root'} ({name}); "
            "check the arguments of this choice (scale <= 0? value outside the support?)"
        )


def check_score(score: jax.Array, name: str) -> None:
    """In debug mode, raises ``NonFiniteScoreError`` naming the current address."""
    if not debugging():
        return
    path = current_prefix()
    if isinstance(score, jax.core.Tracer):
        jax.debug.callback(functools.partial(_raise_if_nonfinite, path, name), score)
    else:
        _raise_if_nonfinite(path, name, jnp.asarray(score))
