"""The random-Fourier-feature Gaussian-process output layer of SNGP."""

from __future__ import annotations

import math

import equinox as eqx
import jax

from models.sngp._cosine import cosine
from models.training._fixed import Fixed


class RandomFeatureGaussianProcess(eqx.Module):
    """A Gaussian-process output layer approximated by random Fourier features.

    The features ``φ(h) = √(2/D) cos(Ω h / ℓ + b)``, with ``Ω_ij ~ N(0, 1)`` and
    ``b_j ~ U(0, 2π)`` drawn once and held ``Fixed``, make ``φ(h)ᵀφ(h')`` a Monte Carlo
    estimate of the RBF kernel ``exp(−‖h − h'‖² / 2ℓ²)`` (Rahimi & Recht, 2007). The logits
    are ``βᵀφ(h)`` with trained output weights ``β`` of shape ``[D, K]`` and a
    ``N(0, 1/τ)`` prior on each, so the layer is Bayesian linear regression on ``φ`` — a
    GP with that kernel as ``D → ∞``. Its posterior over ``β`` is approximated by
    ``LaplacePrecision``; ``bayesian_last_layer`` writes the same model as a generative
    function.

    Args:
        in_features: the size of the hidden representation ``h``.
        num_classes: the number of logits ``K`` (1 for a binary logistic output).
        num_features: the number of random features ``D``.
        length_scale: the kernel length scale ``ℓ``.
        key: the PRNG key for the random features and the output weights.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = RandomFeatureGaussianProcess(2, 3, num_features=4096, key=jax.random.key(0))
        >>> h, g = jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0])
        >>> round(float(layer.features(h) @ layer.features(g)), 1)  # RBF kernel exp(-1/2)
        0.6
        >>> layer(h).shape
        (3,)
    """

    projection: Fixed
    phase: Fixed
    output: jax.Array
    length_scale: float = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        num_features: int = 1024,
        length_scale: float = 1.0,
        key: jax.Array,
    ):
        if not length_scale > 0:
            raise ValueError(f"length_scale must be positive, got {length_scale}")
        k_projection, k_phase, k_output = jax.random.split(key, 3)
        self.projection = Fixed(jax.random.normal(k_projection, (num_features, in_features)))
        self.phase = Fixed(jax.random.uniform(k_phase, (num_features,), maxval=2 * math.pi))
        self.output = jax.random.normal(k_output, (num_features, num_classes)) * 0.01
        self.length_scale = float(length_scale)

    @property
    def num_features(self) -> int:
        """The number of random features ``D``."""
        return self.output.shape[0]

    def features(self, h: jax.Array) -> jax.Array:
        """The ``[D]`` random features ``φ(h)`` of one ``[in_features]`` representation."""
        if h.shape != self.projection.value.shape[1:]:
            raise ValueError(
                f"the representation has shape {h.shape}, but this layer was built for "
                f"{self.projection.value.shape[1]} input features; give one example of shape "
                f"({self.projection.value.shape[1]},) (vmap over a batch)"
            )
        # h Ωᵀ rather than Ω h: vmapped, one [batch, in] × [in, D] product on the stored Ω
        projected = (h @ self.projection.value.T) / self.length_scale + self.phase.value
        return math.sqrt(2.0 / self.num_features) * cosine(projected)

    def __call__(self, h: jax.Array) -> jax.Array:
        """The ``[K]`` logits ``βᵀφ(h)`` at the posterior mode."""
        return self.features(h) @ self.output
