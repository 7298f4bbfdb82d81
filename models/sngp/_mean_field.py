"""The mean-field approximation of the predictive distribution under Gaussian logits."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def mean_field_logits(
    logits: jax.Array, variance: jax.Array, factor: float = math.pi / 8
) -> jax.Array:
    """Logits scaled so that their softmax approximates the predictive distribution.

    For logits ``f ~ N(μ, σ² I)``, ``E[softmax(f)] ≈ softmax(μ / √(1 + λσ²))`` with
    ``λ = π/8`` (Daxberger et al.'s and SNGP's mean-field approximation; for one logit it
    is MacKay's probit approximation of ``E[sigmoid(f)]``). The larger the variance, the
    closer the probabilities are pulled towards uniform.

    Args:
        logits: ``[N, K]`` predictive means ``μ``.
        variance: ``[N]`` predictive variances ``σ²`` (one per example, shared by classes),
            or ``[N, K]`` (one per logit: each logit is scaled by its own).
        factor: ``λ``.

    Returns:
        ``[N, K]`` adjusted logits; apply ``jax.nn.softmax`` (or ``sigmoid`` for ``K = 1``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> adjusted = mean_field_logits(jnp.array([[2.0]]), jnp.array([8 / jnp.pi * 3]))
        >>> adjusted  # 2 / sqrt(1 + 3)
        Array([[1.]], dtype=float32)
    """
    if variance.shape == logits.shape:
        return logits / jnp.sqrt(1 + factor * variance)
    if variance.shape != logits.shape[:1]:
        raise ValueError(
            f"variance has shape {variance.shape} for logits of shape {logits.shape}; give "
            f"one variance per example, shape ({logits.shape[0]},), or one per logit"
        )
    return logits / jnp.sqrt(1 + factor * variance)[:, None]
