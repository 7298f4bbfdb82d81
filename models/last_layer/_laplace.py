"""The Laplace approximation of a Bayesian last layer, by Newton's method."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from models.last_layer._model import GaussianLastLayer, bayesian_last_layer


def laplace_last_layer(
    features: jax.Array,
    labels: jax.Array,
    num_classes: int,
    prior_precision: float = 1.0,
    *,
    iterations: int = 30,
) -> GaussianLastLayer:
    """The Laplace approximation ``N(w*, H⁻¹)`` of ``bayesian_last_layer``'s posterior.

    The negative log posterior ``U(w) = −log p(w, labels | features)`` is read from the
    generative function (``assess``); its mode ``w*`` is found by Newton's method from
    zero, ``w ← w − H(w)⁻¹∇U(w)`` (``U`` is convex: it converges quadratically), and ``H``
    is its exact Hessian at the mode — for ``K ≥ 2`` the full ``DK × DK`` matrix, not
    SNGP's class-shared approximation.

    Args:
        features: ``[N, D]`` features.
        labels: ``[N]`` integer labels.
        num_classes: ``K`` (1 for one Bernoulli logit).
        prior_precision: ``τ``.
        iterations: Newton steps.

    Returns:
        The ``GaussianLastLayer``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x = jnp.linspace(-2, 2, 50)[:, None]
        >>> features = jnp.concatenate([x, jnp.ones_like(x)], axis=1)
        >>> labels = (x[:, 0] > 0.3).astype(jnp.int32)
        >>> posterior = laplace_last_layer(features, labels, 1)
        >>> slope, intercept = posterior.mean
        >>> round(float(-intercept / slope), 1)  # the fitted decision boundary
        0.3
    """
    return _laplace(
        jnp.asarray(features), jnp.asarray(labels), num_classes, prior_precision, iterations
    )


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _laplace(features, labels, num_classes, prior_precision, iterations):
    model = bayesian_last_layer(num_classes, prior_precision)
    size = features.shape[1] * num_classes

    def energy(w):
        return -model.assess({"weights": w, "labels": labels}, (features,))[0]

    def newton(_, w):
        return w - jnp.linalg.solve(jax.hessian(energy)(w), jax.grad(energy)(w))

    mode = jax.lax.fori_loop(0, iterations, newton, jnp.zeros(size, features.dtype))
    precision = jax.hessian(energy)(mode)
    return GaussianLastLayer(mode, jnp.linalg.inv(precision), num_classes)
