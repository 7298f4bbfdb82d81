"""The named distributions: one line each over ``numpyro.distributions``.

Arguments follow NumPyro's names and batching; keyword arguments work (``bernoulli(logits=x)``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro.distributions as nd

from ppl._distribution import Distribution


def _normal(loc, scale):
    return nd.Normal(loc, scale)


def _mv_normal(loc, covariance_matrix):
    return nd.MultivariateNormal(loc, covariance_matrix=covariance_matrix)


def _mv_normal_diag(loc, scale_diag):
    loc, scale_diag = jnp.broadcast_arrays(jnp.asarray(loc), jnp.asarray(scale_diag))
    return nd.Normal(loc, scale_diag).to_event(1)


def _bernoulli(probs=None, logits=None):
    return nd.Bernoulli(probs=probs, logits=logits)


def _flip(p):
    return nd.Bernoulli(probs=p)


def _categorical(probs=None, logits=None):
    return nd.Categorical(probs=probs, logits=logits)


def _binomial(total_count, probs=None, logits=None):
    return nd.Binomial(total_count, probs=probs, logits=logits)


def _geometric(probs=None, logits=None):
    return nd.Geometric(probs=probs, logits=logits)


def _negative_binomial(total_count, probs=None, logits=None):
    return nd.NegativeBinomial(total_count, probs=probs, logits=logits)


def _student_t(df, loc=0.0, scale=1.0):
    return nd.StudentT(df, loc, scale)


def _gamma(concentration, rate=1.0):
    return nd.Gamma(concentration, rate)


def _inverse_gamma(concentration, rate=1.0):
    return nd.InverseGamma(concentration, rate)


normal = Distribution(_normal, "normal")
"""``normal(loc, scale)``."""
mv_normal = Distribution(_mv_normal, "mv_normal")
"""``mv_normal(loc, covariance_matrix)``: full-covariance multivariate normal."""
mv_normal_diag = Distribution(_mv_normal_diag, "mv_normal_diag")
"""``mv_normal_diag(loc, scale_diag)``: diagonal multivariate normal (event of the last axis)."""
half_normal = Distribution(nd.HalfNormal, "half_normal")
"""``half_normal(scale)``."""
log_normal = Distribution(nd.LogNormal, "log_normal")
"""``log_normal(loc, scale)``."""
student_t = Distribution(_student_t, "student_t")
"""``student_t(df, loc=0, scale=1)``."""
cauchy = Distribution(nd.Cauchy, "cauchy")
"""``cauchy(loc, scale)``."""
laplace = Distribution(nd.Laplace, "laplace")
"""``laplace(loc, scale)``."""
uniform = Distribution(nd.Uniform, "uniform")
"""``uniform(low, high)``."""
exponential = Distribution(nd.Exponential, "exponential")
"""``exponential(rate)``."""
gamma = Distribution(_gamma, "gamma")
"""``gamma(concentration, rate=1)``."""
inverse_gamma = Distribution(_inverse_gamma, "inverse_gamma")
"""``inverse_gamma(concentration, rate=1)``."""
beta = Distribution(nd.Beta, "beta")
"""``beta(concentration1, concentration0)``."""
dirichlet = Distribution(nd.Dirichlet, "dirichlet")
"""``dirichlet(concentration)``."""
bernoulli = Distribution(_bernoulli, "bernoulli")
"""``bernoulli(probs=None, logits=None)``: values 0/1."""
flip = Distribution(_flip, "flip")
"""``flip(p)``: a Bernoulli with probability ``p`` of 1."""
categorical = Distribution(_categorical, "categorical")
"""``categorical(probs=None, logits=None)``: values 0..K-1."""
binomial = Distribution(_binomial, "binomial")
"""``binomial(total_count, probs=None, logits=None)``."""
poisson = Distribution(nd.Poisson, "poisson")
"""``poisson(rate)``."""
geometric = Distribution(_geometric, "geometric")
"""``geometric(probs=None, logits=None)``: failures before the first success."""
negative_binomial = Distribution(_negative_binomial, "negative_binomial")
"""``negative_binomial(total_count, probs=None, logits=None)``."""
