"""The Laplace posterior precision of a linear output layer, accumulated over data."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp


def likelihood_curvature(logits: jax.Array) -> jax.Array:
    """The per-example weight ``w_i`` of ``φ_iφ_iᵀ`` in the Laplace precision.

    For one logit (``K = 1``, a Bernoulli likelihood with ``p = sigmoid(f)``),
    ``w = p(1 − p)``, the exact second derivative of the negative log-likelihood in
    ``f``. For ``K ≥ 2`` softmax logits, SNGP's approximation shares one precision matrix
    between the classes, with ``w = p_max(1 − p_max)`` from the most probable class.

    Args:
        logits: ``[N, K]`` logits.

    Returns:
        ``[N]`` non-negative weights.

    Example:
        >>> import jax.numpy as jnp
        >>> likelihood_curvature(jnp.array([[0.0], [jnp.log(3.0)]]))  # p = 1/2, 3/4
        Array([0.25  , 0.1875], dtype=float32)
    """
    if logits.ndim != 2:
        raise ValueError(f"logits has shape {logits.shape}; give [examples, classes]")
    if logits.shape[1] == 1:
        p = jax.nn.sigmoid(logits[:, 0])
    else:
        p = jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1)
    return p * (1 - p)


class LaplacePrecision(eqx.Module):
    """The precision of the Laplace (Gaussian) posterior over output weights ``β``:

    ``Λ = τ I + Σ_i w_i φ_i φ_iᵀ``,

    for a ``N(0, 1/τ)`` prior on each weight and per-example curvature ``w_i`` of the
    likelihood (``likelihood_curvature``). For one logit this is the exact Hessian of the
    negative log posterior, so ``Λ⁻¹`` is the Laplace covariance; for softmax logits it is
    SNGP's class-shared approximation. The data term is accumulated in one of two ways:

    * ``update``: an exact pass, adding each batch's ``Σ w φφᵀ`` (after training);
    * ``momentum_update``: during training, an exponential moving average of each batch's
      estimate ``(N/B) Σ_batch w φφᵀ`` of the full-data sum (the first update takes the
      batch estimate whole, so early values are not biased towards zero).

    Attributes:
        data_precision: ``[D, D]`` the accumulated data term ``Σ_i w_i φ_i φ_iᵀ``.
        count: how many examples (``update``) or batches (``momentum_update``) went in.
        prior_precision: ``τ``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> features = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> precision = LaplacePrecision.init(2, prior_precision=1.0)
        >>> precision = precision.update(features, jnp.zeros((3, 1)))  # each w = 1/4
        >>> precision.matrix
        Array([[1.5 , 0.25],
               [0.25, 1.5 ]], dtype=float32)
        >>> bool(jnp.allclose(precision.covariance() @ precision.matrix, jnp.eye(2), atol=1e-6))
        True
    """

    data_precision: jax.Array
    count: jax.Array
    prior_precision: float = eqx.field(static=True)

    @classmethod
    def init(cls, num_features: int, prior_precision: float = 1.0) -> LaplacePrecision:
        """No data yet: a zero data term for ``num_features`` features."""
        if not prior_precision > 0:
            raise ValueError(f"prior_precision must be positive, got {prior_precision}")
        return cls(jnp.zeros((num_features, num_features)), jnp.zeros(()), float(prior_precision))

    @property
    def matrix(self) -> jax.Array:
        """The posterior precision ``Λ = τ I + data_precision``."""
        size = self.data_precision.shape[0]
        return self.prior_precision * jnp.eye(size) + self.data_precision

    def _batch_term(
        self, features: jax.Array, logits: jax.Array, mask: jax.Array | None
    ) -> jax.Array:
        size = self.data_precision.shape[0]
        if features.ndim != 2 or features.shape[1] != size:
            raise ValueError(
                f"features has shape {features.shape}; this precision is over {size} "
                f"features, so give [examples, {size}]"
            )
        if logits.ndim != 2 or logits.shape[0] != features.shape[0]:
            raise ValueError(
                f"logits has shape {logits.shape} for {features.shape[0]} feature rows; give "
                f"[{features.shape[0]}, classes]"
            )
        weights = likelihood_curvature(logits)
        if mask is not None:
            if mask.shape != (features.shape[0],):
                raise ValueError(
                    f"mask has shape {mask.shape}; give one flag per feature row, "
                    f"[{features.shape[0]}]"
                )
            weights = jnp.where(mask, weights, 0.0)
        return (features * weights[:, None]).T @ features

    def update(
        self, features: jax.Array, logits: jax.Array, *, mask: jax.Array | None = None
    ) -> LaplacePrecision:
        """Adds a batch exactly: ``data_precision + Σ_batch w φφᵀ``.

        Args:
            features: ``[B, D]`` random features of the batch.
            logits: ``[B, K]`` the output layer's logits for the batch (at the mode).
            mask: ``[B]`` booleans, ``False`` for padding rows to leave out; ``None``: all in.

        Returns:
            The updated precision.
        """
        term = self._batch_term(features, logits, mask)
        rows = features.shape[0] if mask is None else jnp.sum(mask)
        return LaplacePrecision(self.data_precision + term, self.count + rows, self.prior_precision)

    def momentum_update(
        self,
        features: jax.Array,
        logits: jax.Array,
        momentum: float,
        num_data: int,
        *,
        mask: jax.Array | None = None,
    ) -> LaplacePrecision:
        """Moves the data term towards this batch's estimate of the full-data sum:

        ``m · data_precision + (1 − m) · (N/B) Σ_batch w φφᵀ`` (``m = 0`` on the first call).

        Args:
            features: ``[B, D]`` random features of the batch.
            logits: ``[B, K]`` logits for the batch.
            momentum: ``m`` in ``[0, 1)``.
            num_data: the size ``N`` of the data set the batches come from.
            mask: ``[B]`` booleans, ``False`` for padding rows to leave out (``B`` is then
                the number of rows kept); ``None``: all in.

        Returns:
            The updated precision.
        """
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        rows = features.shape[0] if mask is None else jnp.maximum(jnp.sum(mask), 1)
        estimate = self._batch_term(features, logits, mask) * (num_data / rows)
        m = jnp.where(self.count > 0, momentum, 0.0)
        return LaplacePrecision(
            m * self.data_precision + (1 - m) * estimate, self.count + 1, self.prior_precision
        )

    def covariance(self) -> jax.Array:
        """The posterior covariance ``Λ⁻¹`` (by Cholesky factorization).

        Raises:
            ValueError: (eagerly; an ``EquinoxRuntimeError`` under ``jit``) if no data has
                been accumulated: the covariance would be the prior's, which is never what
                a prediction wants.
        """
        if not isinstance(self.count, jax.core.Tracer) and float(self.count) == 0:
            raise ValueError(_NO_DATA)
        data = eqx.error_if(self.data_precision, self.count == 0, _NO_DATA)
        matrix = self.prior_precision * jnp.eye(data.shape[0]) + data
        factor = jax.scipy.linalg.cho_factor(matrix, lower=True)
        return jax.scipy.linalg.cho_solve(factor, jnp.eye(matrix.shape[0]))

    def low_rank_covariance(self, rank: int) -> LowRankCovariance:
        """The covariance from the top ``rank`` eigenpairs of the data term, for predictive
        variances at ``O(D·rank)`` per example instead of ``O(D²)``.

        With ``data_precision = Σ_j λ_j u_j u_jᵀ`` (``λ`` decreasing),
        ``Λ⁻¹ = τ⁻¹ I − Σ_j s_j u_j u_jᵀ`` with ``s_j = λ_j / (τ(τ + λ_j))``. Keeping the
        first ``rank`` terms is exact when the data term has rank at most ``rank``; otherwise
        each variance is over-estimated (never under-estimated) by at most
        ``λ_{rank+1} ‖φ‖² / τ²``, which ``LowRankCovariance.error_bound`` reports.

        Args:
            rank: the number of eigenpairs kept, between 1 and ``D``.

        Returns:
            A ``LowRankCovariance`` for ``sngp.predict``.

        Raises:
            ValueError: if no data has been accumulated, or ``rank`` is out of range.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> features = jax.random.normal(jax.random.key(0), (3, 8))  # rank-3 data term
            >>> precision = LaplacePrecision.init(8).update(features, jnp.zeros((3, 1)))
            >>> low_rank = precision.low_rank_covariance(3)
            >>> test = jax.random.normal(jax.random.key(1), (5, 8))
            >>> exact = predictive_variance(precision.covariance(), test)
            >>> bool(jnp.allclose(low_rank.variance(test), exact, rtol=1e-4))
            True
        """
        size = self.data_precision.shape[0]
        if not 1 <= rank <= size:
            raise ValueError(f"rank must lie in 1..{size} (the number of features), got {rank}")
        if not isinstance(self.count, jax.core.Tracer) and float(self.count) == 0:
            raise ValueError(_NO_DATA)
        eigenvalues, eigenvectors = jnp.linalg.eigh(self.data_precision)
        eigenvalues = jnp.maximum(eigenvalues[::-1], 0.0)  # decreasing; clip rounding below 0
        eigenvectors = eigenvectors[:, ::-1]
        tau = self.prior_precision
        kept = eigenvalues[:rank]
        dropped = eigenvalues[rank] if rank < size else jnp.zeros(())
        return LowRankCovariance(
            eigenvectors[:, :rank], kept / (tau * (tau + kept)), dropped / tau**2, tau
        )


class LowRankCovariance(eqx.Module):
    """A posterior covariance ``τ⁻¹ I − U diag(s) Uᵀ`` from the leading eigenvectors of the
    data precision (``LaplacePrecision.low_rank_covariance``).

    Attributes:
        basis: ``[D, r]`` orthonormal eigenvectors ``U``.
        shrinkage: ``[r]`` the variance removed along each, ``s``.
        error_bound: the largest over-estimate of a variance per unit ``‖φ‖²``.
        prior_precision: ``τ``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> features = jax.random.normal(jax.random.key(0), (50, 8))
        >>> precision = LaplacePrecision.init(8).update(features, jnp.zeros((50, 1)))
        >>> low_rank = precision.low_rank_covariance(4)  # half of the eigenpairs
        >>> test = jax.random.normal(jax.random.key(1), (5, 8))
        >>> excess = low_rank.variance(test) - predictive_variance(precision.covariance(), test)
        >>> bound = low_rank.error_bound * jnp.sum(test**2, axis=1)
        >>> bool(jnp.all(excess > -1e-5) & jnp.all(excess < bound + 1e-5))  # 0 ≤ excess ≤ bound
        True
    """

    basis: jax.Array
    shrinkage: jax.Array
    error_bound: jax.Array
    prior_precision: float = eqx.field(static=True)

    def variance(self, features: jax.Array) -> jax.Array:
        """``[N]`` logit variances ``‖φ‖²/τ − Σ_j s_j (u_jᵀφ)²`` of ``[N, D]`` features."""
        if features.ndim != 2 or features.shape[1] != self.basis.shape[0]:
            raise ValueError(
                f"features has shape {features.shape}; the covariance is over "
                f"{self.basis.shape[0]} features, so give [examples, {self.basis.shape[0]}]"
            )
        projected = features @ self.basis
        return jnp.sum(features**2, axis=1) / self.prior_precision - projected**2 @ self.shrinkage


_NO_DATA = (
    "the Laplace precision has no data accumulated yet; run an exact pass over the training "
    "data (LaplacePrecision.update per batch, or sngp.fit_laplace) or momentum updates "
    "during training before asking for the posterior covariance"
)


def predictive_variance(covariance: jax.Array, features: jax.Array) -> jax.Array:
    """The posterior variance ``φᵢᵀ Σ φᵢ`` of each example's logit (shared by the classes).

    Args:
        covariance: ``[D, D]`` posterior covariance of the output weights.
        features: ``[N, D]`` random features.

    Returns:
        ``[N]`` variances.

    Example:
        >>> import jax.numpy as jnp
        >>> predictive_variance(jnp.diag(jnp.array([1.0, 4.0])), jnp.array([[1.0, 1.0]]))
        Array([5.], dtype=float32)
    """
    if features.ndim != 2 or features.shape[1] != covariance.shape[0]:
        raise ValueError(
            f"features has shape {features.shape}; the covariance is over "
            f"{covariance.shape[0]} features, so give [examples, {covariance.shape[0]}]"
        )
    # Σ is symmetric: over blocks of features, φᵀΣφ = Σ_i φ_iᵀ(Σ_ii φ_i + 2 Σ_{j>i} Σ_ij φ_j),
    # which reads the blocks on and above the diagonal only: (b + 1)/2b of the full quadratic
    # form's N·D² multiply-adds for b blocks (5/8 for D = 1,024), in matrix products
    size = covariance.shape[0]
    variance = jnp.zeros(features.shape[0], jnp.result_type(features, covariance))
    for start in range(0, size, _VARIANCE_BLOCK):
        stop = min(start + _VARIANCE_BLOCK, size)
        block = features[:, start:stop]
        product = block @ covariance[start:stop, start:stop].T
        if stop < size:
            product = product + 2 * (features[:, stop:] @ covariance[start:stop, stop:].T)
        variance = variance + jnp.sum(block * product, axis=1)
    return variance


_VARIANCE_BLOCK = 256  # features per block of predictive_variance: large enough for fast products
