"""The SNGP classifier: a spectrally normalized residual network with a GP output layer."""

from __future__ import annotations

import equinox as eqx
import jax

from models.sngp._random_features import RandomFeatureGaussianProcess
from models.sngp._residual import ResidualNetwork


class SNGPClassifier(eqx.Module):
    """Spectral-normalized neural Gaussian process (Liu et al., 2020) for classification.

    A ``ResidualNetwork`` whose blocks are spectrally normalized (``norm_bound`` ``c``)
    maps an input to a representation ``h`` that preserves input distances; a
    ``RandomFeatureGaussianProcess`` turns ``h`` into logits. After training, an exact pass
    over the data gives the Laplace precision of the output weights (``fit_laplace``) and
    ``predict`` returns logits with their posterior variance, which grows with the distance
    from the training data.

    Called on one example with the spectral-norm ``eqx.nn.State`` (build both with
    ``eqx.nn.make_with_state``); switch to evaluation with ``eqx.nn.inference_mode``.

    Args:
        in_features: the input dimension.
        num_classes: the number of classes ``K``.
        width: the hidden width.
        depth: the number of residual blocks.
        norm_bound: the spectral norm bound ``c`` of the blocks.
        num_features: the number of random Fourier features ``D``.
        length_scale: the RBF kernel length scale of the output layer.
        dropout_rate: dropout after each block (0 for SNGP proper).
        key: the PRNG key.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp
        >>> model, state = eqx.nn.make_with_state(SNGPClassifier)(
        ...     2, 3, width=8, depth=1, num_features=16, key=jax.random.key(0))
        >>> logits, state = model(jnp.array([0.5, -0.5]), state)
        >>> logits.shape
        (3,)
    """

    body: ResidualNetwork
    head: RandomFeatureGaussianProcess

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        width: int = 128,
        depth: int = 3,
        norm_bound: float = 0.95,
        num_features: int = 1024,
        length_scale: float = 1.0,
        dropout_rate: float = 0.0,
        key: jax.Array,
    ):
        body_key, head_key = jax.random.split(key)
        self.body = ResidualNetwork(
            in_features,
            width=width,
            depth=depth,
            norm_bound=norm_bound,
            dropout_rate=dropout_rate,
            key=body_key,
        )
        self.head = RandomFeatureGaussianProcess(
            width, num_classes, num_features=num_features, length_scale=length_scale, key=head_key
        )

    def random_features(
        self, x: jax.Array, state: eqx.nn.State, *, key: jax.Array | None = None
    ) -> tuple[jax.Array, eqx.nn.State]:
        """The ``[D]`` random features ``φ(h(x))`` of one example, and the state."""
        h, state = self.body(x, state, key=key)
        return self.head.features(h), state

    def __call__(
        self, x: jax.Array, state: eqx.nn.State, *, key: jax.Array | None = None
    ) -> tuple[jax.Array, eqx.nn.State]:
        """The ``[K]`` logits of one example at the posterior mode, and the state."""
        features, state = self.random_features(x, state, key=key)
        return features @ self.head.output, state
