"""``Switch`` and ``Cond``: branching between generative functions with ``jax.lax.switch``.

The branches must visit the same addresses with values of the same shapes (one address
space), so a trace of one branch can be updated under another: changing the index in
``update`` rescores the same choices under the new branch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ppl._address import show
from ppl._choicemap import ChoiceMap
from ppl._interface import GenerativeFunction, Trace


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SwitchTrace(Trace):
    """The trace of the branch taken."""

    branch: Trace
    args: tuple | None  # None when nested (see ``GenerativeFunction._with_args``)
    score: jax.Array

    @property
    def choices(self) -> Any:
        return self.branch.choices

    @property
    def retval(self) -> Any:
        return self.branch.retval

    @property
    def site_scores(self) -> Any:
        return self.branch.site_scores

    def _held_scores(self) -> tuple[jax.Array, ...]:
        return (self.score,)

    def _with_held_scores(self, scores: tuple) -> SwitchTrace:
        return dataclasses.replace(self, score=scores[0])


class Switch(GenerativeFunction):
    """Runs branch ``index`` of ``branches``: arguments ``(index, args_0, args_1, ...)``.

    Args:
        *branches: generative functions with the same address space and return type.

    Example:
        >>> import jax
        >>> from ppl import normal, laplace
        >>> sw = Switch(normal, laplace)
        >>> tr = sw.simulate(jax.random.key(0), (1, (0.0, 1.0), (0.0, 1.0)))
        >>> import numpyro.distributions as nd
        >>> bool(tr.score == nd.Laplace(0.0, 1.0).log_prob(tr.choices))
        True
    """

    def __init__(self, *branches: GenerativeFunction):
        if not branches:
            raise ValueError("Switch needs at least one branch")
        self.branches = branches

    def __repr__(self) -> str:
        return f"Switch({', '.join(map(repr, self.branches))})"

    def _split(self, args: tuple) -> tuple[Any, tuple]:
        if len(args) != len(self.branches) + 1:
            raise TypeError(
                f"{self!r} takes (index, args_0, ..., args_{len(self.branches) - 1})"
                f"; got {len(args)} arguments"
            )
        index, *branch_args = args
        for i, a in enumerate(branch_args):
            if not isinstance(a, tuple):
                raise TypeError(f"{self!r}: the arguments of branch {i} must be a tuple")
        return jnp.asarray(index, jnp.int32), tuple(branch_args)

    def _switch(
        self,
        index,
        make,
        requirement: str = "visit the same addresses with values of the same shapes and "
        "return the same type",
        describe: Any = None,
    ) -> Any:
        """``make(i, branch_i)`` for the branch ``index`` picks, with ``jax.lax.switch``; when
        the branches' outputs differ in type, an error that says each one's."""
        fns = [lambda i=i, b=b: make(i, b) for i, b in enumerate(self.branches)]
        try:
            return jax.lax.switch(index, fns)
        except TypeError as error:
            shown = describe or _describe
            raise TypeError(
                f"{self!r}: the branches must {requirement}; they give:\n"
                + "\n".join(f"  branch {i}: {shown(jax.eval_shape(f))}" for i, f in enumerate(fns))
            ) from error

    def _simulate(self, key, args):
        index, branch_args = self._split(args)
        branch = self._switch(index, lambda i, b: b._simulate(key, branch_args[i]))
        return SwitchTrace(branch, None, branch.score)

    def _assess(self, choices, args):
        index, branch_args = self._split(args)
        return self._switch(index, lambda i, b: b._assess(choices, branch_args[i]))

    def _generate(self, key, constraints, args):
        index, branch_args = self._split(args)
        branch, weight = self._switch(
            index, lambda i, b: b._generate(key, constraints, branch_args[i])
        )
        return SwitchTrace(branch, None, branch.score), weight

    def _update(self, key, trace, constraints, args):
        index, branch_args = self._split(args)
        branch, weight, discard = self._switch(
            index, lambda i, b: b._update(key, trace.branch, constraints, branch_args[i])
        )
        return SwitchTrace(branch, None, branch.score), weight, discard

    def _sites(self, trace, args, query):
        index, branch_args = self._split(args)
        if not isinstance(index, jax.core.Tracer):
            i = int(index)
            return self.branches[i]._sites(trace.branch, branch_args[i], query)
        return self._switch(
            index,
            lambda i, b: b._sites(trace.branch, branch_args[i], query),
            "give supports of the same kind when the branch index is traced (record it "
            "concretely, or give the branches the same supports)",
            describe=str,
        )

    def _regenerate(self, key, trace, selection, args):
        index, branch_args = self._split(args)
        branch, weight = self._switch(
            index, lambda i, b: b._regenerate(key, trace.branch, selection, branch_args[i])
        )
        return SwitchTrace(branch, None, branch.score), weight


def _describe(outputs: Any) -> str:
    """The choices (address: shape dtype) and return shape of one branch's output."""
    trace = outputs[0] if isinstance(outputs, tuple) else outputs
    parts = []
    choices = trace.choices
    if isinstance(choices, ChoiceMap):
        for path, leaf in zip(choices.leaf_paths(), jax.tree.leaves(choices), strict=True):
            parts.append(f"{show(path)}: {leaf.dtype}{list(leaf.shape)}")
    else:
        parts.append(f"value: {choices.dtype}{list(choices.shape)}")
    returned = jax.tree.map(lambda leaf: f"{leaf.dtype}{list(leaf.shape)}", trace.retval)
    return ", ".join(parts) + f"; returns {returned}"


def Cond(if_true: GenerativeFunction, if_false: GenerativeFunction) -> GenerativeFunction:
    """``Cond(a, b)(pred, args_a, args_b)``: ``a`` where ``pred`` is true, else ``b``.

    Example:
        >>> import jax
        >>> from ppl import normal
        >>> tr = Cond(normal, normal).simulate(jax.random.key(0), (True, (10.0, 0.1), (0.0, 0.1)))
        >>> bool(tr.choices > 5)
        True
    """
    return _Cond(if_false, if_true)


class _Cond(Switch):
    def _split(self, args):
        if len(args) != 3:
            raise TypeError(f"Cond takes (pred, args_if_true, args_if_false); got {len(args)}")
        pred, if_true, if_false = args
        index, _ = super()._split((jnp.asarray(pred).astype(jnp.int32), if_false, if_true))
        return index, (if_false, if_true)

    def __repr__(self) -> str:
        return f"Cond({self.branches[1]!r}, {self.branches[0]!r})"


def Mixture(*components: GenerativeFunction) -> GenerativeFunction:
    """A mixture: ``component ~ categorical(logits)``, then that component at ``"value"``.

    Arguments: ``(logits, args_0, args_1, ...)``. The choices are ``"component"`` (the index)
    and ``"value"`` (the component's choices), so the index can be enumerated or resampled.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import normal
        >>> mix = Mixture(normal, normal)
        >>> logits = jnp.log(jnp.array([0.3, 0.7]))
        >>> logp, _ = mix.assess({"component": 1, "value": 0.5}, (logits, (0.0, 1.0), (1.0, 1.0)))
        >>> import numpyro.distributions as nd
        >>> bool(jnp.isclose(logp, jnp.log(0.7) + nd.Normal(1.0, 1.0).log_prob(0.5)))
        True
    """
    from ppl._distributions import categorical
    from ppl._static import gen

    switch = Switch(*components)

    @gen
    def mixture(logits, *component_args):
        index = categorical(logits=logits) @ "component"
        return switch(index, *component_args) @ "value"

    return mixture
