"""The residual network body shared by SNGP and its deterministic baselines."""

from __future__ import annotations

import math

import equinox as eqx
import jax

from models.sngp._spectral_norm import SpectralNormalization
from models.training._fixed import Fixed


class ResidualNetwork(eqx.Module):
    """A residual MLP: a fixed random projection to ``width`` units, then ``depth`` blocks
    ``h ← h + dropout(relu(L_l h))``.

    With ``norm_bound = c < 1`` every ``L_l`` is spectrally normalized to norm at most
    ``c``, so each block is bi-Lipschitz, ``(1 − c)‖h − h'‖ ≤ ‖block(h) − block(h')‖ ≤
    (1 + c)‖h − h'‖``: distances between inputs are neither collapsed nor blown up — the
    distance awareness SNGP needs. The input projection has ``N(0, 1/width)`` entries and
    is ``Fixed``: with ``width`` above the input dimension it is injective and preserves
    distances up to a small factor (Johnson–Lindenstrauss), as in the SNGP tutorials. With
    ``norm_bound=None`` the blocks are plain ``eqx.nn.Linear`` layers: the same network
    without the distance guarantee (the deterministic baseline).

    It is called on one example with an ``eqx.nn.State`` (the spectral-norm vectors; use
    ``eqx.nn.make_with_state`` to build) and returns the representation and the new state.

    Args:
        in_features: the input dimension.
        width: the hidden width.
        depth: the number of residual blocks.
        norm_bound: the spectral norm bound ``c`` of the blocks, or ``None`` for none.
        dropout_rate: the dropout probability after each block's activation.
        key: the PRNG key.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp
        >>> body, state = eqx.nn.make_with_state(ResidualNetwork)(
        ...     2, width=16, depth=2, norm_bound=0.9, key=jax.random.key(0))
        >>> h, state = body(jnp.array([1.0, -1.0]), state)
        >>> h.shape
        (16,)
    """

    projection: Fixed
    blocks: tuple
    dropout: eqx.nn.Dropout

    def __init__(
        self,
        in_features: int,
        *,
        width: int = 128,
        depth: int = 3,
        norm_bound: float | None = 0.95,
        dropout_rate: float = 0.0,
        key: jax.Array,
    ):
        keys = jax.random.split(key, 2 * depth + 1)
        self.projection = Fixed(jax.random.normal(keys[0], (width, in_features)) / math.sqrt(width))
        blocks: list[eqx.nn.Linear | SpectralNormalization] = []
        for layer_key, norm_key in zip(keys[1::2], keys[2::2], strict=True):
            linear = eqx.nn.Linear(width, width, key=layer_key)
            blocks.append(
                linear
                if norm_bound is None
                else SpectralNormalization(linear, norm_bound, key=norm_key)
            )
        self.blocks = tuple(blocks)
        self.dropout = eqx.nn.Dropout(dropout_rate)

    @property
    def width(self) -> int:
        """The size of the representation."""
        return self.projection.value.shape[0]

    def __call__(
        self, x: jax.Array, state: eqx.nn.State, *, key: jax.Array | None = None
    ) -> tuple[jax.Array, eqx.nn.State]:
        """The ``[width]`` representation of one ``[in_features]`` example, and the state.

        ``key`` drives dropout; it may be ``None`` when the dropout rate is 0 or in
        inference mode.
        """
        expected = self.projection.value.shape[1]
        if x.shape != (expected,):
            raise ValueError(
                f"the input has shape {x.shape}, but the network was built for {expected} "
                f"features; give one example of shape ({expected},) (vmap over a batch)"
            )
        h = x @ self.projection.value.T  # vmapped: one [batch, in] × [in, width] product
        keys = (
            (None,) * len(self.blocks) if key is None else jax.random.split(key, len(self.blocks))
        )
        for block, block_key in zip(self.blocks, keys, strict=True):
            if isinstance(block, SpectralNormalization):
                out, state = block(h, state)
            else:
                out = block(h)
            h = h + self.dropout(jax.nn.relu(out), key=block_key)
        return h, state
