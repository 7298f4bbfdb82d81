"""Selective prediction: accuracy on the examples a model is most certain about."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from models.metrics._checks import check_labels, check_probabilities, check_scores


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AccuracyCoverage:
    """An accuracy–coverage curve: ``accuracy[j]`` is the accuracy on the
    ``j + 1`` most certain examples, a fraction ``coverage[j] = (j + 1)/N`` of the data.

    Attributes:
        coverage: ``[N]`` fractions of the data kept, increasing to 1.
        accuracy: ``[N]`` accuracy on the kept examples.

    Example:
        >>> import jax.numpy as jnp
        >>> probs = jnp.array([[0.9, 0.1], [0.4, 0.6]])
        >>> curve = accuracy_coverage_curve(probs, jnp.array([0, 0]), jnp.array([0.1, 0.7]))
        >>> curve.coverage, curve.accuracy  # the uncertain second example is the wrong one
        (Array([0.5, 1. ], dtype=float32), Array([1. , 0.5], dtype=float32))
    """

    coverage: jax.Array
    accuracy: jax.Array


def accuracy_coverage_curve(
    probs: jax.Array, labels: jax.Array, uncertainty: jax.Array
) -> AccuracyCoverage:
    """The accuracy–coverage curve of rejecting the most uncertain examples first.

    Examples are sorted by increasing ``uncertainty`` (ties keep their order) and the
    accuracy of the top-class prediction is computed on every prefix. A useful uncertainty
    score makes the curve decrease from high accuracy at low coverage to the plain accuracy
    at full coverage.

    Args:
        probs: ``[N, K]`` class probabilities (the prediction is the argmax).
        labels: ``[N]`` integer labels in ``0..K-1``.
        uncertainty: ``[N]`` scores, lower = more certain (e.g. ``predictive_entropy``).

    Returns:
        An ``AccuracyCoverage(coverage, accuracy)`` of ``[N]`` arrays.

    Raises:
        ValueError: for shapes that disagree or labels outside ``0..K-1``.

    Example:
        >>> import jax.numpy as jnp
        >>> probs = jnp.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
        >>> curve = accuracy_coverage_curve(probs, jnp.array([0, 1, 1]), jnp.array([0.1, 0.5, 0.2]))
        >>> curve.accuracy  # kept: {0}, {0, 2}, {0, 2, 1}
        Array([1.        , 1.        , 0.6666667], dtype=float32)
    """
    probs = check_probabilities(probs)
    labels = check_labels(labels, *probs.shape)
    uncertainty = check_scores(uncertainty, "uncertainty")
    if uncertainty.shape[0] != probs.shape[0]:
        raise ValueError(
            f"uncertainty has {uncertainty.shape[0]} scores for {probs.shape[0]} examples; "
            "give one score per example"
        )
    return _accuracy_coverage_curve(probs, labels, uncertainty)


@jax.jit
def _accuracy_coverage_curve(probs, labels, uncertainty):
    correct = (jnp.argmax(probs, -1) == labels).astype(probs.dtype)
    kept = jnp.arange(1, probs.shape[0] + 1, dtype=probs.dtype)
    running = jnp.cumsum(correct[jnp.argsort(uncertainty, stable=True)])
    return AccuracyCoverage(kept / probs.shape[0], running / kept)


def area_under_accuracy_coverage(
    probs: jax.Array, labels: jax.Array, uncertainty: jax.Array
) -> jax.Array:
    """The area under the accuracy–coverage curve, ``(1/N) Σ_j accuracy[j]``.

    One minus the area under the risk–coverage curve (AURC) of Geifman & El-Yaniv. It lies
    between the plain accuracy (an uninformative score gives about that) and 1; a score
    that ranks every wrong prediction last gives the most.

    Args:
        probs: ``[N, K]`` class probabilities.
        labels: ``[N]`` integer labels in ``0..K-1``.
        uncertainty: ``[N]`` scores, lower = more certain.

    Returns:
        A scalar in ``[0, 1]``.

    Raises:
        ValueError: for shapes that disagree or labels outside ``0..K-1``.

    Example:
        >>> import jax.numpy as jnp
        >>> probs = jnp.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
        >>> labels, scores = jnp.array([0, 1, 1]), jnp.array([0.1, 0.5, 0.2])
        >>> round(float(area_under_accuracy_coverage(probs, labels, scores)), 4)  # (1+1+2/3)/3
        0.8889
    """
    return jnp.mean(accuracy_coverage_curve(probs, labels, uncertainty).accuracy)
