"""Quickstart: a Bayesian linear regression written with ``@gen``.

Simulates the model, conditions it on data with ``generate``, scores choices with ``assess``,
estimates the posterior mean by importance sampling (``generate`` vmapped over keys) and by
NUTS (``inference.mcmc.run``), both checked against the exact conjugate posterior within
bounds set by their effective sample sizes, and fits a full-covariance Gaussian guide by
maximising the ELBO (``inference.vi``), whose optimum is the exact posterior.

Run: ``make demo`` (or ``python examples/quickstart.py``).
"""

from __future__ import annotations

import argparse

import arviz
import jax
import jax.numpy as jnp
import optax
from numpyro.distributions import MultivariateNormal

from inference import mcmc, vi
from ppl import Vmap, from_numpyro, gen, normal


@gen
def regression(xs):
    """y_i ~ N(slope * x_i + intercept, 0.5), with standard normal priors."""
    slope = normal(0.0, 1.0) @ "slope"
    intercept = normal(0.0, 1.0) @ "intercept"
    return Vmap(normal, in_axes=(0, None))(slope * xs + intercept, 0.5) @ "ys"


def exact_posterior(xs: jax.Array, ys: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Posterior mean and covariance of (slope, intercept): the model is conjugate."""
    design = jnp.stack([xs, jnp.ones_like(xs)], axis=1)
    covariance = jnp.linalg.inv(jnp.eye(2) + design.T @ design / 0.25)
    return covariance @ design.T @ ys / 0.25, covariance


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
    exact, covariance = exact_posterior(xs, ys)
    ess = 1.0 / jnp.sum(weights**2)
    print(f"importance sampling (ESS {ess:.0f}): posterior mean {estimate}, exact {exact}")
    bound = 5 * jnp.sqrt(jnp.diag(covariance) / ess)
    assert jnp.all(jnp.abs(estimate - exact) < bound), "importance sampling disagrees"

    # 4. MCMC: NUTS through blackjax on every unobserved choice, results as an arviz DataTree.
    data = mcmc.run(
        regression,
        {"ys": ys},
        jax.random.key(2),
        args=(xs,),
        num_chains=4,
        num_warmup=300,
        num_samples=300,
        progress_bar=False,
    )
    print(mcmc.summary(data))
    names = ("slope", "intercept")
    nuts_mean = jnp.asarray([float(data.posterior[name].mean()) for name in names])
    nuts_ess = jnp.asarray([float(arviz.ess(data)[name]) for name in names])
    print(f"NUTS posterior mean {nuts_mean}, exact {exact}")
    bound = 5 * jnp.sqrt(jnp.diag(covariance) / nuts_ess)
    assert jnp.all(jnp.abs(nuts_mean - exact) < bound), "NUTS disagrees"

    # 5. variational inference: a Gaussian guide with a full covariance (a Cholesky factor),
    # fitted by maximising the ELBO (an @expectation program) with optax through vi.fit.
    @gen
    def guide(params):
        scale = jnp.tril(params["scale"], -1) + jnp.diag(jnp.exp(jnp.diag(params["scale"])))
        return from_numpyro(MultivariateNormal(params["mean"], scale_tril=scale)) @ "latent"

    @gen
    def regression_flat(xs):
        latent = normal(jnp.zeros(2), 1.0) @ "latent"
        return Vmap(normal, in_axes=(0, None))(latent[0] * xs + latent[1], 0.5) @ "ys"

    # the model gets (xs,), the guide only its parameters
    objective = vi.elbo(regression_flat, guide, guide_args=lambda params, xs: (params,))
    start = {"mean": jnp.zeros(2), "scale": jnp.zeros((2, 2))}
    optimizer = optax.adam(optax.exponential_decay(0.05, 1500, 0.02))
    fitted = vi.fit(
        objective,
        start,
        optimizer,
        1500,
        jax.random.key(3),
        args=({"ys": ys}, xs),
        progress=False,
    )
    print(f"VI posterior mean {fitted.params['mean']}, exact {exact}")
    sd = jnp.sqrt(jnp.diag(covariance))
    assert jnp.all(jnp.abs(fitted.params["mean"] - exact) < 0.2 * sd), "VI disagrees"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--particles", type=int, default=100_000)
    main(parser.parse_args().particles)
