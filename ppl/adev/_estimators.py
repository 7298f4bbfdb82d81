"""Gradient strategies for one random choice: ``reparam``, ``reinforce``, ``enum``, ``mvd``.

Each strategy turns the draw of one choice ``x ~ p_θ`` into an estimate of
``∇_θ E_{x~p_θ}[f(x)]``, where ``f`` is the rest of the program. The ADEV interpreter gives a
strategy the *site* (distribution, arguments, key, address) and, for strategies that need
it, the *continuation* ``k``: ``k(x) = (v, s)``, the value of the rest of the program at ``x``
and a *surrogate* whose gradient is an unbiased estimate of ``∇ v``. Strategies combine
those into the site's own ``(v, s)``:

- ``reparam``:   x = T_θ(ε), gradient through the sample path;
- ``reinforce``: x sampled without gradient, plus ``(log p_θ(x) − sg) · sg(v − b)``;
- ``enum``:      ``Σ_x p_θ(x) v(x)``, exactly, over a finite support;
- ``mvd``:       ``c_θ (v(x⁺) − v(x⁻))`` with the weak-derivative couplings of ``_mvd``.

``reparam`` and ``reinforce`` with a baseline that does not look downstream are *local*: they
add to running accumulators (``Accumulators``) instead of calling the continuation, which is
what lets them live inside ``lax.scan``/``while_loop``/``cond`` bodies.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd

from ppl._errors import AddressError
from ppl.adev._mvd import couplings
from ppl.adev._primitive import Site, where

Continuation = Callable[[jax.Array], tuple[jax.Array, jax.Array]]
sg = jax.lax.stop_gradient


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Accumulators:
    """Score-function terms gathered since the last continuation point.

    With ``δ_i = log p_i(x_i) − sg(log p_i(x_i))`` (value 0, gradient ``∇ log p_i``) for every
    local REINFORCE draw ``i`` with baseline ``b_i``, and the final value ``v``:
    ``surrogate += A·sg(v) − B + sg(v)·C − D/2`` where ``A = Σ δ_i``, ``B = Σ δ_i sg(b_i)``,
    and ``C = Σ b_j``, ``D = Σ b_j²`` over learned baselines (their regression on ``v``).
    """

    A: jax.Array
    B: jax.Array
    C: jax.Array
    D: jax.Array

    @staticmethod
    def zeros() -> Accumulators:
        z = jnp.zeros(())
        return Accumulators(z, z, z, z)

    def __add__(self, other: Accumulators) -> Accumulators:
        return jax.tree.map(jnp.add, self, other)

    def finish(self, value: jax.Array, surrogate: jax.Array) -> jax.Array:
        v = sg(value)
        return surrogate + self.A * v - self.B + v * self.C - 0.5 * self.D


class Context(abc.ABC):
    """What a strategy may ask of the interpreter."""

    @abc.abstractmethod
    def add(self, terms: Accumulators) -> None: ...

    @abc.abstractmethod
    def state(self, address: tuple) -> jax.Array | None: ...

    @abc.abstractmethod
    def track(self, address: tuple, baseline: Baseline) -> None: ...


# -- baselines -------------------------------------------------------------------------------
class Baseline:
    """A control variate ``b`` for REINFORCE: it must not depend on the choice it serves."""

    uses_continuation = False

    def value(self, site: Site, context: Context) -> jax.Array | None:
        return None

    def init_state(self) -> Any:
        return None

    def update_state(self, state: jax.Array, value: jax.Array) -> jax.Array:
        return state


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class constant(Baseline):
    """A fixed baseline ``b = c``.

    Example:
        >>> from ppl.adev import reinforce
        >>> reinforce(baseline=constant(1.0)).baseline.c
        1.0
    """

    c: Any

    def value(self, site, context):
        return jnp.asarray(self.c)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class running_mean(Baseline):
    """An exponential moving average of the objective's value over training steps.

    The average is estimator state: ``vi.fit`` (or ``Expectation.value_and_grad`` with
    ``state=``) carries it from step to step, one per address.

    Example:
        >>> from ppl.adev import reinforce
        >>> reinforce(baseline=running_mean(decay=0.9)).baseline.decay
        0.9
    """

    decay: float = dataclasses.field(default=0.9, metadata={"static": True})

    def value(self, site, context):
        if not site.address:
            raise AddressError(
                "a running_mean baseline needs an addressed choice, to keep its average by "
                "address; sample it inside a @gen function"
            )
        context.track(site.address, self)
        state = context.state(site.address)
        return None if state is None else state[0]

    def init_state(self):
        return jnp.zeros((2,))  # (average, number of updates so far)

    def update_state(self, state, value):
        mean, count = state[0], state[1]
        weight = jnp.where(count == 0, 1.0, 1.0 - self.decay)
        return jnp.stack([mean + weight * (jnp.mean(sg(value)) - mean), count + 1])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class learned(Baseline):
    """A baseline computed in the guide's code from upstream values: ``b = prediction``.

    Whatever ``prediction`` depends on receives the gradient of ``−(v − b)²/2`` (a regression
    of ``b`` on the objective's value), so a baseline network trains with the objective. Give
    it parameters of its own: parameters shared with the objective would mix the two
    gradients.

    Example:
        >>> import jax.numpy as jnp
        >>> from ppl.adev import reinforce
        >>> reinforce(baseline=learned(jnp.zeros(()))).baseline.prediction.shape
        ()
    """

    prediction: Any

    def value(self, site, context):
        b = jnp.asarray(self.prediction)
        context.add(Accumulators(jnp.zeros(()), jnp.zeros(()), jnp.sum(b), jnp.sum(b * b)))
        return b


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class leave_one_out(Baseline):
    """The multi-sample leave-one-out baseline (VIMCO-style) for a choice drawn in a plate.

    For copy ``j`` of a vectorised draw (``jax.vmap``, e.g. the particles of an IWAE), the
    baseline is the rest of the program's value with copy ``j`` replaced by an independent
    fresh draw: it does not depend on ``x_j`` and tracks everything else, so the score term
    of each particle is centred by what the other particles already explain.

    Example:
        >>> from ppl.adev import reinforce
        >>> reinforce(baseline=leave_one_out()).needs_continuation
        True
    """

    uses_continuation = True


# -- strategies -----------------------------------------------------------------------------
class Estimator:
    """A gradient strategy for one random choice (a frozen pytree: traced fields allowed)."""

    @property
    def needs_continuation(self) -> bool:
        return False

    def check(self, site: Site, dist: Any) -> None:
        """Raises a clear error if this strategy cannot serve this distribution."""

    def local(self, site: Site, context: Context) -> jax.Array:
        """The draw, for local strategies; adds its score-function terms to ``context``."""
        raise NotImplementedError

    def with_continuation(
        self, site: Site, k: Continuation, context: Context
    ) -> tuple[jax.Array, jax.Array]:
        """``(v, s)`` for the site and the rest of the program (continuation strategies)."""
        raise NotImplementedError

    @property
    def branching(self) -> bool:
        """Whether the strategy is ``branches`` and ``fold``: the rest of the program run at
        values fixed before it runs, its results there combined linearly (``enum``, ``mvd``),
        so that every path through several such draws can run at once."""
        return False

    def branches(self, site: Site) -> tuple[jax.Array, jax.Array]:
        """``(values [M, *shape], coefficients [M])``: where the rest of the program runs, and
        the coefficients ``fold`` combines its results there with."""
        raise NotImplementedError

    @staticmethod
    def fold(coefficients: jax.Array, vs: jax.Array, ss: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(v, s)`` from the rest of the program's ``(vs, ss)`` at each of ``branches``'
        values (axis 0); ``coefficients``' axes are the leading axes of ``vs``."""
        raise NotImplementedError

    def name(self) -> str:
        return type(self).__name__


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class reparam(Estimator):
    """Pathwise (reparameterization) gradients: ``x = T_θ(ε)``, differentiated through ``T``.

    Serves every NumPyro distribution with ``has_rsample`` (normal, multivariate normal,
    log-normal, gamma and beta and dirichlet through implicit reparameterization, ...).

    Example:
        >>> import jax
        >>> from ppl import normal
        >>> from ppl.adev import expectation
        >>> @expectation
        ... def square(key, mu):
        ...     x = normal.reparam().simulate(key, (mu, 1.0)).retval
        ...     return x**2
        >>> float(square.grad_estimate(jax.random.key(0), 2.0)[0]) != 0.0
        True
    """

    def check(self, site, dist):
        if not dist.has_rsample:
            raise AddressError(
                f"reparam at {where(site.address)}: {type(dist).__name__} has no "
                "reparameterized sampler; use reinforce(), enum() or mvd() there"
            )

    def local(self, site, context):
        return site.sample()


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class reinforce(Estimator):
    """Score-function (REINFORCE) gradients, optionally with a baseline.

    ``∇ E[f] ≈ ∇f(x) + (f(x) − b) ∇ log p_θ(x)`` with ``x`` drawn without gradient. Serves
    every distribution. ``baseline`` is ``None``, a number, or a ``Baseline``
    (``constant``, ``running_mean``, ``learned``, ``leave_one_out``).

    Example:
        >>> import jax
        >>> from ppl import flip
        >>> from ppl.adev import expectation
        >>> @expectation
        ... def coin(key, p):
        ...     return 3.0 * flip.reinforce().simulate(key, (p,)).retval
        >>> coin.grad_estimate(jax.random.key(1), 0.3)[0].shape
        ()
    """

    baseline: Any = None

    def __post_init__(self):
        if self.baseline is not None and not isinstance(self.baseline, Baseline):
            object.__setattr__(self, "baseline", constant(self.baseline))

    @property
    def needs_continuation(self) -> bool:
        return isinstance(self.baseline, Baseline) and self.baseline.uses_continuation

    def local(self, site, context):
        x = sg(site.sample())
        delta = _delta(site.log_prob(x))
        b = None if self.baseline is None else self.baseline.value(site, context)
        zero = jnp.zeros(())
        weighted = zero if b is None else jnp.sum(delta * sg(b))
        context.add(Accumulators(jnp.sum(delta), weighted, zero, zero))
        return x

    def with_continuation(self, site, k, context):
        if site.plate_ndims == 0:
            raise AddressError(
                f"leave_one_out at {where(site.address)} needs several copies of the draw "
                "(a vmapped guide, e.g. the particles of a multi-sample objective)"
            )
        x = sg(site.sample())
        fresh = sg(site.sample(_fold(site.key, 1)))
        v, s = k(x)
        masks = _one_hot_masks(site.plate_shape, x.ndim)
        others = jax.vmap(lambda m: sg(k(jnp.where(m, fresh, x))[0]))(masks)  # [n, ...]
        delta = _delta(site.log_prob(x)).reshape(-1)  # one per plate copy
        centred = sg(v)[None] - others
        return v, s + jnp.sum(delta.reshape((-1,) + (1,) * v.ndim) * centred, axis=0)


def _leading(coefficients: jax.Array, vs: jax.Array) -> jax.Array:
    """``coefficients`` (the leading axes of ``vs``) with ``vs``' other axes, of size 1."""
    return coefficients.reshape(coefficients.shape + (1,) * (vs.ndim - coefficients.ndim))


def weighted_sum(p: jax.Array, vs: jax.Array, ss: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``enum``'s ``(v, s)`` from the continuation's ``(vs, ss)`` at each value (axis 0) and
    the values' probabilities ``p`` (whose gradient the surrogate carries; its axes are the
    leading axes of ``vs``)."""
    weights = _leading(p, vs)
    v = jnp.sum(sg(weights) * vs, axis=0)
    s = jnp.sum(weights * sg(vs) + sg(weights) * ss, axis=0)
    return v, s


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class enum(Estimator):
    """Exact enumeration: ``E[f] = Σ_x p_θ(x) f(x)`` over a finite support.

    The rest of the program runs once per value, vectorised with ``jax.vmap`` (default) or one
    value at a time with ``jax.lax.map`` (``vectorized=False``, for large continuations). A
    draw with several elements is enumerated jointly (``K^n`` values), up to ``max_size``.

    Example:
        >>> import jax
        >>> from ppl import flip
        >>> from ppl.adev import expectation
        >>> @expectation
        ... def coin(key, p):
        ...     return 3.0 * flip.enum().simulate(key, (p,)).retval
        >>> key = jax.random.key(0)
        >>> float(coin.estimate(key, 0.25)), float(coin.grad_estimate(key, 0.25)[0])
        (0.75, 3.0)
    """

    vectorized: bool = dataclasses.field(default=True, metadata={"static": True})
    max_size: int = dataclasses.field(default=4096, metadata={"static": True})

    @property
    def needs_continuation(self) -> bool:
        return True

    def check(self, site, dist):
        if not dist.has_enumerate_support or dist.event_shape != ():
            raise AddressError(
                f"enum at {where(site.address)}: {type(dist).__name__} has no finite support "
                "to enumerate; use reinforce() or mvd() there"
            )

    def values(self, site: Site) -> jax.Array:
        """Every joint value of the draw: ``[M, *shape]``."""
        try:
            support = site.map(lambda d: d.enumerate_support(expand=True))  # [*plate, K, *batch]
        except jax.errors.ConcretizationTypeError:
            raise AddressError(
                f"enum at {where(site.address)}: the size of the support depends on a traced "
                "value; pass it as a Python number, or use reinforce() there"
            ) from None
        size = support.shape[site.plate_ndims]
        support = jnp.moveaxis(support, site.plate_ndims, -1)  # [*plate, *batch, K]
        shape = support.shape[:-1]
        n = math.prod(shape)
        if size**n > self.max_size:
            raise AddressError(
                f"enum at {where(site.address)}: the joint support has {size}^{n} values, over "
                f"the limit max_size={self.max_size}; use reinforce() or mvd() there, or raise "
                "max_size"
            )
        if n == 1:
            values = support.reshape((size, *shape))
        else:  # value k gives element j its choice[k, j]-th support point
            per_element = support.reshape(n, size)
            choice = np.stack(np.unravel_index(np.arange(size**n), (size,) * n), axis=-1)
            values = per_element[np.arange(n), choice].reshape((size**n, *shape))
        return values.astype(site.sample_struct().dtype)

    def probabilities(self, site: Site, values: jax.Array) -> jax.Array:
        """The probability of each of ``values`` (``values(site)``): ``[M]``.

        A single Bernoulli or categorical draw reads them from its parameters (``[1 - p, p]``,
        ``softmax(logits)``, ...), which is exact at ``p = 0`` or ``1`` and a few operations
        where ``exp(log_prob)`` of each value is a dozen; any other draw, ``exp`` of its log
        density at each value."""
        if site.plate_ndims == 0 and values.ndim == 1:
            table = _support_probabilities(site.distribution.numpyro(site.args))
            if table is not None:
                return table
        return jnp.exp(jax.vmap(lambda x: jnp.sum(site.log_prob(x)))(values))

    @property
    def branching(self) -> bool:
        return self.vectorized

    def branches(self, site):
        values = self.values(site)
        return values, self.probabilities(site, values)

    @staticmethod
    def fold(coefficients, vs, ss):
        """``weighted_sum``: the coefficients are the values' probabilities."""
        return weighted_sum(coefficients, vs, ss)

    def with_continuation(self, site, k, context):
        values, p = self.branches(site)
        if self.vectorized:
            vs, ss = jax.vmap(k)(values)
        else:
            vs, ss = jax.lax.map(k, values)
        return weighted_sum(p, vs, ss)


def _support_probabilities(dist: Any) -> jax.Array | None:
    """The probabilities of a scalar Bernoulli's or categorical's support, in the order of its
    ``enumerate_support``, or ``None`` for any other distribution."""
    if dist.batch_shape != ():
        return None
    if isinstance(dist, nd.BernoulliProbs):
        return jnp.stack([1 - dist.probs, dist.probs])
    if isinstance(dist, nd.BernoulliLogits):
        return jax.nn.sigmoid(jnp.stack([-dist.logits, dist.logits]))
    if isinstance(dist, nd.CategoricalProbs):
        return dist.probs
    if isinstance(dist, nd.CategoricalLogits):
        return jax.nn.softmax(dist.logits)
    return None


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class mvd(Estimator):
    """Measure-valued derivatives: ``∂_θ E[f] = c_θ (E_{x⁺}[f] − E_{x⁻}[f])``.

    For each parameter element, the rest of the program is evaluated at a coupled pair
    ``x⁺, x⁻`` (weak-derivative decomposition of ``∂_θ p_θ``), vectorised over elements.
    Serves bernoulli, categorical, normal, poisson and geometric.

    Example:
        >>> import jax
        >>> from ppl import flip
        >>> from ppl.adev import expectation
        >>> @expectation
        ... def coin(key, p):
        ...     return 3.0 * flip.mvd().simulate(key, (p,)).retval
        >>> float(coin.grad_estimate(jax.random.key(0), 0.25)[0])
        3.0
    """

    @property
    def needs_continuation(self) -> bool:
        return True

    def check(self, site, dist):
        couplings(dist, None, None, site.address, check_only=True)

    @property
    def branching(self) -> bool:
        return True

    def branches(self, site):
        """The draw ``x``, then for each coupling and element ``e``: ``x`` with element ``e``
        at ``x⁺`` (and at ``x⁻``, unless that is ``x`` itself); each row's coefficient is
        ``±δθ_e c_e`` (``δθ = θ − sg(θ)``: value 0, gradient that of ``θ``)."""
        x = sg(site.sample())
        terms = site.map(lambda d, x, key: couplings(d, x, key, site.address), x, site.key)
        masks = _one_hot_masks(x.shape, x.ndim) if x.ndim else None  # [E, *shape]

        def at_each_element(value):  # [E, *shape]: x with element e at value's
            return jnp.where(masks, value, x) if x.ndim else value[None]

        rows, coefficients = [x[None]], [jnp.zeros(1)]
        for theta, c, positive, negative in terms:
            # every argument has the site's full shape [*plate, *batch]
            weight = (_delta(theta) * sg(c)).reshape(-1)  # [E]
            rows.append(at_each_element(positive))
            coefficients.append(weight)
            if negative is None:  # x⁻ = x: row 0
                coefficients[0] = coefficients[0] - jnp.sum(weight)
            else:
                rows.append(at_each_element(negative))
                coefficients.append(-weight)
        return sg(jnp.concatenate(rows)), jnp.concatenate(coefficients)

    @staticmethod
    def fold(coefficients, vs, ss):
        """``v`` and ``s`` at the draw (row 0), plus ``Σ_m coefficient_m sg(v_m)``."""
        return vs[0], ss[0] + jnp.sum(_leading(coefficients, vs) * sg(vs), axis=0)

    def with_continuation(self, site, k, context):
        values, coefficients = self.branches(site)
        vs, ss = jax.vmap(k)(values)  # the rest of the program traced once, for every row
        return self.fold(coefficients, vs, ss)


def _delta(x: jax.Array) -> jax.Array:
    return x - sg(x)


def _fold(key_data: jax.Array, i: int) -> jax.Array:
    def one(k):
        return jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(k), i))

    for _ in range(key_data.ndim - 1):
        one = jax.vmap(one)
    return one(key_data)


def _one_hot_masks(shape: tuple, ndim: int) -> jax.Array:
    """``n = prod(shape)`` boolean masks of ``shape`` padded to ``ndim`` axes, one element on."""
    n = math.prod(shape)
    masks = jnp.eye(n, dtype=bool).reshape((n, *shape))
    return masks.reshape(masks.shape + (1,) * (ndim - len(shape)))


def default_estimator(dist: Any) -> Estimator:
    """``reparam`` where NumPyro has a reparameterized sampler, ``reinforce`` elsewhere."""
    return reparam() if dist.has_rsample else reinforce()
