"""Monte Carlo dropout (Gal & Ghahramani, 2016): dropout kept on at prediction."""

from __future__ import annotations

import equinox as eqx
import jax

from models.training._batch import apply_to_batch


def mc_dropout_probabilities(
    model: eqx.Module,
    state: eqx.nn.State,
    inputs: jax.Array,
    *,
    samples: int,
    key: jax.Array,
) -> jax.Array:
    """The predictive probabilities averaged over ``samples`` dropout masks,
    ``(1/S) Σ_s softmax(f(x; mask_s))``.

    Args:
        model: a classifier trained with dropout (``DeterministicClassifier`` with
            ``dropout_rate > 0``), in training mode.
        state: its state.
        inputs: ``[N, ...]`` examples.
        samples: the number of masks ``S``.
        key: the PRNG key of the masks.

    Returns:
        ``[N, K]`` class probabilities.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp
        >>> from models.baselines import DeterministicClassifier
        >>> model, state = eqx.nn.make_with_state(DeterministicClassifier)(
        ...     2, 3, width=8, depth=1, dropout_rate=0.5, key=jax.random.key(0))
        >>> probs = mc_dropout_probabilities(model, state, jnp.ones((4, 2)), samples=8,
        ...                                  key=jax.random.key(1))
        >>> bool(jnp.allclose(probs.sum(-1), 1.0))
        True
    """
    return _mc_dropout(eqx.nn.inference_mode(model, value=False), state, inputs, samples, key)


@eqx.filter_jit
def _mc_dropout(model, state, inputs, samples, key):
    def one_mask(k):
        logits, _ = apply_to_batch(model, state, inputs, key=k)
        return jax.nn.softmax(logits, axis=-1)

    return jax.lax.map(one_mask, jax.random.split(key, samples)).mean(0)
