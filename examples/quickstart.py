"""Quickstart: a Bayesian linear regression written with ``@gen``.

Simulates the model, conditions it on data with ``generate``, scores choices with ``assess``,
and estimates the posterior mean of the slope by importance sampling (``generate`` vmapped
over keys), checked against the exact conjugate posterior.

Run: ``make demo`` (or ``python examples/quickstart.py``).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from ppl import Vmap, gen, normal


@gen
def regression(xs):
    """y_i ~ N(slope * x_i + intercept, 0.5), with standard normal priors."""
    slope = normal(0.0, 1.0) @ "slope"
    intercept = normal(0.0, 1.0) @ "intercept"
    return Vmap(normal, in_axes=(0, None))(slope * xs + intercept, 0.5) @ "ys"


def exact_posterior_mean(xs: jax.Array, ys: jax.Array) -> jax.Array:
    """Posterior mean of (slope, intercept) for the conjugate Gaussian model."""
    design = jnp.stack([xs, jnp.ones_like(xs)], axis=1)
    precision = jnp.eye(2) + design.T @ design / 0.25
    return jnp.linalg.solve(precision, design.T @ ys / 0.25)


def main(particles: int) -> None:
    key = jax.random.key(0)
    xs = jnp.linspace(-2.0, 2.0, 20)

    # 1. simulate: sample every choice; the trace holds choices, score = log p, return value.
    trace = regression.simulate(key, (xs,))
    print(f"simulated slope {float(trace.choices['slope']):+.3f}, log p = {trace.score:.2f}")

    # 2. generate: condition on observed ys; the weight is log p(ys | latents).
    ys = trace.choices["ys"]
    conditioned, log_weight = regression.generate(key, {"ys": ys}, (xs,))
    log_joint, _ = regression.assess(conditioned.choices, (xs,))
    print(f"conditioned trace: log weight {log_weight:.2f}, log joint {log_joint:.2f}")

    # 3. importance sampling: many generate calls in one vmap, self-normalised weights.
    keys = jax.random.split(jax.random.key(1), particles)
    traces, log_weights = jax.jit(jax.vmap(lambda k: regression.generate(k, {"ys": ys}, (xs,))))(
        keys
    )
    weights = jax.nn.softmax(log_weights)
    estimate = jnp.stack([weights @ traces.choices["slope"], weights @ traces.choices["intercept"]])
    exact = exact_posterior_mean(xs, ys)
    print(f"posterior mean (slope, intercept): importance sampling {estimate}, exact {exact}")
    assert jnp.allclose(estimate, exact, atol=0.1), "importance sampling disagrees with exact"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--particles", type=int, default=100_000)
    main(parser.parse_args().particles)
