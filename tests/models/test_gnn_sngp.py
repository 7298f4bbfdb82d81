"""GNN-SNGP: padded message passing against dense references, invariances, the data."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.gnn_sngp import (
    ATOMS,
    GNNSNGPClassifier,
    mean_neighbours,
    pad_graphs,
    synthetic_molecules,
)


def first(graphs):
    return jax.tree.map(lambda a: a[0], graphs)


def random_graph(seed, nodes=7, edges=9, features=6):
    rng = np.random.default_rng(seed)
    pairs = set()
    while len(pairs) < edges:
        u, v = sorted(rng.choice(nodes, 2, replace=False))
        pairs.add((int(u), int(v)))
    return rng.normal(size=(nodes, features)).astype(np.float32), np.array(sorted(pairs))


def test_mean_aggregation_matches_the_dense_adjacency():
    x, edges = random_graph(0)
    graph = first(pad_graphs([x], [edges], 10, 24))
    adjacency = np.zeros((7, 7))
    adjacency[edges[:, 0], edges[:, 1]] = adjacency[edges[:, 1], edges[:, 0]] = 1
    h = jnp.asarray(np.random.default_rng(1).normal(size=(10, 3)), jnp.float32)
    degree = np.maximum(adjacency.sum(1, keepdims=True), 1)
    expected = adjacency @ np.asarray(h[:7]) / degree
    np.testing.assert_allclose(mean_neighbours(h, graph)[:7], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean_neighbours(h, graph)[7:], 0.0)  # padding gets nothing


@pytest.fixture(scope="module")
def model():
    return eqx.nn.make_with_state(GNNSNGPClassifier)(
        6, 2, width=8, depth=2, num_features=32, key=jax.random.key(0)
    )


def test_padding_and_node_order_do_not_change_the_prediction(model):
    network, state = model
    network = eqx.nn.inference_mode(network)
    x, edges = random_graph(2)
    base, _ = network(first(pad_graphs([x], [edges], 7, 18)), state)
    padded, _ = network(first(pad_graphs([x], [edges], 12, 40)), state)
    order = np.random.default_rng(3).permutation(7)
    inverse = np.argsort(order)
    permuted, _ = network(first(pad_graphs([x[order]], [inverse[edges]], 9, 18)), state)
    np.testing.assert_allclose(padded, base, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(permuted, base, rtol=1e-5, atol=1e-6)
    # a different graph (one bond moved) does change it: the check can fail
    moved = edges.copy()
    moved[0] = [0, 6] if tuple(edges[0]) != (0, 6) else [1, 6]
    other, _ = network(first(pad_graphs([x], [moved], 7, 18)), state)
    assert not np.allclose(other, base, rtol=1e-5, atol=1e-6)


def toxic_by_structure(nodes, edges):
    """The label rule from the graph alone: an N with two O neighbours, or S and Cl."""
    atom = [ATOMS[i] for i in nodes[:, : len(ATOMS)].argmax(1)]
    neighbours = {i: [] for i in range(len(atom))}
    for u, v in edges:
        neighbours[u].append(atom[v])
        neighbours[v].append(atom[u])
    nitro = any(a == "N" and neighbours[i].count("O") >= 2 for i, a in enumerate(atom))
    return int(nitro or ("S" in atom and "Cl" in atom))


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"substituents": (6, 9)}, {"scaffolds": ("furan", "naphthalene", "cycloheptane")}],
)
def test_molecule_labels_follow_the_structural_rule(kwargs):
    molecules = synthetic_molecules(300, seed=1, **kwargs)
    expected = [
        toxic_by_structure(n, e) for n, e in zip(molecules.nodes, molecules.edges, strict=True)
    ]
    np.testing.assert_array_equal(molecules.labels, expected)
    assert 0.15 < molecules.labels.mean() < 0.85
    for nodes, edges in zip(molecules.nodes, molecules.edges, strict=True):
        assert len(edges) >= len(nodes) - 1  # connected: at least a spanning tree
        assert edges.max() < len(nodes)


def test_bad_graphs_are_named():
    x, edges = random_graph(0)
    with pytest.raises(ValueError, match=r"graph 0 has 7 nodes and 18 directed edges.*raise"):
        pad_graphs([x], [edges], 5, 18)
    with pytest.raises(ValueError, match=r"edge to node 9 but only nodes 0\.\.6"):
        pad_graphs([x], [np.array([[0, 9]])], 10, 18)
    with pytest.raises(ValueError, match="unknown scaffolds"):
        synthetic_molecules(3, seed=0, scaffolds=("cubane",))
    network, state = eqx.nn.make_with_state(GNNSNGPClassifier)(
        5, 2, width=8, depth=1, num_features=8, key=jax.random.key(0)
    )
    with pytest.raises(ValueError, match=r"built for 5 node features"):
        network(first(pad_graphs([x], [edges], 7, 18)), state)
