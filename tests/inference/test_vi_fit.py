"""vi.fit: optima against exact posteriors, NaN reports, checkpoints, minibatches, state."""

import re
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from inference import vi
from inference.vi import _fit
from ppl import Vmap, gen, normal
from ppl.adev import expectation, reinforce, running_mean

X = 2.0  # the observation; the exact posterior is normal(X / 2, sqrt(1 / 2))
POSTERIOR_MEAN, POSTERIOR_SD = X / 2, np.sqrt(0.5)
LOG_EVIDENCE = -0.5 * np.log(2 * np.pi * 2.0) - X**2 / 4  # x ~ normal(0, sqrt(2))
INIT = {"mu": jnp.array(0.0), "log_sigma": jnp.array(0.0)}
TRACES = {"elbo": 0}


@gen
def model():
    z = normal(0.0, 1.0) @ "z"
    normal(z, 1.0) @ "x"


@gen
def guide(params):
    normal(params["mu"], jnp.exp(params["log_sigma"])) @ "z"


@expectation
def elbo(key, params, x):
    TRACES["elbo"] += 1  # counts traces: the loop must compile once
    tr = guide.simulate(key, (params,))
    log_p, _ = model.assess(tr.choices | {"x": x}, ())
    return log_p - tr.score


# One optimizer object for the ELBO runs, so they share one compilation.
DECAYING_SGD = optax.sgd(optax.exponential_decay(0.2, 1000, 0.01))


@pytest.fixture(scope="module")
def runs():
    """16 independent 1,000-step runs: their spread is the standard error of the optimum."""
    return [
        vi.fit(elbo, INIT, DECAYING_SGD, 1000, jax.random.key(seed), args=(X,), progress=False)
        for seed in range(16)
    ]


def test_elbo_optimum_is_the_exact_posterior(runs):
    mus = np.array([float(r.params["mu"]) for r in runs])
    sigmas = np.array([float(jnp.exp(r.params["log_sigma"])) for r in runs])
    for found, truth in ((mus, POSTERIOR_MEAN), (sigmas, POSTERIOR_SD)):
        standard_error = found.std(ddof=1) / np.sqrt(len(found))
        assert abs(found.mean() - truth) < 4 * standard_error
        assert found.std(ddof=1) < 0.1  # each run converged, not just unbiased noise


def test_loss_history_falls_to_minus_the_log_evidence(runs):
    losses = runs[0].losses
    assert isinstance(losses, np.ndarray) and losses.shape == (1000,)
    assert losses[:50].mean() > losses[-200:].mean() + 0.2
    # The mean loss is -log p(x) + KL(q || posterior) >= -log p(x); at the exact posterior
    # log p(x, z) - log q(z) = log p(x) for every z, so the losses concentrate there.
    assert -0.01 < losses[-200:].mean() + LOG_EVIDENCE < 0.02
    assert losses[-200:].std() < 0.15 < losses[:50].std()


def test_the_loop_compiles_once_for_all_chunks():
    optimizer = optax.adam(0.05)
    before = TRACES["elbo"]
    first = vi.fit(elbo, INIT, optimizer, 250, jax.random.key(0), args=(X,), progress=False)
    # one trace for init_state's shapes, one for the compiled chunk (3 chunks, the last padded)
    assert TRACES["elbo"] - before == 2
    second = vi.fit(elbo, INIT, optimizer, 250, jax.random.key(0), args=(X,), progress=False)
    assert TRACES["elbo"] - before == 3  # init_state only: the compiled chunk is reused
    np.testing.assert_array_equal(first.losses, second.losses)
    assert first.losses.shape == (250,) and np.all(np.isfinite(first.losses))


@expectation
def parameters_blow_up(key, params):
    # Gradient ascent moves b up by 0.25 a step; at b = 5.75 (step 23) sqrt(5.6 - b) is nan,
    # which reaches the loss, b's gradient and b.
    b = params["b"]
    return b + 0.0 * jnp.sqrt(5.6 - b) - (params["a"] - 1.0) ** 2


@expectation
def loss_blows_up(key, params):
    b = params["b"]  # nan loss from step 23, with a finite (zero) gradient
    return jnp.where(b > 5.6, jnp.nan, b) - (params["a"] - 1.0) ** 2


@pytest.mark.parametrize(
    "objective, expected",
    [(parameters_blow_up, r"the parameter \['b'\] became non-finite"), (loss_blows_up, "the loss")],
)
def test_non_finite_values_stop_the_run_naming_the_step_and_leaf(objective, expected):
    params = {"a": jnp.array(0.0), "b": jnp.array(0.0)}
    with pytest.raises(FloatingPointError, match=r"step 23: ") as error:
        vi.fit(
            objective,
            params,
            optax.sgd(0.25),
            100,
            jax.random.key(0),
            chunk_size=10,
            progress=False,
        )
    message = str(error.value)
    assert re.search(expected, message)
    assert "['a']" not in message
    assert "learning rate" in message and "support" in message


BASELINED = elbo.with_estimators({"z": reinforce(baseline=running_mean(decay=0.9))})
ADAM = optax.adam(0.05)


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, monkeypatch):
    def fit(steps, path, **kwargs):
        settings = dict(args=(X,), progress=False, checkpoint=str(path), checkpoint_every=100)
        return vi.fit(BASELINED, INIT, ADAM, steps, jax.random.key(1), **settings | kwargs)

    reference = fit(300, tmp_path / "reference.ckpt")
    chunks = []
    counted = _fit._chunk
    monkeypatch.setattr(_fit, "_chunk", lambda *a: chunks.append(a[4]) or counted(*a))
    for interrupted_at in (200, 250):  # at a chunk boundary, and inside the last chunk
        path = tmp_path / f"interrupted{interrupted_at}.ckpt"
        fit(interrupted_at, path)  # an interruption after a checkpoint, as far as fit sees
        chunks.clear()
        resumed = fit(300, path)
        assert [int(start) for start in chunks] == [interrupted_at]  # only the rest is run
        for got, want in zip(jax.tree.leaves(resumed), jax.tree.leaves(reference), strict=True):
            np.testing.assert_array_equal(got, want)
    assert resumed.losses.shape == (300,) and resumed.state[("z",)][1] == 300

    with pytest.raises(ValueError, match="another key"):
        vi.fit(BASELINED, INIT, ADAM, 300, jax.random.key(2), args=(X,), checkpoint=str(path))
    with pytest.raises(ValueError, match="other optimizer state"):
        vi.fit(
            BASELINED, INIT, optax.sgd(0.1), 300, jax.random.key(1), args=(X,), checkpoint=str(path)
        )
    with pytest.raises(ValueError, match="at step 300, past steps=200"):
        fit(200, path)


class Guide(eqx.Module):
    mu: jax.Array
    log_sigma: jax.Array
    visits: jax.Array  # an integer array: held fixed
    positive: Callable  # a non-array leaf
    name: str = eqx.field(static=True, default="guide")


@gen
def module_guide(params):
    normal(params.mu, params.positive(params.log_sigma)) @ "z"


@expectation
def module_elbo(key, params, x):
    tr = module_guide.simulate(key, (params,))
    log_p, _ = model.assess(tr.choices | {"x": x}, ())
    return log_p - tr.score


def test_equinox_module_parameters():
    params = Guide(jnp.array(0.0), jnp.array(0.0), jnp.array(3), jnp.exp)
    optimizer = optax.adam(optax.exponential_decay(0.05, 1000, 0.02))
    result = vi.fit(
        module_elbo, params, optimizer, 1000, jax.random.key(0), args=(X,), progress=False
    )
    found = result.params
    assert isinstance(found, Guide) and found.name == "guide" and found.positive is jnp.exp
    assert int(found.visits) == 3
    # one run's spread is about 0.03 around each (see test_elbo_optimum_is_the_exact_posterior)
    assert abs(float(found.mu) - POSTERIOR_MEAN) < 0.12
    assert abs(float(jnp.exp(found.log_sigma)) - POSTERIOR_SD) < 0.12


N, B = 200, 20
Y = 0.7 + jax.random.normal(jax.random.key(5), (N,))


@gen
def likelihood(mu, n):
    Vmap(normal, in_axes=(None, None), axis_size=n)(mu, 1.0) @ "y"


@gen
def posterior_guide(params):
    normal(params["mu"], jnp.exp(params["log_sigma"])) @ "mu"


@expectation
def minibatch_elbo(key, params, batch, scale):
    tr = posterior_guide.simulate(key, (params,))
    mu = tr.choices["mu"]
    log_prior = normal.assess(mu, (0.0, 1.0))[0]
    log_lik, _ = likelihood.assess({"y": batch}, (mu, batch.shape[0]))
    return log_prior + scale * log_lik - tr.score  # scale = N / B: unbiased for all N points


def test_minibatches_reach_the_full_data_posterior():
    # mu ~ normal(0, 1), y_i ~ normal(mu, 1): the posterior is normal(sum(y) / (N + 1),
    # 1 / sqrt(N + 1)). Without the N / B scaling its scale would be near 1 / sqrt(B + 1).
    mean, sd = float(Y.sum()) / (N + 1), 1 / np.sqrt(N + 1)
    optimizer = optax.sgd(optax.exponential_decay(3e-3, 2000, 0.03))
    runs = [
        vi.fit(
            minibatch_elbo,
            INIT,
            optimizer,
            2000,
            jax.random.key(seed),
            args=(N / B,),
            data=Y,
            batch_size=B,
            progress=False,
        ).params
        for seed in range(8)
    ]
    mus = np.array([float(p["mu"]) for p in runs])
    sigmas = np.array([float(jnp.exp(p["log_sigma"])) for p in runs])
    for found, truth in ((mus, mean), (sigmas, sd)):
        standard_error = found.std(ddof=1) / np.sqrt(len(found))
        assert abs(found.mean() - truth) < 4 * standard_error
        assert found.std(ddof=1) < 0.5 * sd


@expectation
def batch_checks(key, params, batch):
    # (duplicate rows) + (rows whose fields disagree): both must be 0 at every step
    counts = jnp.zeros(N).at[batch["i"]].add(1.0)
    duplicates = jnp.sum(jnp.maximum(counts - 1.0, 0.0))
    misaligned = jnp.sum(batch["twice"] != 2 * batch["i"])
    return 0.0 * params - duplicates - misaligned


def test_batches_are_rows_drawn_without_replacement():
    data = {"i": jnp.arange(N), "twice": 2 * jnp.arange(N)}
    result = vi.fit(
        batch_checks,
        jnp.array(0.0),
        optax.sgd(0.1),
        100,
        jax.random.key(0),
        data=data,
        batch_size=B + 100,
        progress=False,
    )
    np.testing.assert_array_equal(result.losses, np.zeros(100))
    with pytest.raises(ValueError, match="common leading axis"):
        vi.fit(
            batch_checks,
            jnp.array(0.0),
            optax.sgd(0.1),
            10,
            jax.random.key(0),
            data={"i": jnp.arange(N), "twice": jnp.arange(3)},
            batch_size=B,
        )
    with pytest.raises(ValueError, match="batch_size is given without data"):
        vi.fit(elbo, INIT, optax.sgd(0.1), 10, jax.random.key(0), args=(X,), batch_size=B)


def test_running_mean_baseline_state_is_carried_across_steps():
    result = vi.fit(BASELINED, INIT, ADAM, 150, jax.random.key(3), args=(X,), progress=False)
    average, count = np.asarray(result.state[("z",)])
    assert count == 150
    # The baseline is the moving average of the objective's values, which are -losses.
    expected = -result.losses[0]
    for loss in result.losses[1:]:
        expected += 0.1 * (-loss - expected)
    np.testing.assert_allclose(average, expected, rtol=1e-5)


def test_parameters_without_floating_point_arrays_are_refused():
    with pytest.raises(ValueError, match="no floating-point arrays"):
        vi.fit(elbo, {"mu": 0.0, "log_sigma": 0.0}, ADAM, 10, jax.random.key(0), args=(X,))
