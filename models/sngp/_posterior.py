"""SNGP's posterior: the exact Laplace pass after training, and predictions with variance."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import equinox as eqx
import jax

from models.sngp._classifier import SNGPClassifier
from models.sngp._laplace import LaplacePrecision, LowRankCovariance, predictive_variance
from models.sngp._mean_field import mean_field_logits
from models.training._batch import apply_to_batch, num_rows


def fit_laplace(
    model: SNGPClassifier | Any,
    state: eqx.nn.State,
    inputs: jax.Array,
    *,
    prior_precision: float = 1.0,
    batch_size: int = 512,
) -> LaplacePrecision:
    """The Laplace precision of the output weights from one exact pass over the data.

    The model is evaluated in inference mode (spectral-norm vectors frozen) and the
    batches' ``Σ w φφᵀ`` are summed (``LaplacePrecision.update``).

    Args:
        model: a trained ``SNGPClassifier`` (or any model with a ``random_features`` method
            and a ``RandomFeatureGaussianProcess`` ``head``, e.g. ``GNNSNGPClassifier``).
        state: its state.
        inputs: ``[N, ...]`` the training inputs (or a pytree of arrays with a common
            leading axis, e.g. padded graphs).
        prior_precision: the prior precision ``τ`` of the output weights (the one the model
            was trained with).
        batch_size: rows per pass (memory only: the result does not depend on it beyond
            floating-point rounding).

    Returns:
        The ``LaplacePrecision``; its ``covariance()`` is the posterior covariance.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp
        >>> model, state = eqx.nn.make_with_state(SNGPClassifier)(
        ...     2, 2, width=8, depth=1, num_features=32, key=jax.random.key(0))
        >>> precision = fit_laplace(model, state, jax.random.normal(jax.random.key(1), (100, 2)))
        >>> int(precision.count)
        100
    """
    model = eqx.nn.inference_mode(model)
    precision = LaplacePrecision.init(model.head.num_features, prior_precision)
    for start in range(0, num_rows(inputs), batch_size):
        rows = jax.tree.map(lambda a, start=start: a[start : start + batch_size], inputs)
        features, logits = features_and_logits(model, state, rows)
        precision = precision.update(features, logits)
    return precision


@eqx.filter_jit
def features_and_logits(model, state, inputs):
    features, _ = apply_to_batch(model, state, inputs, method="random_features")
    return features, features @ model.head.output


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Prediction:
    """SNGP's predictive distribution over logits: ``f ~ N(logits, variance · I)``.

    Attributes:
        logits: ``[N, K]`` posterior-mean logits.
        variance: ``[N]`` posterior variance of each example's logits.

    Example:
        >>> import jax.numpy as jnp
        >>> prediction = Prediction(jnp.array([[2.0, 0.0], [2.0, 0.0]]), jnp.array([0.0, 100.0]))
        >>> prediction.probabilities().tolist()  # a large variance pulls towards uniform
        [[0.881, 0.119], [0.578, 0.422]]
    """

    logits: jax.Array
    variance: jax.Array

    def probabilities(self, factor: float = math.pi / 8) -> jax.Array:
        """``[N, K]`` class probabilities by the mean-field approximation
        (``mean_field_logits``)."""
        return jax.nn.softmax(mean_field_logits(self.logits, self.variance, factor), axis=-1)


def predict(
    model: SNGPClassifier | Any,
    state: eqx.nn.State,
    covariance: jax.Array | LowRankCovariance,
    inputs: jax.Array,
) -> Prediction:
    """Posterior-mean logits and their variance for a batch, in inference mode.

    Args:
        model: a trained ``SNGPClassifier`` (or ``GNNSNGPClassifier``).
        state: its state.
        covariance: ``[D, D]`` the output weights' posterior covariance
            (``fit_laplace(...).covariance()``), or a ``LowRankCovariance``
            (``fit_laplace(...).low_rank_covariance(rank)``), cheaper by a factor ``D/rank``.
        inputs: ``[N, ...]`` examples (or a pytree of arrays with a common leading axis).

    Returns:
        A ``Prediction(logits, variance)``; ``.probabilities()`` applies the mean-field
        adjustment.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp
        >>> model, state = eqx.nn.make_with_state(SNGPClassifier)(
        ...     1, 2, width=8, depth=1, num_features=256, length_scale=0.5, key=jax.random.key(0))
        >>> data = jax.random.uniform(jax.random.key(1), (200, 1))  # inputs in [0, 1]
        >>> covariance = fit_laplace(model, state, data).covariance()
        >>> prediction = predict(model, state, covariance, jnp.array([[0.5], [5.0]]))
        >>> bool(prediction.variance[1] > 10 * prediction.variance[0])  # far from the data
        True
    """
    if isinstance(covariance, LowRankCovariance):
        shape = covariance.basis.shape[:1] * 2
    else:
        shape = covariance.shape
    if shape != (model.head.num_features,) * 2:
        raise ValueError(
            f"covariance has shape {shape}; the model has "
            f"{model.head.num_features} random features, so give "
            f"[{model.head.num_features}, {model.head.num_features}]"
        )
    return _predict(eqx.nn.inference_mode(model), state, covariance, inputs)


@eqx.filter_jit
def _predict(model, state, covariance, inputs):
    features, logits = features_and_logits(model, state, inputs)
    if isinstance(covariance, LowRankCovariance):
        return Prediction(logits, covariance.variance(features))
    return Prediction(logits, predictive_variance(covariance, features))
