"""MCMC kernels on conjugate models: posterior moments within ESS-based error bounds."""

import arviz
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inference import mcmc
from inference.mcmc._kernel import Kernel
from ppl import (
    AddressError,
    Vmap,
    beta,
    binomial,
    flip,
    gamma,
    gen,
    normal,
    poisson,
    select,
    uniform,
    validation,
)

KEY = jax.random.key(0)
Y = jnp.array([0.8, 1.9, 1.2, 0.4, 1.5])


@gen
def normal_normal():
    mu = normal(0.0, 2.0) @ "mu"
    return Vmap(normal, in_axes=(None, None), axis_size=5)(mu, 1.0) @ "ys"


def normal_normal_posterior():
    precision = 1 / 4 + 5.0
    return float(jnp.sum(Y) / precision), float(1 / precision)


@gen
def gamma_poisson():
    rate = gamma(3.0, 2.0) @ "rate"
    return Vmap(poisson, in_axes=None, axis_size=4)(rate) @ "counts"


COUNTS = jnp.array([2, 0, 3, 1])
GAMMA_POSTERIOR = ((3.0 + 6) / (2.0 + 4), (3.0 + 6) / (2.0 + 4) ** 2)


def assert_moments(draws, mean, variance, k=5.0):
    """|mean - truth| < k sd / sqrt(ESS), and the same for the second moment."""
    draws = np.asarray(draws)
    ess = float(arviz.ess(draws))
    sd = np.sqrt(variance)
    assert abs(draws.mean() - mean) < k * sd / np.sqrt(ess), (draws.mean(), mean, ess)
    squares_sd = np.std((draws - mean) ** 2)
    ess_sq = float(arviz.ess((draws - mean) ** 2))
    assert abs(np.mean((draws - mean) ** 2) - variance) < k * squares_sd / np.sqrt(ess_sq)


ADAPTED_NUTS = dict(num_chains=4, num_warmup=300, num_samples=500, progress_bar=False)


def test_adapted_nuts_on_normal_normal():
    data = mcmc.run(normal_normal, {"ys": Y}, KEY, **ADAPTED_NUTS)
    assert_moments(data.posterior["mu"].values, *normal_normal_posterior())
    assert data.log_likelihood["ys"].shape == (4, 500, 5)
    assert float(np.max(arviz.rhat(data)["mu"])) < 1.02


def test_adapted_nuts_on_a_positive_latent_uses_the_jacobian():
    data = mcmc.run(gamma_poisson, {"counts": COUNTS}, KEY, **ADAPTED_NUTS)
    assert_moments(data.posterior["rate"].values, *GAMMA_POSTERIOR)


def _chains(kernel, model, observations, steps=2000, chains=8):
    traces, _ = jax.vmap(lambda k: model.generate(k, observations, ()))(
        jax.random.split(KEY, chains)
    )

    def one(trace, key):
        return jax.lax.scan(
            lambda t, k: (kernel.step(k, t)[0],) * 2, trace, jax.random.split(key, steps)
        )[1]

    return jax.jit(jax.vmap(one))(traces, jax.random.split(jax.random.key(1), chains))


@pytest.mark.parametrize(
    "make",
    [
        lambda: mcmc.mh(gamma_poisson, select("rate")),
        lambda: mcmc.hmc(gamma_poisson, select("rate"), 0.2, jnp.ones(1), 8),
        lambda: mcmc.mala(gamma_poisson, select("rate"), 0.3),
        lambda: mcmc.nuts(gamma_poisson, select("rate"), 0.4, jnp.ones(1)),
    ],
    ids=["mh", "hmc", "mala", "nuts"],
)
def test_every_kernel_targets_the_gamma_poisson_posterior(make):
    traces = _chains(make(), gamma_poisson, {"counts": COUNTS})
    assert_moments(traces.choices["rate"][:, 200:], *GAMMA_POSTERIOR)


def test_the_moment_check_rejects_an_mh_kernel_that_ignores_the_weight():
    honest = mcmc.mh(gamma_poisson, select("rate"))

    def always_accept(key, trace):
        new, _ = gamma_poisson.regenerate(key, trace, select("rate"))
        return new, None

    with pytest.raises(AssertionError):
        traces = _chains(Kernel(honest.init, always_accept), gamma_poisson, {"counts": COUNTS})
        assert_moments(traces.choices["rate"][:, 200:], *GAMMA_POSTERIOR)


def test_run_with_a_cycle_of_mh_kernels_on_beta_binomial():
    @gen
    def coin():
        p = beta(2.0, 2.0) @ "p"
        return binomial(20, p) @ "heads"

    kernel = mcmc.cycle(mcmc.mh(coin, select("p")), mcmc.mh(coin, select("p")))
    data = mcmc.run(
        coin,
        {"heads": 14},
        KEY,
        kernel=kernel,
        num_chains=4,
        num_warmup=200,
        num_samples=1500,
        progress_bar=False,
    )
    a, b = 2.0 + 14, 2.0 + 6
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    assert_moments(data.posterior["p"].values, mean, var)
    assert {"kernel0_acceptance_rate", "kernel1_accepted"} <= set(data.sample_stats)


def test_chain_repeats_a_kernel_within_a_step():
    kernel = mcmc.chain(mcmc.mh(gamma_poisson, select("rate")), 3)
    traces = _chains(kernel, gamma_poisson, {"counts": COUNTS}, steps=700)
    assert_moments(traces.choices["rate"][:, 70:], *GAMMA_POSTERIOR)
    # Three MH steps per step: the same chain as every third step of the kernel itself.
    mh = mcmc.mh(gamma_poisson, select("rate"))
    trace, _ = gamma_poisson.generate(KEY, {"counts": COUNTS}, ())
    by_hand = trace
    for k in jax.random.split(jax.random.key(5), 3):
        by_hand, _ = mh.step(k, by_hand)
    chained, info = kernel.step(jax.random.key(5), trace)
    assert float(chained.choices["rate"]) == float(by_hand.choices["rate"])
    assert info.acceptance_rate.shape == ()
    with pytest.raises(ValueError, match="num_steps"):
        mcmc.chain(mh, 0)


def test_a_kernel_that_moves_an_observed_choice_is_refused_by_name():
    settings = dict(num_chains=2, num_warmup=2, num_samples=2, progress_bar=False)
    for kernel in (
        mcmc.mh(gamma_poisson, select("rate", "counts")),
        mcmc.cycle(mcmc.mh(gamma_poisson, select("rate")), mcmc.gibbs(gamma_poisson, "counts")),
        mcmc.chain(mcmc.mh(gamma_poisson, ~select("rate")), 2),
    ):
        with pytest.raises(AddressError, match=r"'counts'.*observed"):
            mcmc.run(gamma_poisson, {"counts": COUNTS}, KEY, kernel=kernel, **settings)


def test_nuts_on_a_discrete_choice_is_refused_by_name():
    @gen
    def mixed():
        flip(0.5) @ "z"
        return normal(0.0, 1.0) @ "x"

    trace = mixed.simulate(KEY, ())
    with pytest.raises(AddressError, match=r"'z' is discrete.*gibbs or mh"):
        mcmc.nuts(mixed, select("z", "x"), 0.1, jnp.ones(2)).step(KEY, trace)


def test_initial_point_with_zero_density_names_the_address():
    @gen
    def bounded():
        upper = uniform(0.0, 10.0) @ "upper"
        return uniform(0.0, upper) @ "y"

    def run():
        return mcmc.run(
            bounded,
            {"y": 2.0},
            KEY,
            init={"upper": 1.0},
            num_warmup=1,
            num_samples=1,
            progress_bar=False,
        )

    with pytest.raises(AddressError, match=r"2.0 at 'y' is outside the support"):
        run()
    with validation(False), pytest.raises(AddressError, match=r"log density -inf at 'y'"):
        run()


def test_observation_the_model_never_visits_is_refused():
    with pytest.raises(AddressError, match=r"constraint on 'count'"):
        mcmc.run(
            gamma_poisson, {"count": COUNTS}, KEY, num_warmup=1, num_samples=1, progress_bar=False
        )
