"""Uncertainty scores computed from predictive probabilities."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from models.metrics._checks import check_probabilities


def predictive_entropy(probs: jax.Array) -> jax.Array:
    """The entropy ``H(p) = -Σ_k p_k log p_k`` of each predictive distribution, in nats.

    An uncertainty score for ``ood_auroc``, ``ood_auprc`` and selective prediction: it is 0
    for a one-hot prediction and ``log K`` for the uniform one.

    Args:
        probs: ``[N, K]`` class probabilities.

    Returns:
        ``[N]`` entropies (``0 log 0`` counts as 0).

    Raises:
        ValueError: if ``probs`` is not a ``[N, K]`` array of probabilities.

    Example:
        >>> import jax.numpy as jnp
        >>> predictive_entropy(jnp.array([[1.0, 0.0], [0.5, 0.5]]))
        Array([0.        , 0.6931472], dtype=float32)
    """
    return _entropy(check_probabilities(probs))


@jax.jit
def _entropy(probs):
    return -jnp.sum(jnp.where(probs > 0, probs * jnp.log(jnp.where(probs > 0, probs, 1)), 0), -1)


def max_probability_uncertainty(probs: jax.Array) -> jax.Array:
    """One minus the largest class probability, ``1 − max_k p_k``: low when confident.

    Args:
        probs: ``[N, K]`` class probabilities.

    Returns:
        ``[N]`` scores in ``[0, 1 − 1/K]``.

    Raises:
        ValueError: if ``probs`` is not a ``[N, K]`` array of probabilities.

    Example:
        >>> import jax.numpy as jnp
        >>> max_probability_uncertainty(jnp.array([[0.75, 0.25], [0.5, 0.5]]))
        Array([0.25, 0.5 ], dtype=float32)
    """
    probs = check_probabilities(probs)
    return 1 - jnp.max(probs, axis=-1)
