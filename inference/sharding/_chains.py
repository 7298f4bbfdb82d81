"""MCMC chains split across the devices of a mesh axis ``"chains"``.

Chains are independent, so each device runs its own block of chains with ``jax.vmap`` inside
``jax.shard_map`` and no device ever waits for another. This matters for kernels of dynamic
length (NUTS, anything with a ``while_loop``): under GSPMD (``jax.jit`` with sharded inputs)
the loop's "is any chain still running?" test becomes an all-reduce at every iteration, which
is several times slower (see DESIGN.md, section 5).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import Mesh, PartitionSpec

from inference.sharding._mesh import check_divisible, gather, shard

CHAINS = "chains"
"""The mesh axis that chains are split along."""


@dataclasses.dataclass(frozen=True)
class ChainPlacement:
    """Where the chains of an MCMC run live: one device (``mesh=None``) or a mesh axis.

    ``inference.mcmc.run(..., mesh=mesh)`` uses it; use it directly to run your own loop of a
    kernel over many chains.

    Attributes:
        mesh: a mesh with an axis ``"chains"`` (other axes, if any, hold copies), or ``None``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, normal, select
        >>> from inference import mcmc
        >>> from inference.sharding import make_mesh
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 1.0) @ "y"
        >>> kernel = mcmc.mh(model, select("mu"))
        >>> placement = ChainPlacement(make_mesh(axis_names=("chains",)))
        >>> chains = 4 * jax.device_count()
        >>> traces = jax.vmap(lambda k: model.generate(k, {"y": 1.0}, ())[0])(
        ...     jax.random.split(jax.random.key(0), chains))
        >>> step = jax.jit(placement.map(jax.vmap(kernel.step)))
        >>> keys = jax.random.split(jax.random.key(1), chains)
        >>> traces, info = step(*placement.place((keys, traces)))
        >>> info.acceptance_rate.sharding.spec
        P('chains',)
    """

    mesh: Mesh | None = None

    def check(self, num_chains: int) -> None:
        """Raises a ``ValueError`` unless ``num_chains`` splits evenly over the devices."""
        if self.mesh is not None:
            check_divisible(num_chains, self.mesh, CHAINS, "num_chains")

    def map(self, batched: Callable[..., Any]) -> Callable[..., Any]:
        """``batched`` (vectorised over a leading chain axis of every argument and output),
        run per device on its block of chains when there is a mesh."""
        if self.mesh is None:
            return batched
        # check_vma=False: blackjax's loops mix per-chain and replicated values in ways the
        # varying-manual-axes checker rejects, although every chain is computed locally.
        return jax.shard_map(
            batched,
            mesh=self.mesh,
            in_specs=PartitionSpec(CHAINS),
            out_specs=PartitionSpec(CHAINS),
            check_vma=False,
        )

    def place(self, tree: Any) -> Any:
        """``tree`` (leading chain axis) split along the ``"chains"`` axis of the mesh."""
        return tree if self.mesh is None else shard(tree, self.mesh, CHAINS)

    def fetch(self, tree: Any) -> Any:
        """``tree`` as host arrays, gathered across processes if it spans several."""
        return gather(tree)


ONE_DEVICE = ChainPlacement()
"""All chains in one array, vectorised with ``jax.vmap``."""
