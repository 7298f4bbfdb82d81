"""Enumeration along one flat axis of paths: ``enum`` without a ``vmap`` per enumerated draw.

``enum`` sums the rest of the program over the values of a draw. Done as
``jax.vmap(continuation)(values)``, a program with ``n`` enumerated draws nests ``n`` ``vmap``
levels, and every equation after the ``i``-th draw is batched through ``i`` of them: tracing
grows as ``n²``. When every draw that needs the rest of the program is a vectorised ``enum``
(the other continuation strategies, ``mvd``, sequential ``enum`` and leave-one-out
baselines, still take the nested path), ``PathsMachine`` runs the program *once*, forward,
over every path of the enumeration at a time:

- a value that depends on enumerated draws is ``Paths``: one row per path it depends on;
- an elementwise equation with such operands runs on the rows as they are, a call is
  evaluated equation by equation, any other equation runs under one ``vmap`` over the rows;
- an enumerated draw with ``M`` values turns ``P`` paths into ``M·P`` (path ``m·P + r`` is
  path ``r`` with the draw's ``m``-th value: the newest draw varies slowest, so a value of
  fewer paths is lifted by tiling its rows), and records the probabilities of its values and
  the score-function terms gathered before it;
- at the end the value and surrogate are summed back draw by draw, from the last, exactly as
  nested ``enum`` would (``weighted_sum``).

Each equation is batched once, and tracing grows linearly in the number of draws. Sums over
paths (a draw's values at the end; the derivative of a tiling or of a value broadcast to every
path) are taken with one axis per draw: summed over one axis of ``[M, P]``, XLA:CPU hands them
to its YNNPACK fusions, which compile several times slower and fail past ~2^36 paths.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import ClosedJaxpr

from ppl.adev._estimators import Accumulators, Baseline, Context, enum, weighted_sum
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

    One axis rather than one per draw: XLA:CPU's code for a fusion of rank-``n`` arrays grows
    with ``n`` (a fusion lifting a value through ``n`` draws would cost ``n²``). Reshaped to
    one axis per draw only to sum over paths (see the module's text). Deliberately not a
    pytree: it never reaches JAX, which would take it for one value.
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

    new = to[: len(to) - len(dims)]
    return jax.tree.map(lambda x: _tile(x, new, dims), value)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _tile(x: jax.Array, new: tuple, dims: tuple) -> jax.Array:
    """``x`` (rows on some paths) repeated as a block for every value of the draws ``new``."""
    copies = math.prod(new)
    return jnp.broadcast_to(x, (copies, *x.shape)).reshape(copies * x.shape[0], *x.shape[1:])


def _tile_forward(x, new, dims):
    return _tile(x, new, dims), None


def _tile_backward(new, dims, _, cotangent):
    # Summed with one axis per draw (see ``_on``), reshaped back to rows.
    rest = cotangent.shape[1:]
    split = cotangent.reshape(*new, *dims, *rest)
    total = jnp.sum(split, axis=tuple(range(len(new))))
    return (total.reshape(math.prod(dims), *rest),)


_tile.defvjp(_tile_forward, _tile_backward)


def _on(value: Any, dims: tuple) -> Any:
    """A ``Paths`` or plain value's leaves on the paths ``dims``."""
    if isinstance(value, Paths):
        return _lift(value.value, value.dims, dims)
    # Through one axis per draw: its derivative is a sum over the paths (see the module's text).
    count = math.prod(dims)
    return jax.tree.map(
        lambda x: jnp.broadcast_to(x, dims + jnp.shape(x)).reshape(count, *jnp.shape(x)), value
    )


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
    """One enumerated draw: the probabilities ``[M, *paths]`` of its ``M`` values on each of
    the paths before it, and the terms gathered before it."""

    p: jax.Array
    acc: Any  # Accumulators, or Paths of them

    @property
    def paths(self) -> tuple[int, ...]:
        """The paths before the draw."""
        return self.p.shape[1:]


class PathsMachine(Machine):
    """The ADEV interpreter over every path of the enumeration at once (see the module's text)."""

    def __init__(self, run: Run, frames: list):
        super().__init__(run, frames, local=False)
        self.dims: tuple[int, ...] = ()
        self.levels: list[_Level] = []

    def add(self, terms: Any) -> None:
        acc, dims = per_path(lambda a, t: a + t, self.acc, terms)
        self.acc = _wrap(acc, dims)

    def _apply(self, eqn: Any, invals: list) -> list:
        if not any(isinstance(v, Paths) for v in invals):
            return _bind(eqn, invals)
        dims = _dims(invals)
        if eqn.primitive in _ELEMENTWISE:
            shapes = {
                jnp.shape(v.value)[1:] if isinstance(v, Paths) else jnp.shape(v) for v in invals
            }
            if len(shapes) == 1:
                return [Paths(out, dims) for out in _bind(eqn, [_on(v, dims) for v in invals])]
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

        def support(*operands):
            site, guide = unpack(list(operands), eqn.params)
            estimator = self.run_info.estimator_for(site, guide)
            assert isinstance(estimator, enum), estimator  # as checked by ``interpret``
            return estimator.values(site)

        def log_prob(x, *operands):
            return jnp.sum(unpack(list(operands), eqn.params)[0].log_prob(x))

        # [M, P', ...]: on the paths its arguments depend on (the values of a finite support
        # depend on the arguments' shapes only: made in this layout, not transposed to it, XLA
        # sees them as constants)
        values, dims = per_path(support, *invals, out_axis=1)
        before = self.dims
        size = values.shape[0]
        self.dims = (size, *before)
        rest = values.shape[1 + bool(dims) :]
        # The value on the paths before: the same whatever the draws its arguments do not
        # depend on (``dims`` is a suffix of ``before``).
        unseen = (1,) * (len(before) - len(dims))
        spread = jnp.broadcast_to(values.reshape((size, *unseen, *dims, *rest)), self.dims + rest)
        x = Paths(spread.reshape(math.prod(self.dims), *rest), self.dims)
        log_p, _ = per_path(log_prob, x, *invals)
        self.levels.append(_Level(jnp.exp(log_p).reshape(self.dims), self.acc))
        self.acc = Accumulators.zeros()
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
        (v, s), dims = per_path(lambda acc, v: (v, acc.finish(v, v)), self.acc, value)
        for level in reversed(self.levels):
            # Summed over the draw's values, with one axis per draw (see the module's text): the
            # paths before it remain.
            on = level.p.shape
            v, s = (_on(_wrap(x, dims), on) for x in (v, s))
            v, s = (x.reshape(on + x.shape[1:]) for x in (v, s))
            v, s = weighted_sum(level.p, v, s)
            if level.paths:
                count = math.prod(level.paths)
                v, s = (x.reshape(count, *x.shape[len(level.paths) :]) for x in (v, s))
            (v, s), dims = per_path(
                lambda acc, v, s: (v, acc.finish(v, s)),
                level.acc,
                _wrap(v, level.paths),
                _wrap(s, level.paths),
            )
        assert not dims
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
    when the only draws that need the rest of the program are vectorised ``enum``s."""
    needing = [
        estimator
        for params in _samples_in(closed.jaxpr)
        if (estimator := run.static_estimator(params)) is not None and estimator.needs_continuation
    ]
    if needing and all(isinstance(e, enum) and e.vectorized for e in needing):
        return PathsMachine(run, [_frame(closed, args)]).execute()
    return interpret_nested(run, closed, args)
