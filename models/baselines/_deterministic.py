"""The deterministic baseline: SNGP's architecture without spectral norm or GP layer."""

from __future__ import annotations

import equinox as eqx
import jax

from models.sngp._residual import ResidualNetwork
from models.training._batch import apply_to_batch


class DeterministicClassifier(eqx.Module):
    """A residual network with a dense softmax output layer: ``SNGPClassifier``'s body
    without spectral normalization (``norm_bound=None``) and with ``eqx.nn.Linear`` in
    place of the Gaussian-process layer. With ``dropout_rate > 0`` it is the MC-dropout
    baseline (``mc_dropout_probabilities``).

    Args:
        in_features: the input dimension.
        num_classes: the number of classes.
        width: the hidden width.
        depth: the number of residual blocks.
        dropout_rate: dropout after each block.
        key: the PRNG key.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp
        >>> model, state = eqx.nn.make_with_state(DeterministicClassifier)(
        ...     2, 3, width=8, depth=1, key=jax.random.key(0))
        >>> logits, state = model(jnp.zeros(2), state)
        >>> logits.shape
        (3,)
    """

    body: ResidualNetwork
    head: eqx.nn.Linear

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        width: int = 128,
        depth: int = 3,
        dropout_rate: float = 0.0,
        key: jax.Array,
    ):
        body_key, head_key = jax.random.split(key)
        self.body = ResidualNetwork(
            in_features,
            width=width,
            depth=depth,
            norm_bound=None,
            dropout_rate=dropout_rate,
            key=body_key,
        )
        self.head = eqx.nn.Linear(width, num_classes, key=head_key)

    def representation(
        self, x: jax.Array, state: eqx.nn.State, *, key: jax.Array | None = None
    ) -> tuple[jax.Array, eqx.nn.State]:
        """The ``[width]`` penultimate representation of one example, and the state."""
        return self.body(x, state, key=key)

    def __call__(
        self, x: jax.Array, state: eqx.nn.State, *, key: jax.Array | None = None
    ) -> tuple[jax.Array, eqx.nn.State]:
        """The ``[K]`` logits of one example, and the state."""
        h, state = self.body(x, state, key=key)
        return self.head(h), state


def softmax_probabilities(model: eqx.Module, state: eqx.nn.State, inputs: jax.Array) -> jax.Array:
    """``[N, K]`` class probabilities ``softmax(logits)`` in inference mode (no dropout).

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp
        >>> model, state = eqx.nn.make_with_state(DeterministicClassifier)(
        ...     2, 3, width=8, depth=1, key=jax.random.key(0))
        >>> probs = softmax_probabilities(model, state, jnp.zeros((4, 2)))
        >>> bool(jnp.allclose(probs.sum(-1), 1.0))
        True
    """
    return _softmax(eqx.nn.inference_mode(model), state, inputs)


@eqx.filter_jit
def _softmax(model, state, inputs):
    logits, _ = apply_to_batch(model, state, inputs)
    return jax.nn.softmax(logits, axis=-1)
