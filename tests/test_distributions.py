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


# Bernoulli logits are scored as one sum of x * l - softplus(l); copies of the score made by
# vmap are scored in one of two forms, by backend (the inner product x . l on a CPU, the same
# sum on an accelerator); each is tested here on the CPU.
FORMS = pytest.mark.parametrize("inner_product", [True, False], ids=["inner", "summed"])


def _in_form(function, inner_product):
    """``function`` traced with the Bernoulli score's copies in the given form."""

    def traced(*args):
        with mock.patch.object(ppl_distribution, "_inner_product_form", lambda: inner_product):
            return function(*args)

    return traced


def _score(lg, x):
    return ppl.bernoulli.assess(x, (None, lg))[0]


def _score_and_grad(lg, x):
    return jax.value_and_grad(_score)(lg, x)


# Jitted, so that each shape compiles once (eagerly, every operation of the gradient would).
_ours_with_grad = {form: jax.jit(_in_form(_score_and_grad, form)) for form in (True, False)}
_numpyros = jax.jit(lambda lg, x: jnp.sum(nd.Bernoulli(logits=lg).log_prob(x)))


def _exact_grad(lg, x):
    return np.asarray(x, np.float64) - 1 / (1 + np.exp(-np.asarray(lg, np.float64)))


@settings(max_examples=15, deadline=None)
@given(
    st.sampled_from([(), (1,), (7,), (3, 4), (2, 3, 5)]),  # few shapes: each compiles once
    st.integers(0, 2**31),
    st.floats(0.1, 30.0),
)
def test_bernoulli_logits_score_is_numpyro_s_and_its_gradient_exact(shape, seed, spread):
    # The same density as NumPyro's; the gradient x - sigmoid(l), at a logit of exactly 0
    # among them too (where softplus's pieces meet: NumPyro's autodiff gives x there).
    k1, k2 = jax.random.split(jax.random.key(seed))
    logits = (spread * jax.random.normal(k1, shape)).at[(0,) * len(shape)].set(0.0)
    x = jax.random.bernoulli(k2, 0.5, shape).astype(jnp.int32)
    score, grad = _ours_with_grad[True](logits, x)
    np.testing.assert_allclose(score, _numpyros(logits, x), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(grad, _exact_grad(logits, x), rtol=1e-5, atol=1e-6)


def _reference(lg, x):
    """The Bernoulli score with an exact derivative everywhere (jax.nn.softplus's)."""
    return jnp.sum(x * lg - jax.nn.softplus(lg))


@FORMS
@settings(max_examples=20, deadline=None)
@given(
    st.sampled_from([(0, None), (None, 0), (0, 0), (1, None)]),
    st.booleans(),
    st.integers(0, 2**31),
)
def test_bernoulli_logits_score_copies_and_their_derivatives(inner_product, in_axes, jvp, seed):
    # Copies by vmap over the logits, the values, both, or along another axis, in whichever
    # form the backend vectorises them: their scores and derivatives (forward and reverse
    # mode) are the reference's.
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    shape = {0: (4, 2, 3), 1: (2, 4, 3), None: (2, 3)}
    logits = 3.0 * jax.random.normal(k1, shape[in_axes[0]]).at[0, 0].set(0.0)
    x = jax.random.bernoulli(k2, 0.5, shape[in_axes[1]]).astype(jnp.float32)
    ours = _in_form(jax.vmap(_score, in_axes=in_axes), inner_product)
    reference = jax.vmap(_reference, in_axes=in_axes)
    np.testing.assert_allclose(ours(logits, x), reference(logits, x), rtol=1e-5, atol=1e-4)
    if jvp:
        tangent = jax.random.normal(k3, logits.shape)
        got = jax.jvp(lambda lg: ours(lg, x), (logits,), (tangent,))[1]
        expected = jax.jvp(lambda lg: reference(lg, x), (logits,), (tangent,))[1]
    else:
        got = jax.grad(lambda lg: jnp.sum(ours(lg, x)))(logits)
        expected = jax.grad(lambda lg: jnp.sum(reference(lg, x)))(logits)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_bernoulli_logits_gradient_of_a_plate_of_scalar_sites_is_exact_at_zero():
    # Logistic regression as a Vmap of one scalar site per datapoint, at w = 0 (every logit
    # exactly 0): the gradient is X^T (y - 1/2), where NumPyro's autodiff gives X^T y.
    features = jnp.array([[1.0, 2.0], [0.5, -1.0], [-2.0, 0.3]])
    labels = jnp.array([1, 0, 1])

    @ppl.gen
    def point(w, x):
        return ppl.bernoulli(logits=jnp.dot(x, w)) @ "y"

    @ppl.gen
    def regression(w):
        return ppl.Vmap(point, in_axes=(None, 0))(w, features) @ "points"

    for inner_product in (True, False):
        score = _in_form(
            lambda w: regression.assess({"points": {"y": labels}}, (w,))[0], inner_product
        )
        grad = jax.grad(score)(jnp.zeros(2))
        exact = np.asarray(features).T @ (np.asarray(labels) - 0.5)
        np.testing.assert_allclose(grad, exact, rtol=1e-6)


def test_bernoulli_logits_second_derivative_is_exact():
    # jax.hessian (a Laplace approximation's) goes through the closed-form derivative: at a
    # logit l, d2/dl2 log p(x) = -sigmoid(l) (1 - sigmoid(l)), 1/4 at l = 0.
    logits, x = jnp.array([0.0, 1.5, -2.0]), jnp.array([1.0, 0.0, 1.0])
    hessian = jax.hessian(_score)(logits, x)
    p = 1 / (1 + np.exp(-np.asarray(logits, np.float64)))
    np.testing.assert_allclose(hessian, np.diag(-p * (1 - p)), rtol=1e-5, atol=1e-7)


@FORMS
def test_bernoulli_logits_gradient_computes_one_exponential(inner_product):
    # The score's gradient reuses the forward exp(-|l|): one exponential per logit in the
    # compiled step, as NumPyro's, where jax.nn.softplus's derivative takes a second (1/8
    # more time in a VAE step on a CPU).
    x, logits = jnp.array([0.0, 1.0, 1.0]), jnp.array([-1.0, 0.0, 2.0])
    step = jax.jit(_in_form(_score_and_grad, inner_product)).lower(logits, x).compile()
    hlo = step.as_text()
    assert hlo.count("exponential(") == 1 and "logistic(" not in hlo


@FORMS
def test_bernoulli_logits_score_off_the_support_is_minus_infinity_under_jit(inner_product):
    logits = jnp.linspace(-3.0, 3.0, 6)
    score = jax.jit(_in_form(lambda v: _score(logits, v), inner_product))
    assert float(score(jnp.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0]))) > -jnp.inf
    assert float(score(jnp.array([0.0, 1.0, 0.5, 0.0, 1.0, 0.0]))) == -jnp.inf
    assert float(score(jnp.array([0.0, 1.0, jnp.nan, 0.0, 1.0, 0.0]))) == -jnp.inf
    copies = jax.jit(_in_form(jax.vmap(lambda v: _score(logits, v)), inner_product))
    scores = copies(jnp.array([[0.0, 1.0, 1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.5, 0.0, 1.0, 0.0]]))
    assert float(scores[0]) > -jnp.inf and float(scores[1]) == -jnp.inf
    for bad in (0.5, jnp.nan):
        off = jnp.array([0.0, 1.0, bad, 0.0, 1.0, 0.0])
        with ppl.validation(False):  # -inf, not the concrete value's error
            grad = jax.grad(_in_form(lambda lg, off=off: _score(lg, off), inner_product))(logits)
        np.testing.assert_array_equal(grad, np.zeros(6))  # the constant -inf has no slope


def test_bernoulli_logits_score_on_its_own_is_one_sum():
    # A VAE's batch likelihood (the batch inside the arrays, no vmap) is one sum of the
    # element-wise terms, into which the product and the support check fuse: no inner product.
    logits, x = jnp.zeros((64, 784)), jnp.zeros((64, 784))
    assert "dot_general" not in str(jax.make_jaxpr(_score)(logits, x))
    step = jax.jit(jax.value_and_grad(_score)).lower(logits, x).compile().as_text()
    assert " dot(" not in step  # its derivative's inner products are products by a scalar


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
