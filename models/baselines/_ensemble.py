"""Deep ensembles (Lakshminarayanan et al., 2017): independently trained members."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from models.baselines._deterministic import softmax_probabilities


def ensemble_probabilities(
    members: Sequence[tuple[eqx.Module, eqx.nn.State]], inputs: jax.Array
) -> jax.Array:
    """The members' softmax probabilities, averaged: ``(1/M) Σ_m softmax(f_m(x))``.

    Args:
        members: ``(model, state)`` pairs, each trained from its own initialisation (and
            batch order) with ``models.training.train``.
        inputs: ``[N, ...]`` examples.

    Returns:
        ``[N, K]`` class probabilities.

    Raises:
        ValueError: for an empty ensemble.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp
        >>> from models.baselines import DeterministicClassifier
        >>> members = [eqx.nn.make_with_state(DeterministicClassifier)(
        ...     2, 3, width=8, depth=1, key=jax.random.key(seed)) for seed in range(3)]
        >>> probs = ensemble_probabilities(members, jnp.ones((4, 2)))
        >>> bool(jnp.allclose(probs.sum(-1), 1.0))
        True
    """
    if not members:
        raise ValueError("the ensemble has no members; give (model, state) pairs")
    return jnp.mean(
        jnp.stack([softmax_probabilities(model, state, inputs) for model, state in members]), 0
    )
