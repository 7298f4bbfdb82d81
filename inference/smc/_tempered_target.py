"""``Tempered``: a model with its likelihood raised to a power, as a generative function.

For a model with latent choices ``x`` and observed choices ``y``, split the log joint into the
log densities of the latent sites and of the observed sites, ``log p(x, y) = log p0(x) + L(x)``
with ``L(x) = sum over observed sites of their log density`` (read from ``trace.site_scores``).
``Tempered(model, observed)`` with arguments ``(beta, *model_args)`` has the unnormalised
density

    log p_beta(x, y) = log p0(x) + beta * L(x) = log p(x, y) + (beta - 1) * L(x),

so ``beta = 0`` is the prior of the latents and ``beta = 1`` the model. Every GFI method
delegates to the model and adds ``(beta - 1) * L`` to scores and weights:

* ``assess``: ``log p + (beta - 1) L``;
* ``generate``: ``w + (beta - 1) L(x)`` (``w`` the model's weight, same internal proposal);
* ``update`` with new arguments ``(beta', ...)``: ``w + (beta' - 1) L(x') - (beta - 1) L(x)``,
  so changing only ``beta`` gives the tempering increment ``(beta' - beta) L(x)``;
* ``regenerate``: ``w + (beta - 1) (L(x') - L(x))``, the MH ratio for ``p_beta``.

Any MCMC kernel of ``inference.mcmc`` built on a ``Tempered`` target (``mh``, ``hmc``,
``nuts``, ``mala``, ``gibbs``...) therefore leaves ``p_beta(x | y)`` invariant, with ``beta``
read from each trace's arguments.

``p_beta`` is a density over the latents only with the observed addresses constrained;
``simulate`` (which would need an exact sample of an unnormalised density) is not provided.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ppl import AddressError, ChoiceMap, GenerativeFunction, Selection, Trace, select
from ppl._address import show_many
from ppl._choicemap import constrained_addresses


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TemperedTrace(Trace):
    """A trace of ``Tempered``: the model's trace and the inverse temperature ``beta``.

    ``score`` is the tempered log density ``log p(x, y) + (beta - 1) L(x)``; ``site_scores``
    hold the model's own (untempered) per-site log densities.
    """

    inner: Trace
    beta: jax.Array
    score: jax.Array

    @property
    def args(self) -> tuple | None:  # type: ignore[override]
        return None if self.inner.args is None else (self.beta, *self.inner.args)

    @property
    def retval(self) -> Any:
        return self.inner.retval

    @property
    def choices(self) -> Any:
        return self.inner.choices

    @property
    def site_scores(self) -> Any:
        return self.inner.site_scores


def observed_selection(observations: Any, choices: Any) -> Selection:
    """The selection of the addresses of ``observations`` inside a trace with ``choices``.

    Observations of a ``Vmap``/``Scan`` site may be given batched (``{"y": ys}``); in the trace
    that site is below an index (``(..., "y")``), so ``...`` is inserted where the trace's
    choices are indexed and the observations are not given per index.
    """
    return select(*constrained_addresses(observations, choices))


class Tempered(GenerativeFunction):
    """``prior x likelihood^beta`` of ``model``, with arguments ``(beta, *model_args)``.

    See the module docstring for the density and the weight of every GFI method.

    Args:
        model: the generative function.
        observed: the observed addresses: a ``Selection``, or the observations (dict or
            ``ChoiceMap``; only their addresses are used, batched or per index).

    Example:
        >>> import jax
        >>> from ppl import gen, normal
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 1.0) @ "y"
        >>> target = Tempered(model, {"y": 2.0})
        >>> trace, w = target.generate(jax.random.key(0), {"y": 2.0}, (0.0,))
        >>> float(w)  # at beta = 0 the internal proposal is the target
        0.0
        >>> moved, w, _ = target.update(jax.random.key(1), trace, None, (0.5,))
        >>> bool(jax.numpy.isclose(w, 0.5 * target.log_likelihood(trace)))
        True
    """

    def __init__(self, model: GenerativeFunction, observed: Any):
        self.model = model
        self.observed = (
            observed if isinstance(observed, Selection) else ChoiceMap.from_dict(observed)
        )

    def __repr__(self) -> str:
        return f"Tempered({self.model!r})"

    def log_likelihood(self, trace: Trace) -> jax.Array:
        """``L``: the sum of the model's log densities at the observed sites of ``trace``.

        Args:
            trace: a trace of the model or of this ``Tempered`` target.

        Raises:
            AddressError: if the observed addresses select no choice of the trace.
        """
        if isinstance(trace, TemperedTrace):
            trace = trace.inner
        return self._log_likelihood(trace.choices, trace.site_scores)

    def _log_likelihood(self, choices: Any, site_scores: Any) -> jax.Array:
        selection = (
            self.observed
            if isinstance(self.observed, Selection)
            else observed_selection(self.observed, choices)
        )
        scores = site_scores.filter(selection)
        if scores.is_empty():
            raise AddressError(
                f"{self!r}: the observed addresses select no choice of the model; it has "
                f"{show_many(choices.leaf_paths())} (below a Vmap/Scan write (..., 'y'))"
            )
        return sum((jnp.sum(s) for s in jax.tree.leaves(scores)), jnp.zeros(()))

    def _split(self, args: tuple) -> tuple[jax.Array, tuple]:
        if not args:
            raise TypeError(f"{self!r} takes (beta, *model_args); got no arguments")
        return jnp.asarray(args[0], dtype=jnp.result_type(float)), tuple(args[1:])

    def _wrap(self, inner: Trace, beta: jax.Array) -> tuple[TemperedTrace, jax.Array]:
        """The tempered trace and ``(beta - 1) L``, the correction to every model weight."""
        correction = (beta - 1.0) * self.log_likelihood(inner)
        return TemperedTrace(inner, beta, inner.score + correction), correction

    def _correction(self, trace: TemperedTrace) -> jax.Array:
        """``(beta - 1) L`` of an existing tempered trace (recomputed, not differenced)."""
        return (trace.beta - 1.0) * self.log_likelihood(trace.inner)

    def _simulate(self, key, args):
        raise NotImplementedError(
            f"{self!r} is an unnormalised density over the latents given the observations; "
            "use generate with the observations as constraints"
        )

    def _assess(self, choices, args):
        beta, model_args = self._split(args)
        log_p, retval = self.model._assess(choices, model_args)
        # assess has no site scores; a fully constrained generate gives the same trace (the
        # key is unused) and, under jit, shares its computation with the assess above.
        trace, _ = self.model._generate(jax.random.key(0), choices, model_args)
        return log_p + (beta - 1.0) * self.log_likelihood(trace), retval

    def _generate(self, key, constraints, args):
        beta, model_args = self._split(args)
        inner, weight = self.model._generate(key, constraints, model_args)
        trace, correction = self._wrap(inner, beta)
        return trace, weight + correction

    def _update(self, key, trace, constraints, args):
        beta, model_args = self._split(args)
        inner, weight, discard = self.model._update(key, trace.inner, constraints, model_args)
        new, correction = self._wrap(inner, beta)
        return new, weight + correction - self._correction(trace), discard

    def _regenerate(self, key, trace, selection, args):
        beta, model_args = self._split(args)
        inner, weight = self.model._regenerate(key, trace.inner, selection, model_args)
        new, correction = self._wrap(inner, beta)
        return new, weight + correction - self._correction(trace)

    def _with_args(self, trace, args):
        _, model_args = self._split(args)
        return dataclasses.replace(trace, inner=self.model._with_args(trace.inner, model_args))

    def _sites(self, trace, args, query):
        _, model_args = self._split(args)
        return self.model._sites(trace.inner, model_args, query)
