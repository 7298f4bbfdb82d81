"""Particle filters against the Kalman filter and smoother on a linear-Gaussian state-space
model: bootstrap and guided proposals, smoothing, trajectories, errors; and the tempered
target of that model.

Every statistical check is a z-test at |z| < 5 (fixed seeds; standard errors from the
replications), and each has a deliberately broken variant ("mutant") that the same check must
reject.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm
from smc_checks import Z_LIMIT, many_runs, z_score

from inference import smc
from ppl import (
    AddressError,
    GenerativeFunction,
    Scan,
    gen,
    mv_normal_diag,
    normal,
    select,
)

# ---------------------------------------------------------------------------------------------
# Particle filters on a linear-Gaussian state-space model, against the Kalman filter.

A = jnp.array([[1.0, 0.5], [0.0, 0.9]])
STATE_SCALES = jnp.array([0.5, 0.3])
NOISE = 0.6
H = jnp.array([1.0, 0.0])
STEPS = 20
RUNS, PARTICLES = 100, 2000  # the O(1/N) bias of filtering means stays below sd / sqrt(RUNS)


@gen
def tracking(state, _):
    """x_t ~ N(A x_{t-1}, diag(STATE_SCALES^2)) (a 2-vector), y_t ~ N(x_t[0], NOISE^2)."""
    state = mv_normal_diag(A @ state, STATE_SCALES) @ "x"
    y = normal(state[0], NOISE) @ "y"
    return state, y


def kalman_filter(ys):
    """(log p(y_{0:T-1}), filtering means (T, 2)) of the model above, in plain JAX."""
    q = jnp.diag(STATE_SCALES**2)

    def step(belief, y):
        mean, cov = belief
        mean, cov = A @ mean, A @ cov @ A.T + q
        s = H @ cov @ H + NOISE**2
        log_lik = norm.logpdf(y, H @ mean, jnp.sqrt(s))
        gain = cov @ H / s
        mean, cov = mean + gain * (y - H @ mean), cov - s * jnp.outer(gain, gain)
        return (mean, cov), (log_lik, mean)

    _, (log_liks, means) = jax.lax.scan(step, (jnp.zeros(2), jnp.zeros((2, 2))), ys)
    return float(log_liks.sum()), np.asarray(means)


def kalman_smoother(ys):
    """Smoothing means E[x_t | y_{0:T-1}] (T, 2): Kalman filter, then Rauch–Tung–Striebel."""
    q = jnp.diag(STATE_SCALES**2)

    def forward(belief, y):
        mean, cov = belief
        predicted = (A @ mean, A @ cov @ A.T + q)
        mean, cov = predicted
        s = H @ cov @ H + NOISE**2
        gain = cov @ H / s
        mean, cov = mean + gain * (y - H @ mean), cov - s * jnp.outer(gain, gain)
        return (mean, cov), (predicted, (mean, cov))

    _, (predicted, filtered) = jax.lax.scan(forward, (jnp.zeros(2), jnp.zeros((2, 2))), ys)

    def backward(smoothed_next, t):
        mean, cov = filtered[0][t], filtered[1][t]
        gain = cov @ A.T @ jnp.linalg.inv(predicted[1][t + 1])
        smoothed = mean + gain @ (smoothed_next - predicted[0][t + 1])
        return smoothed, smoothed

    last = filtered[0][-1]
    _, earlier = jax.lax.scan(backward, last, jnp.arange(ys.shape[0] - 1), reverse=True)
    return np.asarray(jnp.concatenate([earlier, last[None]]))


YS = Scan(tracking, length=STEPS).simulate(jax.random.key(42), (jnp.zeros(2), None)).choices["y"]
KALMAN_LOG_LIKELIHOOD, KALMAN_MEANS = kalman_filter(YS)
SMOOTHED_MEANS = kalman_smoother(YS)


PRIOR_PRECISION = jnp.diag(1 / STATE_SCALES**2)
OPTIMAL_COVARIANCE = jnp.linalg.inv(PRIOR_PRECISION + jnp.outer(H, H) / NOISE**2)
# Only x[0] is observed and the state noise is diagonal, so the optimal covariance is diagonal
# (and a diagonal normal is much cheaper to sample and score than a full one).
assert np.allclose(OPTIMAL_COVARIANCE, jnp.diag(jnp.diag(OPTIMAL_COVARIANCE)))


@gen
def locally_optimal(state, _, observation):
    """p(x_t | x_{t-1}, y_t), in closed form for the linear-Gaussian model."""
    precision_mean = PRIOR_PRECISION @ (A @ state) + H * observation["y"] / NOISE**2
    scales = jnp.sqrt(jnp.diag(OPTIMAL_COVARIANCE))
    return mv_normal_diag(OPTIMAL_COVARIANCE @ precision_mean, scales) @ "x"


class WeightDroppedAt(GenerativeFunction):
    """Mutant kernel: forgets the generate weight of one step (its input x is the step)."""

    def __init__(self, inner, step):
        self.inner, self.step = inner, step

    def _generate(self, key, constraints, args):
        trace, weight = self.inner._generate(key, constraints, args)
        return trace, jnp.where(args[1] == self.step, 0.0, weight)

    def _simulate(self, key, args):
        return self.inner._simulate(key, args)

    def _assess(self, choices, args):
        return self.inner._assess(choices, args)

    def _update(self, key, trace, constraints, args):
        return self.inner._update(key, trace, constraints, args)

    def _regenerate(self, key, trace, selection, args):
        return self.inner._regenerate(key, trace, selection, args)

    def _sites(self, trace, args, query):
        return self.inner._sites(trace, args, query)


def filter_runs(run_one, extra=lambda result: jnp.zeros(())):
    """(evidence ratio z, largest filtering-mean |z| over steps and coordinates, extras)."""

    def one(key):
        result = run_one(key)
        means = result.filtering_mean(lambda c: c["x"])
        return result.log_marginal_likelihood, means, extra(result)

    log_z, means, extras = many_runs(one, jax.random.split(jax.random.key(7), RUNS))
    ratios = np.exp(np.asarray(log_z, np.float64) - KALMAN_LOG_LIKELIHOOD)
    means = np.asarray(means, np.float64)
    mean_z = (means.mean(0) - KALMAN_MEANS) / (means.std(0, ddof=1) / np.sqrt(RUNS))
    return z_score(ratios, 1.0), float(np.abs(mean_z).max()), extras


def guided_weight_error(result):
    """Largest |incremental log weight - (log p(x_t, y_t | parent) - log q(x_t | parent, y_t))|.

    The increment of step t is the log weight minus the parent's (after resampling the parent's
    weight is the log mean weight of step t - 1).
    """
    x, y, lw = result.particles["x"], result.particles["y"], result.log_weights
    ancestors, resampled = result.ancestors, result.resampled
    parents = jnp.concatenate([jnp.zeros((1, *x.shape[1:])), x[:-1]])
    parents = jax.vmap(lambda p, a: p[a])(parents, ancestors)
    previous = jnp.concatenate([jnp.zeros((1, lw.shape[1])), lw[:-1]])
    previous = jnp.where(
        resampled[:, None],
        smc.log_mean_exp(previous)[:, None],
        jax.vmap(lambda p, a: p[a])(previous, ancestors),
    )

    def increment(parent, x_t, y_t):
        log_p, _ = tracking.assess({"x": x_t, "y": y_t}, (parent, None))
        log_q, _ = locally_optimal.assess({"x": x_t}, (parent, None, {"y": y_t}))
        return log_p - log_q

    expected = jax.vmap(jax.vmap(increment))(parents, x, y)
    return jnp.max(jnp.abs(lw - previous - expected))


def bootstrap(kernel=tracking, xs=None, **options):
    options = {"ess_threshold": 1.0} | options
    return lambda key: smc.bootstrap_filter(
        key, kernel, jnp.zeros(2), {"y": YS}, xs, num_particles=PARTICLES, **options
    )


def test_bootstrap_filter_matches_the_kalman_filter():
    evidence_z, means_z, _ = filter_runs(bootstrap())
    assert abs(evidence_z) < Z_LIMIT
    assert means_z < Z_LIMIT


@pytest.mark.parametrize("estimate", ["smoothing", "mutant: filtering means as smoothed"])
def test_particle_smoothing_means_match_the_kalman_smoother(estimate):
    """Genealogy smoothing means of the guided filter against Rauch–Tung–Striebel, per step and
    coordinate (|z| < Z_LIMIT over runs); filtering means, which ignore later observations,
    must fail the same check."""

    def one(key):
        result = smc.guided_filter(
            key, tracking, locally_optimal, jnp.zeros(2), {"y": YS}, num_particles=PARTICLES
        )
        if estimate == "smoothing":
            return result.smoothing_mean(lambda c: c["x"])
        return result.filtering_mean(lambda c: c["x"])

    means = np.asarray(many_runs(one, jax.random.split(jax.random.key(11), RUNS)), np.float64)
    z = (means.mean(0) - SMOOTHED_MEANS) / (means.std(0, ddof=1) / np.sqrt(RUNS))
    if estimate == "smoothing":
        assert np.abs(z).max() < Z_LIMIT
    else:
        assert np.abs(z).max() > Z_LIMIT


def test_guided_filter_with_adaptive_residual_resampling_matches_the_kalman_filter():
    evidence_z, means_z, weight_errors = filter_runs(
        lambda key: smc.guided_filter(
            key,
            tracking,
            locally_optimal,
            jnp.zeros(2),
            {"y": YS},
            num_particles=PARTICLES,
            resampling=smc.residual,
            ess_threshold=0.5,
        ),
        guided_weight_error,
    )
    assert abs(evidence_z) < Z_LIMIT
    assert means_z < Z_LIMIT
    # The weights are exactly p(x, y | parent) / q(x | parent, y), through resampling.
    assert float(np.max(weight_errors)) < 1e-3


@pytest.mark.parametrize(
    "mutant",
    [
        bootstrap(WeightDroppedAt(tracking, 7), xs=jnp.arange(STEPS)),
        bootstrap(resampling=lambda key, lw, n: smc.systematic(key, 0.5 * lw, n)),
    ],
    ids=["forgets-one-step-weight", "resamples-with-wrong-weights"],
)
def test_the_kalman_checks_reject_a_broken_filter(mutant):
    evidence_z, means_z, _ = filter_runs(mutant)
    assert abs(evidence_z) > Z_LIMIT
    assert means_z > Z_LIMIT


def test_trajectories_follow_the_ancestors_and_resampling_follows_the_ess():
    def run(key):
        result = smc.bootstrap_filter(key, tracking, jnp.zeros(2), {"y": YS}, num_particles=64)
        return result, result.trajectories

    result, trajectories = jax.jit(run)(jax.random.key(4))
    particles, ancestors = np.asarray(result.particles["x"]), np.asarray(result.ancestors)
    lineage = np.arange(64)
    expected = np.empty((64, STEPS, 2))
    for t in reversed(range(STEPS)):
        expected[:, t] = particles[t, lineage]
        lineage = ancestors[t, lineage]
    np.testing.assert_array_equal(trajectories["x"], expected)
    assert trajectories["y"].shape == (64, STEPS)
    # Default threshold 0.5: step t resamples exactly when step t-1 ended with ESS < N / 2.
    resampled, ess = np.asarray(result.resampled), np.asarray(result.ess)
    np.testing.assert_array_equal(resampled[1:], ess[:-1] < 32)
    assert not resampled[0] and resampled.any() and not resampled.all()


def test_particle_filter_errors_name_the_argument():
    def run(observations, xs=None, kernel=tracking):
        return smc.bootstrap_filter(
            jax.random.key(0), kernel, jnp.zeros(2), observations, xs, num_particles=4
        )

    with pytest.raises(ValueError, match="'y' are a scalar"):
        run({"y": 1.0})
    with pytest.raises(ValueError, match="per index"):
        run({3: {"y": 1.0}})
    with pytest.raises(ValueError, match="20 time steps but xs has 5"):
        run({"y": YS}, jnp.arange(5))
    with pytest.raises(AddressError, match="constraint on 'z'"):
        run({"z": YS})
    with pytest.raises(TypeError, match="step kernel, not the chain"):
        run({"y": YS}, kernel=Scan(tracking))
    with pytest.raises(ValueError, match="ess_threshold"):
        smc.bootstrap_filter(
            jax.random.key(0), tracking, jnp.zeros(2), {"y": YS}, num_particles=4, ess_threshold=2
        )


# A tempered target of the state-space model (SMC samplers are in test_smc.py).


def test_tempered_target_finds_observations_below_a_scan():
    observed = {"y": YS}
    target = smc.Tempered(Scan(tracking, length=STEPS), observed)
    trace, _ = target.generate(jax.random.key(0), observed, (1.0, jnp.zeros(2), None))
    expected = jnp.sum(trace.site_scores[..., "y"])
    assert float(target.log_likelihood(trace)) == pytest.approx(float(expected))
    with pytest.raises(AddressError, match="select no choice"):
        smc.Tempered(Scan(tracking, length=STEPS), select("y")).log_likelihood(trace)
