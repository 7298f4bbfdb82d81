"""Distributions as generative functions: thin adapters over ``numpyro.distributions``.

A ``Distribution`` wraps a function that builds a NumPyro distribution from arguments; its
trace holds one value. Sampling, ``log_prob`` and supports are NumPyro's; this module adds the
generative function interface, shape and support checks on given values, and ``@ address``.
The score of a value is the sum of ``log_prob`` over the batch dimensions.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
from jax import custom_batching
from jax.custom_derivatives import SymbolicZero

from ppl._choicemap import EMPTY, ChoiceMap, Masked
from ppl._context import current_prefix, validating
from ppl._debug import check_score
from ppl._errors import AddressError
from ppl._interface import GenerativeFunction, Invocation, Trace
from ppl._selection import Selection


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DistributionTrace(Trace):
    """The trace of a distribution: one value and its log density.

    Nested in another generative function's trace, ``args`` is ``None``: the parameters are
    the caller's values, held there (copying them into every site's trace would make every
    traced program return them again). The public methods fill it in.
    """

    value: Any
    score: jax.Array
    args: tuple | None = None

    @property
    def choices(self) -> Any:
        return self.value

    @property
    def retval(self) -> Any:
        return self.value

    @property
    def site_scores(self) -> jax.Array:
        return self.score

    def _held_scores(self) -> tuple[jax.Array, ...]:
        return (self.score,)

    def _with_held_scores(self, scores: tuple) -> DistributionTrace:
        return dataclasses.replace(self, score=scores[0])


def _is_missing(constraint: Any) -> bool:
    return isinstance(constraint, ChoiceMap) and constraint.is_empty()


class Distribution(GenerativeFunction):
    """A generative function with one random choice, drawn from a NumPyro distribution.

    Args:
        build: a function from arguments to a ``numpyro.distributions.Distribution`` (a
            NumPyro distribution class works: ``Distribution(numpyro.distributions.Weibull)``).
        name: how the distribution is shown in messages.

    Example:
        >>> import jax, numpyro.distributions as nd
        >>> weibull = Distribution(nd.Weibull, "weibull")
        >>> tr = weibull.simulate(jax.random.key(0), (1.0, 2.0))
        >>> bool(tr.score == nd.Weibull(1.0, 2.0).log_prob(tr.value))
        True
    """

    def __init__(self, build: Callable[..., nd.Distribution], name: str | None = None):
        self.build = build
        self.name: str = name or str(getattr(build, "__name__", "distribution"))
        self.estimator: Any = None  # the gradient strategy chosen in the program's code
        self._base: Distribution = self
        try:
            self._signature: inspect.Signature | None = inspect.signature(build)
        except (TypeError, ValueError):
            self._signature = None

    def __repr__(self) -> str:
        return self.name

    def __call__(self, *args: Any, **kwargs: Any) -> Invocation:
        if kwargs or self._signature is not None:
            args = self._bind(args, kwargs)
        return Invocation(self, tuple(args))

    def _bind(self, args: tuple, kwargs: dict) -> tuple:
        if self._signature is None:
            raise TypeError(f"{self.name} takes positional arguments only")
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        keyword_only = set(kwargs) & set(bound.kwargs)
        if keyword_only:
            raise TypeError(f"{self.name}: unsupported keyword arguments {sorted(keyword_only)}")
        return tuple(bound.args)

    def numpyro(self, args: tuple) -> nd.Distribution:
        """The NumPyro distribution for these arguments.

        NumPyro's argument checks run only on concrete arguments: on traced ones they cannot
        raise, and would only add work to every trace.
        """
        concrete = not any(
            isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(args)
        )
        try:
            with numpyro.validation_enabled(validating() and concrete):
                return self.build(*args)
        except ValueError as error:
            raise AddressError(f"invalid arguments for {self.name} at {{addr}}: {error}") from None

    # -- gradient strategies (ADEV) -------------------------------------------------------------
    def with_estimator(self, estimator: Any) -> Distribution:
        """This distribution, with its gradient estimated by ``estimator`` inside expectations.

        Example:
            >>> from ppl import normal
            >>> from ppl.adev import reinforce
            >>> normal.with_estimator(reinforce()).estimator
            reinforce(baseline=None)
        """
        variant = copy.copy(self)
        variant.estimator = estimator
        return variant

    def reparam(self) -> Distribution:
        """``with_estimator(reparam())``: pathwise gradients."""
        from ppl.adev import reparam

        return self.with_estimator(reparam())

    def reinforce(self, baseline: Any = None) -> Distribution:
        """``with_estimator(reinforce(baseline))``: score-function gradients."""
        from ppl.adev import reinforce

        return self.with_estimator(reinforce(baseline))

    def enum(self, vectorized: bool = True) -> Distribution:
        """``with_estimator(enum(vectorized))``: exact enumeration of a finite support."""
        from ppl.adev import enum

        return self.with_estimator(enum(vectorized))

    def mvd(self) -> Distribution:
        """``with_estimator(mvd())``: measure-valued derivatives."""
        from ppl.adev import mvd

        return self.with_estimator(mvd())

    def _draw(self, key: jax.Array, args: tuple, dist: nd.Distribution) -> Any:
        """A fresh value; inside an expectation, a draw that ADEV sees (``adev_sample``)."""
        from ppl.adev._primitive import bind, is_tracing

        if is_tracing():
            return bind(self._base, key, args, current_prefix(), self.estimator)
        return dist.sample(key)

    # -- densities ---------------------------------------------------------------------------
    def _log_density(self, dist: nd.Distribution, value: Any, drawn: bool = False) -> jax.Array:
        """``sum(log p(value))``; for a value ``drawn`` from ``dist`` itself, without NumPyro's
        support mask (it is inside by construction, and the mask costs a select per element)."""
        if _is_bernoulli_logits_score(dist, value):
            return _bernoulli_log_density(dist, value, drawn, self.name)
        return jnp.sum(self._log_densities(dist, value, drawn))

    def _log_densities(self, dist: nd.Distribution, value: Any, drawn: bool) -> jax.Array:
        unmasked = numpyro.validation_enabled(False) if drawn else contextlib.nullcontext()
        with warnings.catch_warnings(), unmasked:
            warnings.filterwarnings("ignore", message="Out-of-support values")
            log_p = dist.log_prob(value)
        check_score(jnp.sum(log_p), self.name)
        return log_p

    def _check_value(self, dist: nd.Distribution, value: Any) -> Any:
        value = jnp.asarray(value) if not isinstance(value, jax.Array) else value
        expected = tuple(dist.batch_shape) + tuple(dist.event_shape)
        if tuple(jnp.shape(value)) != expected:
            raise AddressError(
                f"the value at {{addr}} has shape {tuple(jnp.shape(value))}, but {self.name} "
                f"there has shape {expected} (batch {tuple(dist.batch_shape)} + event "
                f"{tuple(dist.event_shape)}); give a value of that shape"
            )
        if validating() and not isinstance(value, jax.core.Tracer):
            try:
                inside = bool(jnp.all(dist.support(value)))
            except jax.errors.ConcretizationTypeError:
                # Inside a jit/while trace even constants are staged: the check is free there,
                # and an out-of-support value scores -inf.
                inside = True
            if not inside:
                shown = value.tolist() if value.size <= 6 else f"array of shape {value.shape}"
                raise AddressError(
                    f"the value {shown} at {{addr}} is outside the support {dist.support} of "
                    f"{self.name}; give a value inside it (or use ppl.validation(False) to "
                    "score it as log density -inf)"
                )
        return value

    # -- GFI ------------------------------------------------------------------------------------
    def _sample(self, key: jax.Array, args: tuple) -> DistributionTrace:
        dist = self.numpyro(args)
        value = self._draw(key, args, dist)
        return DistributionTrace(value, self._log_density(dist, value, drawn=True))

    def _simulate_repeats(
        self, key: jax.Array, args: tuple, axes: tuple, n: int
    ) -> DistributionTrace | None:
        """``n`` independent repeats as one batched draw, when every repeat's parameters are
        scalars; ``None`` otherwise (or inside an expectation, which sees each repeat's draw).

        One draw of ``n`` values needs a single key, where ``n`` vmapped draws need ``n`` keys
        and generate random bits for each key separately.
        """
        from ppl.adev._primitive import is_tracing

        if is_tracing():
            return None
        batched = []
        for arg, axis in zip(args, axes, strict=True):
            # Python ints and bools may be structural (a shape, a count): those repeats are
            # drawn one by one, as the vmap would.
            scalar_repeats = isinstance(arg, jax.Array | np.ndarray | float) and (
                jnp.ndim(arg) == (axis is not None)
            )
            if not scalar_repeats:
                return None
            batched.append(jnp.broadcast_to(arg, (n,)))
        dist = self.numpyro(tuple(batched))
        if tuple(dist.batch_shape) != (n,) or tuple(dist.event_shape) != ():
            return None
        value = dist.sample(key)
        return DistributionTrace(value, self._log_densities(dist, value, drawn=True))

    def _simulate(self, key, args):
        return self._sample(key, args)

    def _assess(self, choices, args):
        if _is_missing(choices):
            raise AddressError(
                f"assess needs a value for every choice, but {{addr}} ({self.name}) "
                "has none; add it to the choices"
            )
        if isinstance(choices, ChoiceMap):
            raise AddressError(
                f"{{addr}} is a single {self.name} choice, but the choices hold "
                f"a map there ({choices!r}); give a value"
            )
        dist = self.numpyro(args)
        if isinstance(choices, Masked):
            # Per-index choices of a combinator: the combinator checked that every index is
            # given; a repeat without a value would score NaN, never a silent number.
            value = self._check_value(dist, choices.value)
            score = self._log_density(dist, value)
            return jnp.where(choices.flag, score, jnp.nan), value
        value = self._check_value(dist, choices)
        return self._log_density(dist, value), value

    def _generate(self, key, constraints, args):
        if _is_missing(constraints):
            return self._sample(key, args), jnp.zeros(())
        if isinstance(constraints, Masked):
            dist = self.numpyro(args)
            fresh = self._draw(key, args, dist)
            value = jnp.where(constraints.flag, self._check_value(dist, constraints.value), fresh)
            score = self._log_density(dist, value)
            return DistributionTrace(value, score), jnp.where(constraints.flag, score, 0.0)
        score, value = self._assess(constraints, args)
        return DistributionTrace(value, score), score

    def _update(self, key, trace, constraints, args):
        dist = self.numpyro(args)
        if _is_missing(constraints):
            score = self._log_density(dist, trace.value)
            return DistributionTrace(trace.value, score), score - trace.score, EMPTY
        if isinstance(constraints, Masked):
            given = self._check_value(dist, constraints.value)
            value = jnp.where(constraints.flag, given, trace.value)
            discard: Any = trace.value
        else:
            value = self._check_value(dist, constraints)
            discard = trace.value
        score = self._log_density(dist, value)
        return DistributionTrace(value, score), score - trace.score, discard

    def _sites(self, trace, args, query):
        return query(self.numpyro(args), trace.value)

    def _regenerate(self, key, trace, selection: Selection, args):
        flag = selection.leaf_flag()
        dist = self.numpyro(args)
        if flag is False:
            score = self._log_density(dist, trace.value)
            return DistributionTrace(trace.value, score), score - trace.score
        fresh = self._draw(key, args, dist)
        if flag is True:
            score = self._log_density(dist, fresh, drawn=True)
            return DistributionTrace(fresh, score), jnp.zeros(())
        value = jnp.where(flag, fresh, trace.value)
        score = self._log_density(dist, value)
        return DistributionTrace(value, score), jnp.where(flag, 0.0, score - trace.score)


def from_numpyro(distribution: nd.Distribution) -> Invocation:
    """Uses any NumPyro distribution instance as a random choice: ``from_numpyro(d) @ "x"``.

    Example:
        >>> import jax, numpyro.distributions as nd
        >>> from ppl import gen
        >>> @gen
        ... def model():
        ...     return from_numpyro(nd.Weibull(1.0, 2.0)) @ "w"
        >>> float(model.assess({"w": 1.0}, ())[0]) == float(nd.Weibull(1.0, 2.0).log_prob(1.0))
        True
    """
    return Invocation(_INSTANCE, (distribution,))


_INSTANCE = Distribution(lambda distribution: distribution, "numpyro distribution")


def _is_bernoulli_logits_score(dist: nd.Distribution, value: Any) -> bool:
    """Whether ``sum(log p(value))`` is computed as ``_bernoulli_log_density`` does."""
    return type(dist) is nd.BernoulliLogits and jnp.shape(value) == jnp.shape(dist.logits)


def _bernoulli_log_density(
    dist: nd.BernoulliLogits, value: Any, drawn: bool, name: str
) -> jax.Array:
    """``sum(log p(x))`` of Bernoulli logits ``l``: NumPyro's ``sum(x * l - softplus(l))``,
    written for the backend and for how the score is vectorised.

    Computed on its own (the batch of a VAE's likelihood inside the arrays), the terms are
    summed in one reduction, into which the product and the support check fuse. On a CPU,
    copies of the score made by ``jax.vmap`` (a plate, an enumerated latent, a batch of data
    points) are scored as the inner product ``x . l`` minus the softplus sum, so that copies
    which share ``x`` or ``l`` vectorise to a matrix product instead of an element-wise
    product over every pair, and the softplus is computed once per logit rather than once per
    pair: a discrete VAE's likelihood over its classes and batch is then the matrix product its
    hand-written version uses (an element-wise form takes 3-4x as long per step there). On an
    accelerator the fused sum is kept under ``vmap`` too (there the inner product and the
    support check each cost a reduction of their own: 2-5% of a VAE's step on an H100). A
    value off the support {0, 1} scores -inf, as NumPyro's mask gives.
    """
    logits = jnp.asarray(dist.logits)
    x = jnp.asarray(value).astype(logits.dtype)
    log_p = _bernoulli_score(not drawn, _inner_product_form())(x, logits)
    check_score(log_p, name)
    return log_p


def _softplus(logits: jax.Array) -> jax.Array:
    # softplus(l) written out as NumPyro's binary cross-entropy writes it (the same values);
    # its derivative is _bernoulli_score's, which reuses this exp(-|l|).
    return jnp.maximum(logits, 0) + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def _summed_score(x: jax.Array, logits: jax.Array, checked: bool) -> jax.Array:
    """The Bernoulli score as one sum of element-wise terms."""
    terms = x * logits - _softplus(logits)
    if checked:
        terms = jnp.where((x == 0) | (x == 1), terms, -jnp.inf)
    return jnp.sum(terms)


def _inner_product_score(x: jax.Array, logits: jax.Array, checked: bool) -> jax.Array:
    """The Bernoulli score as ``x . l - sum(softplus(l))``."""
    log_p = jnp.dot(x.ravel(), logits.ravel()) - jnp.sum(_softplus(logits))
    if checked:
        log_p = jnp.where(jnp.all((x == 0) | (x == 1)), log_p, -jnp.inf)
    return log_p


@functools.cache
def _bernoulli_score(
    checked: bool, inner_product: bool
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``(x, l) -> sum(log p(x))``: the summed form, whose ``vmap`` is the inner-product form
    if ``inner_product``.

    The choice of form is a ``custom_vmap`` rule. A ``custom_jvp`` around it gives the
    derivative in closed form, ``(x - sigmoid(l)) . dl + l . dx``: the rule is then never
    differentiated (JAX cannot transpose a ``custom_vmap``), derivatives of any order and
    their ``vmap`` go through the same forms, and the derivative at ``l = 0`` is exact (JAX's
    derivative of ``|l|`` there is 1, which makes NumPyro's ``x`` instead of ``x - 1/2``).
    """

    def summed(x: jax.Array, logits: jax.Array) -> jax.Array:
        return _summed_score(x, logits, checked)

    fused = custom_batching.custom_vmap(summed)

    @fused.def_vmap
    def _copies(axis_size, in_batched, x, logits):
        axes = tuple(0 if batched else None for batched in in_batched)
        scalar = jnp.ndim(x) == int(in_batched[0])  # each copy a single value
        form = _inner_product_score if inner_product and not scalar else _summed_score
        return jax.vmap(functools.partial(form, checked=checked), in_axes=axes)(x, logits), True

    @jax.custom_jvp
    def score(x: jax.Array, logits: jax.Array) -> jax.Array:
        return fused(x, logits)

    @functools.partial(score.defjvp, symbolic_zeros=True)
    def _derivative(primals, tangents):
        x, logits = primals
        dx, dlogits = tangents
        log_p = score(x, logits)
        out = jnp.zeros_like(log_p)
        if checked:  # a value off the support (NaN too) has no part in the (zero) slope
            x = jnp.where((x == 0) | (x == 1), x, 0.0)
        if not isinstance(dlogits, SymbolicZero):
            # d softplus(l) = sigmoid(l) dl, from the score's exp(-|l|) (XLA shares it)
            e = jnp.exp(-jnp.abs(logits))
            sigmoid = jnp.where(logits >= 0, 1.0, e) / (1.0 + e)
            out = out + jnp.dot(x.ravel(), dlogits.ravel()) - jnp.sum(sigmoid * dlogits)
        if not isinstance(dx, SymbolicZero):
            out = out + jnp.dot(dx.ravel(), logits.ravel())
        if checked:  # off the support the score is the constant -inf
            out = jnp.where(log_p > -jnp.inf, out, 0.0)
        return log_p, out

    return score


def _inner_product_form() -> bool:
    """Whether copies of ``_bernoulli_log_density`` under ``vmap`` are inner products (on a
    CPU)."""
    return jax.default_backend() == "cpu"
