"""What traces hold: arguments only at the top, supports from the caller's arguments, and
plates of scalar-parameter distributions drawn as one batched draw."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest
import scipy.stats

import ppl
from ppl import Scan, Switch, Vmap, gen, normal, uniform

KEY = jax.random.key(0)


@gen
def regression(xs):
    slope = normal(0.0, 1.0) @ "slope"
    scale = ppl.half_normal(1.0) @ "scale"
    effects = Vmap(normal, in_axes=None, axis_size=3)(0.0, scale) @ "effects"
    return Vmap(normal, in_axes=(0, None))(slope * xs + jnp.sum(effects), scale) @ "ys"


def test_only_the_outermost_trace_holds_arguments():
    xs = jnp.linspace(-1.0, 1.0, 5)
    trace = regression.simulate(KEY, (xs,))
    assert trace.args == (xs,)
    for address in ("slope", "effects", "ys"):
        assert trace.subtrace(address).args is None
    # So a traced simulate returns the choices, their scores (packed in one array) and the
    # argument: not the plates' parameters (slope * xs + ..., scale broadcast), nor totals, nor
    # the return value, which is the "ys" plate's value and is read from its sub-trace.
    leaves = jax.tree.leaves(jax.eval_shape(lambda k: regression.simulate(k, (xs,)), KEY))
    values, scores, arguments = 4, 1, 1
    assert len(leaves) == values + scores + arguments
    assert leaves[-1].shape == (1 + 1 + 3 + 5,)  # a score per choice, a plate's per repeat
    assert trace.retval is trace.choices["ys"]
    np.testing.assert_allclose(trace.score, regression.assess(trace.choices, (xs,))[0], rtol=1e-6)


def test_update_of_a_nested_trace_asks_for_its_arguments():
    trace = regression.simulate(KEY, (jnp.zeros(2),))
    with pytest.raises(TypeError, match="pass args"):
        normal.update(KEY, trace.subtrace("slope"), 0.5)
    new, weight, _ = normal.update(KEY, trace.subtrace("slope"), 0.5, (0.0, 1.0))
    np.testing.assert_allclose(
        weight, normal.assess(0.5, (0.0, 1.0))[0] - trace.subtrace("slope").score, rtol=1e-6
    )
    assert new.args == (0.0, 1.0)


@gen
def bounded_step(bound, _):
    x = uniform(0.0, bound) @ "x"
    return x + 1.0, x


def test_supports_of_a_chain_use_each_step_carry():
    chain = Scan(bounded_step, length=4)
    trace = chain.simulate(KEY, (2.0, None))
    upper = np.asarray(chain.supports(trace)[..., "x"].upper_bound)
    xs = np.asarray(trace.choices[..., "x"])
    np.testing.assert_allclose(upper, np.concatenate([[2.0], xs[:-1] + 1.0]), rtol=1e-6)


def test_supports_of_a_plate_and_a_switch_use_their_arguments():
    plate = Vmap(uniform, in_axes=(None, 0))
    highs = jnp.array([1.0, 2.0, 3.0])
    trace = plate.simulate(KEY, (0.0, highs))
    np.testing.assert_allclose(plate.supports(trace)[...].upper_bound, highs)
    switch = Switch(uniform, normal)
    trace = switch.simulate(KEY, (0, (0.0, 5.0), (0.0, 1.0)))
    assert float(switch.supports(trace).upper_bound) == 5.0
    same_kind = Switch(uniform, uniform)
    supports = jax.jit(
        lambda i: same_kind.supports(same_kind.simulate(KEY, (i, (0.0, 5.0), (0.0, 2.0))))
    )
    assert float(supports(1).upper_bound) == 2.0
    with pytest.raises(TypeError, match="supports of the same kind"):
        jax.jit(lambda i: switch.supports(switch.simulate(KEY, (i, (0.0, 5.0), (0.0, 1.0)))))(0)


SCALAR_FAMILIES = [
    (normal, (jnp.array([-1.0, 0.0, 2.0]), 0.5), (0, None), nd.Normal),
    (ppl.gamma, (2.0, jnp.array([1.0, 3.0, 0.5])), (None, 0), nd.Gamma),
    (ppl.poisson, (jnp.array([0.5, 4.0, 9.0]),), (0,), nd.Poisson),
    (ppl.bernoulli, (jnp.array([0.1, 0.5, 0.9]),), (0,), nd.BernoulliProbs),
]


@pytest.mark.parametrize("family, args, axes, reference", SCALAR_FAMILIES)
def test_a_plate_of_scalar_distributions_draws_each_repeat_from_its_own(
    family, args, axes, reference
):
    """The batched draw of a plate: per-repeat scores are the reference log densities, and the
    mean over many draws is each repeat's mean (within 5 standard errors)."""
    plate = Vmap(family, in_axes=axes)
    traces = jax.jit(jax.vmap(lambda k: plate.simulate(k, args)))(jax.random.split(KEY, 4000))
    per_repeat = [jnp.broadcast_to(a, (3,)) for a in args]
    dist = reference(*per_repeat)
    np.testing.assert_allclose(
        traces.inner.score, jax.vmap(dist.log_prob)(traces.inner.value), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(traces.score, jnp.sum(traces.inner.score, axis=1), rtol=1e-5)
    values = np.asarray(traces.inner.value, dtype=float)
    standard_error = np.sqrt(np.asarray(dist.variance)) / np.sqrt(len(values))
    assert np.all(np.abs(values.mean(0) - np.asarray(dist.mean)) < 5 * standard_error)
    # Repeats are independent of each other: no correlation between the first two.
    r = scipy.stats.pearsonr(values[:, 0], values[:, 1]).statistic
    assert abs(r) < 5 / np.sqrt(len(values))


def test_a_plate_of_vector_parameters_still_draws_repeat_by_repeat():
    plate = Vmap(ppl.categorical, in_axes=0)
    probs = jnp.array([[0.2, 0.8], [0.9, 0.1]])
    trace = plate.simulate(KEY, (probs,))
    assert trace.inner.value.shape == (2,)
    np.testing.assert_allclose(trace.score, plate.assess(trace.choices, (probs,))[0], rtol=1e-6)


@gen
def two_observations():
    mu = normal(0.0, 1.0) @ "mu"
    normal(mu, 1.0) @ "a"
    return normal(mu, 1.0) @ "b"


def test_the_return_value_is_read_from_its_call_whatever_the_values_given():
    # One array given at two addresses: the return value is still "b"'s, so a move of "a"
    # gives a trace of the same structure (an MCMC carry) and the right return value.
    data = jnp.asarray(0.5)
    trace, _ = two_observations.generate(KEY, {"a": data, "b": data})
    moved, _, _ = two_observations.update(KEY, trace, {"a": 2.0})
    assert jax.tree.structure(moved) == jax.tree.structure(trace)
    assert float(moved.retval) == 0.5 and float(moved.choices["a"]) == 2.0
    jitted, _ = jax.jit(lambda d: two_observations.generate(KEY, {"a": d, "b": d}))(data)
    assert jax.tree.structure(jitted) == jax.tree.structure(trace)
    # Within a chain, the step's return value is its choice, stacked once.
    chain = Scan(bounded_step, length=3)
    stacked = chain.simulate(KEY, (2.0, None))
    np.testing.assert_array_equal(stacked.retval[1], stacked.choices[..., "x"])


@gen
def one_choice_returning_a_constant():
    normal(0.0, 1.0) @ "z"
    return 1


@gen
def two_calls():
    return (one_choice_returning_a_constant() @ "a") + (one_choice_returning_a_constant() @ "b")


def test_python_values_returned_by_two_calls_stay_python_values():
    trace = two_calls.simulate(KEY, ())
    assert trace.retval == 2 and trace.subtrace("b").retval == 1
    assert isinstance(trace.subtrace("b").retval, int)
