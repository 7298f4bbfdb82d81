"""A synthetic molecular-graph benchmark with a structural label and distribution shifts."""

from __future__ import annotations

import dataclasses

import numpy as np

ATOMS = ("C", "N", "O", "S", "Cl")
"""Atom types; node features are their one-hot codes followed by an in-ring flag."""

RINGS = {
    "benzene": "CCCCCC",
    "pyridine": "NCCCCC",
    "furan": "OCCCC",
    "thiophene": "SCCCC",
    "cycloheptane": "CCCCCCC",
}
"""Scaffolds: ring atoms in order (ring bonds join neighbours and the ends);
``naphthalene`` (two fused benzene rings) is built separately."""

SUBSTITUENTS = {
    # name: (atoms, bonds inside the group, attachment atom); atom 0 of a group bonds to the
    # scaffold
    "methyl": ("C", []),
    "ethyl": ("CC", [(0, 1)]),
    "hydroxyl": ("O", []),
    "amine": ("N", []),
    "carbonyl": ("CO", [(0, 1)]),
    "carboxyl": ("COO", [(0, 1), (0, 2)]),  # like nitro, but centred on carbon: not toxic
    "nitro": ("NOO", [(0, 1), (0, 2)]),
    "chloro": ("Cl", []),
    "thiol": ("S", []),
}
WEIGHTS = {
    "methyl": 3,
    "ethyl": 2,
    "hydroxyl": 2,
    "amine": 2,
    "carbonyl": 2,
    "carboxyl": 2,
    "nitro": 2,
    "chloro": 3,
    "thiol": 3,
}


@dataclasses.dataclass(frozen=True)
class Molecules:
    """Generated molecules.

    Attributes:
        nodes: per molecule, ``[n_i, 6]`` node features (atom one-hot, in-ring flag).
        edges: per molecule, ``[m_i, 2]`` bonds.
        labels: ``[G]`` 1 for "toxic": a nitro group, or a thiol and a chloro group together.

    Example:
        >>> molecules = synthetic_molecules(4, seed=0)
        >>> len(molecules.nodes), molecules.nodes[0].shape[1], molecules.labels.shape
        (4, 6, (4,))
    """

    nodes: list
    edges: list
    labels: np.ndarray


def _ring(name: str) -> tuple[list[str], list[tuple[int, int]]]:
    if name == "naphthalene":
        atoms = list("CCCCCCCCCC")
        bonds = [(i, i + 1) for i in range(5)] + [(5, 0)]
        bonds += [(4, 6), (6, 7), (7, 8), (8, 9), (9, 5)]
        return atoms, bonds
    atoms = list(RINGS[name])
    return atoms, [(i, (i + 1) % len(atoms)) for i in range(len(atoms))]


def _molecule(rng, scaffold: str, count: int):
    atoms, bonds = _ring(scaffold)
    ring_size = len(atoms)
    groups = []
    names = list(WEIGHTS)
    probabilities = np.array([WEIGHTS[n] for n in names], float)
    free = list(rng.permutation(ring_size))
    for _ in range(count):
        name = names[rng.choice(len(names), p=probabilities / probabilities.sum())]
        spelled, group_bonds = SUBSTITUENTS[name]
        group_atoms = ["Cl"] if spelled == "Cl" else list(spelled)
        # on a free ring atom, or (when the ring is full) on a carbon of an earlier group
        carbons = [i for i in range(ring_size, len(atoms)) if atoms[i] == "C"]
        if free:
            anchor = int(free.pop())
        elif carbons:
            anchor = int(rng.choice(carbons))
        else:
            break
        start = len(atoms)
        atoms += group_atoms
        bonds += [(anchor, start)] + [(start + a, start + b) for a, b in group_bonds]
        groups.append(name)
    nodes = np.zeros((len(atoms), len(ATOMS) + 1), np.float32)
    nodes[np.arange(len(atoms)), [ATOMS.index(a) for a in atoms]] = 1.0
    nodes[:ring_size, -1] = 1.0
    toxic = "nitro" in groups or ("thiol" in groups and "chloro" in groups)
    return nodes, np.array(bonds, np.int32), int(toxic)


def synthetic_molecules(
    count: int,
    *,
    seed: int,
    scaffolds: tuple[str, ...] = ("benzene", "pyridine"),
    substituents: tuple[int, int] = (1, 4),
) -> Molecules:
    """Random molecules from a motif grammar: a ring scaffold with substituent groups.

    Each molecule picks a scaffold (from ``RINGS`` or ``"naphthalene"``), then a number of
    substituents uniformly in ``substituents`` (inclusive), each drawn from ``SUBSTITUENTS``
    and bonded to a free ring atom (or, once the ring is full, to a carbon of an earlier
    group). The label is a structural alert: toxic if a nitro group (N bonded to two O) is
    present, or a thiol (S) and a chloro (Cl) group together — so it needs the atom types of
    neighbours and a global combination, and a carboxyl group (C bonded to two O) is a near
    miss. Distribution shifts keep the rule and change the graphs: more substituents
    (larger molecules) or scaffolds never seen in training.

    Args:
        count: the number of molecules.
        seed: the random seed.
        scaffolds: the scaffolds to draw from.
        substituents: the inclusive range of substituent counts.

    Returns:
        ``Molecules(nodes, edges, labels)``.

    Example:
        >>> molecules = synthetic_molecules(500, seed=0)
        >>> round(float(molecules.labels.mean()), 1)  # the fraction labelled toxic
        0.3
        >>> molecules.nodes[0].shape[1]
        6
    """
    unknown = [s for s in scaffolds if s not in RINGS and s != "naphthalene"]
    if unknown:
        raise ValueError(f"unknown scaffolds {unknown}; choose from {[*RINGS, 'naphthalene']}")
    rng = np.random.default_rng(seed)
    low, high = substituents
    nodes, edges, labels = [], [], []
    for _ in range(count):
        scaffold = scaffolds[rng.integers(len(scaffolds))]
        n, e, y = _molecule(rng, scaffold, int(rng.integers(low, high + 1)))
        nodes.append(n)
        edges.append(e)
        labels.append(y)
    return Molecules(nodes, edges, np.array(labels, np.int32))
