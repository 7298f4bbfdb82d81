"""Data-parallel training: the batch split along a mesh axis ``"data"``, parameters copied.

``inference.vi.fit(..., sharding=DataParallel(mesh))`` compiles its training step with these
placements and lets the compiler (GSPMD) insert the communication: each device evaluates the
objective on its rows of the batch, and the sums over rows in the objective (and so the
gradients) become all-reduces. ``ShardedWeightUpdate(mesh)`` also splits the optimizer state
and the update computation across the replicas (Xu et al. 2020, *Automatic Cross-Replica
Sharding of Weight Update in Data-Parallel Training*): the gradient all-reduce becomes a
reduce-scatter, each device updates its ``1/R`` of every parameter with its ``1/R`` of the
optimizer state, and an all-gather rebuilds the parameters. The communication is that of one
all-reduce, and the optimizer state takes ``1/R`` of the memory per device.

The objective computed this way is the unsharded one; its sums over rows are added in another
order, so values and gradients agree with one device to float rounding.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from inference.sharding._mesh import axis_size, check_divisible, put

DATA = "data"
"""The mesh axis that batches are split along."""


@dataclasses.dataclass(frozen=True)
class SingleDevice:
    """No sharding: every method leaves its argument as it is."""

    def check_batch(self, batch_size: int | None, data: Any) -> None:
        pass

    def place_data(self, data: Any) -> Any:
        return data

    def place_parameters(self, parameters: Any) -> Any:
        return parameters

    def place_optimizer_state(self, state: Any) -> Any:
        return state

    def constrain_batch(self, batch: Any) -> Any:
        return batch

    def constrain_gradients(self, gradients: Any) -> Any:
        return gradients

    def constrain_parameters(self, parameters: Any) -> Any:
        return parameters

    def constrain_optimizer_state(self, state: Any) -> Any:
        return state


SINGLE_DEVICE = SingleDevice()
"""The placement of ``fit`` without a mesh."""


@dataclasses.dataclass(frozen=True)
class DataParallel(SingleDevice):
    """Batches split along the mesh axis ``"data"``; parameters and optimizer state copied.

    Pass it to ``inference.vi.fit(..., sharding=DataParallel(mesh))``. The data rows are
    split across the devices when their number is a multiple of the axis size (otherwise
    every device holds all rows); each step's batch (``batch_size`` rows, or all of ``data``)
    is split, so its size must be a multiple of the axis size.

    Attributes:
        mesh: a mesh with an axis ``"data"``.

    Example:
        >>> from inference.sharding import make_mesh
        >>> DataParallel(make_mesh(axis_names=("data",))).mesh.axis_names
        ('data',)
    """

    mesh: Mesh

    def __post_init__(self) -> None:
        axis_size(self.mesh, DATA)

    def _sharding(self, spec: PartitionSpec) -> NamedSharding:
        return NamedSharding(self.mesh, spec)

    def _rows(self, tree: Any) -> Any:
        return jax.tree.map(lambda _: self._sharding(PartitionSpec(DATA)), tree)

    def _copies(self, tree: Any) -> Any:
        return jax.tree.map(lambda _: self._sharding(PartitionSpec()), tree)

    def check_batch(self, batch_size: int | None, data: Any) -> None:
        if data is None:
            raise ValueError(
                "data parallelism splits the data along the mesh axis 'data'; give data= "
                "(and batch_size=) to fit"
            )
        rows = batch_size if batch_size is not None else jax.tree.leaves(data)[0].shape[0]
        what = "batch_size" if batch_size is not None else "the number of data rows"
        check_divisible(rows, self.mesh, DATA, what)

    def place_data(self, data: Any) -> Any:
        rows = jax.tree.leaves(data)[0].shape[0]
        split = rows % axis_size(self.mesh, DATA) == 0
        return put(data, self._rows(data) if split else self._copies(data))

    def place_parameters(self, parameters: Any) -> Any:
        return put(parameters, self._copies(parameters))

    def place_optimizer_state(self, state: Any) -> Any:
        return put(state, self._copies(state))

    def constrain_batch(self, batch: Any) -> Any:
        return jax.lax.with_sharding_constraint(batch, self._rows(batch))

    def constrain_parameters(self, parameters: Any) -> Any:
        return jax.lax.with_sharding_constraint(parameters, self._copies(parameters))

    def constrain_optimizer_state(self, state: Any) -> Any:
        return jax.lax.with_sharding_constraint(state, self._copies(state))


@dataclasses.dataclass(frozen=True)
class ShardedWeightUpdate(DataParallel):
    """``DataParallel`` with the optimizer state and the weight update split across replicas.

    Every array of the optimizer state (and the gradient and update of every parameter) is
    split along its first axis whose length is a multiple of the size of ``"data"``; arrays
    without one (scalars, step counts, small odd shapes) stay copied. The parameters are
    copied on every device for the forward and backward passes, as with ``DataParallel``.
    This is the weight-update sharding of Xu et al. (2020); it matters when the optimizer
    state is large: mean-field VI keeps a location and a scale per weight and Adam two
    moments for each, four times the model.

    Attributes:
        mesh: a mesh with an axis ``"data"``.
    """

    def _split(self, tree: Any) -> Any:
        size = axis_size(self.mesh, DATA)

        def spec(leaf: Any) -> NamedSharding:
            shape = getattr(leaf, "shape", ())
            axes = [i for i, n in enumerate(shape) if n % size == 0]
            if not axes:
                return self._sharding(PartitionSpec())
            return self._sharding(PartitionSpec(*([None] * axes[0]), DATA))

        return jax.tree.map(spec, tree)

    def place_optimizer_state(self, state: Any) -> Any:
        return put(state, self._split(state))

    def constrain_gradients(self, gradients: Any) -> Any:
        return jax.lax.with_sharding_constraint(gradients, self._split(gradients))

    def constrain_optimizer_state(self, state: Any) -> Any:
        return jax.lax.with_sharding_constraint(state, self._split(state))
