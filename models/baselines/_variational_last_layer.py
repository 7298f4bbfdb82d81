"""A mean-field variational Bayesian last layer on a trained deterministic network."""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp

from models.baselines._deterministic import DeterministicClassifier
from models.last_layer._model import GaussianLastLayer
from models.last_layer._variational import MeanFieldGaussian, fit_variational_last_layer
from models.sngp._mean_field import mean_field_logits
from models.training._batch import apply_to_batch


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class VariationalLastLayer:
    """A trained network's representation with a Gaussian posterior over a new last layer.

    Attributes:
        model: the network (its ``representation`` gives the features).
        state: its state.
        posterior: the ``GaussianLastLayer`` over ``[h, 1]`` (representation and a bias).

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp
        >>> from models.last_layer import GaussianLastLayer
        >>> model, state = eqx.nn.make_with_state(DeterministicClassifier)(
        ...     2, 2, width=4, depth=1, key=jax.random.key(0))
        >>> posterior = GaussianLastLayer(jnp.zeros(10), jnp.eye(10), num_classes=2)  # [h, 1]
        >>> VariationalLastLayer(model, state, posterior).probabilities(jnp.zeros((2, 2)))
        Array([[0.5, 0.5],
               [0.5, 0.5]], dtype=float32)
    """

    model: DeterministicClassifier
    state: eqx.nn.State
    posterior: GaussianLastLayer

    def probabilities(self, inputs: jax.Array, factor: float = math.pi / 8) -> jax.Array:
        """``[N, K]`` predictive probabilities by the mean-field approximation, each logit
        scaled by its own posterior variance (``mean_field_logits``)."""
        mean, variance = self.posterior.predict(_features(self.model, self.state, inputs))
        return jax.nn.softmax(mean_field_logits(mean, variance, factor), axis=-1)


@eqx.filter_jit
def _features(model, state, inputs):
    h, _ = apply_to_batch(eqx.nn.inference_mode(model), state, inputs, method="representation")
    return jnp.concatenate([h, jnp.ones((h.shape[0], 1), h.dtype)], axis=1)


def fit_variational_last_layer_baseline(
    model: DeterministicClassifier,
    state: eqx.nn.State,
    inputs: jax.Array,
    labels: jax.Array,
    *,
    prior_precision: float = 1.0,
    steps: int = 2000,
    key: jax.Array,
) -> VariationalLastLayer:
    """Replaces a trained network's output layer by a mean-field Gaussian posterior fitted
    with ``inference.vi`` (``fit_variational_last_layer`` on the frozen representation,
    with a constant feature for the bias).

    Args:
        model: a trained ``DeterministicClassifier``.
        state: its state.
        inputs: ``[N, ...]`` training inputs.
        labels: ``[N]`` integer labels.
        prior_precision: ``τ`` of the ``N(0, 1/τ)`` prior on each weight.
        steps: VI steps.
        key: the PRNG key.

    Returns:
        The ``VariationalLastLayer``.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp
        >>> model, state = eqx.nn.make_with_state(DeterministicClassifier)(
        ...     2, 2, width=8, depth=1, key=jax.random.key(0))
        >>> x = jax.random.normal(jax.random.key(1), (40, 2))
        >>> baseline = fit_variational_last_layer_baseline(
        ...     model, state, x, (x[:, 0] > 0).astype(jnp.int32), steps=200, key=jax.random.key(2))
        >>> baseline.probabilities(x).shape
        (40, 2)
    """
    features = _features(model, state, inputs)
    num_classes = model.head.weight.shape[0]
    posterior = fit_variational_last_layer(
        features,
        labels,
        num_classes,
        prior_precision,
        family=MeanFieldGaussian(),
        steps=steps,
        key=key,
    )
    return VariationalLastLayer(model, state, posterior)
