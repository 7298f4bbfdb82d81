"""Resampling schemes, the effective sample size, and resampling triggered by a low ESS.

A resampling scheme is a function ``(key, log_weights, num_samples) -> ancestors``: given ``N``
unnormalised log weights it returns ``num_samples`` indices in ``[0, N)``, in increasing order,
such that the expected number of copies of particle ``i`` is ``num_samples * w_i`` with
``w = softmax(log_weights)``. The schemes differ in the variance of those copy counts.

Costs, for ``N`` particles and ``M`` samples:

* ``systematic`` and ``stratified``: ``O(N + M)``. The ``M`` points ``(j + U_j) / M`` lie one per
  stratum, so the number of them below a cumulative weight ``c`` is ``floor(M c)`` plus one
  comparison in the stratum containing ``M c``; counting them at every cumulative weight and
  expanding counts to indices (``jnp.repeat``: a cumulative sum, a scatter and a gather) needs
  no search.
* ``multinomial``: ``O(N + M log N)``: ``M`` sorted uniforms (from exponential spacings,
  ``O(M)``, no sort) located among the cumulative weights by binary search.
* ``residual``: ``O(N + R log N)`` with ``R < N`` the residual draws (multinomial).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable

import jax
import jax.numpy as jnp

ResamplingScheme = Callable[[jax.Array, jax.Array, int], jax.Array]
"""``(key, log_weights, num_samples) -> ancestors``: the type of a resampling scheme."""


def _cumulative_weights(log_weights: jax.Array) -> jax.Array:
    """``cumsum(softmax(log_weights))``, monotone, with the last entry exactly 1."""
    log_weights = jnp.asarray(log_weights)
    if log_weights.ndim != 1:
        raise ValueError(
            f"log_weights must be a vector of one log weight per particle, got shape "
            f"{log_weights.shape}"
        )
    return _monotone_cumsum(jax.nn.softmax(log_weights))


def _monotone_cumsum(weights: jax.Array) -> jax.Array:
    """``cumsum(weights) / sum``, non-decreasing, with the last entry exactly 1.

    A float32 ``cumsum`` of thousands of terms is not monotone (XLA sums in a tree, and the
    partial sums round differently), so a running maximum follows it. Dividing by the last
    partial sum makes every entry after the last positive weight exactly 1.0 and equal
    entries for zero weights, so no scheme can pick a zero-weight particle.
    """
    cumulative = jax.lax.cummax(jnp.cumsum(weights))
    return cumulative / jnp.maximum(cumulative[-1], jnp.finfo(cumulative.dtype).tiny)


def _indices_from_counts(counts: jax.Array, num_samples: int) -> jax.Array:
    """``[0]*counts[0] + [1]*counts[1] + ...`` as ``num_samples`` indices, in ``O(N + M)``."""
    n = counts.shape[0]
    return jnp.repeat(jnp.arange(n), counts, total_repeat_length=num_samples)


def _counts_below(cumulative: jax.Array, offsets: jax.Array) -> jax.Array:
    """For each ``c`` in ``cumulative``: the number of points ``j + offsets[j] < M c``.

    ``offsets`` are in ``[0, 1)``, one per stratum ``[j, j + 1)``; every stratum below
    ``floor(M c)`` lies wholly below ``M c``, so only the stratum holding ``M c`` needs a test.
    """
    m = offsets.shape[0]
    scaled = m * cumulative
    whole = jnp.clip(jnp.floor(scaled), 0, m).astype(jnp.int32)
    partial = (whole < m) & (offsets[jnp.minimum(whole, m - 1)] < scaled - whole)
    return whole + partial.astype(jnp.int32)


def _stratified_indices(cumulative: jax.Array, offsets: jax.Array) -> jax.Array:
    below = _counts_below(cumulative, offsets)
    counts = jnp.diff(below, prepend=0)
    return _indices_from_counts(counts, offsets.shape[0])


def _check_num_samples(num_samples: int) -> int:
    try:
        count = operator.index(num_samples)
    except TypeError:
        count = 0
    if count < 1:
        raise ValueError(
            f"num_samples must be a positive integer known at trace time, got {num_samples!r}"
        )
    return count


def systematic(key: jax.Array, log_weights: jax.Array, num_samples: int) -> jax.Array:
    """Systematic resampling: one uniform ``U`` and the points ``(j + U) / M``.

    Each particle gets ``floor(M w_i)`` or ``ceil(M w_i)`` copies. Cost ``O(N + M)``.

    Args:
        key: a PRNG key.
        log_weights: ``(N,)`` unnormalised log weights.
        num_samples: ``M``, the number of ancestors to draw (a Python int).

    Returns:
        ``(M,)`` int32 ancestor indices in increasing order.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> log_weights = jnp.log(jnp.array([0.5, 0.25, 0.0, 0.25]))
        >>> systematic(jax.random.key(0), log_weights, 4).tolist()
        [0, 0, 1, 3]
    """
    cumulative = _cumulative_weights(log_weights)
    m = _check_num_samples(num_samples)
    offset = jax.random.uniform(key, (), dtype=cumulative.dtype)
    return _stratified_indices(cumulative, jnp.full((m,), offset))


def stratified(key: jax.Array, log_weights: jax.Array, num_samples: int) -> jax.Array:
    """Stratified resampling: one independent uniform per stratum, ``(j + U_j) / M``.

    Cost ``O(N + M)``; the copy counts have variance at most the multinomial's.

    Args:
        key: a PRNG key.
        log_weights: ``(N,)`` unnormalised log weights.
        num_samples: ``M``, the number of ancestors to draw.

    Returns:
        ``(M,)`` int32 ancestor indices in increasing order.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> ancestors = stratified(jax.random.key(0), jnp.log(jnp.array([0.75, 0.25])), 8)
        >>> int((ancestors == 0).sum()) in (5, 6, 7)
        True
    """
    cumulative = _cumulative_weights(log_weights)
    m = _check_num_samples(num_samples)
    offsets = jax.random.uniform(key, (m,), dtype=cumulative.dtype)
    return _stratified_indices(cumulative, offsets)


def _sorted_uniforms(key: jax.Array, m: int, dtype: jnp.dtype) -> jax.Array:
    """``m`` sorted uniforms in ``O(m)``: normalised partial sums of ``m + 1`` exponentials."""
    spacings = jax.random.exponential(key, (m + 1,), dtype=dtype)
    partial = jnp.cumsum(spacings)
    # Strictly below 1, so a trailing zero-weight particle (cumulative weight exactly 1, like
    # the one before it) can never be picked.
    return jnp.minimum(partial[:-1] / partial[-1], jnp.nextafter(jnp.ones((), dtype), 0))


def multinomial(key: jax.Array, log_weights: jax.Array, num_samples: int) -> jax.Array:
    """Multinomial resampling: ``M`` independent draws from ``softmax(log_weights)``.

    Cost ``O(N + M log N)``: sorted uniforms in ``O(M)``, then a binary search each.

    Args:
        key: a PRNG key.
        log_weights: ``(N,)`` unnormalised log weights.
        num_samples: ``M``, the number of ancestors to draw.

    Returns:
        ``(M,)`` int32 ancestor indices in increasing order.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> ancestors = multinomial(jax.random.key(0), jnp.array([0.0, -jnp.inf, 0.0]), 6)
        >>> bool(jnp.all(ancestors != 1)), bool(jnp.all(jnp.diff(ancestors) >= 0))
        (True, True)
    """
    cumulative = _cumulative_weights(log_weights)
    m = _check_num_samples(num_samples)
    uniforms = _sorted_uniforms(key, m, cumulative.dtype)
    ancestors = jnp.searchsorted(cumulative, uniforms, side="right")
    return jnp.minimum(ancestors, cumulative.shape[0] - 1).astype(jnp.int32)


def residual(key: jax.Array, log_weights: jax.Array, num_samples: int) -> jax.Array:
    """Residual resampling: ``floor(M w_i)`` copies each, the remaining ``R`` multinomially.

    The ``R = M - sum_i floor(M w_i)`` remaining draws use the residual weights
    ``M w_i - floor(M w_i)``. Cost ``O(N + R log N)``.

    Args:
        key: a PRNG key.
        log_weights: ``(N,)`` unnormalised log weights.
        num_samples: ``M``, the number of ancestors to draw.

    Returns:
        ``(M,)`` int32 ancestor indices in increasing order.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> residual(jax.random.key(0), jnp.log(jnp.array([0.5, 0.25, 0.25])), 4).tolist()
        [0, 0, 1, 2]
    """
    _cumulative_weights(log_weights)  # checks the shape
    m = _check_num_samples(num_samples)
    n = log_weights.shape[0]
    # From the weights themselves: differences of cumulative weights would round to small
    # negative values (a floor of -1) and to copies of weights far below 1 / M.
    expected = m * jax.nn.softmax(log_weights)
    whole = jnp.floor(expected)
    remaining = jnp.clip(m - jnp.sum(whole).astype(jnp.int32), 0, m)
    leftover = _monotone_cumsum(expected - whole)
    uniforms = jax.random.uniform(key, (m,), dtype=leftover.dtype)
    drawn = jnp.minimum(jnp.searchsorted(leftover, uniforms, side="right"), n - 1)
    used = jnp.arange(m) < remaining
    extra = jnp.zeros(n, jnp.int32).at[drawn].add(used.astype(jnp.int32))
    return _indices_from_counts(whole.astype(jnp.int32) + extra, m)


def effective_sample_size(log_weights: jax.Array) -> jax.Array:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` of importance weights.

    Computed from log weights without overflow: ``exp(2 logsumexp(lw) - logsumexp(2 lw))``.
    It lies in ``[1, N]``: ``N`` for equal weights, ``1`` when one particle holds all weight.
    (This is the importance-sampling ESS; the autocorrelation ESS of MCMC draws is arviz's.)

    Args:
        log_weights: ``(..., N)`` unnormalised log weights (reduced over the last axis).

    Returns:
        The ESS, shaped like ``log_weights`` without its last axis.

    Example:
        >>> import jax.numpy as jnp
        >>> float(effective_sample_size(jnp.log(jnp.array([1.0, 1.0, 2.0]))))
        2.6666...
    """
    log_weights = jnp.asarray(log_weights)
    return jnp.exp(
        2 * jax.nn.logsumexp(log_weights, axis=-1) - jax.nn.logsumexp(2 * log_weights, axis=-1)
    )


def log_mean_exp(log_weights: jax.Array) -> jax.Array:
    """``log(mean(exp(log_weights)))`` over the last axis, computed stably.

    With importance log weights it is the log of the (unbiased) estimate of the normalising
    constant.

    Example:
        >>> import jax.numpy as jnp
        >>> float(log_mean_exp(jnp.log(jnp.array([1.0, 2.0, 3.0])) - 1000.0))  # log(2) - 1000
        -999.31
    """
    log_weights = jnp.asarray(log_weights)
    return jax.nn.logsumexp(log_weights, axis=-1) - jnp.log(log_weights.shape[-1])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ResamplingOutcome:
    """What ``resample_if_low_ess`` did.

    Attributes:
        ancestors: ``(N,)`` indices of the particles to keep (``arange(N)`` if not resampled).
        log_weights: ``(N,)`` the new log weights: unchanged if not resampled, else all equal to
            the log mean weight, so ``log_mean_exp(log_weights)`` — the running estimate of the
            log marginal likelihood — is the same before and after.
        resampled: whether resampling happened (a bool array).
        ess: the ESS of the incoming weights.
    """

    ancestors: jax.Array
    log_weights: jax.Array
    resampled: jax.Array
    ess: jax.Array


def resample_if_low_ess(
    key: jax.Array,
    log_weights: jax.Array,
    *,
    scheme: ResamplingScheme = systematic,
    ess_threshold: float = 0.5,
) -> ResamplingOutcome:
    """Resamples ``N`` particles when ``ESS < ess_threshold * N``.

    The decision depends only on the current weights, which keeps the log marginal-likelihood
    estimate of a sequential Monte Carlo algorithm unbiased in the exponential. Under
    ``jax.jit`` the decision is a ``lax.cond``; under ``jax.vmap`` both branches are computed.

    Args:
        key: a PRNG key.
        log_weights: ``(N,)`` unnormalised log weights.
        scheme: the resampling scheme.
        ess_threshold: a fraction in ``[0, 1]``: ``0`` never resamples, ``1`` resamples unless
            the weights are exactly equal.

    Returns:
        A ``ResamplingOutcome``.

    Raises:
        ValueError: if ``ess_threshold`` is outside ``[0, 1]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> outcome = resample_if_low_ess(jax.random.key(0), jnp.array([0.0, -9.0, -9.0]))
        >>> bool(outcome.resampled), outcome.ancestors.tolist()
        (True, [0, 0, 0])
    """
    check_ess_threshold(ess_threshold)
    log_weights = jnp.asarray(log_weights)
    ess = effective_sample_size(log_weights)
    resampled = ess < ess_threshold * log_weights.shape[0]
    ancestors, log_weights = resample_where(key, log_weights, resampled, scheme)
    return ResamplingOutcome(ancestors, log_weights, resampled, ess)


def resample_where(
    key: jax.Array, log_weights: jax.Array, flag: jax.Array, scheme: ResamplingScheme
) -> tuple[jax.Array, jax.Array]:
    """``(ancestors, log_weights)``: resampled if ``flag``, else ``(arange(N), log_weights)``.

    After resampling every log weight is the log mean weight, which keeps
    ``log_mean_exp(log_weights)`` unchanged.
    """
    n = log_weights.shape[0]

    def resample(log_weights):
        ancestors = scheme(key, log_weights, n)
        return ancestors.astype(jnp.int32), jnp.full_like(log_weights, log_mean_exp(log_weights))

    def keep(log_weights):
        return jnp.arange(n, dtype=jnp.int32), log_weights

    return jax.lax.cond(flag, resample, keep, log_weights)


def check_ess_threshold(ess_threshold: float) -> None:
    """Raises a ``ValueError`` naming ``ess_threshold`` unless it is in ``[0, 1]``."""
    if not 0.0 <= float(ess_threshold) <= 1.0:
        raise ValueError(
            f"ess_threshold is a fraction of the number of particles in [0, 1], got "
            f"{ess_threshold!r} (0: never resample, 1: resample at every step)"
        )
