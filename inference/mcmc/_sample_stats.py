"""Sample stats of MCMC steps: which a kernel's info reports, which a run keeps, and how they
leave the sampling loop (packed into one vector per draw)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ppl._static import packed_piece

# blackjax/our info fields -> arviz sample_stats names
STAT_NAMES = {
    "acceptance_rate": "acceptance_rate",
    "is_accepted": "accepted",
    "is_divergent": "diverging",
    "energy": "energy",
    "num_trajectory_expansions": "tree_depth",
    "num_integration_steps": "n_steps",
}


def info_stats(info: Any, prefix: str = "") -> dict[str, jax.Array]:
    """The sample stats in a step's info, by arviz name (a ``cycle``'s tuple of infos: each
    kernel's prefixed ``kernel<i>_``)."""
    if isinstance(info, tuple) and not hasattr(info, "_fields"):
        out: dict[str, jax.Array] = {}
        for i, sub in enumerate(info):
            out |= info_stats(sub, f"{prefix}kernel{i}_")
        return out
    return {
        prefix + name: getattr(info, field)
        for field, name in STAT_NAMES.items()
        if hasattr(info, field)
    }


def checked_names(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` sorted, once each; a name no kernel reports is an error (before any work)."""
    if isinstance(names, str):
        names = (names,)
    known = {*STAT_NAMES.values(), "step_size"}
    unknown = [n for n in names if re.sub(r"^kernel\d+_", "", n) not in known]
    if unknown:
        raise ValueError(
            f"sample_stats names {', '.join(map(repr, unknown))}; the stats are "
            f"{', '.join(map(repr, sorted(known)))} (prefixed 'kernel<i>_' for a cycle)"
        )
    return tuple(sorted(set(names)))


def kept_stats(
    stats: dict[str, jax.Array], names: tuple[str, ...] | None, adapted: bool
) -> dict[str, jax.Array]:
    """The stats named in ``names`` (all for ``None``); an unknown name is an error that lists
    the known ones (``step_size`` is added after sampling, where NUTS was adapted)."""
    if names is None:
        return stats
    known = {*stats, *(["step_size"] if adapted else [])}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(
            f"sample_stats names {', '.join(map(repr, unknown))}, which this kernel does not "
            f"report; it reports {', '.join(map(repr, sorted(known)))}"
        )
    return {name: value for name, value in stats.items() if name in names}


def pack_stats(stats: dict[str, jax.Array]) -> jax.Array:
    """``stats`` raveled into one vector of their widest float type (bools and the integer
    counts of NUTS are exact in it), in the order of their names."""
    dtype = functools.reduce(
        jnp.promote_types, [jnp.float32, *map(jnp.result_type, stats.values())]
    )
    pieces = [jnp.ravel(stats[name]).astype(dtype) for name in sorted(stats)]
    return jnp.concatenate(pieces or [jnp.zeros(0)])


def unpack_stats(packed: jax.Array, layout: dict[str, tuple]) -> dict[str, jax.Array]:
    """``pack_stats``'s stats back from ``packed`` (leading axes kept), with their shapes and
    dtypes."""
    out, start = {}, 0
    for name, (shape, dtype) in sorted(layout.items()):
        out[name] = packed_piece(packed, start, shape).astype(dtype)
        start += math.prod(shape)
    return out
