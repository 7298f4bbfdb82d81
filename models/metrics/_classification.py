"""Proper scoring of class probabilities: accuracy, negative log-likelihood, Brier score."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from models.metrics._checks import check_labels, check_probabilities


def accuracy(probs: jax.Array, labels: jax.Array) -> jax.Array:
    """The fraction of examples whose most probable class is the label.

    Args:
        probs: ``[N, K]`` class probabilities (or any scores whose argmax is the prediction).
        labels: ``[N]`` integer labels in ``0..K-1``.

    Returns:
        A scalar in ``[0, 1]``; ties in ``probs`` go to the lowest class index.

    Raises:
        ValueError: for shapes that disagree or labels outside ``0..K-1``.

    Example:
        >>> import jax.numpy as jnp
        >>> probs = jnp.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
        >>> float(accuracy(probs, jnp.array([0, 1, 1])))
        0.6666...
    """
    probs = check_probabilities(probs)
    labels = check_labels(labels, *probs.shape)
    return _accuracy(probs, labels)


@jax.jit
def _accuracy(probs, labels):
    return jnp.mean(jnp.argmax(probs, -1) == labels)


def negative_log_likelihood(probs: jax.Array, labels: jax.Array) -> jax.Array:
    """The mean negative log probability of the labels, ``-(1/N) Σ_i log p_i[y_i]``.

    Probabilities are clipped below at the smallest normal float of their dtype, so a
    confidently wrong prediction costs a large but finite amount (87 nats in float32).

    Args:
        probs: ``[N, K]`` class probabilities.
        labels: ``[N]`` integer labels in ``0..K-1``.

    Returns:
        A non-negative scalar, in nats.

    Raises:
        ValueError: for shapes that disagree, labels outside ``0..K-1``, or rows of ``probs``
            that are not probabilities.

    Example:
        >>> import jax.numpy as jnp
        >>> probs = jnp.array([[0.5, 0.5], [0.2, 0.8]])
        >>> round(float(negative_log_likelihood(probs, jnp.array([0, 1]))), 4)  # -(ln .5 + ln .8)/2
        0.4581
    """
    probs = check_probabilities(probs)
    labels = check_labels(labels, *probs.shape)
    return _negative_log_likelihood(probs, labels)


@jax.jit
def _negative_log_likelihood(probs, labels):
    tiny = jnp.finfo(probs.dtype).tiny
    picked = jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0]
    return -jnp.mean(jnp.log(jnp.maximum(picked, tiny)))


def brier_score(probs: jax.Array, labels: jax.Array) -> jax.Array:
    """The multi-class Brier score ``(1/N) Σ_i Σ_k (p_ik − 1[y_i = k])²``.

    It lies in ``[0, 2]``. For two classes it is twice scikit-learn's
    ``brier_score_loss``, which scores only the probability of the positive class.

    Args:
        probs: ``[N, K]`` class probabilities.
        labels: ``[N]`` integer labels in ``0..K-1``.

    Returns:
        A scalar; 0 for a confident and correct prediction of every example.

    Raises:
        ValueError: for shapes that disagree, labels outside ``0..K-1``, or rows of ``probs``
            that are not probabilities.

    Example:
        >>> import jax.numpy as jnp
        >>> probs = jnp.array([[0.8, 0.2, 0.0], [0.5, 0.25, 0.25]])
        >>> float(brier_score(probs, jnp.array([0, 1])))  # (0.08 + 0.875) / 2
        0.4775
    """
    probs = check_probabilities(probs)
    labels = check_labels(labels, *probs.shape)
    return _brier_score(probs, labels)


@jax.jit
def _brier_score(probs, labels):
    one_hot = jax.nn.one_hot(labels, probs.shape[1], dtype=probs.dtype)
    return jnp.mean(jnp.sum((probs - one_hot) ** 2, axis=-1))
