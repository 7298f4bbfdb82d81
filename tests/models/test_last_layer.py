"""The Bayesian last layer: one generative function, Laplace and VI posteriors that agree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.last_layer import (
    FullRankGaussian,
    GaussianLastLayer,
    MeanFieldGaussian,
    bayesian_last_layer,
    fit_variational_last_layer,
    laplace_last_layer,
)
from models.sngp import RandomFeatureGaussianProcess


@pytest.fixture(scope="module")
def problem():
    """A noisy binary problem over 8 random Fourier features of 2-d inputs."""
    x = jax.random.normal(jax.random.key(1), (200, 2))
    noise = 0.7 * jax.random.normal(jax.random.key(2), (200,))
    labels = (x[:, 0] + 0.5 * x[:, 1] + noise > 0).astype(jnp.int32)
    layer = RandomFeatureGaussianProcess(
        2, 1, num_features=8, length_scale=2.0, key=jax.random.key(3)
    )
    features = 3 * jax.vmap(layer.features)(x)
    test = 3 * jax.vmap(layer.features)(
        jnp.array([[0.0, 0.0], [1.0, 1.0], [-1.5, 0.5], [2.0, -2.0]])
    )
    return features, labels, test


def test_laplace_and_full_rank_vi_agree_on_the_predictive_logits(problem):
    features, labels, test = problem
    laplace = laplace_last_layer(features, labels, 1)
    variational = fit_variational_last_layer(
        features, labels, 1, family=FullRankGaussian(), steps=2000, key=jax.random.key(4)
    )
    laplace_mean, laplace_variance = laplace.predict(test)
    vi_mean, vi_variance = variational.predict(test)
    # Stated tolerance: the posterior is close to Gaussian with 200 points and 8 weights, so
    # both Gaussian approximations agree to 0.1 + 10% in the mean and 20% in the variance
    # (the gap is the posterior's skew plus the ELBO optimum's stochastic error).
    np.testing.assert_array_less(jnp.abs(vi_mean - laplace_mean), 0.1 + 0.1 * jnp.abs(laplace_mean))
    np.testing.assert_allclose(vi_variance, laplace_variance, rtol=0.2)
    # the check can fail: a posterior at the prior (mean 0, covariance I) is rejected
    prior = GaussianLastLayer(jnp.zeros(8), jnp.eye(8), 1)
    prior_mean, prior_variance = prior.predict(test)
    assert not jnp.all(jnp.abs(prior_mean - laplace_mean) < 0.1 + 0.1 * jnp.abs(laplace_mean))
    assert not jnp.allclose(prior_variance, laplace_variance, rtol=0.2)


def test_mean_field_vi_has_the_laplace_means_and_the_conditional_variances(problem):
    features, labels, test = problem
    laplace = laplace_last_layer(features, labels, 1)
    mean_field = fit_variational_last_layer(
        features, labels, 1, family=MeanFieldGaussian(), steps=2000, key=jax.random.key(5)
    )
    laplace_mean, _ = laplace.predict(test)
    mean, _ = mean_field.predict(test)
    np.testing.assert_array_less(jnp.abs(mean - laplace_mean), 0.2 + 0.15 * jnp.abs(laplace_mean))
    # For a Gaussian target N(m, Λ⁻¹) the best factorized Gaussian has variances 1/Λ_jj,
    # the conditional variances, below the marginal ones (Λ⁻¹)_jj when weights correlate.
    precision = jnp.linalg.inv(laplace.covariance)
    np.testing.assert_allclose(jnp.diag(mean_field.covariance), 1 / jnp.diag(precision), rtol=0.2)
    assert jnp.all(jnp.diag(mean_field.covariance) < jnp.diag(laplace.covariance))


def test_the_generative_function_has_the_logistic_regression_density():
    features = jnp.array([[1.0, 2.0], [0.5, -1.0], [0.0, 1.0]])
    labels = jnp.array([1, 0, 1])
    w = jnp.array([0.3, -0.7])
    log_p, _ = bayesian_last_layer(1, prior_precision=3.0).assess(
        {"weights": w, "labels": labels}, (features,)
    )
    f = features @ w
    expected = jnp.sum(jax.nn.log_sigmoid(jnp.where(labels == 1, f, -f))) + jnp.sum(
        jax.scipy.stats.norm.logpdf(w, 0.0, 3.0**-0.5)
    )
    np.testing.assert_allclose(log_p, expected, rtol=1e-6)
    # three classes: weights are a flat [D * K] vector read as [D, K]
    w3 = jnp.arange(6.0) / 10
    log_p, logits = bayesian_last_layer(3).assess({"weights": w3, "labels": labels}, (features,))
    np.testing.assert_allclose(logits, features @ w3.reshape(2, 3), rtol=1e-6)
    expected = jnp.sum(
        jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], -1)
    ) + jnp.sum(jax.scipy.stats.norm.logpdf(w3))
    np.testing.assert_allclose(log_p, expected, rtol=1e-6)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        bayesian_last_layer(0)
    with pytest.raises(ValueError, match="prior_precision must be positive"):
        bayesian_last_layer(2, prior_precision=0.0)
    posterior = GaussianLastLayer(jnp.zeros(6), jnp.eye(6), 3)
    with pytest.raises(ValueError, match=r"over 2 features, so give \[examples, 2\]"):
        posterior.predict(jnp.ones((4, 3)))
    with pytest.raises(TypeError, match="MeanFieldGaussian"):
        fit_variational_last_layer(
            jnp.ones((2, 2)), jnp.array([0, 1]), 1, family="full", key=jax.random.key(0)
        )
