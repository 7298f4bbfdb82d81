"""Input checks shared by the metrics: shapes at trace time, values when they are concrete."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_probabilities(probs: jax.Array, name: str = "probs") -> jax.Array:
    """``probs`` as a ``[N, K]`` float array; rows must sum to one when the values are known."""
    probs = jnp.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(
            f"{name} has shape {probs.shape}; give class probabilities of shape "
            "[examples, classes] (apply jax.nn.softmax to logits first)"
        )
    if not jnp.issubdtype(probs.dtype, jnp.floating):
        raise ValueError(f"{name} has dtype {probs.dtype}; give floating-point probabilities")
    if not isinstance(probs, jax.core.Tracer):
        values = np.asarray(probs)
        if np.any(values < 0) or np.any(values > 1):
            raise ValueError(f"{name} holds values outside [0, 1]; give probabilities, not logits")
        sums = values.sum(-1)
        worst = int(np.argmax(np.abs(sums - 1)))
        if values.shape[0] and abs(sums[worst] - 1) > 1e-3:
            raise ValueError(
                f"{name}[{worst}] sums to {sums[worst]:.6g}, not 1; give normalised class "
                "probabilities (jax.nn.softmax of the logits)"
            )
    return probs


def check_labels(labels: jax.Array, num_examples: int, num_classes: int) -> jax.Array:
    """``labels`` as ``[N]`` integers in ``0..num_classes-1`` (values checked when concrete)."""
    labels = jnp.asarray(labels)
    if labels.shape != (num_examples,):
        raise ValueError(
            f"labels has shape {labels.shape} but the probabilities are for {num_examples} "
            f"examples; give one integer label per example, shape ({num_examples},)"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels has dtype {labels.dtype}; give integer class indices")
    if not isinstance(labels, jax.core.Tracer) and num_examples:
        values = np.asarray(labels)
        bad = np.flatnonzero((values < 0) | (values >= num_classes))
        if bad.size:
            raise ValueError(
                f"labels[{bad[0]}] = {values[bad[0]]} is out of range: the probabilities have "
                f"{num_classes} classes, so labels must lie in 0..{num_classes - 1}"
            )
    return labels


def check_scores(scores: jax.Array, name: str) -> jax.Array:
    """A non-empty ``[N]`` float array of scores."""
    scores = jnp.asarray(scores)
    if scores.ndim != 1 or scores.shape[0] == 0:
        raise ValueError(f"{name} has shape {scores.shape}; give a non-empty vector of scores")
    return scores.astype(jnp.result_type(float))
