"""``Vmap``: independent repeats of a generative function (a plate), with ``jax.vmap``."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ppl._choicemap import ChoiceMap
from ppl._context import at_prefix
from ppl._distribution import Distribution
from ppl._errors import AddressError
from ppl._interface import GenerativeFunction, Trace
from ppl._selection import batched_selection
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
class VmapTrace(IndexedTrace):
    """The trace of ``n`` repeats: the inner traces stacked along a leading axis."""

    @property
    def retval(self) -> Any:
        """The repeats' return values, stacked (held once, by the inner traces)."""
        return self.inner.retval


class Vmap(GenerativeFunction):
    """Independent repeats of ``gen_fn``: choices at ``(i, ...)`` for repeat ``i``.

    The score is the sum of the repeats' scores. Arguments are mapped as ``jax.vmap`` maps
    them: ``in_axes`` is an int/``None`` for every argument or a tuple with one per argument.

    Args:
        gen_fn: the generative function to repeat.
        in_axes: which axis of each argument is mapped (``None``: shared by every repeat).
        axis_size: the number of repeats, needed only when no argument is mapped.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import normal
        >>> plate = Vmap(normal, in_axes=(0, None))
        >>> tr = plate.simulate(jax.random.key(0), (jnp.arange(3.0), 1.0))
        >>> tr.choices[2].shape, tr.retval.shape
        ((), (3,))
    """

    def __init__(self, gen_fn: GenerativeFunction, in_axes: Any = 0, axis_size: int | None = None):
        self.gen_fn = gen_fn
        self.in_axes = in_axes
        self.axis_size = axis_size

    def __repr__(self) -> str:
        return f"Vmap({self.gen_fn!r})"

    def _axes(self, args: tuple) -> tuple:
        if isinstance(self.in_axes, tuple):
            if len(self.in_axes) != len(args):
                raise TypeError(
                    f"{self!r}: in_axes has {len(self.in_axes)} entries for {len(args)} arguments"
                )
            return self.in_axes
        return (self.in_axes,) * len(args)

    def _size(self, args: tuple) -> int:
        if self.axis_size is not None:
            if isinstance(self.axis_size, jax.core.Tracer):
                raise TypeError(
                    f"{self!r}: axis_size is a traced value (an argument of a jitted or "
                    "vmapped function?); it fixes a shape, so it must be a Python int: close "
                    "over it instead of passing it as an argument"
                )
            return int(self.axis_size)
        for arg, axis in zip(args, self._axes(args), strict=True):
            if axis is not None:
                for leaf in jax.tree.leaves(arg):
                    return int(jnp.shape(leaf)[axis])
        raise TypeError(f"{self!r}: no argument is mapped; give axis_size")

    def _map(self, fn, n: int, args: tuple, *mapped: Any) -> Any:
        """``jax.vmap(fn)(*mapped, args)`` with the mapped values on axis 0."""
        axes = self._axes(args)
        try:
            with at_prefix((Ellipsis,)):
                return jax.vmap(fn, in_axes=(*(0,) * len(mapped), axes), axis_size=n)(*mapped, args)
        except AddressError as error:
            raise error.with_prefix((Ellipsis,)) from None

    def _trace(self, inner: Trace, args: tuple) -> VmapTrace:
        return VmapTrace(inner, None)

    def _batched_draw(self, key: jax.Array, args: tuple, n: int) -> Trace | None:
        """Repeats of a distribution with scalar parameters, drawn as one batched draw (see
        ``Distribution._simulate_repeats``); ``None`` where that does not apply."""
        if not isinstance(self.gen_fn, Distribution):
            return None
        try:
            with at_prefix((Ellipsis,)):
                repeats = self.gen_fn._simulate_repeats(key, args, self._axes(args), n)
        except AddressError as error:
            raise error.with_prefix((Ellipsis,)) from None
        return None if repeats is None else self._trace(repeats, args)

    def _simulate(self, key, args):
        n = self._size(args)
        batched = self._batched_draw(key, args, n)
        if batched is not None:
            return batched
        inner = self._map(
            lambda k, a: self.gen_fn._simulate(k, a), n, args, jax.random.split(key, n)
        )
        return self._trace(inner, args)

    def _assess(self, choices, args):
        n = self._size(args)
        check_every_index(choices, n, repr(self))
        given = batched_constraints(choices, n, repr(self))
        scores, retval = self._map(lambda c, a: self.gen_fn._assess(c, a), n, args, given)
        return jnp.sum(scores), retval

    def _generate(self, key, constraints, args):
        n = self._size(args)
        if isinstance(constraints, ChoiceMap) and constraints.is_empty():
            batched = self._batched_draw(key, args, n)  # so that it is simulate's draw
            if batched is not None:
                return batched, jnp.zeros(())
        given = batched_constraints(constraints, n, repr(self))
        inner, weights = self._map(
            lambda k, c, a: self.gen_fn._generate(k, c, a), n, args, jax.random.split(key, n), given
        )
        return self._trace(inner, args), jnp.sum(weights)

    def _check_same_size(self, trace: VmapTrace, n: int) -> None:
        old = int(jnp.shape(trace.inner.score)[0])
        if old != n:
            raise ValueError(
                f"{self!r}: update cannot change the number of repeats "
                f"({old} -> {n}); use generate for a new size"
            )

    def _update(self, key, trace, constraints, args):
        n = self._size(args)
        self._check_same_size(trace, n)
        given = batched_constraints(constraints, n, repr(self))
        inner, weights, discard = self._map(
            lambda k, t, c, a: self.gen_fn._update(k, t, c, a),
            n,
            args,
            jax.random.split(key, n),
            trace.inner,
            given,
        )
        return self._trace(inner, args), jnp.sum(weights), batched_discard(discard, constraints)

    def _sites(self, trace, args, query):
        def inner(t, a):
            return self.gen_fn._sites(t, a, query)

        return repeated_sites(inner, trace.inner, args, self._axes(args))

    def _regenerate(self, key, trace, selection, args):
        n = self._size(args)
        self._check_same_size(trace, n)
        template, flags = batched_selection(selection, n)
        inner, weights = self._map(
            lambda k, t, f, a: self.gen_fn._regenerate(k, t, rebuild_selection(template, f), a),
            n,
            args,
            jax.random.split(key, n),
            trace.inner,
            flags,
        )
        return self._trace(inner, args), jnp.sum(weights)
