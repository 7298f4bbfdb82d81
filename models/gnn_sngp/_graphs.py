"""Graphs padded to a fixed size, so that batches of them are arrays."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import numpy as np


class Graph(eqx.Module):
    """A graph padded to ``max_nodes`` nodes and ``max_edges`` directed edges.

    Edge ``e`` sends from node ``senders[e]`` to node ``receivers[e]``; an undirected bond
    is two edges. Padding nodes and edges are marked ``False`` in the masks (padding edges
    point at node 0 and are ignored). A data set or a batch is a ``Graph`` whose arrays have
    a leading axis over graphs, built by ``pad_graphs``; models are called on one graph and
    vmapped over the batch.

    Attributes:
        nodes: ``[max_nodes, F]`` node features.
        senders: ``[max_edges]`` integer source nodes.
        receivers: ``[max_edges]`` integer target nodes.
        node_mask: ``[max_nodes]`` which nodes are real.
        edge_mask: ``[max_edges]`` which edges are real.

    Example:
        >>> import jax, numpy as np
        >>> batch = pad_graphs([np.eye(2, dtype=np.float32)], [np.array([[0, 1]])], 3, 4)
        >>> batch.nodes.shape  # one graph, 3 node slots, 2 features
        (1, 3, 2)
        >>> graph = jax.tree.map(lambda a: a[0], batch)  # what a model is called on
        >>> graph.senders, graph.edge_mask
        (Array([0, 1, 0, 0], dtype=int32), Array([ True,  True, False, False], dtype=bool))
    """

    nodes: jax.Array
    senders: jax.Array
    receivers: jax.Array
    node_mask: jax.Array
    edge_mask: jax.Array


def pad_graphs(
    nodes: Sequence[np.ndarray],
    edges: Sequence[np.ndarray],
    max_nodes: int,
    max_edges: int,
) -> Graph:
    """Stacks graphs of different sizes into one padded ``Graph`` with a leading axis.

    Args:
        nodes: per graph, a ``[n_i, F]`` array of node features.
        edges: per graph, an ``[m_i, 2]`` integer array of undirected edges ``(u, v)``;
            both directions are added.
        max_nodes: the padded node count (at least every ``n_i``).
        max_edges: the padded directed-edge count (at least every ``2 m_i``).

    Returns:
        A ``Graph`` with arrays ``[G, max_nodes, F]``, ``[G, max_edges]``, ...

    Raises:
        ValueError: if a graph does not fit the padding, or an edge names a node the graph
            does not have.

    Example:
        >>> import numpy as np
        >>> triangle = np.eye(3, dtype=np.float32)
        >>> graph = pad_graphs([triangle], [np.array([[0, 1], [1, 2], [2, 0]])], 4, 8)
        >>> graph.senders[0]
        Array([0, 1, 2, 1, 2, 0, 0, 0], dtype=int32)
        >>> graph.node_mask[0]
        Array([ True,  True,  True, False], dtype=bool)
    """
    if len(nodes) != len(edges):
        raise ValueError(f"{len(nodes)} node arrays but {len(edges)} edge arrays; give one each")
    features = nodes[0].shape[1]
    count = len(nodes)
    x = np.zeros((count, max_nodes, features), np.float32)
    senders = np.zeros((count, max_edges), np.int32)
    receivers = np.zeros((count, max_edges), np.int32)
    node_mask = np.zeros((count, max_nodes), bool)
    edge_mask = np.zeros((count, max_edges), bool)
    for i, (n, e) in enumerate(zip(nodes, edges, strict=True)):
        e = np.asarray(e, np.int32).reshape(-1, 2)
        if n.shape[0] > max_nodes or 2 * e.shape[0] > max_edges:
            raise ValueError(
                f"graph {i} has {n.shape[0]} nodes and {2 * e.shape[0]} directed edges, more "
                f"than the padding ({max_nodes} nodes, {max_edges} edges); raise max_nodes or "
                "max_edges"
            )
        if e.size and (e.min() < 0 or e.max() >= n.shape[0]):
            raise ValueError(
                f"graph {i} has an edge to node {e.max() if e.max() >= n.shape[0] else e.min()} "
                f"but only nodes 0..{n.shape[0] - 1}"
            )
        directed = np.concatenate([e, e[:, ::-1]])
        x[i, : n.shape[0]] = n
        senders[i, : len(directed)] = directed[:, 0]
        receivers[i, : len(directed)] = directed[:, 1]
        node_mask[i, : n.shape[0]] = True
        edge_mask[i, : len(directed)] = True
    return Graph(*(jax.numpy.asarray(a) for a in (x, senders, receivers, node_mask, edge_mask)))
