"""``@gen``: generative functions written as Python functions.

The body runs once per GFI call under an interpreter (a *handler*) that gives meaning to each
``gen_fn(...) @ address``: sample it, score it, constrain it, update it or resample it. Under
``jax.jit`` the body runs once at trace time, so the compiled program is the model's own
arithmetic with no interpretive overhead.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ppl._address import Path, show, show_many, to_path
from ppl._choicemap import EMPTY, ChoiceMap, Masked
from ppl._context import at_prefix, handling
from ppl._errors import AddressError
from ppl._interface import GenerativeFunction, Trace
from ppl._keys import StepKey, call_keys
from ppl._selection import Selection


def _is_static(arg: Any) -> bool:
    """Python ints, bools and strings fix a program's structure (loop bounds, branches)."""
    return isinstance(arg, int | str) and not isinstance(arg, jax.Array)


def _flatten_trace(trace: StaticTrace):
    children = (trace.kept, trace.held, trace.scores)
    aux = (trace.addresses, trace.retval_spec, trace.layout)
    if trace.args is None:
        return (None, *children), (*aux, None)
    static = tuple((i, a) for i, a in enumerate(trace.args) if _is_static(a))
    dynamic = tuple(None if _is_static(a) else a for a in trace.args)
    return (dynamic, *children), (*aux, static)


def _unflatten_trace(aux, children) -> StaticTrace:
    *aux, static = aux
    dynamic, *children = children
    if static is None:
        return StaticTrace(None, *children, *aux)
    args = list(dynamic)
    for i, value in static:
        args[i] = value
    return StaticTrace(tuple(args), *children, *aux)


Link = tuple[int, int] | None


@dataclasses.dataclass(frozen=True)
class RetvalSpec:
    """Where each leaf of a ``@gen`` function's return value is held.

    A leaf that is a visited call's return value (``return normal(...) @ "y"``, a chain's
    state returned as its carry) is read from that call's sub-trace rather than held twice: a
    traced program would otherwise return (and a ``Scan`` stack) the same array twice. The
    links are fixed by the program's structure, so every GFI method gives the same tree.

    Attributes:
        tree: the return value's tree structure.
        links: per leaf, ``(k, i)`` for leaf ``i`` of the ``k``-th visit's return value, or
            ``None`` for a leaf held in ``StaticTrace.kept``.
    """

    tree: Any
    links: tuple[Link, ...]


def _array_ids(tree: Any) -> dict[int, int]:
    """``id(leaf) -> i`` for the arrays (and tracers) among ``tree``'s leaves."""
    return {
        id(leaf): i for i, leaf in enumerate(jax.tree.leaves(tree)) if isinstance(leaf, jax.Array)
    }


def _retval_spec(retval: Any, where: dict[int, Link]) -> tuple[tuple, RetvalSpec]:
    """The leaves ``retval`` must hold itself, and the spec linking the others to visits
    (``where``: ``id -> (k, i)`` for leaf ``i`` of the ``k``-th visit's return value)."""
    leaves, tree = jax.tree.flatten(retval)
    links = tuple(where.get(id(leaf)) if isinstance(leaf, jax.Array) else None for leaf in leaves)
    kept = tuple(leaf for leaf, link in zip(leaves, links, strict=True) if link is None)
    return kept, RetvalSpec(tree, links)


# Where a sub-trace's scores are held: per score, ``(group, start, shape)`` in
# ``StaticTrace.scores``.
Place = tuple[int, int, tuple[int, ...]]


def packed_piece(packed: jax.Array, start: int, shape: tuple[int, ...]) -> jax.Array:
    """The piece of shape ``shape`` at ``start`` of the flat last axis of ``packed``, leading
    (batch) axes kept: ``packed[..., start : start + size]`` reshaped."""
    size = math.prod(shape)
    return packed[..., start : start + size].reshape(*packed.shape[:-1], *shape)


def _pack(subtraces: tuple) -> tuple[tuple, tuple, tuple[tuple[Place, ...], ...]]:
    """Moves the sub-traces' scores into one flat array per dtype.

    Returns:
        ``(held, scores, layout)``: the sub-traces with ``None`` for their scores, the packed
        arrays, and where each sub-trace's scores lie in them.
    """
    parts: dict[Any, list[jax.Array]] = {}
    sizes: dict[Any, int] = {}
    held, layout = [], []
    for subtrace in subtraces:
        scores = subtrace._held_scores()
        places = []
        for score in scores:
            score = jnp.asarray(score)
            group = parts.setdefault(score.dtype, [])
            start = sizes.get(score.dtype, 0)
            sizes[score.dtype] = start + score.size
            group.append(jnp.ravel(score))
            places.append((list(parts).index(score.dtype), start, score.shape))
        held.append(subtrace._with_held_scores((None,) * len(scores)) if scores else subtrace)
        layout.append(tuple(places))
    packed = tuple(p[0] if len(p) == 1 else jnp.concatenate(p) for p in parts.values())
    return tuple(held), packed, tuple(layout)


@dataclasses.dataclass(frozen=True)
class StaticTrace(Trace):
    """The trace of a ``@gen`` function: one sub-trace per visited address, in visit order.

    The calls' scores (each choice's log density, a plate's one per repeat) are held packed in
    one flat array per dtype, ``scores``, rather than one array per call: a traced program
    returns (and a ``Scan`` stacks) every array of the trace separately, and each costs time of
    its own (several microseconds per call on a CPU). ``subtraces`` reads them back (under
    ``jax.jit``, XLA turns slices of the packed array into the values packed). Traces batched
    by ``vmap`` or a ``Scan`` carry the batch axes first, as every leaf does.

    Python ``int``/``bool``/``str`` arguments are kept as static data of the pytree (they fix
    the program's structure), so a trace passed through ``jax.jit`` keeps them concrete. The
    score is the sum of the calls' scores, and the return value is read from the sub-traces
    where it is one of their values (see ``RetvalSpec``); both are computed when read rather
    than held (a traced program then does not return them again).

    Make one with ``StaticTrace.build``.
    """

    args: tuple | None  # None when nested (see ``GenerativeFunction._with_args``)
    kept: tuple
    held: tuple  # the sub-traces, with None for the scores held in ``scores``
    scores: tuple  # one flat array per dtype (plus leading batch axes)
    addresses: tuple = dataclasses.field(metadata={"static": True})
    retval_spec: RetvalSpec = dataclasses.field(metadata={"static": True})
    layout: tuple = dataclasses.field(metadata={"static": True})  # per sub-trace, its Places

    @classmethod
    def build(
        cls,
        args: tuple | None,
        kept: tuple,
        subtraces: tuple,
        addresses: tuple,
        retval_spec: RetvalSpec,
    ) -> StaticTrace:
        """The trace of calls ``subtraces`` at ``addresses`` (their scores packed)."""
        held, scores, layout = _pack(subtraces)
        return cls(args, kept, held, scores, addresses, retval_spec, layout)

    @property
    def subtraces(self) -> tuple[Trace, ...]:
        """The calls' traces, in visit order, holding their scores."""
        pairs = zip(self.held, self.layout, strict=True)
        return tuple(self._unpack(subtrace, places) for subtrace, places in pairs)

    def _unpack(self, subtrace: Trace, places: tuple[Place, ...]) -> Trace:
        if not places:
            return subtrace
        scores = tuple(
            packed_piece(self.scores[group], start, shape) for group, start, shape in places
        )
        return subtrace._with_held_scores(scores)

    def _held_scores(self) -> tuple[jax.Array, ...]:
        return self.scores

    def _with_held_scores(self, scores: tuple) -> StaticTrace:
        return dataclasses.replace(self, scores=scores)

    @property
    def retval(self) -> Any:  # type: ignore[override]
        kept = iter(self.kept)
        leaves = [
            next(kept) if link is None else jax.tree.leaves(self.held[link[0]].retval)[link[1]]
            for link in self.retval_spec.links
        ]
        return jax.tree.unflatten(self.retval_spec.tree, leaves)

    @property
    def score(self) -> jax.Array:  # type: ignore[override]
        # Summed call by call, in visit order: the same float arithmetic as the weights of
        # ``generate`` and ``update``, so ``score - weight`` is exact where it should be.
        total = jnp.zeros(())
        for subtrace in self.subtraces:
            total = total + subtrace.score
        return total

    @property
    def choices(self) -> ChoiceMap:
        return ChoiceMap(dict(zip(self.addresses, (t.choices for t in self.held), strict=True)))

    @property
    def site_scores(self) -> ChoiceMap:
        return ChoiceMap(
            dict(zip(self.addresses, (t.site_scores for t in self.subtraces), strict=True))
        )

    def subtrace(self, address: Any) -> Trace:
        """The trace of the call at ``address``."""
        path = to_path(address)
        for i, p in enumerate(self.addresses):
            if p == path:
                return self._unpack(self.held[i], self.layout[i])
        raise KeyError(f"no call at {show(path)}; visited {show_many(list(self.addresses))}")


jax.tree_util.register_pytree_node(StaticTrace, _flatten_trace, _unflatten_trace)


# How many calls' keys the first block holds. A chain's step (``StepKey``) often makes a few
# calls, and a wider block costs time in every step; elsewhere the block is computed once, and
# a second block would cost more than a wider first one.
_FIRST_KEY_BLOCK = {"step": 3, "call": 8}


class _Handler:
    """Runs one GFI method over the body; subclasses say what a visit does."""

    def __init__(self, key: jax.Array | StepKey | None, owner: str):
        self.key = key
        self.owner = owner
        self.paths: list[Path] = []
        self.subtraces: list[Trace] = []
        self.returned: list[Any] = []  # (which also keeps the ids in ``where`` unique)
        self.where: dict[int, Link] = {}  # id of a returned array -> (visit, leaf index)
        self.score = jnp.zeros(())
        self.weight = jnp.zeros(())
        self._claimed: dict = {}
        self._draws = 0
        self._block: jax.Array | None = None
        self._block_start = 0
        self._block_end = 0

    def next_key(self) -> jax.Array:
        """The key of the next call: ``fold_in(key, i)`` for the ``i``-th call (see
        ``ppl._keys``; a chain's step hashes its step index in too).

        Keys are computed in blocks (calls 0-7, 8-15, 16-31, ...; 0-2, 3-7, ... in a chain's
        step), each one vectorized random-bits computation, as hand-written code splits a key
        into as many as it needs: a computation per call would cost a loop of its own in a
        compiled ``Scan`` step. The blocks only group the computation; call ``i``'s key does
        not depend on their sizes.
        """
        assert self.key is not None, "this interpretation draws no randomness"
        i = self._draws
        self._draws += 1
        if i >= self._block_end:
            start = self._block_end
            first = _FIRST_KEY_BLOCK["step" if isinstance(self.key, StepKey) else "call"]
            self._block_end = first if start == 0 else max(8, 2 * start)
            self._block = call_keys(self.key, start, self._block_end)
            self._block_start = start
        assert self._block is not None
        return self._block[i - self._block_start]

    def _claim(self, path: Path) -> None:
        node: Any = self._claimed
        last = len(path) - 1
        for i, component in enumerate(path):
            nxt = node.get(component)
            if nxt is True and i == last:
                raise AddressError(
                    f"the address {{addr}} is used twice in one execution of {self.owner}; "
                    "every random choice needs its own address (in a loop, index it: "
                    "('y', i))",
                    path,
                )
            if nxt is True:
                raise AddressError(
                    f"{{addr}} lies below the address {show(path[: i + 1])}, which already "
                    f"holds a random choice in this execution of {self.owner}; give it a "
                    "distinct address",
                    path,
                )
            if nxt is not None and i == last:
                raise AddressError(
                    f"the address {{addr}} already has choices below it in this execution of "
                    f"{self.owner}; give this choice a distinct address",
                    path,
                )
            if nxt is None:
                nxt = node[component] = {} if i < last else True
            node = nxt

    def visit(self, address: Any, gen_fn: GenerativeFunction, args: tuple) -> Any:
        path = to_path(address)
        if not path:
            raise AddressError(f"an empty address was used in {self.owner}; name the choice")
        self._claim(path)
        with at_prefix(path):
            try:
                trace = self.run(path, gen_fn, args)
            except AddressError as error:
                raise error.with_prefix(path) from None
        retval = trace.retval
        if not self.where.keys().isdisjoint(_array_ids(retval)):
            # Two calls returned one array (one constraint given at two addresses): this call
            # gets its own copy, so that where the body's return value comes from, and so the
            # trace's tree structure (see ``RetvalSpec``), does not depend on the values given.
            shared = self.where
            trace = jax.tree.map(lambda x: jnp.array(x, copy=True) if id(x) in shared else x, trace)
            retval = trace.retval
        for identity, i in _array_ids(retval).items():
            self.where.setdefault(identity, (len(self.returned), i))
        self.paths.append(path)
        self.subtraces.append(trace)
        self.score = self.score + trace.score
        self.returned.append(retval)
        return retval

    def run(self, path: Path, gen_fn: GenerativeFunction, args: tuple) -> Trace:
        raise NotImplementedError


class _Simulate(_Handler):
    def run(self, path, gen_fn, args):
        return gen_fn._simulate(self.next_key(), args)


class _Generate(_Handler):
    def __init__(self, key, owner, constraints):
        super().__init__(key, owner)
        self.constraints = constraints

    def run(self, path, gen_fn, args):
        trace, weight = gen_fn._generate(self.next_key(), _submap(self.constraints, path), args)
        self.weight = self.weight + weight
        return trace


class _Assess(_Generate):
    """Like generate, but every choice must be given, so no key is needed."""

    def run(self, path, gen_fn, args):
        score, retval = gen_fn._assess(_submap(self.constraints, path), args)
        return _Scored(score, retval)


@dataclasses.dataclass(frozen=True)
class _Scored:
    score: Any
    retval: Any


class _Update(_Generate):
    def __init__(self, key, owner, constraints, previous: StaticTrace):
        super().__init__(key, owner, constraints)
        self.previous = dict(zip(previous.addresses, previous.subtraces, strict=True))
        self.discard: dict = {}

    def run(self, path, gen_fn, args):
        old = self.previous.get(path)
        sub = _submap(self.constraints, path)
        if old is None:
            trace, weight = gen_fn._generate(self.next_key(), sub, args)
        else:
            trace, weight, discard = gen_fn._update(self.next_key(), old, sub, args)
            if not (isinstance(discard, ChoiceMap) and discard.is_empty()):
                self.discard[path] = discard
        self.weight = self.weight + weight
        return trace

    def drop_unvisited(self) -> None:
        """Choices of the old trace not visited now leave the trace: w -= their score."""
        visited = set(self.paths)
        for path, old in self.previous.items():
            if path not in visited:
                self.weight = self.weight - old.score
                self.discard[path] = old.choices


class _Regenerate(_Update):
    def __init__(self, key, owner, selection: Selection, previous: StaticTrace):
        super().__init__(key, owner, EMPTY, previous)
        self.selection = selection

    def run(self, path, gen_fn, args):
        old = self.previous.get(path)
        if old is None:
            trace, weight = gen_fn._generate(self.next_key(), EMPTY, args)
        else:
            sub = self.selection
            for component in path:
                sub = sub.step(component)
            trace, weight = gen_fn._regenerate(self.next_key(), old, sub, args)
        self.weight = self.weight + weight
        return trace


class _Sites(_Handler):
    """Replays a trace (each call returns its recorded value) collecting ``query`` at every
    choice (``GenerativeFunction._sites``)."""

    def __init__(self, owner, previous: StaticTrace, query):
        super().__init__(None, owner)
        self.previous = dict(zip(previous.addresses, previous.subtraces, strict=True))
        self.query = query
        self.found: dict = {}

    def run(self, path, gen_fn, args):
        old = self.previous[path]
        self.found[path] = gen_fn._sites(old, args, self.query)
        return old


def _submap(constraints: Any, path: Path) -> Any:
    if isinstance(constraints, ChoiceMap):
        return constraints.get_submap(path)
    if isinstance(constraints, Masked):
        raise AddressError("a masked constraint reached {addr}, which is not a single choice")
    raise AddressError(
        f"constraints for a @gen function must be a dict or ChoiceMap of addresses, got a "
        f"{type(constraints).__name__} at {{addr}}"
    )


class StaticGenerativeFunction(GenerativeFunction):
    """A generative function defined by a Python function; made by ``@gen``."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return getattr(self.fn, "__name__", "gen_fn")

    def _run(self, handler: _Handler, args: tuple) -> Any:
        with handling(handler):
            return self.fn(*args)

    def _trace(self, handler: _Handler, retval: Any) -> StaticTrace:
        kept, spec = _retval_spec(retval, handler.where)
        return StaticTrace.build(None, kept, tuple(handler.subtraces), tuple(handler.paths), spec)

    def _check_constraints(self, constraints: Any, handler: _Handler, method: str) -> None:
        if not isinstance(constraints, ChoiceMap):
            _submap(constraints, ())  # raises the right error for non-maps
        visited = set(handler.paths)
        for leaf in constraints.leaf_paths():
            if not any(leaf[:k] in visited for k in range(1, len(leaf) + 1)):
                raise AddressError(
                    f"{method}: constraint on {{addr}}, but {self!r} never visits it; it "
                    f"visits {show_many(handler.paths)}",
                    leaf,
                )

    def _simulate(self, key, args):
        handler = _Simulate(key, repr(self))
        retval = self._run(handler, args)
        return self._trace(handler, retval)

    def _assess(self, choices, args):
        handler = _Assess(None, repr(self), choices)
        retval = self._run(handler, args)
        self._check_constraints(choices, handler, "assess")
        return handler.score, retval

    def _generate(self, key, constraints, args):
        handler = _Generate(key, repr(self), constraints)
        retval = self._run(handler, args)
        self._check_constraints(constraints, handler, "generate")
        return self._trace(handler, retval), handler.weight

    def _update(self, key, trace, constraints, args):
        handler = _Update(key, repr(self), constraints, trace)
        retval = self._run(handler, args)
        self._check_constraints(constraints, handler, "update")
        handler.drop_unvisited()
        return self._trace(handler, retval), handler.weight, ChoiceMap(handler.discard)

    def _sites(self, trace, args, query):
        handler = _Sites(repr(self), trace, query)
        self._run(handler, args)
        return ChoiceMap(handler.found)

    def _regenerate(self, key, trace, selection, args):
        handler = _Regenerate(key, repr(self), selection, trace)
        retval = self._run(handler, args)
        # Choices that are no longer visited leave the trace without changing the weight:
        # the reverse move would resimulate them from the prior, which cancels their density.
        return self._trace(handler, retval), handler.weight


def gen(fn: Callable[..., Any]) -> StaticGenerativeFunction:
    """Makes a generative function from a Python function.

    Inside the body, ``dist(...) @ address`` makes a random choice and
    ``other_gen_fn(...) @ address`` calls another generative function, whose choices nest
    under ``address``.

    Args:
        fn: the model's body; its arguments are the generative function's arguments.

    Returns:
        A ``StaticGenerativeFunction`` with ``simulate``, ``assess``, ``generate``, ``update``
        and ``regenerate``.

    Example:
        >>> import jax
        >>> from ppl import normal
        >>> @gen
        ... def model(x):
        ...     slope = normal(0.0, 1.0) @ "slope"
        ...     return normal(slope * x, 0.1) @ "y"
        >>> trace, w = model.generate(jax.random.key(0), {"y": 2.0}, (1.0,))
        >>> float(trace.choices["y"]), bool(w == model.assess(trace.choices, (1.0,))[0]
        ...                                 - trace.subtrace("slope").score)
        (2.0, True)
    """
    return StaticGenerativeFunction(fn)
