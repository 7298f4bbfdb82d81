"""The Laplace precision built during the final epoch of training (SNGP's Algorithm 1)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax

from models.sngp._laplace import LaplacePrecision
from models.sngp._posterior import features_and_logits


class MomentumLaplace(eqx.Module):
    """Builds the output layer's Laplace precision during the final epoch of
    ``models.training.train`` instead of in a pass after it (Liu et al., 2020, Algorithm 1).

    Passed as ``train(..., laplace=MomentumLaplace(m))``, the last ``⌈N/B⌉`` training steps
    sweep the data once in a random order (the last batch topped up with rows from the
    start of the sweep, which are left out of the precision). The precision starts from
    ``LaplacePrecision.init`` at the start of that epoch; after each step, the batch's
    features and logits under the updated parameters (in inference mode) go in:

    * ``momentum = 1``: every batch counts in full, ``data_precision = Σ_batch w φφᵀ``
      (``LaplacePrecision.update``). Over the one sweep this is the exact pass of
      ``sngp.fit_laplace``, except that each batch sees the parameters of its own step; with
      the parameters fixed it is that pass.
    * ``0 ≤ momentum < 1``: a moving average of each batch's estimate ``(N/B) Σ_batch w φφᵀ``
      of the full-data sum (``LaplacePrecision.momentum_update``), which forgets the early
      batches of the epoch, seen under older parameters.

    No pass over the data is needed after training: ``result.precision.covariance()`` is
    the posterior covariance for ``sngp.predict``.

    Attributes:
        momentum: ``m`` in ``[0, 1]``.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp, optax
        >>> from models.sngp import SNGPClassifier
        >>> from models.training import train
        >>> x = jax.random.normal(jax.random.key(0), (40, 2))
        >>> y = (x[:, 0] > 0).astype(jnp.int32)
        >>> model, state = eqx.nn.make_with_state(SNGPClassifier)(
        ...     2, 2, width=8, depth=1, num_features=16, key=jax.random.key(1))
        >>> result = train(model, state, x, y, optimizer=optax.adam(1e-2), steps=20,
        ...                batch_size=16, key=jax.random.key(2), laplace=MomentumLaplace(1.0))
        >>> int(result.precision.count)  # the final epoch saw every example once
        40
    """

    momentum: float = eqx.field(static=True, converter=float)

    def __check_init__(self):
        if not 0 <= self.momentum <= 1:
            raise ValueError(
                f"momentum must lie in [0, 1] (1: accumulate the epoch's batches in full), "
                f"got {self.momentum}"
            )

    def init(self, model: Any, prior_precision: float) -> LaplacePrecision:
        """The empty precision at the start of the final epoch, over the model's ``D``
        random features."""
        return LaplacePrecision.init(model.head.num_features, prior_precision)

    def update(
        self,
        precision: LaplacePrecision,
        model: Any,
        state: eqx.nn.State,
        inputs: Any,
        mask: jax.Array,
        num_data: int,
    ) -> LaplacePrecision:
        """Adds one batch (``[B, ...]`` inputs, ``[B]`` mask of the rows to count) under
        ``model``, evaluated in inference mode."""
        features, logits = features_and_logits(eqx.nn.inference_mode(model), state, inputs)
        if self.momentum == 1:
            return precision.update(features, logits, mask=mask)
        return precision.momentum_update(features, logits, self.momentum, num_data, mask=mask)
