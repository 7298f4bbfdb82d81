"""A Bayesian linear last layer over fixed features, as a generative function."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ppl import GenerativeFunction, bernoulli, categorical, gen, normal


def bayesian_last_layer(num_classes: int, prior_precision: float = 1.0) -> GenerativeFunction:
    """The generative function of a Bayesian linear classifier over given features:

    ``weights ~ N(0, τ⁻¹ I)`` at address ``"weights"`` (a flat vector of ``D·K``
    values, read as a ``[D, K]`` matrix ``W``), then
    ``labels ~ categorical(logits = φ W)`` at ``"labels"``, or
    ``bernoulli(logits = φ w)`` for ``num_classes = 1``.

    Over SNGP's random features ``φ`` it is the random-feature GP output layer, so its
    posterior can be approximated by any inference in the library — Laplace
    (``laplace_last_layer``), VI (``fit_variational_last_layer``), MCMC — and compared.
    Its argument is the ``[N, D]`` feature matrix.

    Args:
        num_classes: ``K``; 1 for a binary problem with one logit.
        prior_precision: ``τ``.

    Returns:
        A ``@gen`` function of ``(features,)`` returning the ``[N, K]`` logits.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = bayesian_last_layer(num_classes=1, prior_precision=4.0)
        >>> features = jnp.array([[1.0, 0.0], [0.0, 1.0]])
        >>> log_p, logits = model.assess(
        ...     {"weights": jnp.array([0.0, 0.0]), "labels": jnp.array([1, 0])}, (features,))
        >>> # prior: 2 log N(0; 0, 1/4); likelihood: 2 log(1/2)
        >>> round(float(log_p), 4) == round(float(2 * jnp.log(2 / jnp.sqrt(2 * jnp.pi))
        ...     + 2 * jnp.log(0.5)), 4)
        True
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if not prior_precision > 0:
        raise ValueError(f"prior_precision must be positive, got {prior_precision}")
    scale = float(prior_precision) ** -0.5

    @gen
    def last_layer(features):
        size = features.shape[1]
        weights = normal(jnp.zeros(size * num_classes), scale) @ "weights"
        logits = features @ weights.reshape(size, num_classes)
        if num_classes == 1:
            bernoulli(logits=logits[:, 0]) @ "labels"
        else:
            categorical(logits=logits) @ "labels"
        return logits

    return last_layer


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GaussianLastLayer:
    """A Gaussian posterior ``N(mean, covariance)`` over a last layer's flat weights.

    Attributes:
        mean: ``[D·K]`` mean of the weights (``W = mean.reshape(D, K)``).
        covariance: ``[D·K, D·K]`` covariance.
        num_classes: ``K`` (static).

    Example:
        >>> import jax.numpy as jnp
        >>> covariance = jnp.diag(jnp.array([1.0, 2.0, 3.0, 4.0]))  # D = 2 features, K = 2
        >>> posterior = GaussianLastLayer(jnp.zeros(4), covariance, num_classes=2)
        >>> mean, variance = posterior.predict(jnp.array([[1.0, 1.0]]))
        >>> variance  # class 0 has flat weights 0 and 2, class 1 weights 1 and 3
        Array([[4., 6.]], dtype=float32)
    """

    mean: jax.Array
    covariance: jax.Array
    num_classes: int = dataclasses.field(metadata={"static": True})

    def predict(self, features: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The predictive mean and variance of each logit, ``φW̄`` and
        ``Var[φ W_{:,k}]``.

        Args:
            features: ``[N, D]`` features.

        Returns:
            ``(mean, variance)``, each ``[N, K]``.

        Example:
            >>> import jax.numpy as jnp
            >>> covariance = jnp.diag(jnp.array([1.0, 4.0]))
            >>> posterior = GaussianLastLayer(jnp.array([1.0, 2.0]), covariance, 1)
            >>> posterior.predict(jnp.array([[1.0, 1.0]]))
            (Array([[3.]], dtype=float32), Array([[5.]], dtype=float32))
        """
        size = self.mean.shape[0] // self.num_classes
        if features.ndim != 2 or features.shape[1] != size:
            raise ValueError(
                f"features has shape {features.shape}; this posterior is over {size} features, "
                f"so give [examples, {size}]"
            )
        k = self.num_classes
        mean = features @ self.mean.reshape(size, k)
        blocks = self.covariance.reshape(size, k, size, k)
        per_class = jnp.stack([blocks[:, c, :, c] for c in range(k)])  # [K, D, D]
        variance = jnp.einsum("nd,kde,ne->nk", features, per_class, features)
        return mean, variance
