"""The baselines' predictive distributions against identities they must satisfy."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from models.baselines import (
    DeterministicClassifier,
    ensemble_probabilities,
    mc_dropout_probabilities,
    softmax_probabilities,
)

INPUTS = jax.random.normal(jax.random.key(9), (6, 3))


def network(seed, dropout_rate=0.0):
    return eqx.nn.make_with_state(DeterministicClassifier)(
        3, 4, width=8, depth=2, dropout_rate=dropout_rate, key=jax.random.key(seed)
    )


def test_mc_dropout_averages_the_masks_and_is_the_network_without_dropout():
    model, state = network(0, dropout_rate=0.5)
    key = jax.random.key(1)
    probs = mc_dropout_probabilities(model, state, INPUTS, samples=3, key=key)
    by_hand = []
    for mask_key in jax.random.split(key, 3):
        keys = jax.random.split(mask_key, INPUTS.shape[0])
        logits = jnp.stack([model(x, state, key=k)[0] for x, k in zip(INPUTS, keys, strict=True)])
        by_hand.append(jax.nn.softmax(logits))
    np.testing.assert_allclose(probs, jnp.mean(jnp.stack(by_hand), 0), rtol=1e-5, atol=1e-6)
    # the masks matter: a different key gives different probabilities
    other = mc_dropout_probabilities(model, state, INPUTS, samples=3, key=jax.random.key(2))
    assert not jnp.allclose(other, probs, atol=1e-3)
    # with rate 0 every mask is the identity: the deterministic softmax
    plain, plain_state = network(0)
    np.testing.assert_allclose(
        mc_dropout_probabilities(plain, plain_state, INPUTS, samples=2, key=key),
        softmax_probabilities(plain, plain_state, INPUTS),
        rtol=1e-6,
    )


def test_ensemble_is_the_mean_of_its_members():
    members = [network(seed) for seed in (3, 4, 5)]
    each = [softmax_probabilities(m, s, INPUTS) for m, s in members]
    np.testing.assert_allclose(
        ensemble_probabilities(members, INPUTS), (each[0] + each[1] + each[2]) / 3, rtol=1e-6
    )
    np.testing.assert_allclose(ensemble_probabilities(members[:1], INPUTS), each[0], rtol=1e-6)
    assert not jnp.allclose(each[0], each[1], atol=1e-3)  # members differ
