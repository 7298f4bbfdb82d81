"""mcmc.run and its observations: log-likelihood, predictive draws, partly observed plates,
models holding a density estimate."""

import logging

import arviz
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from run_models import DATA, KEY, SETTINGS, location, location3

from inference import mcmc
from ppl import AddressError, Scan, Vmap, gamma, gen, marginal, normal, select


def test_posterior_predictive_resimulates_the_observations_given_each_draw():
    data = mcmc.run(location, DATA, KEY, **SETTINGS)
    draws = mcmc.predictive(location, jax.random.key(0), posterior=data)
    np.testing.assert_array_equal(draws["mu"], data.posterior["mu"].values)
    assert draws["ys"].shape == (2, 40, 4)
    # Given mu, ys ~ N(mu, 1): the residuals are standard normal (z-test on their mean).
    residuals = np.asarray(draws["ys"]) - np.asarray(draws["mu"])[..., None]
    assert abs(residuals.mean()) < 5 / np.sqrt(residuals.size)
    assert not np.allclose(draws["ys"][0, 0], DATA["ys"])


def test_predictive_draws_are_one_compiled_program_and_bad_given_values_are_named(caplog):
    @gen
    def scale_model():
        scale = gamma(2.0, 1.0) @ "scale"
        return Vmap(normal, in_axes=None, axis_size=3)(0.0, scale) @ "ys"

    # Counts of draws no other test uses: each call compiles its program once, where eager
    # vmapping would compile each of the model's operations on its own (over 30 programs).
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        draws = mcmc.predictive(scale_model, KEY, posterior={"scale": jnp.full(11, 2.0)})
        prior = mcmc.predictive(scale_model, KEY, num_samples=13)
    compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
    assert sum("jit(posterior_draws)" in message for message in compiled) == 1
    assert sum("jit(prior_draws)" in message for message in compiled) == 1
    assert len(compiled) < 10, compiled
    assert draws["ys"].shape == (11, 3) and prior["ys"].shape == (13, 3)
    np.testing.assert_array_equal(draws["scale"], 2.0)
    # A given value outside its support is named with the support, as an eager run names it.
    with pytest.raises(AddressError, match="scale"):
        mcmc.predictive(scale_model, KEY, posterior={"scale": jnp.array([1.0, -1.0])})


def test_log_likelihood_group_supports_loo():
    data = mcmc.run(
        location, DATA, KEY, num_chains=2, num_warmup=100, num_samples=200, progress_bar=False
    )
    loo = arviz.loo(data)
    assert np.isfinite(loo.elpd)


def test_log_likelihood_is_pointwise_over_a_vector_or_matrix_observation():
    @gen
    def vector():
        mu = normal(0.0, 1.0) @ "mu"
        normal(jnp.full(5, mu), 1.0) @ "ys"
        return normal(jnp.full((2, 3), mu), 2.0) @ "zs"

    ys, zs = jnp.array([0.1, 0.4, -0.3, 1.2, 0.8]), jnp.arange(6.0).reshape(2, 3) / 4
    data = mcmc.run(
        vector,
        {"ys": ys, "zs": zs},
        KEY,
        num_chains=2,
        num_warmup=30,
        num_samples=20,
        progress_bar=False,
    )
    assert data.log_likelihood["ys"].shape == (2, 20, 5)
    assert data.log_likelihood["zs"].shape == (2, 20, 2, 3)
    mu = data.posterior["mu"].values[..., None]
    expected = -0.5 * (np.asarray(ys) - mu) ** 2 - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(data.log_likelihood["ys"].values, expected, rtol=1e-5, atol=1e-5)
    loo = arviz.loo(data, var_name="ys")
    assert np.isfinite(loo.elpd)


def test_nuts_imputes_the_unobserved_repeats_of_a_plate():
    # ys[0] = 1.0 and ys[2] = 0.5 observed: mu ~ N(1.5 / 3, 1 / 3), ys[1] ~ N(mu, 1).
    data = mcmc.run(
        location3,
        {"ys": {0: 1.0, 2: 0.5}},
        KEY,
        num_chains=4,
        num_warmup=200,
        num_samples=500,
        progress_bar=False,
    )
    for name, mean, variance in (("mu", 0.5, 1 / 3), ("ys.1", 0.5, 1 + 1 / 3)):
        draws = data.posterior[name].values
        error = np.sqrt(variance / float(arviz.ess(data, var_names=[name])[name]))
        assert abs(draws.mean() - mean) < 5 * error, (name, draws.mean())
        assert abs(draws.var() - variance) < 0.25 * variance, (name, draws.var())
    assert set(data.log_likelihood) == {"ys.0", "ys.2"}


@gen
def noisy_pair(mu):
    u = normal(mu, 1.0) @ "u"
    return normal(u, 1.0) @ "v"


@gen
def pseudo_marginal():
    mu = normal(0.0, 1.0) @ "mu"
    marginal(noisy_pair, "v", particles=8)(mu) @ "m"
    return normal(mu, 1.0) @ "y"


def test_pseudo_marginal_mh_on_a_model_holding_a_marginal():
    # v ~ N(mu, sqrt 2) once u is integrated out, y ~ N(mu, 1): given v = 1.2 and y = 0.3,
    # mu ~ N(mean, variance) with precision 1 + 1/2 + 1. MH on mu keeps the current density
    # estimate and re-estimates at the proposal (pseudo-marginal MH): exact in the limit.
    observations = {"m": {"v": 1.2}, "y": 0.3}
    kernel = mcmc.mh(pseudo_marginal, select("mu"))
    settings = dict(num_chains=4, num_warmup=200, num_samples=1500, progress_bar=False)
    with pytest.raises(AddressError, match=r"\('m', 'v'\).*log_likelihood=False"):
        mcmc.run(pseudo_marginal, observations, KEY, kernel=kernel, **settings)
    data = mcmc.run(
        pseudo_marginal, observations, KEY, kernel=kernel, log_likelihood=False, **settings
    )
    variance = 1 / 2.5
    mean = variance * (1.2 / 2 + 0.3)
    draws = data.posterior["mu"].values
    error = np.sqrt(variance / float(arviz.ess(data, var_names=["mu"])["mu"]))
    assert abs(draws.mean() - mean) < 5 * error, draws.mean()
    assert abs(draws.var() - variance) < 0.25 * variance, draws.var()

    # observations outside the marginal keep their (site) log-likelihood, a whole plate's
    # per repeat
    @gen
    def plate_beside_a_marginal():
        mu = normal(0.0, 1.0) @ "mu"
        marginal(noisy_pair, "v", particles=8)(mu) @ "m"
        return Vmap(normal, in_axes=(None, None), axis_size=2)(mu, 1.0) @ "ys"

    kernel = mcmc.mh(plate_beside_a_marginal, select("mu"))
    ys = jnp.array([0.3, -0.4])
    data = mcmc.run(plate_beside_a_marginal, {"ys": ys}, KEY, kernel=kernel, **SETTINGS)
    mu = data.posterior["mu"].values[..., None]
    expected = -0.5 * (np.asarray(ys) - mu) ** 2 - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(data.log_likelihood["ys"].values, expected, rtol=1e-5)


def test_an_observation_without_a_pointwise_log_likelihood_is_named():
    # x of inner repeat 1 of every outer repeat: its pointwise scores are not picked out of the
    # nested plates' batched ones, and leaving it out of log_likelihood would be silent.
    @gen
    def point(mu):
        return normal(mu, 1.0) @ "x"

    @gen
    def outer(mu):
        return Vmap(point, in_axes=(None,), axis_size=2)(mu) @ "in"

    @gen
    def nested():
        mu = normal(0.0, 1.0) @ "mu"
        return Vmap(outer, in_axes=(None,), axis_size=3)(mu) @ "out"

    observations = {"out": {"in": {1: {"x": jnp.array([0.5, 0.6, 0.7])}}}}
    kernel = mcmc.mh(nested, select("mu"))
    with pytest.raises(AddressError, match=r"'in', 1, .*'x'.*no pointwise.*log_likelihood=False"):
        mcmc.run(nested, observations, KEY, kernel=kernel, **SETTINGS)
    with pytest.raises(AddressError, match=r"cannot yet move.*'out'.*mh or gibbs"):
        mcmc.run(nested, observations, KEY, log_likelihood=False, **SETTINGS)
    data = mcmc.run(nested, observations, KEY, kernel=kernel, log_likelihood=False, **SETTINGS)
    assert "log_likelihood" not in data.children


@pytest.mark.parametrize(
    ("model", "observations"),
    [(location, DATA), (location3, {"ys": {0: 0.3, 2: 0.7}})],
    ids=["whole plate", "some repeats"],
)
def test_posterior_predictive_group_simulates_the_observations_anew(model, observations):
    # Each observed repeat drawn anew given each posterior draw, y_new ~ N(mu, 1), named and
    # shaped as in observed_data, so that arviz's loo_pit reads the groups together.
    settings = dict(num_chains=4, num_warmup=200, num_samples=1000, progress_bar=False)
    data = mcmc.run(model, observations, KEY, **settings)
    out = mcmc.posterior_predictive(model, data, jax.random.key(7))
    assert set(out.posterior_predictive) == set(out.observed_data)
    assert "posterior_predictive" not in data.children  # a copy
    mu = data.posterior["mu"].values
    for name in out.observed_data:
        new = out.posterior_predictive[name].values
        assert new.shape == (4, 1000, *out.observed_data[name].shape)
        centred = new - mu.reshape(mu.shape + (1,) * (new.ndim - 2))
        # y_new - mu ~ N(0, 1), independent of mu: mean 0 and variance 1 within 5 standard
        # errors of 4,000 independent normals
        assert abs(centred.mean()) < 5 * np.sqrt(1 / centred.size), name
        assert abs(centred.var() - 1.0) < 5 * np.sqrt(2 / centred.size), name
    pit = arviz.loo_pit(out)
    assert all(np.all((pit[name].values >= 0) & (pit[name].values <= 1)) for name in pit)


@gen
def repeats_of_a_model():
    mu = normal(0.0, 1.0) @ "mu"
    Vmap(noisy_pair, in_axes=(None,), axis_size=3)(mu) @ "reps"
    return Scan(gen(lambda c, _: (normal(c, 1.0) @ "h", None)), length=2)(mu, None) @ "walk"


def test_nuts_on_some_repeats_of_a_model_observed():
    # v observed at repeats 0 and 2 of a plate of models (each repeat's u unobserved), beside
    # an unobserved Scan: v_i ~ N(mu, sqrt 2) once u_i is integrated out, so
    # mu ~ N(0.375, 1/2).
    data = mcmc.run(
        repeats_of_a_model,
        {"reps": {0: {"v": 1.0}, 2: {"v": 0.5}}},
        KEY,
        num_chains=4,
        num_warmup=300,
        num_samples=1000,
        progress_bar=False,
    )
    draws = data.posterior["mu"].values
    error = np.sqrt(0.5 / float(arviz.ess(data, var_names=["mu"])["mu"]))
    assert abs(draws.mean() - 0.375) < 5 * error, draws.mean()
    assert abs(draws.var() - 0.5) < 0.25 * 0.5, draws.var()
    assert set(data.log_likelihood) == {"reps.0.v", "reps.2.v"}
