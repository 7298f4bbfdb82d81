"""Kernels on traces: the blackjax convention, with a trace as the state.

A ``Kernel`` is a pair of pure functions ``init(trace) -> trace`` and
``step(key, trace) -> (trace, info)``. Because every kernel's state is the model's trace,
kernels compose (``cycle``) and any of them can follow any other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax


class Kernel(NamedTuple):
    """An MCMC transition on traces that leaves the model's posterior invariant."""

    init: Callable[[Any], Any]
    step: Callable[[jax.Array, Any], tuple[Any, Any]]


def _identity(trace: Any) -> Any:
    return trace


def cycle(*kernels: Kernel) -> Kernel:
    """Applies ``kernels`` in turn; the info is the tuple of their infos.

    Example:
        >>> import jax
        >>> from ppl import gen, normal, select
        >>> from inference.mcmc import mh
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "a", 1.0) @ "b"
        >>> kernel = cycle(mh(model, select("a")), mh(model, select("b")))
        >>> trace = model.simulate(jax.random.key(0), ())
        >>> trace, (info_a, info_b) = kernel.step(jax.random.key(1), trace)
        >>> info_a.acceptance_rate.shape
        ()
    """

    def step(key, trace):
        infos = []
        for kernel, sub in zip(kernels, jax.random.split(key, len(kernels)), strict=True):
            trace, info = kernel.step(sub, trace)
            infos.append(info)
        return trace, tuple(infos)

    return Kernel(_identity, step)
