"""Branching draws along one flat axis of paths: ``enum`` and ``mvd`` without a ``vmap`` per draw.

``enum`` sums the rest of the program over the values of a draw; ``mvd`` runs it at the draw
and at the draw's coupled ``x⁺``/``x⁻`` (``Estimator.branches``), and combines the results
linearly (``Estimator.fold``). Done as ``jax.vmap(continuation)(values)``, a program with
``n`` such draws nests ``n`` ``vmap`` levels, and every equation after the ``i``-th draw is
batched through ``i`` of them: tracing grows as ``n²``. When every draw that needs the rest
of the program branches so (vectorised ``enum``, ``mvd``; sequential ``enum`` and
leave-one-out baselines still take the nested path), ``PathsMachine`` runs the program
*once*, forward, over every path at a time:

- a value that depends on branching draws is ``Paths``: one row per path it depends on;
- an elementwise equation with such operands runs on the rows as they are, a call is
  evaluated equation by equation, any other equation runs under one ``vmap`` over the rows;
- a draw with ``M`` branches turns ``P`` paths into ``M·P`` (path ``m·P + r`` is path ``r``
  with the draw's ``m``-th value: the newest draw varies slowest, so a value of fewer paths
  is lifted by tiling its rows), and records the coefficients of its branches and the
  score-function terms gathered before it;
- at the end the value and surrogate are folded back draw by draw, from the last, exactly as
  the nested interpreter would; the score-function terms (a scalar per path) are added and
  applied elementwise, and where none were gathered nothing is applied.

Each equation is batched once, and tracing grows linearly in the number of draws. Paths stay
one axis, split in two (``[M, P]``) only where a draw's values are summed or a value is tiled
for newer draws: XLA:CPU's code for arrays of one axis per draw grows with their rank, and so
the compile time with the square of the number of draws.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import ClosedJaxpr

from ppl.adev._estimators import Accumulators, Baseline, Context
from ppl.adev._interpreter import (
    _CALLS,
    Machine,
    Run,
    _bind,
    _frame,
    _samples_in,
    _Unrolled,
    interpret_nested,
)
from ppl.adev._primitive import unpack


@dataclasses.dataclass(frozen=True)
class Paths:
    """A value on the paths ``dims`` (the sizes of the supports of the enumerated draws it
    depends on, the newest first): every leaf of ``value`` has a leading axis of
    ``prod(dims)`` rows, row-major in ``dims``.

    One axis rather than one per draw (see the module's text). Deliberately not a pytree: it
    never reaches JAX, which would take it for one value.
    """

    value: Any
    dims: tuple[int, ...]


def _dims(values: Any) -> tuple[int, ...]:
    """The paths of the value that depends on the most draws (the others' are a suffix)."""
    return max((v.dims for v in values if isinstance(v, Paths)), key=len, default=())


def _lift(value: Any, dims: tuple, to: tuple) -> Any:
    """Leaves on the paths ``dims``, on the paths ``to`` (of which ``dims`` is a suffix: the
    value is the same whatever the newer draws)."""
    if dims == to:
        return value

    copies = math.prod(to) // math.prod(dims)

    def tile(x):  # repeated as a block for every value of the newer draws
        return jnp.broadcast_to(x, (copies, *x.shape)).reshape(copies * x.shape[0], *x.shape[1:])

    return jax.tree.map(tile, value)


def _on(value: Any, dims: tuple) -> Any:
    """A ``Paths`` or plain value's leaves on the paths ``dims``."""
    if isinstance(value, Paths):
        return _lift(value.value, value.dims, dims)
    count = math.prod(dims)
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (count, *jnp.shape(x))), value)


def _wrap(value: Any, dims: tuple) -> Any:
    return Paths(value, dims) if dims else value


def per_path(fn: Any, *values: Any, out_axis: int = 0) -> tuple[Any, tuple]:
    """``fn`` of each path's values (``Paths`` or plain, the same on every path): its outputs,
    with an axis of paths (``out_axis``) unless no value is ``Paths``, and those paths.

    One ``vmap``, however many draws the paths come from."""
    dims = _dims(values)
    if not dims:
        return fn(*values), ()
    lifted = [_lift(v.value, v.dims, dims) if isinstance(v, Paths) else v for v in values]
    axes = [0 if isinstance(v, Paths) else None for v in values]
    return jax.vmap(fn, in_axes=axes, out_axes=out_axis)(*lifted), dims


def per_path_elementwise(fn: Any, *values: Any) -> Any:
    """``per_path(fn, *values)`` wrapped, without a ``vmap`` where it is not needed: when every
    leaf, on the common paths, has the same shape, ``fn`` (which must act elementwise, as
    ``+`` of scalar accumulators does) runs on the rows as they are."""
    dims = _dims(values)
    if not dims:
        return fn(*values)
    lifted = [_on(v, dims) for v in values]
    if len({jnp.shape(leaf) for leaf in jax.tree.leaves(lifted)}) == 1:
        return Paths(fn(*lifted), dims)
    out, dims = per_path(fn, *values)
    return Paths(out, dims)


def _finished(acc: Any, value: Any, surrogate: Any) -> tuple[Any, Any]:
    """``(value, acc.finish(value, surrogate))`` on paths; ``acc`` ``None`` (no terms) adds
    nothing."""
    if acc is None:
        return value, surrogate
    return value, per_path_elementwise(lambda a, v, s: a.finish(v, s), acc, value, surrogate)


class _Collector(Context):
    """The context of one path's local draw: its score-function terms are returned, not added
    to the machine's (they are per path)."""

    def __init__(self, machine: Machine):
        self.machine, self.acc = machine, Accumulators.zeros()

    def add(self, terms: Accumulators) -> None:
        self.acc = self.acc + terms

    def state(self, address: tuple) -> jax.Array | None:
        return self.machine.state(address)

    def track(self, address: tuple, baseline: Baseline) -> None:
        self.machine.track(address, baseline)


@dataclasses.dataclass(frozen=True)
class _Level:
    """One branching draw: the coefficients ``[M, P]`` of its ``M`` values on each of the
    paths ``paths`` before it, how they combine the results at the values (its estimator's
    ``fold``), and the terms gathered before it."""

    coefficients: jax.Array
    fold: Any
    paths: tuple[int, ...]
    acc: Any  # Accumulators, Paths of them, or None (no terms)


class PathsMachine(Machine):
    """The ADEV interpreter over every path of the enumeration at once (see the module's text)."""

    def __init__(self, run: Run, frames: list):
        super().__init__(run, frames, local=False)
        self.dims: tuple[int, ...] = ()
        self.levels: list[_Level] = []
        self.acc: Any = None  # no terms gathered since the last branching draw

    def add(self, terms: Any) -> None:
        if self.acc is None:
            self.acc = terms
        else:
            self.acc = per_path_elementwise(lambda a, t: a + t, self.acc, terms)

    def _apply(self, eqn: Any, invals: list) -> list:
        if not any(isinstance(v, Paths) for v in invals):
            return _bind(eqn, invals)
        dims = _dims(invals)
        if eqn.primitive in _ELEMENTWISE:
            shapes = {
                jnp.shape(v.value)[1:] if isinstance(v, Paths) else jnp.shape(v) for v in invals
            }
            if len(shapes) == 1:
                # a plain scalar operand of a binary operation broadcasts as it is
                keep = shapes == {()} and eqn.primitive in _SCALAR_OPERANDS
                operands = [
                    v if keep and not isinstance(v, Paths) else _on(v, dims) for v in invals
                ]
                return [Paths(out, dims) for out in _bind(eqn, operands)]
        outs, dims = per_path(lambda *xs: _bind(eqn, list(xs)), *invals)
        return [Paths(out, dims) for out in outs]

    def _sample(self, frame: Any, eqn: Any, invals: list) -> None:
        static = self.run_info.static_estimator(eqn.params)
        if static is None or not static.needs_continuation:

            def local(*operands):
                site, guide = unpack(list(operands), eqn.params)
                collector = _Collector(self)
                x = self.run_info.estimator_for(site, guide).local(site, collector)
                return x, collector.acc

            (x, terms), dims = per_path(local, *invals)
            self.add(_wrap(terms, dims))
            frame.receive([_wrap(x, dims)])
            return None

        assert static.branching, static  # as checked by ``interpret``

        def branches(*operands):
            site, guide = unpack(list(operands), eqn.params)
            return self.run_info.estimator_for(site, guide).branches(site)

        # [M, P', ...]: on the paths its arguments depend on (made in this layout, not
        # transposed to it: the values of a finite support, which depend on the arguments'
        # shapes only, XLA then sees as constants)
        (values, coefficients), dims = per_path(branches, *invals, out_axis=1)
        before = self.dims
        size = values.shape[0]
        self.dims = (size, *before)
        rest = values.shape[1 + bool(dims) :]
        # On the paths before: the same whatever the ``unseen`` draws its arguments do not
        # depend on (``dims`` is a suffix of ``before``), so tiled for each of their values.
        seen = math.prod(dims)
        unseen = math.prod(before) // seen

        def spread(a, rest):  # [M, unseen * seen, *rest]
            if unseen == 1:
                return a.reshape(size, seen, *rest)  # no operation when it has that shape
            tiled = jnp.broadcast_to(a.reshape(size, 1, seen, *rest), (size, unseen, seen, *rest))
            return tiled.reshape(size, unseen * seen, *rest)

        rows = spread(values, rest) if unseen > 1 else values
        x = Paths(rows.reshape(math.prod(self.dims), *rest), self.dims)
        self.levels.append(_Level(spread(coefficients, ()), static.fold, before, self.acc))
        self.acc = None
        frame.receive([x])
        return None

    def _inlined(self, eqn: Any, invals: list) -> bool:
        return eqn.primitive.name in _CALLS and any(isinstance(v, Paths) for v in invals)

    def _local_structured(self, eqn: Any, invals: list) -> tuple[list, Any]:
        if not any(isinstance(v, Paths) for v in invals):
            return super()._local_structured(eqn, invals)
        base = super()._local_structured
        (outs, acc), dims = per_path(lambda *xs: base(eqn, list(xs)), *invals)
        return [Paths(out, dims) for out in outs], Paths(acc, dims)

    def _unrolled(self, body, consts, carry, xs, length, reverse) -> _Unrolled:
        return _Unrolled(body, consts, carry, xs, length, reverse, index=_row, stack=_stack)

    def _finish(self, outs: list) -> tuple[jax.Array, jax.Array]:
        (value,) = outs
        v, s = _finished(self.acc, value, value)
        for level in reversed(self.levels):
            # Summed over the draw's values: the paths before it remain.
            size, count = level.coefficients.shape
            on = (size, *level.paths)
            v, s = (_on(x, on) for x in (v, s))
            v, s = (x.reshape(size, count, *x.shape[1:]) for x in (v, s))
            v, s = level.fold(level.coefficients, v, s)
            if not level.paths:
                v, s = v[0], s[0]
            v, s = _finished(level.acc, _wrap(v, level.paths), _wrap(s, level.paths))
        assert not isinstance(v, Paths) and not isinstance(s, Paths)
        return v, s


_ELEMENTWISE = {
    getattr(jax.lax, f"{name}_p")
    for name in [
        "abs",
        "add",
        "and",
        "convert_element_type",
        "cos",
        "div",
        "eq",
        "exp",
        "exp2",
        "expm1",
        "ge",
        "gt",
        "integer_pow",
        "le",
        "log",
        "log1p",
        "logistic",
        "lt",
        "max",
        "min",
        "mul",
        "ne",
        "neg",
        "not",
        "or",
        "pow",
        "rem",
        "rsqrt",
        "select_n",
        "sign",
        "sin",
        "sqrt",
        "sub",
        "tanh",
        "xor",
    ]
}


# Binary operations that take a rank-0 operand beside an array.
_SCALAR_OPERANDS = {
    getattr(jax.lax, f"{name}_p")
    for name in [
        "add",
        "sub",
        "mul",
        "div",
        "max",
        "min",
        "pow",
        "rem",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
    ]
}


def _row(x: Any, t: int) -> Any:
    if isinstance(x, Paths):
        return Paths(x.value[:, t], x.dims)
    return x[t]


def _stack(rows: list) -> Any:
    dims = _dims(rows)
    if not dims:
        return jnp.stack(rows)
    return Paths(jnp.stack([_on(row, dims) for row in rows], axis=1), dims)


def interpret(run: Run, closed: ClosedJaxpr, args: list) -> tuple[jax.Array, jax.Array]:
    """``(v, s)`` of a traced integrand (one output) at ``args``: over a flat axis of paths
    when the only draws that need the rest of the program branch (vectorised ``enum``,
    ``mvd``)."""
    needing = [
        estimator
        for params in _samples_in(closed.jaxpr)
        if (estimator := run.static_estimator(params)) is not None and estimator.needs_continuation
    ]
    if needing and all(e.branching for e in needing):
        return PathsMachine(run, [_frame(closed, args)]).execute()
    return interpret_nested(run, closed, args)
