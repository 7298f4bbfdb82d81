"""mcmc.run: checkpoints, initialisation, warm-up, vector- and matrix-valued sites, sample stats."""

import logging

import arviz
import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from run_models import DATA, KEY, SETTINGS, location

from inference import mcmc
from inference.mcmc import _run, _sample_stats, _starts
from ppl import (
    AddressError,
    ChoiceMap,
    Scan,
    Vmap,
    categorical,
    dirichlet,
    gamma,
    gen,
    mv_normal,
    normal,
    select,
    uniform,
)


def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    reference = mcmc.run(location, DATA, KEY, **SETTINGS)
    path = str(tmp_path / "run.ckpt")

    def interrupt(done):
        if done == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(_run, "_after_chunk", interrupt)
    with pytest.raises(KeyboardInterrupt):
        mcmc.run(location, DATA, KEY, checkpoint=path, **SETTINGS)
    monkeypatch.setattr(_run, "_after_chunk", lambda done: None)
    resumed = mcmc.run(location, DATA, KEY, checkpoint=path, **SETTINGS)
    np.testing.assert_array_equal(resumed.posterior["mu"], reference.posterior["mu"])
    np.testing.assert_array_equal(
        resumed.sample_stats["step_size"], reference.sample_stats["step_size"]
    )
    with pytest.raises(ValueError, match="another key"):
        mcmc.run(location, DATA, jax.random.key(4), checkpoint=path, **SETTINGS)


def test_a_checkpoint_of_other_data_or_starts_is_refused(tmp_path):
    path = str(tmp_path / "run.ckpt")
    settings = dict(SETTINGS, num_warmup=4, num_samples=4)
    mcmc.run(location, DATA, KEY, checkpoint=path, **settings)
    other = {"ys": DATA["ys"] + 50.0}
    for changed in (
        dict(observations=other),
        dict(init={"mu": 0.5}),
        dict(kernel=mcmc.mh(location, select("mu"))),
    ):
        call = dict(observations=DATA, checkpoint=path) | changed
        with pytest.raises(ValueError, match="other observations"):
            mcmc.run(location, key=KEY, **call, **settings)
    mcmc.run(location, DATA, KEY, checkpoint=path, **settings)  # the same run resumes


def test_run_interrupted_during_warmup_resumes_to_the_uninterrupted_result(
    tmp_path, monkeypatch, caplog
):
    # 50 warm-up steps in 4 chunks of 13 (the last padded): interrupted after the second,
    # i.e. inside the first slow window of the schedule (steps 7..44).
    reference = mcmc.run(location, DATA, KEY, **SETTINGS)
    path = str(tmp_path / "run.ckpt")

    def interrupt(done):
        if done == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(_run, "_after_warmup_chunk", interrupt)
    with pytest.raises(KeyboardInterrupt):
        mcmc.run(location, DATA, KEY, checkpoint=path, **SETTINGS)
    monkeypatch.setattr(_run, "_after_warmup_chunk", lambda done: None)
    # The compiled programs are reused: a resumed run compiles none of them again.
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        resumed = mcmc.run(location, DATA, KEY, checkpoint=path, **SETTINGS)
    compiled = " ".join(record.getMessage() for record in caplog.records)
    for program in ("warmup_chunk", "warmup_final", "chunks"):
        assert f"jit({program})" not in compiled
    np.testing.assert_array_equal(resumed.posterior["mu"], reference.posterior["mu"])
    np.testing.assert_array_equal(
        resumed.sample_stats["step_size"], reference.sample_stats["step_size"]
    )


def test_warmup_chunks_are_one_compiled_program(caplog):
    # 30 steps in 4 chunks of 8, the last padded; chains of a new shape compile the program once.
    settings = SETTINGS | {"num_chains": 3, "num_warmup": 30}
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        mcmc.run(location, DATA, KEY, **settings)
    compiled = [record.getMessage() for record in caplog.records]
    assert sum("Compiling jit(warmup_chunk)" in message for message in compiled) == 1


@pytest.mark.parametrize("kernel", [None, mcmc.hmc(location, select("mu"), 0.3, jnp.ones(1), 3)])
@pytest.mark.parametrize("num_warmup", [0, 30])
def test_a_run_of_one_chunk_is_one_program_with_the_chunked_result(
    tmp_path, caplog, kernel, num_warmup
):
    # Without a checkpoint, warm-up and sampling compile as one program; with one, as the
    # warm-up and sampling programs of a chunked run, which give the same draws and stats.
    settings = SETTINGS | {"num_chains": 3, "num_chunks": 1, "num_warmup": num_warmup}
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        whole = mcmc.run(location, DATA, KEY, kernel=kernel, **settings)
    compiled = " ".join(record.getMessage() for record in caplog.records)
    assert "Compiling jit(whole)" in compiled and "Compiling jit(chunks)" not in compiled
    path = str(tmp_path / "run.ckpt")
    chunked = mcmc.run(location, DATA, KEY, kernel=kernel, checkpoint=path, **settings)
    for group in ("posterior", "sample_stats", "log_likelihood"):
        for name, value in chunked[group].items():
            np.testing.assert_array_equal(whole[group][name].values, value.values)


def test_chunked_warmup_is_blackjax_window_adaptation():
    # However the warm-up is chunked (1 chunk; 3 of 17 steps and 4 of 13, the last padded),
    # the adapted step sizes are bit-identical.
    step_sizes = [
        mcmc.run(location, DATA, KEY, **SETTINGS | {"num_chunks": n, "num_samples": 10 * n})
        .sample_stats["step_size"]
        .values[:, 0]
        for n in (1, 3, 4)
    ]
    for other in step_sizes[1:]:
        np.testing.assert_array_equal(other, step_sizes[0])
    # They are blackjax's window adaptation run in one call from the same initial points with
    # the same keys, up to float32 rounding: in that single program XLA folds the constant
    # initial adaptation state into the first steps, while a resumable warm-up takes it as
    # data, and the folded arithmetic rounds differently in the last bits.
    init_key, warmup_key, _ = jax.random.split(KEY, 3)
    num_chains, num_warmup = SETTINGS["num_chains"], SETTINGS["num_warmup"]
    traces = _starts.initial_traces(
        location, ChoiceMap.from_dict(DATA), (("ys",),), None, init_key, (), num_chains
    )

    def blackjax_warmup(trace, key):
        view = mcmc.Unconstrained(location, trace, select("mu"))
        warmup = blackjax.window_adaptation(blackjax.nuts, view.logdensity_fn(trace))
        (_, parameters), _ = warmup.run(key, view.position(trace), num_warmup)
        return parameters["step_size"]

    expected = jax.jit(jax.vmap(blackjax_warmup))(traces, jax.random.split(warmup_key, num_chains))
    np.testing.assert_allclose(step_sizes[0], expected, rtol=1e-5)


def test_chunked_warmup_samples_the_conjugate_posterior():
    # mu ~ N(0, 2^2), ys | mu ~ N(mu, 1): mu | ys ~ N(sum(ys) / 4.25, 1 / 4.25).
    data = mcmc.run(
        location,
        DATA,
        jax.random.key(11),
        num_chains=4,
        num_warmup=200,
        num_samples=500,
        num_chunks=7,
        progress_bar=False,
    )
    draws = data.posterior["mu"].values
    mean, var = float(DATA["ys"].sum()) / 4.25, 1 / 4.25
    ess = float(arviz.ess(data)["mu"])
    assert abs(draws.mean() - mean) < 5 * np.sqrt(var / ess)
    # sd of a sample variance of Gaussian draws: var * sqrt(2 / ESS)
    assert abs(draws.var() - var) < 5 * var * np.sqrt(2 / ess)


def test_window_adaptation_is_blackjax_window_adaptation():
    @gen
    def scale_model():
        scale = gamma(2.0, 1.0) @ "scale"
        mu = normal(0.0, 2.0) @ "mu"
        return Vmap(normal, in_axes=(None, None), axis_size=4)(mu, scale) @ "ys"

    trace, _ = scale_model.generate(KEY, DATA, ())
    latent = select("scale", "mu")
    key = jax.random.key(5)

    def blackjax_warmup(trace, key):
        view = mcmc.Unconstrained(scale_model, trace, latent)
        warmup = blackjax.window_adaptation(blackjax.nuts, view.logdensity_fn(trace))
        (state, parameters), _ = warmup.run(key, view.position(trace), 150)
        return view.to_trace(state.position, trace), parameters

    ours = jax.jit(lambda t, k: mcmc.window_adaptation(scale_model, latent, t, k, 150))
    (ours_trace, ours_parameters), (trace, parameters) = (
        ours(trace, key),
        jax.jit(blackjax_warmup)(trace, key),
    )
    for name in ("step_size", "inverse_mass_matrix"):
        np.testing.assert_array_equal(ours_parameters[name], parameters[name])
    for address in ("scale", "mu"):
        np.testing.assert_array_equal(ours_trace.choices[address], trace.choices[address])


def test_median_and_user_initialisation():
    median = mcmc.run(location, DATA, KEY, init="median", **SETTINGS)
    user = mcmc.run(location, DATA, KEY, init={"mu": 0.5}, **SETTINGS)
    for data in (median, user):
        assert data.posterior["mu"].shape == (2, 40)
        assert np.all(np.isfinite(data.posterior["mu"]))
    with pytest.raises(ValueError, match="init must be"):
        mcmc.run(location, DATA, KEY, init="mode", **SETTINGS)


@gen
def bounded():
    x = uniform(0.0, 1.0) @ "x"
    return normal(x, 1.0) @ "y"


def test_a_start_on_the_boundary_of_a_closed_support_is_named_for_nuts():
    settings = dict(SETTINGS, num_warmup=4, num_samples=4)
    # uniform's support [0, 1] holds 1.0, but NUTS moves x as logit(x): 1.0 is at infinity.
    with pytest.raises(AddressError, match=r"'x'.*boundary"):
        mcmc.run(bounded, {"y": 0.3}, KEY, init={"x": 1.0}, **settings)
    moved = mcmc.run(
        bounded, {"y": 0.3}, KEY, init={"x": 1.0}, kernel=mcmc.mh(bounded, select("x")), **settings
    )
    assert moved.posterior["x"].shape == (2, 4)


def test_median_starts_lie_on_a_simplex():
    @gen
    def shares():
        p = dirichlet(jnp.ones(3)) @ "p"
        return categorical(p) @ "y"

    settings = dict(SETTINGS, num_warmup=20, num_samples=10)
    data = mcmc.run(shares, {"y": 1}, KEY, init="median", **settings)
    np.testing.assert_allclose(data.posterior["p"].sum("p_dim_0"), 1.0, rtol=1e-5)


def test_nuts_on_a_vector_valued_site_recovers_the_covariance():
    covariance = jnp.array([[1.0, 0.8, 0.0], [0.8, 1.0, -0.3], [0.0, -0.3, 0.5]])

    @gen
    def correlated():
        return mv_normal(jnp.zeros(3), covariance) @ "w"

    data = mcmc.run(
        correlated, {}, KEY, num_chains=4, num_warmup=300, num_samples=1000, progress_bar=False
    )
    draws = data.posterior["w"].values.reshape(-1, 3)
    ess = float(np.min(arviz.ess(data)["w"].values))
    # sd of a sample covariance entry for Gaussians: sqrt((s_ij^2 + s_ii s_jj) / ESS)
    bound = 5 * np.sqrt(
        (covariance**2 + jnp.outer(jnp.diag(covariance), jnp.diag(covariance))) / ess
    )
    assert np.all(np.abs(np.cov(draws.T) - covariance) < bound)


def test_a_dense_mass_matrix_takes_longer_steps_on_a_correlated_posterior():
    covariance = jnp.array([[1.0, 0.99], [0.99, 1.0]])

    @gen
    def ridge():
        return mv_normal(jnp.zeros(2), covariance) @ "w"

    settings = dict(num_chains=2, num_warmup=300, num_samples=300, progress_bar=False)
    dense = mcmc.run(ridge, {}, KEY, dense_mass=True, **settings)
    diagonal = mcmc.run(ridge, {}, KEY, **settings)
    # A dense metric whitens the ridge (sd 0.1 across it, 1.4 along it): steps of order one
    # where the diagonal metric needs steps below the ridge's width, and many more of them.
    dense_steps = dense.sample_stats["step_size"].values[:, 0]
    diagonal_steps = diagonal.sample_stats["step_size"].values[:, 0]
    assert np.all(dense_steps > 3 * diagonal_steps), (dense_steps, diagonal_steps)
    assert dense.sample_stats["n_steps"].mean() < diagonal.sample_stats["n_steps"].mean() / 2
    draws = dense.posterior["w"].values.reshape(-1, 2)
    assert abs(np.corrcoef(draws.T)[0, 1] - 0.99) < 0.01


def test_hmc_on_a_matrix_valued_site():
    @gen
    def matrix_model():
        w = normal(jnp.zeros((2, 3)), 1.0) @ "w"
        return normal(jnp.sum(w), 0.5) @ "y"

    trace, _ = matrix_model.generate(KEY, {"y": 1.0}, ())
    kernel = mcmc.hmc(matrix_model, select("w"), 0.2, jnp.ones(6), 10)

    def run(trace, key):
        return jax.lax.scan(
            lambda t, k: (kernel.step(k, t)[0],) * 2, trace, jax.random.split(key, 3000)
        )[1]

    draws = jax.jit(run)(trace, jax.random.key(1)).choices["w"][500:]
    total = draws.sum(axis=(1, 2))
    # sum(w) ~ N(0, 6) a priori; with y = 1 observed at sd 0.5: posterior N(6/6.25, 1.5/6.25).
    mean, var = 6 / 6.25, 6 * 0.25 / 6.25
    ess = float(arviz.ess(np.asarray(total)[None]))
    assert abs(total.mean() - mean) < 5 * np.sqrt(var / ess)
    assert draws.shape[1:] == (2, 3)


def test_batched_observations_below_a_combinator_are_not_latent():

    @gen
    def step(z, _):
        z = normal(0.5 * z, 1.0) @ "z"
        normal(z, 0.5) @ "y"
        return z, z

    @gen
    def chain():
        return Scan(step, length=3)(0.0, None) @ "chain"

    ys = jnp.array([0.4, -0.2, 1.0])
    data = mcmc.run(chain, {"chain": {"y": ys}}, KEY, **SETTINGS)
    assert set(data.posterior.data_vars) == {"chain.z"}
    assert data.log_likelihood["chain.y"].shape == (2, 40, 3)
    draws = mcmc.predictive(chain, jax.random.key(0), posterior=data)
    assert not np.allclose(draws["chain", "y"][0, 0], ys)  # resimulated, not the observations


_STAT = st.tuples(
    st.sampled_from([np.bool_, np.int32, np.float32]),
    st.lists(st.integers(1, 3), max_size=2).map(tuple),
)


@settings(max_examples=30, deadline=None)
@given(
    st.dictionaries(st.sampled_from("fedcba"), _STAT, min_size=1, max_size=5), st.integers(0, 2**20)
)
def test_packed_sample_stats_come_back_with_their_values_shapes_and_dtypes(layout, seed):
    rng = np.random.default_rng(seed)
    stats = {
        name: (
            rng.integers(0, 1024, shape) if dtype is not np.float32 else rng.normal(size=shape)
        ).astype(dtype)
        for name, (dtype, shape) in layout.items()
    }
    packed = jax.vmap(_sample_stats.pack_stats)({k: np.stack([v, v]) for k, v in stats.items()})
    spec = {k: (v.shape, v.dtype) for k, v in stats.items()}
    back = _sample_stats.unpack_stats(packed, spec)
    assert set(back) == set(stats)
    for name, value in stats.items():
        assert back[name].dtype == value.dtype and back[name].shape == (2, *value.shape)
        np.testing.assert_array_equal(back[name][1], value)


def test_sample_stats_keeps_the_named_stats_and_the_same_draws():
    # the default (every stat) is checked by the tests above (step_size) and test_mcmc
    small = dict(SETTINGS, num_warmup=10, num_samples=10, num_chunks=1)
    some = mcmc.run(location, DATA, KEY, sample_stats=("diverging", "step_size"), **small)
    assert set(some.sample_stats) == {"diverging", "step_size"}
    none = mcmc.run(location, DATA, KEY, sample_stats=(), **small)
    assert set(none.sample_stats) == set()
    np.testing.assert_array_equal(none.posterior["mu"], some.posterior["mu"])
    with pytest.raises(ValueError, match=r"'divergences'; the stats are 'acceptance_rate'"):
        mcmc.run(location, DATA, KEY, sample_stats=("divergences",), **small)
    hmc = mcmc.hmc(location, select("mu"), 0.1, jnp.ones(1), 5)
    with pytest.raises(ValueError, match=r"'tree_depth', which this kernel does not report"):
        mcmc.run(location, DATA, KEY, kernel=hmc, sample_stats=("tree_depth",), **small)


@gen
def scale():
    sigma = gamma(2.0, 2.0) @ "sigma"
    return Vmap(normal, in_axes=(None, None), axis_size=4)(0.0, sigma) @ "ys"


@pytest.mark.parametrize("kernel", [None, mcmc.hmc(scale, select("sigma"), 0.1, jnp.ones(1), 5)])
def test_a_run_without_log_likelihood_has_the_same_draws_and_no_such_group(kernel):
    # With NUTS the draws are then mapped to the constrained space alone (no model evaluation).
    small = dict(SETTINGS, num_warmup=10, num_samples=10, num_chunks=2)
    full = mcmc.run(scale, DATA, KEY, kernel=kernel, **small)
    bare = mcmc.run(scale, DATA, KEY, kernel=kernel, log_likelihood=False, **small)
    assert "log_likelihood" in full and "log_likelihood" not in bare
    assert float(full.posterior["sigma"].min()) > 0.0
    np.testing.assert_array_equal(bare.posterior["sigma"], full.posterior["sigma"])
    assert set(bare.sample_stats) == set(full.sample_stats)
