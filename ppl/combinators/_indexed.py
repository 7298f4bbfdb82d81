"""What ``Vmap`` and ``Scan`` share: passing constraints, selections and discards to repeats.

Constraints reach a combinator in one of two forms: *batched* (every value has a leading axis
of length ``n``, as in ``trace.choices`` or ``{"y": data}``) or *per index* (integer keys,
``{3: {"y": 0.5}}``). The per-index form becomes batched ``Masked`` values, so one compiled
repeat handles constrained and free indices alike.

In nested combinators each level converts only its own axis. Per-index constraints of an
enclosing combinator reach an inner one as ``Masked`` values with one (scalar) flag per
enclosing repeat, and may come in both forms at once: ``select(("v", 2, "s"), ("v", 0, "s",
1))`` gives the chain ``"s"`` of repeat 2 batched and that of repeat 0 per step. The inner
combinator then merges its batched part with its per-index part.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ppl._choicemap import EMPTY, LEAF, ChoiceMap, Masked
from ppl._errors import AddressError
from ppl._interface import Trace
from ppl._selection import Flagged, Selection, select


def _leading(value: Any) -> int | None:
    shape = jnp.shape(value)
    return shape[0] if shape else None


def batched_constraints(constraints: Any, n: int, owner: str) -> Any:
    """Constraints for ``n`` repeats: every leaf an array with a leading axis of length ``n``,
    or a ``Masked`` whose value has that axis and whose flag has shape ``(n,)``."""
    if isinstance(constraints, ChoiceMap) and constraints.is_empty():
        return EMPTY
    if isinstance(constraints, Masked):
        return _per_repeat(constraints, n)
    if isinstance(constraints, ChoiceMap) and constraints.is_indexed:
        entries = constraints._entries
        return entries[LEAF] if set(entries) == {LEAF} else ChoiceMap._raw(dict(entries))
    if isinstance(constraints, ChoiceMap) and any(isinstance(k, int) for k in constraints):
        entries = constraints._entries
        indices = {k: v for k, v in entries.items() if isinstance(k, int)}
        rest = {k: v for k, v in entries.items() if not isinstance(k, int)}
        per_index = _masked_from_indices(indices, n, owner)
        if not rest:
            return per_index
        for key, child in rest.items():
            if not all(isinstance(leaf, Masked) for _, leaf in _leaves(child)):
                raise AddressError(
                    f"{owner}: constraints at {{addr}} mix per-index keys with the key "
                    f"{key!r}; give either one batched value per address or per-index maps",
                    () if key is LEAF else (key,),
                )
        # Both forms, from an enclosing combinator's per-index constraints (its repeats gave
        # this combinator's choices in different forms): merge them.
        batched = rest[LEAF] if set(rest) == {LEAF} else ChoiceMap._raw(rest)
        return _merge(batched_constraints(batched, n, owner), per_index)
    for path, leaf in _leaves(constraints):
        if isinstance(leaf, Masked):
            leaf = leaf.value
        if _leading(leaf) != n:
            raise AddressError(
                f"{owner} has {n} repeats, so the value at {{addr}} needs a leading axis of "
                f"length {n}, but has shape {tuple(jnp.shape(leaf))}; give one value per "
                "repeat, or constrain single repeats by index ({3: ...})",
                (Ellipsis, *path),
            )
    return jax.tree.map(
        lambda leaf: _per_repeat(leaf, n) if isinstance(leaf, Masked) else leaf,
        constraints,
        is_leaf=lambda leaf: isinstance(leaf, Masked),
    )


def _per_repeat(masked: Masked, n: int) -> Masked:
    """A mask with one flag per repeat.

    A scalar flag comes from an enclosing combinator's per-index constraints (one flag for
    all of this combinator's repeats in that enclosing repeat): it holds for every repeat.
    """
    flag = jnp.asarray(masked.flag)
    if flag.ndim == 0:
        flag = jnp.broadcast_to(flag, (n,))
    return Masked(masked.value, flag)


def _merge(batched: Any, per_index: Any) -> Any:
    """One tree from the batched and the per-index part of a combinator's constraints.

    Their flags never overlap (each enclosing repeat gave one form). Where one part holds a
    value and the other a map below it, the address is an inner combinator: the value goes
    under ``LEAF`` and that combinator merges them in turn.
    """
    if _is_missing(batched):
        return per_index
    if _is_missing(per_index):
        return batched
    if isinstance(batched, ChoiceMap) or isinstance(per_index, ChoiceMap):
        left, right = (_as_map(t) for t in (batched, per_index))
        keys = list(dict.fromkeys([*left._entries, *right._entries]))
        return ChoiceMap._raw(
            {k: _merge(left._entries.get(k, EMPTY), right._entries.get(k, EMPTY)) for k in keys}
        )
    flag = jnp.asarray(per_index.flag)
    given = flag.reshape(flag.shape + (1,) * (jnp.ndim(per_index.value) - flag.ndim))
    value = jnp.where(given, per_index.value, batched.value)
    return Masked(value, jnp.logical_or(flag, batched.flag))


def _is_missing(tree: Any) -> bool:
    return isinstance(tree, ChoiceMap) and tree.is_empty()


def _as_map(tree: Any) -> ChoiceMap:
    return tree if isinstance(tree, ChoiceMap) else ChoiceMap._raw({LEAF: tree})


@dataclasses.dataclass(frozen=True)
class IndexedTrace(Trace):
    """A trace of repeated calls (a plate's repeats, a chain's steps): the inner traces stacked
    along a leading axis, each choice below an index."""

    inner: Trace
    args: tuple | None  # None when nested (see ``GenerativeFunction._with_args``)

    @property
    def score(self) -> jax.Array:  # type: ignore[override]
        """The sum of the inner scores (computed, not held: one output fewer per trace)."""
        inner = self.inner.score
        return jnp.sum(inner, axis=-1) if jnp.ndim(inner) else inner  # no choices: 0

    @property
    def choices(self) -> ChoiceMap:
        return ChoiceMap.indexed(self.inner.choices)

    @property
    def site_scores(self) -> ChoiceMap:
        return ChoiceMap.indexed(self.inner.site_scores)

    def _held_scores(self) -> tuple[jax.Array, ...]:
        return self.inner._held_scores()

    def _with_held_scores(self, scores: tuple) -> IndexedTrace:
        return dataclasses.replace(self, inner=self.inner._with_held_scores(scores))


def repeated_sites(inner_sites: Any, inner_trace: Any, args: tuple, axes: tuple) -> ChoiceMap:
    """What ``inner_sites(trace, args)`` gives at every choice of ``n`` repeats (supports,
    pointwise scores), keeping the parts that are static.

    ``args`` are the repeats' arguments, mapped along ``axes`` (``None``: shared). Support
    parameters fixed by shapes (a categorical's number of categories) stay Python numbers, so
    finite supports can be enumerated; parameters computed from values are batched.
    """

    def first_of(arg: Any, axis: int | None) -> Any:
        if axis is None:
            return arg
        return jax.tree.map(lambda v: jnp.take(v, 0, axis=axis), arg)

    first_args = tuple(first_of(a, axis) for a, axis in zip(args, axes, strict=True))
    first = inner_sites(jax.tree.map(lambda v: v[0], inner_trace), first_args)
    batched = jax.vmap(inner_sites, in_axes=(0, axes))(inner_trace, args)
    merged = jax.tree.map(
        lambda a, b: a if isinstance(a, int | float | bool) else b, first, batched
    )
    return ChoiceMap.indexed(merged)


def _leaves(tree: Any) -> list[tuple[tuple, Any]]:
    if not isinstance(tree, ChoiceMap):
        return [((), tree)]
    out = []
    for key, child in tree._entries.items():
        head = () if key is LEAF else (key,)
        out += [(head + p, v) for p, v in _leaves(child)]
    return out


def check_every_index(constraints: Any, n: int, owner: str) -> None:
    """``assess`` needs every repeat: per-index choices must name all ``n`` indices.

    Where an enclosing combinator's repeats gave these choices partly batched, a repeat
    missing from both forms scores NaN instead (see ``Distribution._assess``).
    """
    if isinstance(constraints, ChoiceMap) and not constraints.is_indexed:
        if not all(isinstance(k, int) for k in constraints):
            return
        given = set(constraints)
        missing = sorted(set(range(n)) - given)
        if given and missing:
            raise AddressError(
                f"assess needs a value for every choice, but {owner} has no choices for "
                f"indices {missing[:5]}{'...' if len(missing) > 5 else ''} at {{addr}}",
                (),
            )


def _masked_from_indices(indices: dict, n: int, owner: str) -> Any:
    values: dict[tuple, list] = {}
    for key, child in indices.items():
        if not 0 <= key < n:
            raise AddressError(
                f"constraint on {{addr}}, but {owner} has only indices 0..{n - 1}", (key,)
            )
        for path, leaf in _leaves(child):
            values.setdefault(path, []).append((key, leaf))
    masked = {}
    for path, items in values.items():
        # A leaf is a value, or (below an enclosing combinator's per-index constraints) a
        # Masked value with one flag for this repeat of the enclosing combinator.
        given = [v.value if isinstance(v, Masked) else jnp.asarray(v) for _, v in items]
        flags = [jnp.asarray(v.flag) if isinstance(v, Masked) else True for _, v in items]
        shape = given[0].shape
        if any(v.shape != shape for v in given):
            raise AddressError(
                f"per-index values at {{addr}} differ in shape in {owner}", (Ellipsis, *path)
            )
        flag_shape = jnp.broadcast_shapes(*(jnp.shape(f) for f in flags))
        index = jnp.asarray([i for i, _ in items])
        full = jnp.zeros((n, *shape), given[0].dtype).at[index].set(jnp.stack(given))
        stacked = jnp.stack([jnp.broadcast_to(f, flag_shape) for f in flags])
        flag = jnp.zeros((n, *flag_shape), bool).at[index].set(stacked)
        masked[path] = Masked(full, flag)
    return _build(masked)


def _build(flat: dict) -> Any:
    """A tree from ``{path: leaf}``. A path that is also a prefix of others keeps its leaf at
    ``LEAF``: an inner combinator whose repeats gave it both batched and per-index values."""
    root = ChoiceMap._raw({})
    for path, leaf in flat.items():
        node = root
        for component in path:
            child = node._entries.get(component)
            if not isinstance(child, ChoiceMap):
                child = ChoiceMap._raw({} if child is None else {LEAF: child})
                node._entries[component] = child
            node = child
        node._entries[LEAF] = leaf
    return _collapse(root)


def _collapse(tree: Any) -> Any:
    """Nodes that hold only a ``LEAF`` become that leaf."""
    if not isinstance(tree, ChoiceMap):
        return tree
    if set(tree._entries) == {LEAF}:
        return tree._entries[LEAF]
    return ChoiceMap._raw({k: _collapse(v) for k, v in tree._entries.items()})


def batched_discard(discard: Any, constraints: Any) -> Any:
    """The discard of ``n`` repeats, in the form the constraints were given.

    Constraints in both forms come from an enclosing combinator, which picks each of its
    repeats' discards out of the batched one.
    """
    if isinstance(discard, ChoiceMap) and discard.is_empty():
        return EMPTY
    if (
        isinstance(constraints, ChoiceMap)
        and not constraints.is_empty()
        and all(isinstance(k, int) for k in constraints)
    ):
        out = {}
        for i, given in constraints._entries.items():
            sliced = jax.tree.map(lambda v, i=i: v[i], discard)
            if isinstance(given, ChoiceMap):
                sliced = sliced.filter(select(*given.leaf_paths()))
            out[i] = sliced
        return ChoiceMap._raw(out)
    return ChoiceMap.indexed(discard)


def rebuild_selection(template: Selection, flags: Any) -> Selection:
    """Inside one repeat: the ``Flagged`` selection with this repeat's flags."""
    if flags is None:
        return template
    assert isinstance(template, Flagged)
    return Flagged(tuple(flags), template.parts)
