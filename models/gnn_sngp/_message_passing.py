"""Message passing over an edge list with ``jax.ops.segment_sum``."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from models.gnn_sngp._graphs import Graph
from models.sngp._spectral_norm import SpectralNormalization


def mean_neighbours(h: jax.Array, graph: Graph) -> jax.Array:
    """The mean of each node's neighbours' vectors, ``(1/deg v) Σ_{u→v} h_u`` (0 for a
    node without neighbours), summed over the edge list with ``jax.ops.segment_sum``;
    padding edges contribute nothing.

    Args:
        h: ``[max_nodes, W]`` node vectors.
        graph: one (unbatched) ``Graph``.

    Returns:
        ``[max_nodes, W]``.

    Example:
        >>> import numpy as np, jax.numpy as jnp
        >>> from models.gnn_sngp import pad_graphs
        >>> path = pad_graphs([np.ones((3, 1), np.float32)], [np.array([[0, 1], [1, 2]])], 4, 6)
        >>> one = jax.tree.map(lambda a: a[0], path)
        >>> mean_neighbours(jnp.array([[1.0], [2.0], [4.0], [8.0]]), one)[:, 0]
        Array([2. , 2.5, 2. , 0. ], dtype=float32)
    """
    weights = graph.edge_mask.astype(h.dtype)
    size = h.shape[0]
    total = jax.ops.segment_sum(h[graph.senders] * weights[:, None], graph.receivers, size)
    degree = jax.ops.segment_sum(weights, graph.receivers, size)
    return total / jnp.maximum(degree, 1.0)[:, None]


class MessagePassingLayer(eqx.Module):
    """A residual graph convolution,
    ``h_v ← h_v + relu(L [h_v ; mean_{u→v} h_u])`` on real nodes (padding stays 0).

    With ``norm_bound = c`` the linear map ``L`` (``[2W] → [W]``) is spectrally normalized,
    so the residual update is Lipschitz in the node vectors with a constant of ``c`` times
    a factor set by the degrees (the mean aggregation's gain, small for bounded-degree
    molecular graphs): for small enough ``c`` the layer is bi-Lipschitz and keeps distances
    between representations, as SNGP's residual blocks do.

    Args:
        width: the node vector size ``W``.
        norm_bound: the spectral norm bound ``c``, or ``None`` for a plain linear map.
        key: the PRNG key.

    Example:
        >>> import equinox as eqx, jax, numpy as np
        >>> from models.gnn_sngp import pad_graphs
        >>> graph = pad_graphs([np.ones((3, 4), np.float32)], [np.array([[0, 1]])], 4, 4)
        >>> one = jax.tree.map(lambda a: a[0], graph)  # the first (only) graph
        >>> layer, state = eqx.nn.make_with_state(MessagePassingLayer)(
        ...     4, 0.6, key=jax.random.key(0))
        >>> h, state = layer(one.nodes, one, state)
        >>> h.shape, bool((h[3] == 0).all())
        ((4, 4), True)
    """

    linear: eqx.nn.Linear | SpectralNormalization

    def __init__(self, width: int, norm_bound: float | None, *, key: jax.Array):
        layer_key, norm_key = jax.random.split(key)
        linear = eqx.nn.Linear(2 * width, width, key=layer_key)
        self.linear = (
            linear
            if norm_bound is None
            else SpectralNormalization(linear, norm_bound, key=norm_key)
        )

    def __call__(
        self, h: jax.Array, graph: Graph, state: eqx.nn.State
    ) -> tuple[jax.Array, eqx.nn.State]:
        """The updated ``[max_nodes, W]`` node vectors of one graph, and the state."""
        joined = jnp.concatenate([h, mean_neighbours(h, graph)], axis=1)
        if isinstance(self.linear, SpectralNormalization):
            factor, state = self.linear.scale(state)
            update = (joined @ self.linear.linear.weight.T) * factor
            if self.linear.linear.bias is not None:
                update = update + self.linear.linear.bias[None]
        else:
            update = jax.vmap(self.linear)(joined)
        mask = graph.node_mask.astype(h.dtype)[:, None]
        return (h + jax.nn.relu(update)) * mask, state
