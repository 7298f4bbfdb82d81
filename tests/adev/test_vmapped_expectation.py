"""``Expectation.vmap``: independent copies of an expectation over a batch.

Each copy is estimated on its own (``enum`` enumerates each copy's choices, not the joint
support of all copies) and the copies' values and surrogates are reduced before the one
gradient is taken.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppl import AddressError, categorical, gen, normal
from ppl.adev import enum, expectation, reinforce, running_mean

W = jnp.array([0.5, -1.0, 2.0, 0.25])


@gen
def pick(logits):
    return categorical(logits=logits) @ "k"


@expectation
def payoff(key, logits, scale):
    return scale * W[pick.simulate(key, (logits,)).retval] ** 2


def exact_payoff(logits, scale):
    """Per copy: ``scale * Σ_k softmax(logits)_k W_k^2``."""
    return scale * (jax.nn.softmax(logits, axis=-1) @ W**2)


@settings(max_examples=8, deadline=None)
@given(
    st.sampled_from([1, 3, 40]),
    st.sampled_from(["mean", "sum"]),
    st.integers(0, 2**20),
)
def test_enum_per_copy_is_exact_in_value_and_gradient(copies, reduce, seed):
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(rng.normal(size=(copies, 4)), jnp.float32)
    scale = jnp.asarray(rng.uniform(0.5, 2.0, size=copies), jnp.float32)
    objective = payoff.with_estimators({"k": enum()}).vmap(in_axes=0, reduce=reduce)
    value, grads = jax.jit(objective.value_and_grad)(jax.random.key(seed), logits, scale)

    def exact(logits, scale):
        per_copy = exact_payoff(logits, scale)
        return jnp.mean(per_copy) if reduce == "mean" else jnp.sum(per_copy)

    np.testing.assert_allclose(value, exact(logits, scale), rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, jax.grad(exact, argnums=(0, 1))(logits, scale), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_copies_are_enumerated_one_by_one_where_a_joint_draw_is_refused():
    logits = jnp.zeros((64, 4))
    per_copy = payoff.with_estimators({"k": enum()})

    @expectation
    def joint(key, logits):
        keys = jax.random.split(key, logits.shape[0])
        return jnp.mean(jax.vmap(lambda k, row: per_copy.estimate(k, row, 1.0))(keys, logits))

    with pytest.raises(AddressError, match=r"4\^64 values"):
        joint.with_estimators({"k": enum()}).estimate(jax.random.key(0), logits)
    batched = per_copy.vmap(in_axes=(0, None))
    np.testing.assert_allclose(
        batched.estimate(jax.random.key(0), logits, 1.0), jnp.mean(W**2), rtol=1e-6
    )


def test_copies_get_their_own_keys():
    @expectation
    def draw(key, mu):
        return normal.simulate(key, (mu, 1.0)).retval

    values = draw.vmap(in_axes=None, reduce=None).estimate
    with pytest.raises(ValueError, match="no mapped array"):
        values(jax.random.key(0), 0.0)
    draws = draw.vmap(in_axes=0, reduce=None).estimate(jax.random.key(0), jnp.zeros(2000))
    assert draws.shape == (2000,)
    assert abs(float(jnp.mean(draws))) < 5 / np.sqrt(2000)  # independent N(0, 1) draws
    assert abs(float(jnp.std(draws)) - 1.0) < 0.1


def test_with_estimators_keeps_the_plate():
    objective = payoff.vmap(in_axes=(0, None)).with_estimators({"k": enum()})
    assert objective.plate is not None
    logits = jnp.zeros((3, 4))
    value = objective.estimate(jax.random.key(1), logits, 2.0)  # exact, whatever the key
    np.testing.assert_allclose(value, 2.0 * jnp.mean(W**2), rtol=1e-6)
    assert "vmap(in_axes=(0, None)" in repr(objective)


def test_running_mean_state_tracks_the_mean_of_the_copies():
    objective = payoff.with_estimators({"k": reinforce(running_mean(decay=0.5))})
    batched = objective.vmap(in_axes=(0, None), reduce="sum")
    logits = jnp.zeros((5, 4))
    state = batched.init_state(jax.random.key(0), logits, 1.0)
    assert set(state) == {("k",)}
    value, _, new_state = batched.value_and_grad(jax.random.key(2), logits, 1.0, state=state)
    # the state follows each copy's value: the mean over copies, not the sum (the first
    # update of a running mean is the value itself)
    np.testing.assert_allclose(new_state[("k",)][0], float(value) / 5, rtol=1e-5)


def test_bad_plates_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="reduce must be"):
        payoff.vmap(reduce="max")
    with pytest.raises(TypeError, match="already vmapped"):
        payoff.vmap().vmap()
    with pytest.raises(ValueError, match="one int or None per argument"):
        payoff.vmap(in_axes=(0,)).estimate(jax.random.key(0), jnp.zeros((2, 4)), 1.0)
    with pytest.raises(ValueError, match="common size"):
        payoff.vmap(in_axes=0).estimate(jax.random.key(0), jnp.zeros((2, 4)), jnp.ones(3))
    with pytest.raises(TypeError, match="static argument"):
        payoff.vmap(in_axes=(None, 0)).estimate(jax.random.key(0), jnp.zeros(4), 1)
    with pytest.raises(TypeError, match="scalar"):
        payoff.vmap(in_axes=(0, None), reduce=None).grad_estimate(
            jax.random.key(0), jnp.zeros((2, 4)), 1.0
        )
