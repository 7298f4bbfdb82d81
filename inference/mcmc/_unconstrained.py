"""The continuous choices of a selection, on an unconstrained space.

Each selected choice ``x`` with support ``S`` is written ``x = T(u)`` with
``T = numpyro.distributions.transforms.biject_to(S)``; the density of ``u`` is
``p(T(u), rest) |det dT/du|``. Positions are ``ChoiceMap``s of unconstrained values, which
blackjax takes as pytrees.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform, biject_to

from ppl import AddressError, ChoiceMap, GenerativeFunction, Selection
from ppl._address import show


def _is_constraint(node: Any) -> bool:
    return isinstance(node, constraints.Constraint)


def _is_transform(node: Any) -> bool:
    return isinstance(node, Transform)


class Unconstrained:
    """``logdensity_fn`` over an unconstrained position, and the way back to a trace.

    Args:
        model: the generative function.
        trace: a trace of it; unselected choices stay fixed at their values in it.
        selection: the continuous choices to move.

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
        supports = model.supports(trace).filter(selection)
        if supports.is_empty():
            raise AddressError(
                "the selection holds no choice of this trace; it has "
                + ", ".join(map(show, trace.choices.leaf_paths()))
            )
        paths = supports.leaf_paths()
        for path, support in zip(
            paths, jax.tree.leaves(supports, is_leaf=_is_constraint), strict=True
        ):
            if support.is_discrete:
                raise AddressError(
                    f"{{addr}} is discrete ({support}); gradient-based kernels (HMC, NUTS, "
                    "MALA) need continuous choices: leave it out of their selection and move "
                    "it with gibbs or mh",
                    path,
                )
        self.transforms = jax.tree.map(biject_to, supports, is_leaf=_is_constraint)

    def position(self, trace: Any) -> ChoiceMap:
        """The unconstrained values of the selected choices of ``trace``."""
        chosen = trace.choices.filter(self.selection)
        return jax.tree.map(lambda t, x: t.inv(x), self.transforms, chosen, is_leaf=_is_transform)

    def constrain(self, position: ChoiceMap) -> ChoiceMap:
        """The selected choices at ``position``: its unconstrained values mapped back."""
        return jax.tree.map(lambda t, u: t(u), self.transforms, position, is_leaf=_is_transform)

    def _constrain(self, position: ChoiceMap) -> tuple[ChoiceMap, jax.Array]:
        values = self.constrain(position)
        jacobians = jax.tree.map(
            lambda t, u, x: jnp.sum(t.log_abs_det_jacobian(u, x)),
            self.transforms,
            position,
            values,
            is_leaf=_is_transform,
        )
        return values, sum(jax.tree.leaves(jacobians), jnp.zeros(()))

    def logdensity_fn(self, trace: Any):
        """``u -> log p(T(u), rest of trace) + log|det dT/du|`` (for blackjax)."""

        def logdensity(position):
            values, log_jacobian = self._constrain(position)
            log_p, _ = self.model.assess(trace.choices | values, trace.args)
            return log_p + log_jacobian

        return logdensity

    def to_trace(self, position: ChoiceMap, trace: Any) -> Any:
        """``trace`` with the selected choices set from ``position`` (no randomness used)."""
        values = self.constrain(position)
        new, _, _ = self.model.update(jax.random.key(0), trace, values)
        return new
