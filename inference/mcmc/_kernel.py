"""Kernels on traces: the blackjax convention, with a trace as the state.

A ``Kernel`` is a pair of pure functions ``init(trace) -> trace`` and
``step(key, trace) -> (trace, info)``. Because every kernel's state is the model's trace,
kernels compose (``cycle``) and any of them can follow any other.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from ppl import Selection


class Kernel(NamedTuple):
    """An MCMC transition on traces that leaves the model's posterior invariant.

    Attributes:
        init: ``trace -> state`` (the trace itself for the kernels here).
        step: ``(key, state) -> (state, info)``.
        moves: the addresses a step may change, where known (``None``: not known, as for a
            user proposal); ``mcmc.run`` refuses a kernel that moves an observed choice.
    """

    init: Callable[[Any], Any]
    step: Callable[[jax.Array, Any], tuple[Any, Any]]
    moves: Selection | None = None


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

    moved = [kernel.moves for kernel in kernels]
    known = None if any(m is None for m in moved) else functools.reduce(operator.or_, moved)
    return Kernel(_identity, step, known)


def chain(kernel: Kernel, num_steps: int) -> Kernel:
    """``num_steps`` steps of ``kernel`` as one step (a ``jax.lax.scan``, compiled once); the
    info is the last step's. Between kept draws this is thinning inside the kernel: with
    ``cycle``, e.g. ten cheap Gibbs sweeps for each NUTS step.

    Example:
        >>> import jax
        >>> from ppl import gen, normal, select
        >>> from inference.mcmc import mh
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "a", 1.0) @ "b"
        >>> kernel = chain(mh(model, select("a")), 5)
        >>> trace, _ = model.generate(jax.random.key(0), {"b": 1.0}, ())
        >>> trace, info = kernel.step(jax.random.key(1), trace)
        >>> float(trace.choices["b"]), info.acceptance_rate.shape
        (1.0, ())
    """
    try:
        count = operator.index(num_steps)
    except TypeError:
        count = 0
    if count < 1:
        raise ValueError(f"num_steps must be a positive Python int, got {num_steps!r}")

    def step(key, trace):
        def one(trace, key):
            return kernel.step(key, trace)

        trace, infos = jax.lax.scan(one, trace, jax.random.split(key, count))
        return trace, jax.tree.map(lambda x: x[-1], infos)

    return Kernel(_identity, step, kernel.moves)
