"""``Scan``: a Markov chain / state-space model, with ``jax.lax.scan``.

The kernel is a generative function ``kernel(carry, x) -> (carry, y)``; ``Scan(kernel)`` takes
``(init, xs)`` and returns ``(final_carry, ys)``. Step ``t``'s choices are at ``(t, ...)``. Every
GFI method is one ``lax.scan``, so 10^4 steps compile once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ppl._context import at_prefix
from ppl._errors import AddressError
from ppl._interface import GenerativeFunction, Trace
from ppl._keys import StepKey
from ppl._selection import batched_selection
from ppl._static import StaticGenerativeFunction
from ppl.combinators._indexed import (
    IndexedTrace,
    batched_constraints,
    batched_discard,
    check_every_index,
    rebuild_selection,
    repeated_sites,
)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ScanTrace(IndexedTrace):
    """The trace of a chain: the kernel's traces stacked along time."""

    @property
    def retval(self) -> Any:
        """``(final carry, ys)``, read from the stacked step traces (held once)."""
        carries, ys = self.inner.retval
        return jax.tree.map(lambda c: c[-1], carries), ys


class Scan(GenerativeFunction):
    """A chain of ``kernel`` steps, threading a carry.

    Args:
        kernel: a generative function with arguments ``(carry, x)`` returning
            ``(new_carry, y)``.
        length: the number of steps, needed when ``xs`` is ``None``.

    Example:
        >>> import jax
        >>> from ppl import gen, normal
        >>> @gen
        ... def step(z, _):
        ...     z = normal(0.9 * z, 1.0) @ "z"
        ...     return z, z
        >>> chain = Scan(step, length=100)
        >>> tr = chain.simulate(jax.random.key(0), (0.0, None))
        >>> tr.choices["z"].shape, tr.choices[7, "z"].shape
        ((100,), ())
    """

    def __init__(self, kernel: GenerativeFunction, length: int | None = None):
        self.kernel = kernel
        self.length = length

    def __repr__(self) -> str:
        return f"Scan({self.kernel!r})"

    def _size(self, args: tuple) -> int:
        if len(args) != 2:
            raise TypeError(f"{self!r} takes (init_carry, xs); got {len(args)} arguments")
        leaves = jax.tree.leaves(args[1])
        if leaves:
            n = int(jnp.shape(leaves[0])[0])
            if self.length is not None and n != self.length:
                raise ValueError(f"{self!r}: xs has {n} steps but length={self.length}")
            return n
        if self.length is None:
            raise TypeError(f"{self!r}: xs is None, so give length")
        return self.length

    def _scan(self, step, args: tuple, *per_step: Any) -> tuple[Trace, Any]:
        """Runs ``step(carry, per_step_t, x_t) -> (trace_t, extra_t)`` along the chain."""
        n = self._size(args)
        init, xs = args

        def body(carry, inputs):
            *rest, x = inputs
            trace, extra = step(carry, x, *rest)
            new_carry, _ = trace.retval
            return new_carry, (trace, extra)

        try:
            with at_prefix((Ellipsis,)):
                _, (inner, extra) = jax.lax.scan(body, init, (*per_step, xs), length=n)
        except AddressError as error:
            raise error.with_prefix((Ellipsis,)) from None
        return inner, extra

    def _trace(self, inner: Trace, args: tuple) -> ScanTrace:
        return ScanTrace(inner, None)

    def _keys(self, key, args):
        """What each step's key is made from, scanned along the chain (see ``_step_key``).

        A ``@gen`` kernel makes its calls' keys from the chain's key and the step's index
        (``ppl._keys.StepKey``); any other kernel gets ``split(key, n)[t]``.
        """
        if isinstance(self.kernel, StaticGenerativeFunction):
            return jnp.arange(self._size(args), dtype=jnp.uint32)
        return jax.random.split(key, self._size(args))

    def _step_key(self, key, made_from):
        if isinstance(self.kernel, StaticGenerativeFunction):
            return StepKey(key, made_from)
        return made_from

    def _simulate(self, key, args):
        inner, _ = self._scan(
            lambda c, x, k: (self.kernel._simulate(self._step_key(key, k), (c, x)), None),
            args,
            self._keys(key, args),
        )
        return self._trace(inner, args)

    def _generate(self, key, constraints, args):
        given = batched_constraints(constraints, self._size(args), repr(self))
        inner, weights = self._scan(
            lambda c, x, k, g: self.kernel._generate(self._step_key(key, k), g, (c, x)),
            args,
            self._keys(key, args),
            given,
        )
        return self._trace(inner, args), jnp.sum(weights)

    def _assess(self, choices, args):
        check_every_index(choices, self._size(args), repr(self))
        given = batched_constraints(choices, self._size(args), repr(self))

        def step(c, x, g):
            score, retval = self.kernel._assess(g, (c, x))
            return _Scored(score, retval), None

        inner, _ = self._scan(step, args, given)
        return jnp.sum(inner.score), self._trace(inner, args).retval

    def _update(self, key, trace, constraints, args):
        n = self._size(args)
        if int(jnp.shape(trace.inner.score)[0]) != n:
            raise ValueError(
                f"{self!r}: update cannot change the number of steps; use generate for a new length"
            )
        given = batched_constraints(constraints, n, repr(self))

        def step(c, x, k, t, g):
            new, weight, discard = self.kernel._update(self._step_key(key, k), t, g, (c, x))
            return new, (weight, discard)

        inner, (weights, discard) = self._scan(
            step, args, self._keys(key, args), trace.inner, given
        )
        return (self._trace(inner, args), jnp.sum(weights), batched_discard(discard, constraints))

    def _sites(self, trace, args, query):
        init, xs = args
        new_carries, _ = trace.inner.retval

        def step_inputs(first: Any, later: jax.Array) -> jax.Array:
            return jnp.concatenate([jnp.asarray(first, later.dtype)[None], later[:-1]])

        carries = jax.tree.map(step_inputs, init, new_carries)

        def step(t, a):
            return self.kernel._sites(t, a, query)

        return repeated_sites(step, trace.inner, (carries, xs), (0, 0))

    def _regenerate(self, key, trace, selection, args):
        template, flags = batched_selection(selection, self._size(args))
        inner, weights = self._scan(
            lambda c, x, k, t, f: self.kernel._regenerate(
                self._step_key(key, k), t, rebuild_selection(template, f), (c, x)
            ),
            args,
            self._keys(key, args),
            trace.inner,
            flags,
        )
        return self._trace(inner, args), jnp.sum(weights)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Scored:
    score: Any
    retval: Any
