"""Graph classifiers: a message-passing network with an SNGP or a dense output layer."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from models.gnn_sngp._graphs import Graph
from models.gnn_sngp._message_passing import MessagePassingLayer
from models.sngp._random_features import RandomFeatureGaussianProcess
from models.training._fixed import Fixed


class GraphNetwork(eqx.Module):
    """Node features → a fixed random embedding → ``depth`` message-passing layers → the
    mean over real nodes: one ``[width]`` vector per graph.

    Args:
        node_features: the node feature size ``F``.
        width: the node vector size.
        depth: the number of ``MessagePassingLayer``s.
        norm_bound: their spectral norm bound, or ``None`` for none.
        key: the PRNG key.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp, numpy as np
        >>> from models.gnn_sngp import pad_graphs
        >>> network, state = eqx.nn.make_with_state(GraphNetwork)(
        ...     3, width=8, depth=1, key=jax.random.key(0))
        >>> network = eqx.nn.inference_mode(network)  # the state is read, not advanced
        >>> path = ([np.eye(3, dtype=np.float32)], [np.array([[0, 1], [1, 2]])])
        >>> small, large = pad_graphs(*path, 3, 4), pad_graphs(*path, 6, 10)
        >>> h, _ = network(jax.tree.map(lambda a: a[0], small), state)
        >>> h_padded, _ = network(jax.tree.map(lambda a: a[0], large), state)
        >>> h.shape, bool(jnp.allclose(h, h_padded, atol=1e-6))  # padding changes nothing
        ((8,), True)
    """

    embedding: Fixed
    layers: tuple[MessagePassingLayer, ...]

    def __init__(
        self,
        node_features: int,
        *,
        width: int = 64,
        depth: int = 3,
        norm_bound: float | None = 0.6,
        key: jax.Array,
    ):
        keys = jax.random.split(key, depth + 1)
        self.embedding = Fixed(
            jax.random.normal(keys[0], (node_features, width)) / math.sqrt(width)
        )
        self.layers = tuple(MessagePassingLayer(width, norm_bound, key=k) for k in keys[1:])

    def __call__(self, graph: Graph, state: eqx.nn.State) -> tuple[jax.Array, eqx.nn.State]:
        """The ``[width]`` representation of one graph, and the state."""
        if graph.nodes.ndim != 2 or graph.nodes.shape[1] != self.embedding.value.shape[0]:
            raise ValueError(
                f"the graph's nodes have shape {graph.nodes.shape}, but the network was built "
                f"for {self.embedding.value.shape[0]} node features; give one graph "
                f"([max_nodes, {self.embedding.value.shape[0]}]) and vmap over a batch"
            )
        mask = graph.node_mask.astype(graph.nodes.dtype)
        h = (graph.nodes @ self.embedding.value) * mask[:, None]
        for layer in self.layers:
            h, state = layer(h, graph, state)
        return jnp.sum(h, 0) / jnp.maximum(jnp.sum(mask), 1.0), state


class GNNSNGPClassifier(eqx.Module):
    """GNN-SNGP (Han et al., 2021): a spectrally normalized message-passing network with
    SNGP's random-feature Gaussian-process output layer. Train it with
    ``models.training.train`` on padded graphs, then ``sngp.fit_laplace`` and
    ``sngp.predict`` as for ``SNGPClassifier``.

    Args:
        node_features: the node feature size.
        num_classes: the number of classes.
        width: the node vector size.
        depth: the number of message-passing layers.
        norm_bound: the spectral norm bound ``c``.
        num_features: random Fourier features ``D``.
        length_scale: the RBF kernel length scale.
        key: the PRNG key.

    Example:
        >>> import equinox as eqx, jax, numpy as np
        >>> from models.gnn_sngp import pad_graphs
        >>> graphs = pad_graphs([np.eye(3, dtype=np.float32)], [np.array([[0, 1], [1, 2]])], 4, 6)
        >>> model, state = eqx.nn.make_with_state(GNNSNGPClassifier)(
        ...     3, 2, width=8, depth=1, num_features=16, key=jax.random.key(0))
        >>> logits, state = model(jax.tree.map(lambda a: a[0], graphs), state)
        >>> logits.shape
        (2,)
    """

    body: GraphNetwork
    head: RandomFeatureGaussianProcess

    def __init__(
        self,
        node_features: int,
        num_classes: int,
        *,
        width: int = 64,
        depth: int = 3,
        norm_bound: float = 0.6,
        num_features: int = 1024,
        length_scale: float = 1.0,
        key: jax.Array,
    ):
        body_key, head_key = jax.random.split(key)
        self.body = GraphNetwork(
            node_features, width=width, depth=depth, norm_bound=norm_bound, key=body_key
        )
        self.head = RandomFeatureGaussianProcess(
            width, num_classes, num_features=num_features, length_scale=length_scale, key=head_key
        )

    def random_features(
        self, graph: Graph, state: eqx.nn.State, *, key: jax.Array | None = None
    ) -> tuple[jax.Array, eqx.nn.State]:
        """The ``[D]`` random features of one graph, and the state."""
        h, state = self.body(graph, state)
        return self.head.features(h), state

    def __call__(
        self, graph: Graph, state: eqx.nn.State, *, key: jax.Array | None = None
    ) -> tuple[jax.Array, eqx.nn.State]:
        """The ``[K]`` logits of one graph, and the state."""
        features, state = self.random_features(graph, state)
        return features @ self.head.output, state


class GNNClassifier(eqx.Module):
    """The deterministic GNN baseline: ``GNNSNGPClassifier``'s network without spectral
    normalization and with a dense output layer.

    Args:
        node_features: the node feature size.
        num_classes: the number of classes.
        width: the node vector size.
        depth: the number of message-passing layers.
        key: the PRNG key.

    Example:
        >>> import equinox as eqx, jax, numpy as np
        >>> from models.gnn_sngp import pad_graphs
        >>> graphs = pad_graphs([np.eye(3, dtype=np.float32)], [np.array([[0, 1]])], 4, 6)
        >>> model, state = eqx.nn.make_with_state(GNNClassifier)(3, 2, width=8, depth=1,
        ...                                                      key=jax.random.key(0))
        >>> model(jax.tree.map(lambda a: a[0], graphs), state)[0].shape
        (2,)
    """

    body: GraphNetwork
    head: eqx.nn.Linear

    def __init__(
        self,
        node_features: int,
        num_classes: int,
        *,
        width: int = 64,
        depth: int = 3,
        key: jax.Array,
    ):
        body_key, head_key = jax.random.split(key)
        self.body = GraphNetwork(
            node_features, width=width, depth=depth, norm_bound=None, key=body_key
        )
        self.head = eqx.nn.Linear(width, num_classes, key=head_key)

    def __call__(
        self, graph: Graph, state: eqx.nn.State, *, key: jax.Array | None = None
    ) -> tuple[jax.Array, eqx.nn.State]:
        """The ``[K]`` logits of one graph, and the state."""
        h, state = self.body(graph, state)
        return self.head(h), state
