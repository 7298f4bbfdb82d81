"""``ChoiceMap``: the values of random choices, keyed by address.

A choice map is a tree. Inner nodes map address components (strings, integers) to children;
leaves hold the values (arrays, or any pytree that is not a ``ChoiceMap``). A node made by a
``Vmap`` or ``Scan`` combinator is *indexed*: every leaf below it has a leading axis, and an
integer component selects one slice, so ``choices["ys", 3, "y"]`` is the ``y`` of repeat 3.

A ``ChoiceMap`` is a JAX pytree whose leaves are the values, in the order the model visited
them; ``ravel`` flattens the values (optionally of a selection) into one vector and back, in
that stable order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ppl._address import Path, show, show_many, to_path


class _LeafKey:
    """Key of the single child of an indexed node whose repeats are bare values."""

    def __repr__(self) -> str:
        return "<value>"

    def __reduce__(self):
        return (_leaf_key, ())


def _leaf_key() -> _LeafKey:
    return LEAF


LEAF = _LeafKey()


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Masked:
    """A constraint that applies only where ``flag`` is true (internal to combinators)."""

    value: Any
    flag: Any


@jax.tree_util.register_pytree_node_class
class ChoiceMap(Mapping):
    """A nested map from addresses to the values of random choices.

    Args:
        entries: a (nested) dict; tuple keys are paths, so ``{("y", 0): 1.0}`` equals
            ``{"y": {0: 1.0}}``. Any value that is not a dict or ``ChoiceMap`` is a leaf.

    Example:
        >>> import jax.numpy as jnp
        >>> cm = ChoiceMap({"slope": 1.5, ("y", 0): 0.3, ("y", 1): -0.2})
        >>> float(cm["y", 1])
        -0.2
        >>> sorted(cm.to_dict()["y"])
        [0, 1]
        >>> vector, unravel = cm.ravel()
        >>> vector.tolist()
        [1.5, 0.30000001192092896, -0.20000000298023224]
        >>> float(unravel(vector * 2)["slope"])
        3.0
    """

    __slots__ = ("_entries", "_indexed")
    _entries: dict
    _indexed: bool

    def __init__(self, entries: Mapping | None = None, *, indexed: bool = False):
        built: dict = {}
        for key, value in (entries or {}).items():
            path = to_path(key) if key is not LEAF else (LEAF,)
            _insert(built, path, value)
        object.__setattr__(self, "_entries", built)
        object.__setattr__(self, "_indexed", indexed)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def _raw(cls, entries: dict, indexed: bool = False) -> ChoiceMap:
        cm = cls.__new__(cls)
        object.__setattr__(cm, "_entries", entries)
        object.__setattr__(cm, "_indexed", indexed)
        return cm

    @classmethod
    def from_dict(cls, entries: Mapping) -> ChoiceMap:
        """Builds a choice map from nested dicts (tuple keys are paths)."""
        return entries if isinstance(entries, ChoiceMap) else cls(entries)

    @classmethod
    def indexed(cls, inner: Any) -> ChoiceMap:
        """Wraps the batched choices of a combinator's repeats (leading axis = index)."""
        if isinstance(inner, ChoiceMap) and not inner._indexed:
            return cls._raw(dict(inner._entries), indexed=True)
        return cls._raw({LEAF: inner}, indexed=True)

    # -- pytree --------------------------------------------------------------------------
    def tree_flatten(self):
        return tuple(self._entries.values()), (tuple(self._entries), self._indexed)

    @classmethod
    def tree_unflatten(cls, aux, children):
        keys, indexed = aux
        return cls._raw(dict(zip(keys, children, strict=True)), indexed)

    # -- reading ---------------------------------------------------------------------------
    @property
    def is_indexed(self) -> bool:
        """Whether this node holds a combinator's repeats along a leading axis."""
        return self._indexed

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator:
        return iter(self._entries)

    def is_empty(self) -> bool:
        """True if no value is stored anywhere below this node."""
        return all(isinstance(v, ChoiceMap) and v.is_empty() for v in self._entries.values())

    def _child(self, component: Any) -> Any:
        """The child at one component, or ``None``; indexed nodes slice on integers."""
        if not self._indexed:
            return self._entries.get(component)
        if isinstance(component, int):
            sliced = jax.tree.map(lambda v: v[component], self._entries)
            if set(sliced) == {LEAF}:
                return sliced[LEAF]
            return ChoiceMap._raw(sliced)
        if component is Ellipsis:
            return self
        child = self._entries.get(component)
        if isinstance(child, ChoiceMap):
            return ChoiceMap.indexed(child)
        return child

    def _lookup(self, address: Any) -> Any:
        """The node at ``address``, or ``None``.

        At an indexed node an integer picks one repeat; ``...`` or a left-out index (the next
        component is a name) keeps every repeat. Kept axes stay the leading axes of the
        result, in order, so an integer after them indexes the next combinator's axis:
        ``choices["v", ..., "s", 1]`` is step 1 of the chain in every repeat of ``"v"``.
        """
        node: Any = self
        kept = 0  # leading axes of the leaves below ``node`` kept by earlier components
        path = to_path(address)
        i = 0
        while i < len(path):
            component = path[i]
            if not isinstance(node, ChoiceMap):
                return None
            if not node._indexed:
                node = node._entries.get(component)
                if node is None:
                    return None
                i += 1
            elif isinstance(component, int):
                node = _repeat(node, component, kept)
                i += 1
            else:
                entries = node._entries
                node = entries[LEAF] if set(entries) == {LEAF} else ChoiceMap._raw(entries)
                kept += 1
                i += component is Ellipsis
        for _ in range(kept):
            node = ChoiceMap.indexed(node) if isinstance(node, ChoiceMap) else node
        return node

    def __getitem__(self, address: Any) -> Any:
        node = self._lookup(address)
        if node is None:
            raise KeyError(
                f"no choice at {show(to_path(address))}; this choice map holds "
                f"{show_many(self.leaf_paths())}"
            )
        value = node
        while isinstance(value, ChoiceMap) and value._indexed and set(value._entries) == {LEAF}:
            value = value._entries[LEAF]
        # The repeats of one distribution (in nested combinators too): one batched value.
        return node if isinstance(value, ChoiceMap) else value

    def __contains__(self, address: object) -> bool:
        try:
            return self._lookup(address) is not None
        except TypeError:
            return False

    def get_submap(self, address: Any) -> Any:
        """The sub-tree at ``address`` (a value, or a ``ChoiceMap``); empty if absent."""
        node = self._lookup(address)
        return EMPTY if node is None else node

    def leaf_paths(self) -> list[Path]:
        """The paths of every stored value, in visiting order (``...`` marks an index axis)."""
        out: list[Path] = []
        for key, child in self._entries.items():
            head: Path = () if key is LEAF else (key,)
            if self._indexed:
                head = (Ellipsis, *head)
            if isinstance(child, ChoiceMap):
                out.extend(head + p for p in child.leaf_paths())
            else:
                out.append(head)
        return out

    def to_dict(self) -> dict | Any:
        """Nested plain dicts (indexed nodes keep their batched values)."""
        if set(self._entries) == {LEAF}:
            child = self._entries[LEAF]
            return child.to_dict() if isinstance(child, ChoiceMap) else child
        return {
            k: (v.to_dict() if isinstance(v, ChoiceMap) else v) for k, v in self._entries.items()
        }

    # -- combining ---------------------------------------------------------------------------
    def __or__(self, other: Any) -> ChoiceMap:
        """Merge; where both hold a value, ``other`` wins."""
        other = ChoiceMap.from_dict(other)
        if self._indexed != other._indexed and not (self.is_empty() or other.is_empty()):
            # Both are the batched values of a combinator's repeats: merge them as batched.
            plain = [cm for cm in (self, other) if cm._indexed and set(cm._entries) != {LEAF}]
            some = other if self._indexed else self
            if len(plain) != 1 or all(isinstance(k, int) for k in some._entries):
                return _merge_repeats(self, other)
            left, right = (
                ChoiceMap._raw(dict(cm._entries)) if cm._indexed else cm for cm in (self, other)
            )
            return left | right
        entries = dict(self._entries)
        for key, value in other._entries.items():
            mine = entries.get(key)
            if isinstance(mine, ChoiceMap) and isinstance(value, ChoiceMap):
                entries[key] = mine | value
            else:
                entries[key] = value
        return ChoiceMap._raw(entries, self._indexed or other._indexed)

    def __ror__(self, other: Any) -> ChoiceMap:
        return ChoiceMap.from_dict(other) | self

    def filter(self, selection: Any) -> ChoiceMap:
        """The choices at the addresses ``selection`` selects.

        Example:
            >>> from ppl import select
            >>> cm = ChoiceMap({"a": 1.0, ("b", 0): 2.0, ("b", 1): 3.0})
            >>> cm.filter(select(("b", ...))).to_dict()
            {'b': {0: 2.0, 1: 3.0}}
        """
        from ppl._selection import as_selection

        result = _filter(self, as_selection(selection))
        return result if isinstance(result, ChoiceMap) else ChoiceMap._raw({LEAF: result})

    def ravel(self, selection: Any = None) -> tuple[jax.Array, Any]:
        """Flattens the (selected) values to one vector, in visiting order, and back.

        Args:
            selection: which addresses to flatten; all of them if ``None``.

        Returns:
            ``(vector, unravel)`` where ``unravel(vector)`` rebuilds a ``ChoiceMap`` of the
            same structure.
        """
        cm = self if selection is None else self.filter(selection)
        return ravel_pytree(cm)

    def __repr__(self) -> str:
        def fmt(v: Any) -> str:
            if isinstance(v, ChoiceMap):
                return repr(v)
            shape = jnp.shape(v) if not isinstance(v, Masked) else jnp.shape(v.value)
            if shape == ():
                try:
                    return repr(v.item() if hasattr(v, "item") else v)
                except Exception:
                    return "<scalar>"
            return f"<array {shape}>"

        inner = ", ".join(f"{k!r}: {fmt(v)}" for k, v in self._entries.items())
        return ("Indexed" if self._indexed else "") + "ChoiceMap({" + inner + "})"


EMPTY = ChoiceMap._raw({})


def constrained_addresses(constraints: Any, choices: Any) -> tuple[Path, ...]:
    """The addresses, in a trace with ``choices``, of the values in ``constraints``.

    Values for a ``Vmap``/``Scan`` site may be given batched (``{"ys": {"y": data}}``); in the
    trace that site is below an index, so ``...`` is inserted where ``choices`` is indexed and
    the constraints are not given per index. ``select(*paths)`` then selects exactly them.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import Vmap, gen, normal
        >>> @gen
        ... def model():
        ...     mu = normal(0.0, 1.0) @ "mu"
        ...     return Vmap(normal, in_axes=(None, None), axis_size=3)(mu, 1.0) @ "ys"
        >>> trace = model.simulate(jax.random.key(0), ())
        >>> constrained_addresses({"ys": jnp.zeros(3), "mu": 0.0}, trace.choices)
        (('ys',), ('mu',))
    """
    paths: list[Path] = []

    def walk(given: Any, node: Any, prefix: Path) -> None:
        if not isinstance(given, ChoiceMap):
            paths.append(prefix)
            return
        if given.is_indexed:
            paths.extend(prefix + p for p in given.leaf_paths())
            return
        if (
            isinstance(node, ChoiceMap)
            and node.is_indexed
            and not any(isinstance(k, int) for k in given)
        ):
            prefix = (*prefix, Ellipsis)
            if set(given._entries) == {LEAF} or not given._entries:
                paths.append(prefix)
                return
        for key in given:
            child: Any = None
            if isinstance(node, ChoiceMap) and node.is_indexed and isinstance(key, int):
                entries = node._entries  # one repeat has the structure of every repeat
                child = entries[LEAF] if set(entries) == {LEAF} else ChoiceMap._raw(entries)
            elif isinstance(node, ChoiceMap):
                child = node.get_submap(key)
            walk(given.get_submap(key), child, (*prefix, key))

    walk(
        ChoiceMap.from_dict(constraints) if isinstance(constraints, dict) else constraints,
        choices,
        (),
    )
    return tuple(paths)


def _insert(tree: dict, path: Path, value: Any) -> None:
    head, rest = path[0], path[1:]
    if isinstance(value, Mapping) and not isinstance(value, ChoiceMap):
        value = ChoiceMap(value)
    if not rest:
        current = tree.get(head)
        if isinstance(current, ChoiceMap) and isinstance(value, ChoiceMap):
            tree[head] = current | value
        elif current is not None:
            raise ValueError(f"two values given for the address {show(path)}")
        else:
            tree[head] = value
        return
    child = tree.get(head)
    if child is None:
        child = ChoiceMap._raw({})
        tree[head] = child
    if not isinstance(child, ChoiceMap):
        raise ValueError(f"address {show(path)} is below a value; an address is a value or a map")
    _insert(child._entries, rest, value)


def _filter(node: Any, selection: Any, kept: int = 0) -> Any:
    """Keeps the selected part of ``node``; returns EMPTY if nothing is selected.

    ``kept`` counts the leading axes of the leaves below ``node`` that belong to enclosing
    combinators whose repeats are all filtered alike; ``node``'s own index axis follows them.
    """
    if not isinstance(node, ChoiceMap):
        return node if selection.leaf_flag() is True else EMPTY
    if selection.is_empty():
        return EMPTY
    if not node._indexed:
        entries = {}
        for key, child in node._entries.items():
            sub = _filter(child, selection if key is LEAF else selection.step(key), kept)
            if not (isinstance(sub, ChoiceMap) and sub.is_empty()):
                entries[key] = sub
        return ChoiceMap._raw(entries)
    from ppl._selection import index_residuals

    n = _index_length(node, kept)
    uniform, explicit = index_residuals(selection, n)
    if not explicit:
        inner = _filter(ChoiceMap._raw(node._entries), uniform, kept + 1)
        if isinstance(inner, ChoiceMap) and inner.is_empty():
            return EMPTY
        return ChoiceMap.indexed(inner._entries.get(LEAF, inner))
    entries = {}
    for i in range(n):
        sub = _filter(_repeat(node, i, kept), explicit.get(i, uniform), kept)
        if not (isinstance(sub, ChoiceMap) and sub.is_empty()):
            entries[i] = sub
    return ChoiceMap._raw(entries)


def _merge_repeats(left: ChoiceMap, right: ChoiceMap) -> ChoiceMap:
    """``left | right`` where one holds a combinator's repeats as batched values and the other
    some repeats by index (``{1: v}`` or ``{1: {"x": v}}``, as a selection of some repeats
    filters them): the indexed values replace those rows, or the batched values replace them
    all."""
    bare, some = (left, right) if left._indexed else (right, left)
    if not all(isinstance(k, int) for k in some._entries):
        raise ValueError("cannot merge a combinator's batched values with a map")
    if some is left:  # the batched values win everywhere
        return bare
    merged: Any = bare
    for i, row in some._entries.items():
        merged = _set_row(merged, i, row)
    return merged


def _set_row(batched: Any, i: int, row: Any) -> Any:
    """``batched`` (values with a leading repeat axis, or maps of them) with repeat ``i`` set
    to ``row``."""
    if isinstance(batched, ChoiceMap) and not isinstance(row, ChoiceMap):
        if set(batched._entries) != {LEAF}:
            raise ValueError("cannot merge a combinator's batched values with a map")
        return ChoiceMap._raw({LEAF: _set_row(batched._entries[LEAF], i, row)}, batched._indexed)
    if isinstance(row, ChoiceMap):
        if not isinstance(batched, ChoiceMap) or not set(row._entries) <= set(batched._entries):
            raise ValueError(
                f"repeat {i} has addresses the repeats' batched values lack: merge them inside "
                "the vmap that batches them"
            )
        entries = dict(batched._entries)
        for key, sub in row._entries.items():
            entries[key] = _set_row(entries[key], i, sub)
        return ChoiceMap._raw(entries, batched._indexed)
    merged = jnp.asarray(batched)
    if jnp.shape(row) != merged.shape[1:]:
        raise ValueError(
            f"repeat {i} has shape {jnp.shape(row)}, but the repeats' batched value has "
            f"shape {merged.shape}: merge them inside the vmap that batches them"
        )
    return merged.at[i].set(row)


def _repeat(node: ChoiceMap, i: int, kept: int) -> Any:
    """Repeat ``i`` of an indexed node whose index axis follows ``kept`` leading axes."""
    index = (slice(None),) * kept + (i,)
    # Supports of repeats keep static parameters (Python numbers, no index axis) shared.
    sliced = jax.tree.map(lambda v: v[index] if jnp.ndim(v) > kept else v, node._entries)
    return sliced[LEAF] if set(sliced) == {LEAF} else ChoiceMap._raw(sliced)


def _index_length(node: ChoiceMap, kept: int = 0) -> int:
    # Supports of repeats keep static parameters as Python numbers, with no index axis.
    for leaf in jax.tree.leaves(node):
        if jnp.ndim(leaf) > kept:
            return int(jnp.shape(leaf)[kept])
    return 0
