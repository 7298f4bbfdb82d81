"""Particle filters against the Kalman filter on a linear-Gaussian state-space model.

A target moves with a noisy constant velocity; we observe its position with noise. The model is
one step kernel written with ``@gen``; ``Scan(step)`` simulates the data, and two particle
filters (bootstrap, and guided by the locally optimal proposal) estimate the log-likelihood
``log p(y_{0:T-1})`` and the filtering means ``E[x_t | y_{0:t}]``, which the Kalman filter gives
exactly. Each filter runs several times (one ``jax.vmap``) to show the spread of its estimates.

Run: ``python examples/state_space_smc.py`` (``--quick`` for tiny sizes).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from jax.scipy.stats import norm

from inference import smc
from ppl import Scan, gen, mv_normal, mv_normal_diag, normal

DT = 0.5
TRANSITION = jnp.array([[1.0, DT], [0.0, 1.0]])  # (position, velocity)
STATE_NOISE = jnp.array([0.2, 0.5])
OBSERVATION_NOISE = 0.2
OBSERVE = jnp.array([1.0, 0.0])
INITIAL = jnp.array([0.0, 1.0])


@gen
def step(state, _):
    """x_t ~ N(F x_{t-1}, diag(q^2)); y_t ~ N(position_t, r^2)."""
    state = mv_normal_diag(TRANSITION @ state, STATE_NOISE) @ "x"
    y = normal(OBSERVE @ state, OBSERVATION_NOISE) @ "y"
    return state, y


PRIOR_PRECISION = jnp.diag(1.0 / STATE_NOISE**2)
OPTIMAL_COVARIANCE = jnp.linalg.inv(
    PRIOR_PRECISION + jnp.outer(OBSERVE, OBSERVE) / OBSERVATION_NOISE**2
)


@gen
def locally_optimal(state, _, observation):
    """p(x_t | x_{t-1}, y_t): the proposal that makes the weight independent of x_t."""
    precision_mean = (
        PRIOR_PRECISION @ (TRANSITION @ state) + OBSERVE * observation["y"] / OBSERVATION_NOISE**2
    )
    return mv_normal(OPTIMAL_COVARIANCE @ precision_mean, OPTIMAL_COVARIANCE) @ "x"


def kalman_filter(ys: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The exact log-likelihood and filtering means, in plain JAX."""
    state_covariance = jnp.diag(STATE_NOISE**2)

    def update(belief, y):
        mean, covariance = belief
        mean = TRANSITION @ mean
        covariance = TRANSITION @ covariance @ TRANSITION.T + state_covariance
        innovation_variance = OBSERVE @ covariance @ OBSERVE + OBSERVATION_NOISE**2
        log_likelihood = norm.logpdf(y, OBSERVE @ mean, jnp.sqrt(innovation_variance))
        gain = covariance @ OBSERVE / innovation_variance
        mean = mean + gain * (y - OBSERVE @ mean)
        covariance = covariance - innovation_variance * jnp.outer(gain, gain)
        return (mean, covariance), (log_likelihood, mean)

    _, (log_likelihoods, means) = jax.lax.scan(update, (INITIAL, jnp.zeros((2, 2))), ys)
    return log_likelihoods.sum(), means


def rmse(a: jax.Array, b: jax.Array) -> float:
    return float(jnp.sqrt(jnp.mean((a - b) ** 2)))


def main(steps: int, particles: int, runs: int) -> None:
    start = time.perf_counter()
    chain = Scan(step, length=steps)
    truth = chain.simulate(jax.random.key(0), (INITIAL, None))
    ys, states = truth.choices["y"], truth.choices["x"]
    exact_log_likelihood, exact_means = kalman_filter(ys)
    print(f"{steps} steps, {particles} particles, {runs} runs per filter")
    print(f"Kalman filter   log-likelihood {float(exact_log_likelihood):9.3f}")
    print(f"                RMSE of filtering means vs true states {rmse(exact_means, states):.3f}")

    filters = {
        "bootstrap": lambda key: smc.bootstrap_filter(
            key, step, INITIAL, {"y": ys}, num_particles=particles
        ),
        "guided": lambda key: smc.guided_filter(
            key, step, locally_optimal, INITIAL, {"y": ys}, num_particles=particles
        ),
    }
    for name, run_filter in filters.items():

        def summary(key, run_filter=run_filter):
            result = run_filter(key)
            means = result.filtering_mean(lambda choices: choices["x"])
            return result.log_marginal_likelihood, means, result.ess.mean()

        log_likelihoods, means, ess = jax.jit(jax.vmap(summary))(
            jax.random.split(jax.random.key(1), runs)
        )
        print(
            f"{name:9s} PF    log-likelihood {float(log_likelihoods.mean()):9.3f} "
            f"± {float(log_likelihoods.std()):.3f} (mean ± sd over runs), "
            f"mean ESS {float(ess.mean()):.0f}/{particles}"
        )
        print(
            f"                RMSE of filtering means vs Kalman {rmse(means, exact_means):.4f}, "
            f"vs true states {rmse(means, states):.3f}"
        )
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    arguments = parser.parse_args()
    if arguments.quick:
        main(steps=5, particles=50, runs=2)
    else:
        main(steps=100, particles=1000, runs=20)
