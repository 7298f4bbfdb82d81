"""SMC against exact oracles: resampling counts, conjugate evidence, the Kalman filter.

Every statistical check is a z-test at |z| < 5 (fixed seeds; standard errors from the
replications), and each has a deliberately broken variant ("mutant") that the same check must
reject.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.scipy.special import gammaln
from jax.scipy.stats import multivariate_normal, norm
from smc_checks import ROOT, Z_LIMIT, many_runs, z_score

from inference import mcmc, smc
from inference.mcmc import Kernel
from ppl import (
    AddressError,
    GenerativeFunction,
    Scan,
    StaticTrace,
    Vmap,
    gamma,
    gen,
    normal,
    poisson,
    select,
)

# ---------------------------------------------------------------------------------------------
# Resampling schemes: unbiased copy counts, and variance no larger than multinomial's.

WEIGHTS = np.array([0.02, 0.3, 0.0, 0.13, 0.25, 0.005, 0.195, 0.1])
REPETITIONS = 20_000
SCHEMES = {
    "multinomial": smc.multinomial,
    "systematic": smc.systematic,
    "stratified": smc.stratified,
    "residual": smc.residual,
}


SIZES = (8, 13)  # as many ancestors as particles, and more


def copy_counts(scheme) -> dict[int, np.ndarray]:
    """{M: (REPETITIONS, N) copy counts of each particle}, one jitted vmap."""
    log_weights = jnp.log(jnp.asarray(WEIGHTS, dtype=jnp.float32))

    def counts(key):
        out = {}
        for m in SIZES:
            ancestors = scheme(jax.random.fold_in(key, m), log_weights, m)
            out[m] = (jnp.zeros(WEIGHTS.size, jnp.int32).at[ancestors].add(1), ancestors)
        return out

    keys = jax.random.split(jax.random.key(11), REPETITIONS)
    result = jax.jit(jax.vmap(counts))(keys)
    for m, (_, ancestors) in result.items():
        assert ancestors.shape == (REPETITIONS, m)
        assert np.all(np.diff(np.asarray(ancestors), axis=1) >= 0), "ancestors are sorted"
    return {m: np.asarray(counts) for m, (counts, _) in result.items()}


def count_bias_z(counts: np.ndarray, num_samples: int) -> float:
    """The largest |z| of mean copy count against num_samples * w_i (exact if never random)."""
    expected = num_samples * WEIGHTS
    mean, sd = counts.mean(axis=0), counts.std(axis=0, ddof=1)
    worst = 0.0
    for i in range(WEIGHTS.size):
        if sd[i] == 0.0:
            worst = max(worst, 0.0 if abs(mean[i] - expected[i]) < 1e-9 else np.inf)
        else:
            worst = max(worst, abs(mean[i] - expected[i]) / (sd[i] / np.sqrt(len(counts))))
    return worst


def variance_and_error(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-particle sample variance of the counts and its standard error."""
    centred = counts - counts.mean(axis=0)
    variance = np.mean(centred**2, axis=0)
    fourth = np.mean(centred**4, axis=0)
    return variance, np.sqrt(np.maximum(fourth - variance**2, 0.0) / len(counts))


@pytest.mark.parametrize("name", list(SCHEMES))
def test_copy_counts_are_unbiased_with_at_most_multinomial_variance(name):
    for m, counts in copy_counts(SCHEMES[name]).items():
        assert np.all(counts.sum(axis=1) == m)
        assert np.all(counts[:, WEIGHTS == 0.0] == 0), "a zero-weight particle was copied"
        assert count_bias_z(counts, m) < Z_LIMIT
        multinomial_variance = m * WEIGHTS * (1 - WEIGHTS)
        variance, error = variance_and_error(counts)
        if name == "multinomial":  # it is a multinomial: the variance matches the formula
            assert np.all(np.abs(variance - multinomial_variance) < Z_LIMIT * error + 1e-12)
        else:  # the low-variance schemes: no more than multinomial's, and less in total
            assert np.all(variance < multinomial_variance + Z_LIMIT * error + 1e-12)
            assert variance.sum() < 0.5 * multinomial_variance.sum()


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    scale=st.sampled_from([0.1, 1.0, 5.0, 20.0]),
    n=st.sampled_from([300, 3000]),
)
def test_many_particles_keep_the_guaranteed_counts(seed, scale, n):
    # Float32 sums of thousands of weights round: counts must still follow the exact weights.
    # Residual gives a particle floor(M w) copies or more, systematic within one of M w and
    # stratified within two; none copies one of weight zero (or below 2^-30, whose M w is far
    # below one copy in a million).
    log_weights = scale * jax.random.normal(jax.random.key(seed), (n,))
    log_weights = log_weights.at[:3].set(-jnp.inf)
    exact = np.asarray(log_weights, np.float64)
    weights = np.exp(exact - exact.max())
    weights /= weights.sum()
    expected = n * weights
    for name, scheme in SCHEMES.items():
        ancestors = scheme(jax.random.key(seed + 1), log_weights, n)
        counts = np.bincount(np.asarray(ancestors), minlength=n)
        assert np.all(counts[weights < 2**-30] == 0), name
        if name == "residual":
            assert np.all(counts >= np.floor(expected * (1 - 1e-5))), name
        if name in ("systematic", "stratified"):  # one comparison per stratum: within 1 or 2
            limit = 1 if name == "systematic" else 2
            assert np.all(np.abs(counts - expected) < limit + 1e-3 * expected + 1e-3), name


def test_the_count_check_rejects_a_scheme_with_flattened_weights():
    def flattened(key, log_weights, num_samples):
        return smc.systematic(key, 0.8 * log_weights, num_samples)

    for m, counts in copy_counts(flattened).items():
        assert count_bias_z(counts, m) > Z_LIMIT


def test_effective_sample_size_and_triggered_resampling():
    assert float(smc.effective_sample_size(jnp.zeros(10))) == pytest.approx(10.0)
    assert float(smc.effective_sample_size(jnp.array([0.0, -jnp.inf, -jnp.inf]))) == 1.0
    w = jnp.array([0.1, 0.5, 0.2, 0.2])
    assert float(smc.effective_sample_size(jnp.log(w) + 3.0)) == pytest.approx(
        float(w.sum() ** 2 / (w**2).sum()), rel=1e-5
    )
    log_weights = jnp.log(w)
    kept = smc.resample_if_low_ess(jax.random.key(0), log_weights, ess_threshold=0.5)
    assert not bool(kept.resampled)  # ESS 2.94 >= 2
    np.testing.assert_array_equal(kept.ancestors, np.arange(4))
    np.testing.assert_array_equal(kept.log_weights, log_weights)
    done = smc.resample_if_low_ess(jax.random.key(0), log_weights, ess_threshold=0.9)
    assert bool(done.resampled)
    # Equal weights afterwards, with the same log mean weight (the evidence estimate is kept).
    np.testing.assert_allclose(done.log_weights, smc.log_mean_exp(log_weights) * np.ones(4))
    with pytest.raises(ValueError, match="ess_threshold"):
        smc.resample_if_low_ess(jax.random.key(0), log_weights, ess_threshold=1.5)
    with pytest.raises(ValueError, match="num_samples"):
        smc.systematic(jax.random.key(0), log_weights, 0)


# ---------------------------------------------------------------------------------------------
# Importance sampling on the conjugate normal-normal model.

Y = jnp.array([0.8, 1.9, 1.2, 0.4, 1.5])
PRECISION = 1 / 4 + Y.size
POSTERIOR_MEAN, POSTERIOR_VARIANCE = float(Y.sum() / PRECISION), float(1 / PRECISION)
LOG_EVIDENCE = float(multivariate_normal.logpdf(Y, jnp.zeros(5), jnp.eye(5) + 4.0))


@gen
def normal_normal():
    mu = normal(0.0, 2.0) @ "mu"
    return Vmap(normal, in_axes=(None, None), axis_size=5)(mu, 1.0) @ "ys"


@gen
def wide_proposal(centre):
    return normal(centre, 0.8) @ "mu"


class ScoreDropped(GenerativeFunction):
    """Mutant proposal: claims log q = 0 for its draws (the IS weight forgets log q)."""

    def __init__(self, inner):
        self.inner = inner

    def _simulate(self, key, args):
        trace = self.inner._simulate(key, args)
        # A @gen trace's score is the sum of its calls' scores: zero each one.
        zeroed = tuple(dataclasses.replace(t, score=jnp.zeros(())) for t in trace.subtraces)
        return StaticTrace.build(trace.args, trace.kept, zeroed, trace.addresses, trace.retval_spec)

    def _assess(self, choices, args):
        raise NotImplementedError

    _generate = _update = _regenerate = _sites = _assess  # type: ignore[assignment]


def importance_runs(proposal, runs=400, particles=200):
    """Per-run (log Z estimate, self-normalised posterior mean), one jitted vmap."""

    def one(key):
        result = smc.importance_sampling(
            key,
            normal_normal,
            {"ys": Y},
            num_particles=particles,
            proposal=proposal,
            proposal_args=() if proposal is None else (0.9,),
        )
        return result.log_marginal_likelihood, result.mean(lambda c: c["mu"])

    log_z, means = many_runs(one, jax.random.split(jax.random.key(5), runs))
    return np.exp(np.asarray(log_z, np.float64) - LOG_EVIDENCE), np.asarray(means)


@pytest.mark.parametrize("proposal", [wide_proposal, None], ids=["custom", "internal"])
def test_importance_sampling_evidence_and_posterior_mean(proposal):
    ratios, means = importance_runs(proposal)
    assert abs(z_score(ratios, 1.0)) < Z_LIMIT
    # Self-normalised estimates are biased by O(1/N); with N = 200 and 400 runs that is well
    # inside the standard error (sd / sqrt(400)).
    assert abs(z_score(means, POSTERIOR_MEAN)) < Z_LIMIT


def test_the_evidence_check_rejects_weights_that_forget_the_proposal_density():
    ratios, _ = importance_runs(ScoreDropped(wide_proposal))
    assert abs(z_score(ratios, 1.0)) > Z_LIMIT


def test_sampling_importance_resampling_draws_the_posterior():
    draws = jax.jit(
        lambda key: smc.sampling_importance_resampling(
            key,
            normal_normal,
            {"ys": Y},
            num_particles=20_000,
            num_samples=4000,
            proposal=wide_proposal,
            proposal_args=(0.9,),
        )
    )(jax.random.key(2))
    mu = np.asarray(draws.traces.choices["mu"])
    assert mu.shape == (4000,)
    # Resampled draws repeat particles: the error of their mean is at most that of IS with the
    # ESS of the weights plus that of 4000 independent draws.
    se = np.sqrt(POSTERIOR_VARIANCE / 4000 + POSTERIOR_VARIANCE / 5000)
    assert abs(mu.mean() - POSTERIOR_MEAN) < Z_LIMIT * se
    assert abs(mu.var() - POSTERIOR_VARIANCE) < 0.1 * POSTERIOR_VARIANCE
    np.testing.assert_allclose(draws.log_weights, draws.log_weights[0])
    assert abs(float(draws.log_marginal_likelihood) - LOG_EVIDENCE) < 0.05


def test_importance_weights_with_a_scan_proposal_are_joint_over_proposal_density():
    @gen
    def step(z, _):
        z = normal(0.9 * z, 1.0) @ "z"
        return z, normal(z, 0.5) @ "y"

    @gen
    def chain():
        return Scan(step, length=3)(0.0, None) @ "chain"

    @gen
    def guide_step(z, y):
        return normal(0.5 * z + 0.5 * y, 0.8) @ "z", None

    @gen
    def guide(ys):
        return Scan(guide_step)(0.0, ys) @ "chain"

    ys = jnp.array([0.3, 1.2, -0.4])
    # The proposal's choices are indexed (a Scan's), the observations batched: both forms merge.
    particles = smc.importance_sampling(
        jax.random.key(0),
        chain,
        {"chain": {"y": ys}},
        num_particles=3,
        proposal=guide,
        proposal_args=(ys,),
    )
    for i in range(3):
        trace = jax.tree.map(lambda v, i=i: v[i], particles.traces)
        log_p, _ = chain.assess(trace.choices, ())
        log_q, _ = guide.assess({"chain": {"z": trace.choices["chain", "z"]}}, (ys,))
        assert float(particles.log_weights[i]) == pytest.approx(float(log_p - log_q), abs=1e-4)
    # Observations taken from a trace (indexed) give the same particles.
    observed = trace.choices.filter(select(("chain", ..., "y")))
    again = smc.importance_sampling(
        jax.random.key(0), chain, observed, num_particles=3, proposal=guide, proposal_args=(ys,)
    )
    np.testing.assert_allclose(again.log_weights, particles.log_weights)


def test_importance_sampling_errors_name_the_address():
    @gen
    def proposes_observed():
        normal(0.0, 1.0) @ "mu"
        return Vmap(normal, in_axes=(None, None), axis_size=5)(0.0, 1.0) @ "ys"

    @gen
    def proposes_unknown():
        return normal(0.0, 1.0) @ "nu"

    def run(proposal, proposal_args=()):
        # Errors are raised while tracing: under jit nothing runs or compiles.
        return jax.jit(
            lambda key: smc.importance_sampling(
                key,
                normal_normal,
                {"ys": Y},
                num_particles=4,
                proposal=proposal,
                proposal_args=proposal_args,
            )
        )(jax.random.key(0))

    with pytest.raises(ValueError, match="proposes 'ys', which is observed"):
        run(proposes_observed)
    with pytest.raises(AddressError, match="constraint on 'nu'"):
        run(proposes_unknown)
    with pytest.raises(TypeError, match="bare"):
        run(normal, (0.0, 1.0))
    with pytest.raises(AddressError, match="constraint on 'y'"):
        jax.jit(lambda key: smc.importance_sampling(key, normal_normal, {"y": Y}, num_particles=4))(
            jax.random.key(0)
        )


# ---------------------------------------------------------------------------------------------
# SMC samplers by tempering, with MCMC rejuvenation.


def test_tempered_target_weights_follow_the_formulas():
    target = smc.Tempered(normal_normal, {"ys": Y})
    trace, weight = target.generate(jax.random.key(0), {"ys": Y}, (0.3,))
    model_trace, model_weight = normal_normal.generate(jax.random.key(0), {"ys": Y}, ())
    log_likelihood = float(target.log_likelihood(trace))
    assert log_likelihood == pytest.approx(float(jnp.sum(norm.logpdf(Y, trace.choices["mu"]))))
    assert float(weight) == pytest.approx(float(model_weight) - 0.7 * log_likelihood, abs=1e-5)
    log_p, _ = target.assess(trace.choices, (0.3,))
    assert float(log_p) == pytest.approx(float(model_trace.score) - 0.7 * log_likelihood)
    assert float(trace.score) == pytest.approx(float(log_p))
    moved, increment, _ = target.update(jax.random.key(1), trace, None, (0.8,))
    assert float(increment) == pytest.approx(0.5 * log_likelihood, abs=1e-5)
    assert float(moved.args[0]) == pytest.approx(0.8)
    new, mh_ratio = target.regenerate(jax.random.key(2), trace, select("mu"))
    _, model_ratio = normal_normal.regenerate(jax.random.key(2), model_trace, select("mu"))
    expected = float(model_ratio) - 0.7 * (float(target.log_likelihood(new)) - log_likelihood)
    assert float(mh_ratio) == pytest.approx(expected, abs=1e-4)


def test_mcmc_kernels_on_the_tempered_target_leave_the_tempered_posterior_invariant():
    beta = 0.3
    precision = 1 / 4 + beta * Y.size
    mean, variance = float(beta * Y.sum() / precision), float(1 / precision)
    target = smc.Tempered(normal_normal, {"ys": Y})
    kernel = mcmc.hmc(target, select("mu"), 0.3, jnp.ones(1), 5)

    def chain(key):
        init_key, run_key = jax.random.split(key)
        trace, _ = target.generate(init_key, {"ys": Y}, (beta,))
        trace = jax.lax.fori_loop(
            0, 30, lambda i, t: kernel.step(jax.random.fold_in(run_key, i), t)[0], trace
        )
        return trace.choices["mu"]

    # Independent chains started at the prior (beta = 0 draws): after 30 steps each is one
    # draw of the tempered posterior.
    draws = np.asarray(jax.jit(jax.vmap(chain))(jax.random.split(jax.random.key(8), 2000)))
    assert abs(z_score(draws, mean)) < Z_LIMIT
    assert abs(z_score((draws - mean) ** 2, variance)) < Z_LIMIT


def untempered(target):
    """Mutant rejuvenation: MH on the untempered posterior (beta = 1) at every step."""
    honest = mcmc.mh(target, select("mu"))

    def step(key, trace):
        at_one, _, _ = target.update(key, trace, None, (1.0,))
        moved, info = honest.step(key, at_one)
        back, _, _ = target.update(key, moved, None, trace.args)
        return back, info

    return Kernel(honest.init, step)


def tempered_runs(rejuvenation, runs=200, particles=200):
    """Per-run (evidence ratio, posterior mean, posterior variance estimates)."""

    def one(key):
        result = smc.tempered_smc(
            key,
            normal_normal,
            {"ys": Y},
            rejuvenation,
            schedule=jnp.linspace(0.0, 1.0, 11),
            num_particles=particles,
            num_mcmc_steps=2,
        )
        mean = result.particles.mean(lambda c: c["mu"])
        variance = result.particles.mean(lambda c: (c["mu"] - mean) ** 2)
        return result.log_marginal_likelihood, mean, variance

    log_z, means, variances = many_runs(one, jax.random.split(jax.random.key(9), runs))
    ratios = np.exp(np.asarray(log_z, np.float64) - LOG_EVIDENCE)
    return ratios, np.asarray(means), np.asarray(variances)


def test_tempered_smc_with_mh_rejuvenation_on_normal_normal():
    ratios, means, variances = tempered_runs(lambda target: mcmc.mh(target, select("mu")))
    # A fixed schedule gives an unbiased evidence estimate; the per-run posterior mean and
    # variance estimates are biased by O(1/N), far inside sd / sqrt(200) for N = 200.
    assert abs(z_score(ratios, 1.0)) < Z_LIMIT
    assert abs(z_score(means, POSTERIOR_MEAN)) < Z_LIMIT
    assert abs(z_score(variances, POSTERIOR_VARIANCE)) < Z_LIMIT


def test_the_evidence_check_rejects_rejuvenation_of_the_untempered_posterior():
    ratios, _, _ = tempered_runs(untempered)
    assert abs(z_score(ratios, 1.0)) > Z_LIMIT


COUNTS = jnp.array([2, 0, 3, 1, 4, 2, 1, 3, 2, 2, 5, 1, 0, 2, 3, 1, 2, 4, 2, 1])
SHAPE, RATE = 3.0, 2.0


@gen
def gamma_poisson():
    rate = gamma(SHAPE, RATE) @ "rate"
    return Vmap(poisson, in_axes=None, axis_size=COUNTS.size)(rate) @ "counts"


def test_adaptive_tempered_smc_on_gamma_poisson():
    total, n = float(COUNTS.sum()), COUNTS.size
    shape, rate = SHAPE + total, RATE + n
    log_evidence = float(
        SHAPE * jnp.log(RATE)
        - gammaln(SHAPE)
        + gammaln(shape)
        - shape * jnp.log(rate)
        - jnp.sum(gammaln(COUNTS + 1.0))
    )

    def one(key):
        result = smc.adaptive_tempered_smc(
            key,
            gamma_poisson,
            {"counts": COUNTS},
            lambda target: mcmc.mh(target, select("rate")),
            num_particles=200,
            target_ess=0.8,
            max_num_steps=30,
            num_mcmc_steps=2,
        )
        mean = result.particles.mean(lambda c: c["rate"])
        return result.log_marginal_likelihood, mean, result.num_steps, result.schedule, result.ess

    log_z, means, num_steps, schedules, ess = many_runs(
        one, jax.random.split(jax.random.key(10), 100)
    )
    assert abs(z_score(means, shape / rate)) < Z_LIMIT
    # The adaptive schedule makes the evidence estimate slightly biased (O(1/N)); it is still
    # well inside the spread of 100 runs.
    assert abs(z_score(np.exp(np.asarray(log_z, np.float64) - log_evidence), 1.0)) < Z_LIMIT
    steps = np.asarray(num_steps)
    assert np.all((steps > 1) & (steps < 30))
    for schedule, k, row in zip(np.asarray(schedules), steps, np.asarray(ess), strict=True):
        assert schedule[0] == 0.0 and schedule[k] == 1.0 and np.all(np.diff(schedule) >= 0)
        # Every step but the last (which stops at beta = 1) keeps the ESS at the target.
        np.testing.assert_allclose(row[: k - 1], 160.0, rtol=0.02)


def test_tempered_smc_errors():
    def run(schedule, observations=None, rejuvenation=None):
        return smc.tempered_smc(
            jax.random.key(0),
            normal_normal,
            {"ys": Y} if observations is None else observations,
            rejuvenation or (lambda target: mcmc.mh(target, select("mu"))),
            schedule=schedule,
            num_particles=4,
        )

    with pytest.raises(ValueError, match="exactly 1"):
        run(jnp.array([0.0, 0.5, 0.9]))
    with pytest.raises(ValueError, match="non-decreasing"):
        run(jnp.array([0.0, 0.6, 0.5, 1.0]))
    with pytest.raises(ValueError, match="needs observations"):
        run(jnp.array([0.0, 1.0]), observations={})
    with pytest.raises(TypeError, match="Kernel"):
        run(jnp.array([0.0, 1.0]), rejuvenation=lambda target: None)
    with pytest.raises(NotImplementedError, match="unnormalised"):
        smc.Tempered(normal_normal, {"ys": Y}).simulate(jax.random.key(0), (0.5,))


# ---------------------------------------------------------------------------------------------
# The example script.


def test_state_space_example_runs_quickly():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "state_space_smc.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "log-likelihood" in completed.stdout and "RMSE" in completed.stdout
