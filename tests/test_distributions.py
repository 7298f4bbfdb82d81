"""Every named distribution against NumPyro: shapes, scores, and the GFI at one address.

One registry row per distribution; a new distribution is tested by adding a row.
"""

from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ppl
import ppl._distribution as ppl_distribution
from ppl import Distribution, from_numpyro, gen

LOC = jnp.array([0.5, -1.0, 2.0])
PROBS = jnp.array([0.2, 0.5, 0.3])
COV = jnp.array([[1.0, 0.3, 0.0], [0.3, 2.0, 0.1], [0.0, 0.1, 0.5]])

# (ppl distribution, args, kwargs, the NumPyro distribution it must equal)
REGISTRY = [
    ("normal", (LOC, 2.0), {}, nd.Normal(LOC, 2.0)),
    ("mv_normal", (LOC, COV), {}, nd.MultivariateNormal(LOC, COV)),
    ("mv_normal_diag", (LOC, jnp.ones(3)), {}, nd.Normal(LOC, 1.0).to_event(1)),
    ("half_normal", (1.5,), {}, nd.HalfNormal(1.5)),
    ("log_normal", (0.1, 0.4), {}, nd.LogNormal(0.1, 0.4)),
    ("student_t", (3.0,), {"scale": 2.0}, nd.StudentT(3.0, 0.0, 2.0)),
    ("cauchy", (0.0, 1.0), {}, nd.Cauchy(0.0, 1.0)),
    ("laplace", (1.0, 0.5), {}, nd.Laplace(1.0, 0.5)),
    ("uniform", (-1.0, 3.0), {}, nd.Uniform(-1.0, 3.0)),
    ("exponential", (2.0,), {}, nd.Exponential(2.0)),
    ("gamma", (2.0, 3.0), {}, nd.Gamma(2.0, 3.0)),
    ("inverse_gamma", (3.0, 2.0), {}, nd.InverseGamma(3.0, 2.0)),
    ("beta", (2.0, 5.0), {}, nd.Beta(2.0, 5.0)),
    ("dirichlet", (jnp.ones(4),), {}, nd.Dirichlet(jnp.ones(4))),
    ("bernoulli", (), {"logits": 0.3}, nd.Bernoulli(logits=0.3)),
    ("flip", (PROBS,), {}, nd.Bernoulli(probs=PROBS)),
    ("categorical", (PROBS,), {}, nd.Categorical(probs=PROBS)),
    ("binomial", (10, 0.3), {}, nd.Binomial(10, probs=0.3)),
    ("poisson", (jnp.array([1.0, 4.0]),), {}, nd.Poisson(jnp.array([1.0, 4.0]))),
    ("geometric", (0.25,), {}, nd.Geometric(probs=0.25)),
    ("negative_binomial", (5.0, 0.4), {}, nd.NegativeBinomial(5.0, probs=0.4)),
]


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "reference"), REGISTRY, ids=[row[0] for row in REGISTRY]
)
def test_distribution_matches_numpyro(name, args, kwargs, reference):
    dist = getattr(ppl, name)

    @gen
    def model():
        return dist(*args, **kwargs) @ "x"

    tr = model.simulate(jax.random.key(3), ())
    value = tr.choices["x"]
    assert jnp.shape(value) == reference.batch_shape + reference.event_shape
    expected = jnp.sum(reference.log_prob(value))
    np.testing.assert_allclose(tr.score, expected, rtol=1e-5)
    # Same key, same draw as NumPyro's own sampler (call i's key is fold_in(key, i)).
    site_key = jax.random.fold_in(jax.random.key(3), 0)
    np.testing.assert_array_equal(value, reference.sample(site_key))
    # generate with the value constrained: weight = log density; update to a new value.
    _, weight = model.generate(jax.random.key(0), {"x": value}, ())
    np.testing.assert_allclose(weight, expected, rtol=1e-5)
    other = model.simulate(jax.random.key(4), ()).choices["x"]
    _, w, discard = model.update(jax.random.key(0), tr, {"x": other})
    np.testing.assert_allclose(
        w, jnp.sum(reference.log_prob(other)) - expected, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_array_equal(discard["x"], value)

    # The generic adapter over the same NumPyro instance agrees.
    @gen
    def generic():
        return from_numpyro(reference) @ "x"

    np.testing.assert_allclose(generic.assess({"x": value}, ())[0], expected, rtol=1e-6)


def test_distribution_from_a_numpyro_class():
    weibull = Distribution(nd.Weibull, "weibull")
    tr = weibull.simulate(jax.random.key(0), (jnp.ones(2), 2.0))
    np.testing.assert_allclose(
        tr.score, jnp.sum(nd.Weibull(jnp.ones(2), 2.0).log_prob(tr.value)), rtol=1e-6
    )


def test_sampler_agrees_with_density_on_a_discrete_distribution():
    """Empirical frequencies of categorical draws vs exp(score): chi-square at level ~1e-4."""
    n = 20_000
    keys = jax.random.split(jax.random.key(11), n)
    draws = jax.vmap(lambda k: ppl.categorical.simulate(k, (PROBS,)).value)(keys)
    counts = np.bincount(np.asarray(draws), minlength=3)
    probs = np.exp([float(ppl.categorical.assess(k, (PROBS,))[0]) for k in range(3)])
    chi2 = float(np.sum((counts - n * probs) ** 2 / (n * probs)))
    assert chi2 < 18.4  # chi-square(2 dof) upper 1e-4 quantile


# Bernoulli logits are scored in one of two forms, by backend (the inner product x . l on a
# CPU, one sum of x * l - softplus(l) on an accelerator); each is tested here on the CPU.
FORMS = pytest.mark.parametrize("inner_product", [True, False], ids=["inner", "summed"])


def _in_form(function, inner_product):
    """``function`` traced with the Bernoulli score in the given form."""

    def traced(*args):
        with mock.patch.object(ppl_distribution, "_inner_product_form", lambda: inner_product):
            return function(*args)

    return traced


def _score_and_grad(lg, x):
    return jax.value_and_grad(lambda lg: ppl.bernoulli.assess(x, (None, lg))[0])(lg)


# Jitted, so that each shape compiles once (eagerly, every operation of the gradient would).
_ours_with_grad = {form: jax.jit(_in_form(_score_and_grad, form)) for form in (True, False)}
_numpyros_with_grad = jax.jit(
    jax.value_and_grad(lambda lg, x: jnp.sum(nd.Bernoulli(logits=lg).log_prob(x)))
)


@FORMS
@settings(max_examples=15, deadline=None)
@given(
    st.sampled_from([(1,), (7,), (3, 4), (2, 3, 5)]),  # few shapes: eager ops compile per shape
    st.integers(0, 2**31),
    st.floats(0.1, 30.0),
)
def test_bernoulli_logits_score_is_numpyro_s(inner_product, shape, seed, spread):
    # The same density as NumPyro's, in either form. Its gradient too, at a logit of exactly
    # 0 among them (where softplus's pieces meet).
    k1, k2 = jax.random.split(jax.random.key(seed))
    logits = (spread * jax.random.normal(k1, shape)).at[(0,) * len(shape)].set(0.0)
    x = jax.random.bernoulli(k2, 0.5, shape).astype(jnp.int32)
    score, grad = _ours_with_grad[inner_product](logits, x)
    expected_score, expected_grad = _numpyros_with_grad(logits, x)
    np.testing.assert_allclose(score, expected_score, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-6)


@FORMS
def test_bernoulli_logits_gradient_computes_one_exponential(inner_product):
    # The score's gradient reuses the forward exp(-|l|): one exponential per logit, as
    # NumPyro's, where jax.nn.softplus's derivative takes a second (1/8 more time in a VAE
    # step on a CPU).
    x, logits = jnp.array([0.0, 1.0, 1.0]), jnp.array([-1.0, 0.0, 2.0])
    grad = jax.make_jaxpr(_in_form(_score_and_grad, inner_product))
    assert str(grad(logits, x)).count("= exp ") == 1


@FORMS
def test_bernoulli_logits_score_off_the_support_is_minus_infinity_under_jit(inner_product):
    logits = jnp.linspace(-3.0, 3.0, 6)
    score = jax.jit(_in_form(lambda v: ppl.bernoulli.assess(v, (None, logits))[0], inner_product))
    assert float(score(jnp.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0]))) > -jnp.inf
    assert float(score(jnp.array([0.0, 1.0, 0.5, 0.0, 1.0, 0.0]))) == -jnp.inf
    assert float(score(jnp.array([0.0, 1.0, jnp.nan, 0.0, 1.0, 0.0]))) == -jnp.inf


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU's form")
def test_bernoulli_likelihood_over_classes_and_a_batch_is_a_matrix_product():
    # On a CPU (the inner-product form), copies over a batch of data and over the classes of
    # a latent vectorise to one dot_general: no [batch, classes, pixels] element-wise product.
    logits, x = jnp.zeros((10, 784)), jnp.zeros((64, 784))
    per_pair = jax.vmap(
        jax.vmap(lambda lg, v: ppl.bernoulli.assess(v, (None, lg))[0], (0, None)), (None, 0)
    )
    jaxpr = str(jax.make_jaxpr(per_pair)(logits, x))
    assert "dot_general" in jaxpr and "f32[64,10,784]" not in jaxpr
