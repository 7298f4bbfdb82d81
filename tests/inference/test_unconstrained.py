"""The unconstrained space of MCMC's gradient kernels when one support depends on another choice.

``x ~ uniform(0, y)`` with ``y`` latent: ``x = y * sigmoid(u_x)`` must use the ``y`` of the
same position, not of the trace the kernel started from.
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.scipy import stats
from test_mcmc import assert_moments

from inference import mcmc
from ppl import Scan, gamma, gen, normal, select, uniform

KEY = jax.random.key(0)


@gen
def nested():
    y = gamma(2.0, 1.0) @ "y"
    return uniform(0.0, y) @ "x"


@gen
def halving(previous, _):
    below = uniform(0.0, previous) @ "x"
    return below, below


@gen
def chain():
    # x_t ~ uniform(0, x_{t-1}), x_0 = 1: every element's support depends on the one before.
    return Scan(halving, length=4)(1.0, None) @ "steps"


def log_sigmoid_jacobian(u):
    return jax.nn.log_sigmoid(u) + jax.nn.log_sigmoid(-u)


finite = st.floats(-4.0, 4.0)


@settings(max_examples=20, deadline=None)
@given(finite, finite)
def test_the_density_of_u_uses_the_support_at_the_same_position(u_y, u_x):
    trace = nested.simulate(KEY, ())
    view = mcmc.Unconstrained(nested, trace, select("y", "x"))
    position = view.position(trace)
    position = position | position.from_dict({"y": jnp.float32(u_y), "x": jnp.float32(u_x)})
    y = jnp.exp(u_y)
    x = y * jax.nn.sigmoid(u_x)
    # p(y) p(x | y) |dy/du_y| |dx/du_x| = Gamma(y; 2, 1) * (1 / y) * y * (y sigmoid'(u_x))
    expected = (
        stats.gamma.logpdf(y, 2.0) - jnp.log(y) + u_y + jnp.log(y) + log_sigmoid_jacobian(u_x)
    )
    np.testing.assert_allclose(view.logdensity_fn(trace)(position), expected, rtol=1e-5, atol=1e-5)
    moved = view.to_trace(position, trace)
    np.testing.assert_allclose(moved.choices["x"], x, rtol=1e-5)
    np.testing.assert_allclose(view.position(moved)["x"], u_x, rtol=1e-4, atol=1e-4)


@settings(max_examples=20, deadline=None)
@given(st.lists(finite, min_size=4, max_size=4))
def test_a_chain_of_dependent_supports_inside_a_scan(us):
    trace = chain.simulate(KEY, ())
    view = mcmc.Unconstrained(chain, trace, select("steps"))
    u = jnp.asarray(us, dtype=jnp.float32)
    position = jax.tree.map(lambda _: u, view.position(trace))
    # x_t = x_{t-1} sigmoid(u_t): the uniform densities 1 / x_{t-1} cancel the Jacobians'
    # x_{t-1}, leaving the sigmoid derivatives.
    expected = jnp.sum(log_sigmoid_jacobian(u))
    np.testing.assert_allclose(view.logdensity_fn(trace)(position), expected, rtol=1e-5, atol=1e-5)
    values = view.to_trace(position, trace).choices["steps", "x"]
    np.testing.assert_allclose(values, jnp.cumprod(jax.nn.sigmoid(u)), rtol=1e-5)


@gen
def batched():
    y = gamma(jnp.full(3, 2.0), 1.0) @ "y"
    return uniform(jnp.zeros(3), y) @ "x"


def test_a_batch_of_supports_each_from_its_own_element():
    trace = batched.simulate(KEY, ())
    view = mcmc.Unconstrained(batched, trace, select("y", "x"))
    assert view.passes == 2
    u_y, u_x = jnp.array([-1.0, 0.5, 2.0]), jnp.array([1.5, -2.0, 0.3])
    position = view.position(trace)
    position = position | position.from_dict({"y": u_y, "x": u_x})
    expected = jnp.sum(stats.gamma.logpdf(jnp.exp(u_y), 2.0) + u_y + log_sigmoid_jacobian(u_x))
    np.testing.assert_allclose(view.logdensity_fn(trace)(position), expected, rtol=1e-5)
    moved = view.to_trace(position, trace).choices
    np.testing.assert_allclose(moved["x"], jnp.exp(u_y) * jax.nn.sigmoid(u_x), rtol=1e-5)


def test_supports_that_depend_on_no_latent_choice_cost_one_pass():
    @gen
    def independent():
        scale = gamma(2.0, 1.0) @ "scale"
        low = normal(0.0, 1.0) @ "low"
        return uniform(-1.0, 1.0) @ "u", normal(low, scale) @ "x"

    trace = independent.simulate(KEY, ())
    assert mcmc.Unconstrained(independent, trace, select("scale", "low", "u", "x")).passes == 1
    assert mcmc.Unconstrained(nested, nested.simulate(KEY, ()), select("y", "x")).passes == 2
    assert mcmc.Unconstrained(nested, nested.simulate(KEY, ()), select("x")).passes == 1
    assert mcmc.Unconstrained(chain, chain.simulate(KEY, ()), select("steps")).passes == 4


def test_nuts_samples_a_prior_whose_support_depends_on_a_latent():
    # y ~ Gamma(2, 1), x | y ~ U(0, y): E y = 2, Var y = 2, E x = 1, Var x = E y^2 / 3 - 1 = 1.
    data = mcmc.run(
        nested, {}, KEY, num_chains=4, num_warmup=300, num_samples=1000, progress_bar=False
    )
    y, x = data.posterior["y"].values, data.posterior["x"].values
    assert np.all((x > 0) & (x < y))
    assert_moments(y, 2.0, 2.0)
    assert_moments(x, 1.0, 1.0)
