"""What ``Vmap`` and ``Scan`` share: passing constraints, selections and discards to repeats.

Constraints reach a combinator in one of two forms: *batched* (every value has a leading axis
of length ``n``, as in ``trace.choices`` or ``{"y": data}``) or *per index* (integer keys,
``{3: {"y": 0.5}}``). The per-index form becomes batched ``Masked`` values, so one compiled
repeat handles constrained and free indices alike.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ppl._choicemap import EMPTY, LEAF, ChoiceMap, Masked
from ppl._errors import AddressError
from ppl._selection import Flagged, Selection, select


def _leading(value: Any) -> int | None:
    shape = jnp.shape(value)
    return shape[0] if shape else None


def batched_constraints(constraints: Any, n: int, owner: str) -> Any:
    """Constraints for ``n`` repeats, every leaf with a leading axis of length ``n``."""
    if isinstance(constraints, ChoiceMap) and constraints.is_empty():
        return EMPTY
    if isinstance(constraints, Masked):
        return constraints
    if isinstance(constraints, ChoiceMap) and constraints.is_indexed:
        entries = constraints._entries
        return entries[LEAF] if set(entries) == {LEAF} else ChoiceMap._raw(dict(entries))
    if isinstance(constraints, ChoiceMap) and any(isinstance(k, int) for k in constraints):
        return _masked_from_indices(constraints, n, owner)
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
    return constraints


def repeated_supports(inner_supports: Any, inner_trace: Any) -> ChoiceMap:
    """The supports of ``n`` repeats, keeping constraint parameters that are static.

    Parameters fixed by shapes (a categorical's number of categories) stay Python numbers, so
    finite supports can be enumerated; parameters computed from values are batched.
    """
    first = inner_supports(jax.tree.map(lambda v: v[0], inner_trace))
    batched = jax.vmap(inner_supports)(inner_trace)
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
    """``assess`` needs every repeat: per-index choices must name all ``n`` indices."""
    if isinstance(constraints, ChoiceMap) and not constraints.is_indexed:
        given = {k for k in constraints if isinstance(k, int)}
        missing = sorted(set(range(n)) - given)
        if given and missing:
            raise AddressError(
                f"assess needs a value for every choice, but {owner} has no choices for "
                f"indices {missing[:5]}{'...' if len(missing) > 5 else ''} at {{addr}}",
                (),
            )


def _masked_from_indices(constraints: ChoiceMap, n: int, owner: str) -> Any:
    values: dict[tuple, list] = {}
    for key, child in constraints._entries.items():
        if not isinstance(key, int):
            raise AddressError(
                f"{owner}: constraints at {{addr}} mix per-index keys with the key {key!r}; "
                "give either one batched value per address or per-index maps",
                (key,),
            )
        if not 0 <= key < n:
            raise AddressError(
                f"constraint on {{addr}}, but {owner} has only indices 0..{n - 1}", (key,)
            )
        for path, leaf in _leaves(child):
            values.setdefault(path, []).append((key, jnp.asarray(leaf)))
    masked = {}
    for path, items in values.items():
        shape = items[0][1].shape
        index = jnp.asarray([i for i, _ in items])
        stacked = jnp.stack([v for _, v in items])
        if any(v.shape != shape for _, v in items):
            raise AddressError(
                f"per-index values at {{addr}} differ in shape in {owner}", (Ellipsis, *path)
            )
        full = jnp.zeros((n, *shape), stacked.dtype).at[index].set(stacked)
        flag = jnp.zeros(n, bool).at[index].set(True)
        masked[path] = Masked(full, flag)
    if () in masked:
        return masked[()]
    return _build(masked)


def _build(flat: dict) -> ChoiceMap:
    cm = ChoiceMap._raw({})
    for path, leaf in flat.items():
        node = cm
        for component in path[:-1]:
            nxt = node._entries.get(component)
            if nxt is None:
                nxt = node._entries[component] = ChoiceMap._raw({})
            node = nxt
        node._entries[path[-1]] = leaf
    return cm


def batched_discard(discard: Any, constraints: Any) -> Any:
    """The discard of ``n`` repeats, in the form the constraints were given."""
    if isinstance(discard, ChoiceMap) and discard.is_empty():
        return EMPTY
    if isinstance(constraints, ChoiceMap) and any(isinstance(k, int) for k in constraints):
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
