"""The continuous choices of a selection, on an unconstrained space.

Each selected choice ``x`` with support ``S`` is written ``x = T(u)`` with
``T = numpyro.distributions.transforms.biject_to(S)``; the density of ``u`` is
``p(T(u), rest) |det dT/du|``. Positions are ``ChoiceMap``s of unconstrained values, which
blackjax takes as pytrees.

A support may depend on another selected choice (``x ~ uniform(0, y)`` with ``y`` selected):
then ``T`` for ``x`` is built from the ``y`` of the same position. The model is a sequential
program, so ``T(u)`` is the fixed point of ``x <- T_{S(x)}(u)``, reached after one pass per
level of the dependence: a choice whose support depends on no selected value is exact after
the first pass, one that depends only on those after the second, and so on. The map is then
triangular, and ``log|det dT/du|`` is the sum of each choice's own term. Which supports depend
on which values is read once, from the data flow of ``supports`` (``input_dependence``); the
common case, no dependence, costs one pass, as before.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform, biject_to

from ppl import AddressError, ChoiceMap, GenerativeFunction, Selection, validation
from ppl._address import show
from ppl._jax_internals import input_dependence


def is_constraint(node: Any) -> bool:
    return isinstance(node, constraints.Constraint)


def _is_transform(node: Any) -> bool:
    return isinstance(node, Transform)


class Unconstrained:
    """``logdensity_fn`` over an unconstrained position, and the way back to a trace.

    Args:
        model: the generative function.
        trace: a trace of it; unselected choices stay fixed at their values in it.
        selection: the continuous choices to move.

    A selected choice whose support depends on another selected value (``uniform(0, y)``)
    is mapped with that value at the same position; ``passes`` counts the supports' evaluations
    this takes (1 when no support depends on a selected value).

    Raises:
        AddressError: if a selected choice has a discrete support, or nothing is selected.

    Example:
        >>> import jax
        >>> from ppl import gen, gamma, normal, select
        >>> @gen
        ... def model():
        ...     scale = gamma(2.0, 1.0) @ "scale"
        ...     return normal(0.0, scale) @ "x"
        >>> trace = model.simulate(jax.random.key(0), ())
        >>> view = Unconstrained(model, trace, select("scale"))
        >>> u = view.position(trace)
        >>> back = view.to_trace(u, trace).choices["scale"]
        >>> bool(jax.numpy.isclose(back, trace.choices["scale"]))
        True
    """

    def __init__(self, model: GenerativeFunction, trace: Any, selection: Selection):
        self.model = model
        self.selection = selection
        supports = self._supports(trace)
        if supports.is_empty():
            raise AddressError(
                "the selection holds no choice of this trace; it has "
                + ", ".join(map(show, trace.choices.leaf_paths()))
            )
        paths = supports.leaf_paths()
        for path, support in zip(
            paths, jax.tree.leaves(supports, is_leaf=is_constraint), strict=True
        ):
            if support.is_discrete:
                raise AddressError(
                    f"{{addr}} is discrete ({support}); gradient-based kernels (HMC, NUTS, "
                    "MALA) need continuous choices: leave it out of their selection and move "
                    "it with gibbs or mh",
                    path,
                )
        self.transforms = _transforms(supports)
        self.trace = trace
        #: How many times ``constrain`` evaluates the supports: 1 unless a selected choice's
        #: support depends on another selected value (see the module text).
        self.passes = (
            _passes(self._supports_at, trace, trace.choices.filter(selection), supports)
            if any(isinstance(p, jax.Array) for p in jax.tree.leaves(supports))
            else 1  # no support has a computed parameter (real, positive, ...)
        )

    def _supports(self, trace: Any) -> ChoiceMap:
        """The supports of the selected choices, shaped like them. Where the selection names
        some repeats of a ``Vmap``/``Scan`` site (the others observed), the choices hold those
        repeats one by one, and so do the supports then."""
        every = self.model.supports(trace)
        chosen = trace.choices.filter(self.selection)
        supports = _shaped_like(every.filter(self.selection), chosen)
        shape: Any = jax.tree.structure(supports, is_leaf=is_constraint)
        if shape != jax.tree.structure(chosen):
            shaped, paths = set(supports.leaf_paths()), chosen.leaf_paths()
            repeats = [p for p in paths if any(isinstance(c, int) for c in p)]
            path = next((p for p in paths if p not in shaped), (repeats or paths)[0])
            raise AddressError(
                "gradient-based kernels (NUTS, HMC, MALA) cannot yet move the choices near "
                "{addr}, of a plate observed at some repeats below another plate's repeats; "
                "move them with mh or gibbs kernels (mcmc.run(..., kernel=...))",
                path,
            )
        return supports

    def _supports_at(self, trace: Any, values: ChoiceMap) -> ChoiceMap:
        # Before the last pass a value may lie outside the support its parents now give it.
        with validation(False):
            moved, _, _ = self.model.update(jax.random.key(0), trace, values)
        return self._supports(moved)

    def _transforms_at(self, trace: Any, values: ChoiceMap) -> Any:
        return _transforms(self._supports_at(trace, values))

    def position(self, trace: Any) -> ChoiceMap:
        """The unconstrained values of the selected choices of ``trace``."""
        chosen = trace.choices.filter(self.selection)
        transforms = self.transforms
        if self.passes > 1:  # the supports at this trace's own values
            transforms = _transforms(self._supports(trace))
        return jax.tree.map(lambda t, x: t.inv(x), transforms, chosen, is_leaf=_is_transform)

    def constrain(self, position: ChoiceMap) -> ChoiceMap:
        """The selected choices at ``position``: its unconstrained values mapped back."""
        return self._constrain(position, self.trace)[0]

    def _constrain(self, position: ChoiceMap, trace: Any) -> tuple[ChoiceMap, Any]:
        """The selected choices at ``position``, and the transforms that gave them."""

        def apply(transforms):
            return jax.tree.map(lambda t, u: t(u), transforms, position, is_leaf=_is_transform)

        transforms = self.transforms
        values = apply(transforms)
        if self.passes > 2:  # all but the last pass in a loop (a scan under differentiation)
            values = jax.lax.fori_loop(
                0,
                self.passes - 2,
                lambda _, v: apply(self._transforms_at(trace, v)),
                values,
            )
        if self.passes > 1:
            transforms = self._transforms_at(trace, values)
            values = apply(transforms)
        return values, transforms

    def logdensity_fn(self, trace: Any):
        """``u -> log p(T(u), rest of trace) + log|det dT/du|`` (for blackjax)."""

        def logdensity(position):
            values, transforms = self._constrain(position, trace)
            log_p, _ = self.model.assess(trace.choices | values, trace.args)
            return log_p + self._log_jacobian(transforms, position, values)

        return logdensity

    def _log_jacobian(self, transforms: Any, position: ChoiceMap, values: ChoiceMap) -> jax.Array:
        """``log|det dT/du|``: the sum of each choice's term (the map is triangular)."""
        terms = jax.tree.map(
            lambda t, u, x: jnp.sum(t.log_abs_det_jacobian(u, x)),
            transforms,
            position,
            values,
            is_leaf=_is_transform,
        )
        return sum(jax.tree.leaves(terms), jnp.zeros(()))

    def to_trace(self, position: ChoiceMap, trace: Any) -> Any:
        """``trace`` with the selected choices set from ``position`` (no randomness used)."""
        values, _ = self._constrain(position, trace)
        new, _, _ = self.model.update(jax.random.key(0), trace, values)
        return new


def _transforms(supports: ChoiceMap) -> Any:
    """``biject_to`` of each support: the map from the unconstrained space onto it."""
    return jax.tree.map(biject_to, supports, is_leaf=is_constraint)


def _passes(supports_at: Any, trace: Any, chosen: ChoiceMap, supports: ChoiceMap) -> int:
    """Passes ``x <- T_{S(x)}(u)`` needed to reach the fixed point from ``x`` = the trace's.

    One more than the longest chain of selected choices whose supports depend on each other's
    values. A choice whose support depends on its own value (elements of one address inside a
    ``Scan``) or a cycle between addresses may chain every element, so it takes one pass per
    scalar element. ``supports`` (those at the trace's values) give each choice's number of
    support parameters.
    """
    values, treedef = jax.tree.flatten(chosen)

    def parameters(leaves):
        supports = supports_at(trace, jax.tree.unflatten(treedef, leaves))
        return [jax.tree.leaves(c) for c in jax.tree.leaves(supports, is_leaf=is_constraint)]

    dependence = input_dependence(parameters, values)
    # reads[i]: the selected values that choice i's support parameters depend on.
    reads, start = [], 0
    for constraint in jax.tree.leaves(supports, is_leaf=is_constraint):
        count = len(jax.tree.leaves(constraint))
        rows = dependence[start : start + count]
        reads.append({j for row in rows for j, used in enumerate(row) if used})
        start += count
    assert start == len(dependence), (start, len(dependence))
    depth: dict[int, int] = {}

    def longest(i: int, seen: frozenset) -> int:
        if i in seen:
            raise _Cycle
        if i not in depth:
            depth[i] = 1 + max((longest(j, seen | {i}) for j in reads[i]), default=0)
        return depth[i]

    try:
        return max((longest(i, frozenset()) for i in range(len(reads))), default=1)
    except _Cycle:
        return sum(int(jnp.size(v)) for v in values)


class _Cycle(Exception):
    pass


def _shaped_like(supports: Any, chosen: Any) -> Any:
    """``supports`` (one batched node per combinator site) shaped like ``chosen``, which holds
    the repeats of a partly observed site one by one (``{0: ..., 2: ...}``)."""
    shape: Any = jax.tree.structure(supports, is_leaf=is_constraint)
    if shape == jax.tree.structure(chosen):
        return supports
    if not isinstance(chosen, ChoiceMap) or not isinstance(supports, ChoiceMap):
        return supports
    keys = list(chosen)
    if supports.is_indexed and all(isinstance(k, int) for k in keys):
        return ChoiceMap({path: supports[path] for path in chosen.leaf_paths()})
    node = ChoiceMap({k: _shaped_like(supports.get_submap(k), chosen.get_submap(k)) for k in keys})
    return ChoiceMap.indexed(node) if chosen.is_indexed else node
