"""Expected calibration error, with equal-width or equal-mass confidence bins."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from models.metrics._checks import check_labels, check_probabilities


@dataclasses.dataclass(frozen=True)
class EqualWidthBins:
    """Confidence bins of equal width: bin ``b`` holds confidences in ``(b/M, (b+1)/M]``
    (the first bin also holds 0).

    Args:
        count: the number of bins ``M``.

    Example:
        >>> import jax.numpy as jnp
        >>> EqualWidthBins(4).assign(jnp.array([0.1, 0.25, 0.26, 1.0]))
        Array([0, 0, 1, 3], dtype=int32)
    """

    count: int = 15

    def __post_init__(self):
        if not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"count must be a positive int, got {self.count!r}")

    def assign(self, confidences: jax.Array) -> jax.Array:
        """The bin index of each confidence in ``[0, 1]``."""
        index = jnp.ceil(confidences * self.count).astype(jnp.int32) - 1
        return jnp.clip(index, 0, self.count - 1)


@dataclasses.dataclass(frozen=True)
class EqualMassBins:
    """Confidence bins holding equal numbers of examples (adaptive binning): the examples,
    sorted by confidence, are cut into ``M`` runs of ``N/M`` (bin ``b`` takes ranks
    ``r`` with ``floor(r M / N) = b``). Ties are split by position.

    Args:
        count: the number of bins ``M``.

    Example:
        >>> import jax.numpy as jnp
        >>> EqualMassBins(2).assign(jnp.array([0.9, 0.2, 0.95, 0.6]))
        Array([1, 0, 1, 0], dtype=int32)
    """

    count: int = 15

    def __post_init__(self):
        if not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"count must be a positive int, got {self.count!r}")

    def assign(self, confidences: jax.Array) -> jax.Array:
        """The bin index of each confidence."""
        n = confidences.shape[0]
        ranks = jnp.zeros(n, jnp.int32).at[jnp.argsort(confidences, stable=True)].set(jnp.arange(n))
        return (ranks * self.count // max(n, 1)).astype(jnp.int32)


def expected_calibration_error(
    probs: jax.Array,
    labels: jax.Array,
    bins: EqualWidthBins | EqualMassBins | None = None,
) -> jax.Array:
    """The expected calibration error of the top-class confidence.

    With confidence ``c_i = max_k p_ik`` and correctness ``a_i = 1[argmax_k p_ik = y_i]``,
    the examples are grouped into bins ``B_b`` by confidence and

    ``ECE = Σ_b (|B_b| / N) · |mean_{i∈B_b} a_i − mean_{i∈B_b} c_i|``.

    Empty bins contribute nothing.

    Args:
        probs: ``[N, K]`` class probabilities.
        labels: ``[N]`` integer labels in ``0..K-1``.
        bins: ``EqualWidthBins(M)`` (the default, with ``M = 15``) or ``EqualMassBins(M)``.

    Returns:
        A scalar in ``[0, 1]``.

    Raises:
        ValueError: for shapes that disagree, labels outside ``0..K-1``, or rows of ``probs``
            that are not probabilities.

    Example:
        Two bins of width 1/2: the first holds one example (confidence 0.4, wrong), the
        second three (confidences 0.6, 0.8, 1.0; two right):

        >>> import jax.numpy as jnp
        >>> probs = jnp.array([[0.4, 0.3, 0.3], [0.6, 0.4, 0.0], [0.2, 0.8, 0.0], [1.0, 0.0, 0.0]])
        >>> labels = jnp.array([1, 0, 0, 0])
        >>> # 1/4 * |0 - 0.4| + 3/4 * |2/3 - 0.8|
        >>> round(float(expected_calibration_error(probs, labels, EqualWidthBins(2))), 4)
        0.2
    """
    probs = check_probabilities(probs)
    labels = check_labels(labels, *probs.shape)
    bins = EqualWidthBins() if bins is None else bins
    if not isinstance(bins, EqualWidthBins | EqualMassBins):
        raise TypeError(f"bins is {bins!r}; give EqualWidthBins(count) or EqualMassBins(count)")
    return _expected_calibration_error(probs, labels, bins)


@functools.partial(jax.jit, static_argnums=2)
def _expected_calibration_error(probs, labels, bins):
    confidences = jnp.max(probs, axis=-1)
    correct = (jnp.argmax(probs, axis=-1) == labels).astype(probs.dtype)
    index = bins.assign(confidences)
    # Σ_b |Σ_{i∈b} (a_i − c_i)| / N: the bin weight |B_b|/N cancels the bin means' 1/|B_b|.
    gaps = jax.ops.segment_sum(correct - confidences, index, num_segments=bins.count)
    return jnp.sum(jnp.abs(gaps)) / probs.shape[0]
