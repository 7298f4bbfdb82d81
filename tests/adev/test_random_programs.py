"""Random small programs with random strategy assignments give unbiased gradients.

A program is a chain of discrete choices (flips and 3-way categoricals, each depending on the
previous value) followed by a Gaussian whose mean depends on all of them; the integrand is
``z² + Σ d_i x_i``. Its exact expectation is a finite sum (``E[z² | x] = m(x)² + s²``), so its
exact gradient is ``jax.grad`` of that sum. Hypothesis draws the program and one strategy per
choice; the mean of ``N`` gradient estimates must be within 5 standard errors of the exact
gradient, coordinate by coordinate (about 100 coordinates over the examples: a correct
estimator fails with probability below 1e-4), and all-``enum`` programs must match exactly.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ppl import categorical, flip, gen, normal
from ppl.adev import constant, enum, expectation, mvd, reinforce, reparam

N = 8000
CATEGORY_WEIGHTS = jnp.array([0.0, 0.7, -0.4])

DISCRETE = {
    "enum": enum(),
    "enum-sequential": enum(vectorized=False),
    "reinforce": reinforce(),
    "reinforce+baseline": reinforce(constant(1.0)),
    "mvd": mvd(),
}
CONTINUOUS = {"reparam": reparam(), "reinforce+baseline": reinforce(constant(2.0)), "mvd": mvd()}


def build(kinds: tuple[str, ...], coupling: float, gaussian: bool = True):
    """The program, its exact expectation, and its number of parameters (without the
    Gaussian, the integrand is ``m(x)² + s² + Σ d_i x_i`` computed, not sampled)."""
    n = len(kinds)
    d = jnp.linspace(0.5, -0.5, n)

    def logits_of(i, theta, previous):
        return theta[i] * CATEGORY_WEIGHTS + coupling * previous * jnp.array([0.0, 1.0, 0.0])

    @gen
    def program(theta):
        previous = jnp.zeros(())
        values = []
        for i, kind in enumerate(kinds):
            if kind == "flip":
                x = flip(jax.nn.sigmoid(theta[i] + coupling * previous)) @ f"x{i}"
            else:
                x = categorical(logits=logits_of(i, theta, previous)) @ f"x{i}"
            previous = x.astype(jnp.float32)
            values.append(previous)
        xs = jnp.stack(values)
        mean = theta[n] + jnp.sum(0.3 * xs)
        if not gaussian:
            return jnp.sqrt(mean**2 + jnp.exp(theta[n + 1])), xs
        z = normal(mean, jnp.exp(0.5 * theta[n + 1])) @ "z"
        return z, xs

    @expectation
    def integrand(key, theta):
        z, xs = program.simulate(key, (theta,)).retval
        return z**2 + jnp.sum(d * xs)

    def exact(theta):
        total = jnp.zeros(())
        sizes = [2 if k == "flip" else 3 for k in kinds]
        for assignment in itertools.product(*(range(s) for s in sizes)):
            log_p, previous = jnp.zeros(()), jnp.zeros(())
            for i, (kind, x) in enumerate(zip(kinds, assignment, strict=True)):
                if kind == "flip":
                    p = jax.nn.sigmoid(theta[i] + coupling * previous)
                    log_p += jnp.log(p if x == 1 else 1 - p)
                else:
                    log_p += jax.nn.log_softmax(logits_of(i, theta, previous))[x]
                previous = jnp.asarray(float(x))
            xs = jnp.asarray(assignment, jnp.float32)
            mean = theta[n] + jnp.sum(0.3 * xs)
            value = mean**2 + jnp.exp(theta[n + 1]) + jnp.sum(d * xs)
            total += jnp.exp(log_p) * value
        return total

    return integrand, exact, n + 2


programs = st.tuples(
    st.lists(st.sampled_from(["flip", "categorical"]), min_size=1, max_size=3).map(tuple),
    st.sampled_from([0.0, 0.8]),
)


@settings(max_examples=12)
@given(
    programs,
    st.lists(st.sampled_from(sorted(DISCRETE)), min_size=3, max_size=3),
    st.sampled_from(sorted(CONTINUOUS)),
    st.integers(0, 2**16),
)
def test_random_strategy_mixes_are_unbiased(program, discrete, continuous, seed):
    (kinds, coupling) = program
    integrand, exact, n_params = build(kinds, coupling)
    overrides = {f"x{i}": DISCRETE[discrete[i]] for i in range(len(kinds))}
    overrides["z"] = CONTINUOUS[continuous]
    objective = integrand.with_estimators(overrides)
    theta = jax.random.normal(jax.random.key(seed), (n_params,)) * 0.5
    truth = np.asarray(jax.jit(jax.grad(exact))(theta))
    keys = jax.random.split(jax.random.key(seed + 1), N)
    grads = np.asarray(jax.jit(jax.vmap(lambda k: objective.grad_estimate(k, theta)[0]))(keys))
    mean, se = grads.mean(0), grads.std(0) / np.sqrt(N)
    z = np.abs(mean - truth) / (se + 1e-5 * (1 + np.abs(truth)))
    assert z.max() < 5.0, (kinds, coupling, overrides, mean, truth, se)


@settings(max_examples=6)
@given(programs)
def test_enumerating_every_choice_is_exact(program):
    kinds, coupling = program
    integrand, exact, n_params = build(kinds, coupling, gaussian=False)
    objective = integrand.with_estimators({f"x{i}": enum() for i in range(len(kinds))})
    theta = jnp.linspace(-0.4, 0.6, n_params)
    value, (grad,) = jax.jit(objective.value_and_grad)(jax.random.key(0), theta)
    assert np.allclose(value, exact(theta), rtol=1e-5, atol=1e-5)
    assert np.allclose(grad, jax.grad(exact)(theta), rtol=1e-4, atol=1e-5)
