"""The objective library on a conjugate model: bounds, optima, and estimator errors.

Model: z ~ N(0, 1), x | z ~ N(z, 1); observed x = 2: the posterior is N(1, 1/2) and
log p(x) = log N(2; 0, sqrt 2). Statistical checks use fixed seeds and |z| < 5 thresholds.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inference import vi
from ppl import AddressError, flip, gen, marginal, normal, poisson, select
from ppl._selection import all_addresses
from ppl.adev import enum, expectation, reparam

X = {"x": 2.0}
LOG_EVIDENCE = float(jax.scipy.stats.norm.logpdf(2.0, 0.0, jnp.sqrt(2.0)))
EXACT = {"mu": jnp.array(1.0), "log_sigma": jnp.log(jnp.sqrt(0.5))}
KEYS = jax.random.split(jax.random.key(0), 4000)


@gen
def model():
    z = normal(0.0, 1.0) @ "z"
    return normal(z, 1.0) @ "x"


@gen
def guide(params):
    return normal(params["mu"], jnp.exp(params["log_sigma"])) @ "z"


def mean_and_se(values):
    values = np.asarray(values)
    return values.mean(axis=0), values.std(axis=0) / np.sqrt(values.shape[0])


def estimates(objective, params):
    return jax.jit(jax.vmap(lambda k: objective.estimate(k, params, X)))(KEYS)


def test_iwae_increases_with_particles_towards_the_evidence():
    far = {"mu": jnp.array(-0.5), "log_sigma": jnp.array(0.3)}
    bounds = [mean_and_se(estimates(vi.iwae(model, guide, k), far)) for k in (1, 4, 32)]
    for (lower, se_l), (higher, se_h) in itertools.pairwise(bounds):
        assert higher - lower > 5 * np.hypot(se_l, se_h)
    assert bounds[-1][0] < LOG_EVIDENCE + 5 * bounds[-1][1]


def test_elbo_gradient_vanishes_at_the_exact_posterior_only():
    objective = vi.elbo(model, guide)

    def grads(params):
        g = jax.jit(jax.vmap(lambda k: objective.grad_estimate(k, params, X)[0]))(KEYS)
        return {name: mean_and_se(v) for name, v in g.items()}

    at_optimum = grads(EXACT)
    for mean, se in at_optimum.values():
        assert abs(mean) < 5 * se + 1e-4
    away = grads({"mu": jnp.array(0.0), "log_sigma": jnp.array(0.0)})
    assert away["mu"][0] > 5 * away["mu"][1]  # pushes mu up towards 1
    assert np.isclose(np.mean(estimates(objective, EXACT)), LOG_EVIDENCE, atol=1e-4)


@gen
def hierarchical_guide(params):
    u = normal(0.0, 1.0) @ "u"
    return normal(params["mu"] + 0.6 * u, 0.5) @ "z"


@gen
def reverse(z, params):
    return normal(0.6 / (0.36 + 0.25) * (z["z"] - params["mu"]), 0.5) @ "u"


def test_hierarchical_bounds_are_ordered_below_the_evidence():
    params = {"mu": jnp.array(0.8)}
    values = [
        estimates(objective, params)
        for objective in (
            vi.hvi(model, hierarchical_guide, "z", reverse),
            vi.iwhvi(model, hierarchical_guide, "z", reverse, 16),
            vi.diwhvi(model, hierarchical_guide, "z", reverse, 8, 16),
        )
    ]
    # The bounds are estimated with the same keys, so each gap is judged by the standard
    # error of the paired differences.
    gaps = [mean_and_se(higher - lower) for lower, higher in itertools.pairwise(values)]
    for gap, se in gaps:
        assert gap > -5 * se
    assert gaps[0][0] > 5 * gaps[0][1]  # importance weighting tightens the bound
    highest, se = mean_and_se(values[-1])
    assert highest < LOG_EVIDENCE + 5 * se


def test_marginal_density_estimates_are_unbiased_both_ways():
    @gen
    def joint():
        u = normal(0.0, 1.0) @ "u"
        return normal(u, 1.0) @ "x"

    q = marginal(joint, "x", particles=3)
    exact = jnp.exp(jax.scipy.stats.norm.logpdf(0.7, 0.0, jnp.sqrt(2.0)))
    p_hat = jax.vmap(lambda k: jnp.exp(q.assess({"x": 0.7}, (), key=k)[0]))(KEYS)
    mean, se = mean_and_se(p_hat)
    assert abs(mean - exact) < 5 * se

    # simulate: 1/p̂(x) is unbiased for 1/p(x), so E[p(x)/p̂(x)] = 1
    def ratio(k):
        tr = q.simulate(k, ())
        return jnp.exp(jax.scipy.stats.norm.logpdf(tr.choices["x"], 0.0, jnp.sqrt(2.0)) - tr.score)

    mean, se = mean_and_se(jax.vmap(ratio)(KEYS))
    assert abs(mean - 1.0) < 5 * se


def test_marginal_traces_have_one_structure_and_return_the_kept_choices():
    # simulate, generate, update and regenerate give traces of one pytree structure (an MH
    # step selects between two of them), returning the kept choices.
    @gen
    def joint(mu):
        u = normal(mu, 1.0) @ "u"
        return normal(u, 1.0) @ "x"

    q = marginal(joint, "x", particles=3)
    k1, k2, k3 = jax.random.split(KEYS[0], 3)
    simulated = q.simulate(k1, (0.0,))
    generated, _ = q.generate(k2, {"x": 0.5}, (0.0,))
    updated, _, _ = q.update(k3, simulated, {}, (1.0,))
    regenerated, _ = q.regenerate(k3, simulated, select("x"))
    structure = jax.tree.structure(simulated)
    for trace in (generated, updated, regenerated):
        assert jax.tree.structure(trace) == structure
        assert trace.retval["x"] == trace.choices["x"]
    assert simulated.retval["x"] == simulated.choices["x"]


@gen
def mixture_model():
    c = flip(0.5) @ "c"
    return normal(3.0 * c, 1.0) @ "x"


@gen
def coin_guide(logit):
    return flip(jax.nn.sigmoid(logit)) @ "c"


def test_vimco_gradient_matches_the_enumerated_iwae_gradient():
    obs = {"x": 1.0}
    exact = vi.iwae(mixture_model, coin_guide, 3).with_estimators({all_addresses(): enum()})
    truth = exact.grad_estimate(jax.random.key(0), 0.4, obs)[0]
    objective = vi.vimco(mixture_model, coin_guide, 3)
    g = jax.jit(jax.vmap(lambda k: objective.grad_estimate(k, 0.4, obs)[0]))(KEYS)
    mean, se = mean_and_se(g)
    assert abs(mean - truth) < 5 * se
    assert 5 * se < 0.2 * abs(truth)


def test_wake_and_sleep_updates_are_stationary_at_the_exact_posterior():
    wake = vi.rws_wake_phi(model, guide, 8)
    g = jax.jit(jax.vmap(lambda k: wake.grad_estimate(k, EXACT, X)[0]))(KEYS)
    for value in g.values():
        mean, se = mean_and_se(value)
        assert abs(mean) < 5 * se + 1e-4

    @gen
    def amortized(params, observations):
        x = observations["x"]
        return normal(params["a"] * x, jnp.exp(params["log_sigma"])) @ "z"

    sleep = vi.rws_sleep_phi(model, amortized, "x")
    optimum = {"a": jnp.array(0.5), "log_sigma": jnp.log(jnp.sqrt(0.5))}
    g = jax.jit(jax.vmap(lambda k: sleep.grad_estimate(k, optimum)[0]))(KEYS)
    for value in g.values():
        mean, se = mean_and_se(value)
        assert abs(mean) < 5 * se
    off = {"a": jnp.array(0.0), "log_sigma": jnp.log(jnp.sqrt(0.5))}
    g = jax.jit(jax.vmap(lambda k: sleep.grad_estimate(k, off)[0]))(KEYS)
    mean, se = mean_and_se(g["a"])
    assert mean > 5 * se


def test_forward_kl_gradient_points_to_the_posterior_mean():
    @gen
    def shifted(mu):
        return normal(mu, 1.0) @ "z"

    objective = vi.forward_kl(model, shifted, 256)
    g = jax.jit(jax.vmap(lambda k: objective.grad_estimate(k, 0.0, X)[0]))(KEYS[:2000])
    mean, se = mean_and_se(g)
    assert abs(mean - 1.0) < 5 * se + 0.05  # SIR with 256 particles: a small bias


# -- bad input ----------------------------------------------------------------------------------
@gen
def discrete():
    c = flip(0.3) @ "c"
    n = poisson(2.0) @ "n"
    return c + n


@expectation
def payoff(key):
    return discrete.simulate(key, ()).retval.astype(jnp.float32)


@pytest.mark.parametrize(
    ("estimators", "message"),
    [
        ({"c": reparam()}, r"reparam at 'c': BernoulliProbs has no reparameterized sampler"),
        ({"n": enum()}, r"enum at 'n': Poisson has no finite support"),
        ({"nowhere": reparam()}, r"estimator is given for 'nowhere', but .* never samples"),
    ],
)
def test_unsupported_estimators_name_the_address(estimators, message):
    with pytest.raises(AddressError, match=message):
        payoff.with_estimators(estimators).grad_estimate(jax.random.key(0))


def test_enumeration_over_a_too_large_support_is_refused():
    @gen
    def many():
        return flip(jnp.full(20, 0.5)) @ "bits"

    @expectation
    def total(key):
        return jnp.sum(many.simulate(key, ()).retval.astype(jnp.float32))

    with pytest.raises(AddressError, match=r"enum at 'bits': the joint support has 2\^20"):
        total.with_estimators({"bits": enum()}).estimate(jax.random.key(0))
