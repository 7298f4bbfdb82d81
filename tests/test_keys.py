"""Keys of a ``@gen`` function's calls: ``fold_in(key, i)`` for call ``i``, whatever the blocks
they are computed in; in a chain's steps, distinct for every step and call."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ppl import Scan, gen, normal
from ppl._keys import StepKey, call_keys


def words(keys):
    return np.asarray(jax.random.key_data(keys)).reshape(-1, 2)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 40), st.integers(0, 2**31))
def test_call_i_gets_fold_in_key_i(calls, seed):
    @gen
    def many():
        return [normal(0.0, 1.0) @ i for i in range(calls)]

    key = jax.random.key(seed)
    drawn = many.simulate(key, ()).retval
    expected = [
        normal.simulate(jax.random.fold_in(key, i), (0.0, 1.0)).retval for i in range(calls)
    ]
    np.testing.assert_array_equal(np.asarray(drawn), np.asarray(expected))


def test_the_keys_of_a_chain_differ_across_steps_and_calls():
    key = jax.random.key(7)
    steps = [words(call_keys(StepKey(key, jnp.uint32(t)), 0, 12)) for t in range(50)]
    plain = words(call_keys(key, 0, 64))
    np.testing.assert_array_equal(plain, words(jax.random.split(key, 64)))
    every = np.concatenate([*steps, plain])
    assert len({tuple(w) for w in every}) == len(every)
    # Legacy raw keys and other PRNGs work too (the latter through fold_in).
    raw = call_keys(StepKey(jax.random.PRNGKey(7), jnp.uint32(3)), 0, 3)
    np.testing.assert_array_equal(raw, words(call_keys(StepKey(key, jnp.uint32(3)), 0, 3)))
    rbg = jax.random.key(7, impl="rbg")
    assert call_keys(StepKey(rbg, jnp.uint32(3)), 0, 3).shape == (3,)


@gen
def step(z, _):
    z = normal(0.9 * z, 1.0) @ "z"
    return z, normal(z, 0.5) @ "y"


def test_a_chain_draws_independent_standard_normals():
    # The chain's innovations, (z_t - 0.9 z_{t-1}) and (y_t - z_t) / 0.5, are iid N(0, 1):
    # mean, variance and lag-1 correlation within 5 standard errors.
    n = 20_000
    trace = jax.jit(lambda k: Scan(step, length=n).simulate(k, (0.0, None)))(jax.random.key(1))
    z, y = np.asarray(trace.choices["z"]), np.asarray(trace.choices["y"])
    innovations = np.concatenate([z - 0.9 * np.concatenate([[0.0], z[:-1]]), (y - z) / 0.5])
    se = 1 / np.sqrt(innovations.size)
    assert abs(innovations.mean()) < 5 * se
    assert abs(innovations.var() - 1) < 5 * np.sqrt(2) * se
    assert abs(np.corrcoef(innovations[:-1], innovations[1:])[0, 1]) < 5 * se
    # Between the two calls of a step (the same step's keys): correlation of z_t's and y_t's.
    assert abs(np.corrcoef(innovations[:n], innovations[n:])[0, 1]) < 5 * np.sqrt(2) * se
