"""Meshes and placement: which device holds which slice of a pytree.

A ``Mesh`` arranges devices in a grid with named axes (``"chains"``, ``"particles"``,
``"data"``). Placing a pytree is choosing, per leaf, which mesh axis its leading axis is split
along (``shard``) or that every device holds all of it (``replicate``). The same calls work on
one device (every axis of size 1), on simulated CPU devices, on accelerators, and on a global
mesh of several processes after ``jax.distributed.initialize``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec


def make_mesh(
    axis_sizes: Sequence[int] | None = None,
    axis_names: Sequence[str] = ("chains",),
    *,
    devices: Sequence[Any] | None = None,
) -> Mesh:
    """A mesh over the devices, with ``Auto`` axes.

    ``jax.make_mesh`` gives ``Explicit`` axes by default; blackjax kernels and our programs
    are written for ``Auto`` axes (the compiler propagates shardings), so every axis here is
    ``AxisType.Auto``.

    Args:
        axis_sizes: devices along each axis; default one axis over every device (in a
            multi-process run, every device of every process).
        axis_names: the axes' names, e.g. ``("chains",)`` or ``("data",)``.
        devices: the devices to use (default ``jax.devices()``).

    Returns:
        A ``jax.sharding.Mesh``.

    Raises:
        ValueError: if ``axis_sizes`` is missing for a mesh of several axes, the names and
            sizes differ in number, or the sizes need more devices than there are.

    Example:
        >>> import jax
        >>> mesh = make_mesh(axis_names=("particles",))
        >>> mesh.shape["particles"] == jax.device_count()
        True
    """
    devices = list(jax.devices() if devices is None else devices)
    names = tuple(axis_names)
    if axis_sizes is None:
        if len(names) != 1:
            raise ValueError(
                f"give axis_sizes for a mesh with the {len(names)} axes {names}; only a "
                "one-axis mesh defaults to all devices"
            )
        axis_sizes = (len(devices),)
    sizes = tuple(int(s) for s in axis_sizes)
    if len(sizes) != len(names):
        raise ValueError(f"axis_sizes {sizes} and axis_names {names} differ in length")
    if int(np.prod(sizes)) > len(devices):
        raise ValueError(
            f"a mesh of shape {dict(zip(names, sizes, strict=True))} needs {int(np.prod(sizes))} "
            f"devices, but {len(devices)} are available (on CPU, simulate more with "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax)"
        )
    return jax.make_mesh(sizes, names, axis_types=(AxisType.Auto,) * len(names), devices=devices)


def axis_size(mesh: Mesh, axis: str) -> int:
    """The number of devices along ``axis``, with an error naming the mesh's axes if absent."""
    if axis not in mesh.shape:
        raise ValueError(
            f"the mesh has axes {tuple(mesh.shape)}, not {axis!r}; build it with "
            f"make_mesh(axis_names=({axis!r},)) or name one of its axes {axis!r}"
        )
    return int(mesh.shape[axis])


def check_divisible(count: int, mesh: Mesh, axis: str, what: str) -> int:
    """``count // devices along axis``; a ``ValueError`` naming ``what`` if it does not divide."""
    devices = axis_size(mesh, axis)
    if count % devices:
        raise ValueError(
            f"{what}={count} is not divisible by the {devices} devices of mesh axis {axis!r}; "
            f"use a multiple of {devices}"
        )
    return count // devices


def shard(tree: Any, mesh: Mesh, axis: str) -> Any:
    """Places every leaf of ``tree`` with its leading axis split along the mesh ``axis``.

    The leaves must have the same value on every process (in a multi-process run), as arrays
    computed from the same key and data are.

    Args:
        tree: a pytree of arrays with a common leading axis, divisible by the axis size.
        mesh: the mesh.
        axis: the mesh axis to split the leading axis along.

    Returns:
        The pytree, each leaf a ``jax.Array`` with sharding
        ``NamedSharding(mesh, PartitionSpec(axis))``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> mesh = make_mesh(axis_names=("chains",))
        >>> x = shard(jnp.zeros((4 * jax.device_count(), 3)), mesh, "chains")
        >>> x.sharding.spec
        P('chains',)
    """
    axis_size(mesh, axis)
    return put(tree, NamedSharding(mesh, PartitionSpec(axis)))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a full copy of every leaf of ``tree`` on every device of ``mesh``.

    Example:
        >>> import jax.numpy as jnp
        >>> x = replicate(jnp.ones(3), make_mesh())
        >>> x.sharding.is_fully_replicated
        True
    """
    return put(tree, NamedSharding(mesh, PartitionSpec()))


def put(tree: Any, shardings: Any) -> Any:
    """``jax.device_put(tree, shardings)``, also for process-local values onto a mesh that
    spans processes (``shardings``: one sharding, or a pytree of them like ``tree``).

    There, each process builds its own shards from its copy of the value
    (``jax.make_array_from_callback``); PRNG key arrays go through their key data.
    """
    if isinstance(shardings, jax.sharding.Sharding):
        shardings = jax.tree.map(lambda _: shardings, tree)

    def one(leaf: Any, sharding: jax.sharding.Sharding) -> Any:
        if sharding.is_fully_addressable or (
            isinstance(leaf, jax.Array) and not leaf.is_fully_addressable
        ):
            return jax.device_put(leaf, sharding)  # within one process, or already global
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = one(jax.random.key_data(leaf), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(one, tree, shardings)


def gather(tree: Any) -> Any:
    """The whole value of every leaf as a numpy array, on every process.

    Within one process this is ``jax.device_get``; a leaf split across processes (a global
    mesh after ``jax.distributed.initialize``) is first all-gathered, which every process must
    call together.

    Example:
        >>> import jax.numpy as jnp
        >>> mesh = make_mesh(axis_names=("chains",))
        >>> gather(shard(jnp.arange(mesh.size * 2.0), mesh, "chains")).shape == (mesh.size * 2,)
        True
    """

    def get(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                data = multihost_utils.process_allgather(jax.random.key_data(leaf), tiled=True)
                return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return jax.device_get(leaf)

    return jax.tree.map(get, tree)
