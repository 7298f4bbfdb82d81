"""``Selection``: sets of addresses.

A selection answers, one address component at a time, which random choices it contains:
``step(component)`` gives the selection of the sub-tree below that component and
``leaf_flag()`` says whether a choice ending here is selected. ``...`` in a path is a wildcard
that matches any one component (a combinator's index, or the keys of a Python loop).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ppl._address import show, to_path


class Selection:
    """Base class of selections; build them with ``select``, ``|``, ``&`` and ``~``.

    Example:
        >>> s = select("slope", ("y", ...))
        >>> ("y", 3) in s, "noise" in s, "noise" in ~s
        (True, False, True)
    """

    def step(self, component: Any) -> Selection:
        raise NotImplementedError

    def leaf_flag(self) -> Any:
        """Whether a choice at exactly this point is selected (a bool, or a traced bool)."""
        raise NotImplementedError

    def is_empty(self) -> bool:
        """True only if certainly nothing below is selected."""
        raise NotImplementedError

    def explicit_keys(self) -> set:
        """Components named explicitly at this level (used by combinators for indices)."""
        raise NotImplementedError

    def __contains__(self, address: Any) -> bool:
        sel = self
        for component in to_path(address):
            sel = sel.step(component)
        return bool(sel.leaf_flag())

    def __or__(self, other: Selection) -> Selection:
        return _Union(self, as_selection(other))

    def __and__(self, other: Selection) -> Selection:
        return _Intersection(self, as_selection(other))

    def __invert__(self) -> Selection:
        return _Complement(self)


@dataclasses.dataclass(frozen=True, eq=True)
class _All(Selection):
    def __repr__(self) -> str:
        return "all_addresses()"

    def step(self, component):
        return self

    def leaf_flag(self):
        return True

    def is_empty(self):
        return False

    def explicit_keys(self):
        return set()


@dataclasses.dataclass(frozen=True, eq=True)
class _None(Selection):
    def __repr__(self) -> str:
        return "no_addresses()"

    def step(self, component):
        return self

    def leaf_flag(self):
        return False

    def is_empty(self):
        return True

    def explicit_keys(self):
        return set()


ALL = _All()
NONE = _None()


@dataclasses.dataclass(frozen=True, eq=True)
class _Trie(Selection):
    node: dict

    def __hash__(self) -> int:  # a selection can key a mapping (``with_estimators``)
        return hash(_frozen(self.node))

    def __repr__(self) -> str:
        return f"select({', '.join(show(path) for path in _paths(self.node))})"

    def step(self, component):
        matches = []
        if component in self.node and component is not _ANY_INDEX:
            matches.append(self.node[component])
        if Ellipsis in self.node:
            matches.append(self.node[Ellipsis])
        if any(m is True for m in matches):
            return ALL
        if not matches:
            return NONE
        merged: dict = {}
        for m in matches:
            _merge(merged, m)
        return _Trie(merged)

    def leaf_flag(self):
        return False

    def is_empty(self):
        return not self.node

    def explicit_keys(self):
        return {k for k in self.node if k is not Ellipsis}


def _paths(node: dict, prefix: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    for key, value in node.items():
        out.extend([(*prefix, key)] if value is True else _paths(value, (*prefix, key)))
    return out


def _frozen(node: dict) -> frozenset:
    return frozenset((k, v if v is True else _frozen(v)) for k, v in node.items())


def _merge(into: dict, other: dict) -> None:
    for key, value in other.items():
        if into.get(key) is True or value is True:
            into[key] = True
        elif key in into:
            merged = dict(into[key])
            _merge(merged, value)
            into[key] = merged
        else:
            into[key] = value


@dataclasses.dataclass(frozen=True, eq=True)
class _Complement(Selection):
    inner: Selection

    def __repr__(self) -> str:
        return f"~{self.inner!r}"

    def step(self, component):
        return _Complement(self.inner.step(component))

    def leaf_flag(self):
        flag = self.inner.leaf_flag()
        return (not flag) if isinstance(flag, bool) else jnp.logical_not(flag)

    def is_empty(self):
        return isinstance(self.inner, _All)

    def explicit_keys(self):
        return self.inner.explicit_keys()


def _or(a, b):
    if a is True or b is True:
        return True
    if a is False:
        return b
    if b is False:
        return a
    return jnp.logical_or(a, b)


def _and(a, b):
    if a is False or b is False:
        return False
    if a is True:
        return b
    if b is True:
        return a
    return jnp.logical_and(a, b)


@dataclasses.dataclass(frozen=True, eq=True)
class _Union(Selection):
    left: Selection
    right: Selection

    def __repr__(self) -> str:
        return f"({self.left!r} | {self.right!r})"

    def step(self, component):
        return _Union(self.left.step(component), self.right.step(component))

    def leaf_flag(self):
        return _or(self.left.leaf_flag(), self.right.leaf_flag())

    def is_empty(self):
        return self.left.is_empty() and self.right.is_empty()

    def explicit_keys(self):
        return self.left.explicit_keys() | self.right.explicit_keys()


@dataclasses.dataclass(frozen=True, eq=True)
class _Intersection(Selection):
    left: Selection
    right: Selection

    def __repr__(self) -> str:
        return f"({self.left!r} & {self.right!r})"

    def step(self, component):
        return _Intersection(self.left.step(component), self.right.step(component))

    def leaf_flag(self):
        return _and(self.left.leaf_flag(), self.right.leaf_flag())

    def is_empty(self):
        return self.left.is_empty() or self.right.is_empty()

    def explicit_keys(self):
        return self.left.explicit_keys() | self.right.explicit_keys()


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class Flagged(Selection):
    """A selection whose parts hold only where a (possibly traced) flag is true.

    Combinators build it for selections that name some indices explicitly; the flags travel
    through ``vmap``/``scan`` as data.
    """

    flags: tuple
    parts: tuple

    def tree_flatten(self):
        return self.flags, self.parts

    @classmethod
    def tree_unflatten(cls, parts, flags):
        return cls(tuple(flags), parts)

    def step(self, component):
        return Flagged(self.flags, tuple(p.step(component) for p in self.parts))

    def leaf_flag(self):
        flag: Any = False
        for f, p in zip(self.flags, self.parts, strict=True):
            flag = _or(flag, _and(f, p.leaf_flag()))
        return flag

    def is_empty(self):
        return all(p.is_empty() for p in self.parts)

    def explicit_keys(self):
        return set().union(*(p.explicit_keys() for p in self.parts))


class _AnyIndex:
    """A component that matches only the ``...`` wildcard: 'an index not named explicitly'."""


_ANY_INDEX = _AnyIndex()


def index_residuals(selection: Selection, n: int) -> tuple[Selection, dict[int, Selection]]:
    """Splits a selection at a combinator's index level.

    Returns:
        ``(uniform, explicit)``: the selection below an index that is not named explicitly,
        and for each explicitly named index ``i < n`` whose residual differs, its residual.
    """
    uniform = selection.step(_ANY_INDEX)
    explicit = {}
    for key in selection.explicit_keys():
        if isinstance(key, int) and 0 <= key < n:
            residual = selection.step(key)
            if residual != uniform:
                explicit[key] = residual
    return uniform, explicit


def batched_selection(selection: Selection, n: int) -> tuple[Selection, Any]:
    """The selection a combinator passes to its ``n`` repeats, and its batched data.

    Returns:
        ``(static, None)`` when every index sees the same residual selection, else
        ``(Flagged, flags)`` where ``flags`` are boolean arrays of shape ``(n,)`` to be mapped
        over (one per distinct residual).
    """
    uniform, explicit = index_residuals(selection, n)
    if not explicit:
        return uniform, None
    parts: list[Selection] = [uniform]
    masks = [np.ones(n, dtype=bool)]
    for i, residual in explicit.items():
        masks[0][i] = False
        for j, part in enumerate(parts):
            if part == residual:
                masks[j][i] = True
                break
        else:
            parts.append(residual)
            mask = np.zeros(n, dtype=bool)
            mask[i] = True
            masks.append(mask)
    return Flagged((), tuple(parts)), tuple(jnp.asarray(m) for m in masks)


def select(*addresses: Any) -> Selection:
    """The selection of the given addresses and everything below them.

    Args:
        *addresses: strings, ints or tuples; ``...`` matches any one component.

    Returns:
        A ``Selection``.

    Example:
        >>> s = select(("layer", ..., "w"))
        >>> ("layer", 2, "w") in s, ("layer", 2, "b") in s
        (True, False)
    """
    trie: dict = {}
    for address in addresses:
        path = to_path(address)
        if not path:
            return ALL
        node = trie
        for component in path[:-1]:
            nxt = node.get(component)
            if nxt is True:
                break
            if nxt is None:
                nxt = node[component] = {}
            node = nxt
        else:
            node[path[-1]] = True
    return _Trie(trie)


def as_selection(value: Any) -> Selection:
    """Turns ``None`` (nothing), an address, or a list of addresses into a ``Selection``."""
    if isinstance(value, Selection):
        return value
    if value is None:
        return NONE
    if isinstance(value, list | set):
        return select(*value)
    return select(value)


def all_addresses() -> Selection:
    """The selection of every address."""
    return ALL


def no_addresses() -> Selection:
    """The empty selection."""
    return NONE
