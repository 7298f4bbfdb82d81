"""Variational posteriors of a Bayesian last layer, fitted with ``inference.vi``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpyro.distributions as nd
import optax

from inference import vi
from models.last_layer._model import GaussianLastLayer, bayesian_last_layer
from ppl import from_numpyro, gen, normal


@dataclasses.dataclass(frozen=True)
class MeanFieldGaussian:
    """The guide family ``weights ~ N(loc, diag(exp(log_scale))²)``: independent weights.

    Example:
        >>> import jax.numpy as jnp
        >>> family = MeanFieldGaussian()
        >>> params = family.init(3)
        >>> family.posterior(params, 1).covariance.shape
        (3, 3)
    """

    def init(self, size: int) -> dict:
        """Initial parameters: a narrow guide at zero."""
        return {"loc": jnp.zeros(size), "log_scale": jnp.full(size, -2.0)}

    @property
    def guide(self):
        """The ``@gen`` guide of ``(params, features)``."""
        return _mean_field_guide

    def posterior(self, params: dict, num_classes: int) -> GaussianLastLayer:
        """The ``GaussianLastLayer`` these parameters describe."""
        return GaussianLastLayer(
            params["loc"], jnp.diag(jnp.exp(2 * params["log_scale"])), num_classes
        )


@dataclasses.dataclass(frozen=True)
class FullRankGaussian:
    """The guide family ``weights ~ N(loc, L Lᵀ)`` with ``L`` lower triangular and a
    positive (exponentiated) diagonal: correlated weights.

    Example:
        >>> import jax.numpy as jnp
        >>> family = FullRankGaussian()
        >>> family.posterior(family.init(2), 1).covariance
        Array([[0.01831564, 0.        ],
               [0.        , 0.01831564]], dtype=float32)
    """

    def init(self, size: int) -> dict:
        """Initial parameters: a narrow guide at zero."""
        return {
            "loc": jnp.zeros(size),
            "log_diagonal": jnp.full(size, -2.0),
            "lower": jnp.zeros((size, size)),
        }

    @property
    def guide(self):
        """The ``@gen`` guide of ``(params, features)``."""
        return _full_rank_guide

    def posterior(self, params: dict, num_classes: int) -> GaussianLastLayer:
        """The ``GaussianLastLayer`` these parameters describe."""
        factor = _scale_tril(params)
        return GaussianLastLayer(params["loc"], factor @ factor.T, num_classes)


def _scale_tril(params: dict) -> jax.Array:
    return jnp.tril(params["lower"], -1) + jnp.diag(jnp.exp(params["log_diagonal"]))


@gen
def _mean_field_guide(params, features):
    normal(params["loc"], jnp.exp(params["log_scale"])) @ "weights"


@gen
def _full_rank_guide(params, features):
    from_numpyro(nd.MultivariateNormal(params["loc"], scale_tril=_scale_tril(params))) @ "weights"


def fit_variational_last_layer(
    features: jax.Array,
    labels: jax.Array,
    num_classes: int,
    prior_precision: float = 1.0,
    *,
    family: MeanFieldGaussian | FullRankGaussian | None = None,
    steps: int = 2000,
    learning_rate: float = 0.02,
    key: jax.Array,
) -> GaussianLastLayer:
    """A Gaussian variational posterior of ``bayesian_last_layer``, by maximising
    ``vi.elbo`` with ``vi.fit`` (reparameterized gradients, Adam with a step size decaying
    by 100× over the run).

    Args:
        features: ``[N, D]`` features.
        labels: ``[N]`` integer labels.
        num_classes: ``K`` (1 for one Bernoulli logit).
        prior_precision: ``τ``.
        family: ``MeanFieldGaussian()`` (the default) or ``FullRankGaussian()``.
        steps: optimisation steps (one ELBO sample each).
        learning_rate: Adam's initial step size.
        key: the PRNG key.

    Returns:
        The fitted ``GaussianLastLayer``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x = jnp.linspace(-2, 2, 50)[:, None]
        >>> features = jnp.concatenate([x, jnp.ones_like(x)], axis=1)
        >>> labels = (x[:, 0] > 0.3).astype(jnp.int32)
        >>> posterior = fit_variational_last_layer(features, labels, 1, steps=1500,
        ...                                        key=jax.random.key(0))
        >>> slope, intercept = posterior.mean
        >>> abs(float(-intercept / slope) - 0.3) < 0.15
        True
    """
    family = MeanFieldGaussian() if family is None else family
    if not isinstance(family, MeanFieldGaussian | FullRankGaussian):
        raise TypeError(f"family is {family!r}; give MeanFieldGaussian() or FullRankGaussian()")
    model = bayesian_last_layer(num_classes, prior_precision)
    objective = vi.elbo(model, family.guide)
    params = family.init(features.shape[1] * num_classes)
    schedule = optax.exponential_decay(learning_rate, steps, 0.01)
    result = vi.fit(
        objective,
        params,
        optax.adam(schedule),
        steps,
        key,
        args=({"labels": labels}, features),
        progress=False,
    )
    return family.posterior(result.params, num_classes)
