"""SMC populations whose particles are split across the devices of a mesh axis.

Both run inside ``jax.shard_map``; each device holds ``n`` of the ``N = n R`` particles
(``R`` devices along the axis), the block ``[r n, (r + 1) n)`` on device ``r``. They give each
particle the key it has in the unsharded algorithm (row ``i`` of ``split(key, N)``), compute
the ESS and the log mean weight with scalar all-reduces (``_collectives``), and differ in
resampling:

* ``GlobalResampling``: the decision uses the global ESS; when it resamples, every device
  gathers the ``N`` log weights and the ``N`` particles (``all_gather``) and draws the same
  ``N`` ancestors as the unsharded scheme from the same weights, keeping its own block of
  them, so the filter stays the unsharded one. Steps without resampling communicate two
  scalars.
* ``IslandResampling``: each device is an island that resamples its own ``n`` particles when
  its own ESS is below ``ess_threshold * n`` and sets their weights to the island's log mean
  weight, so the sum of all weights, hence the estimate of the marginal likelihood, is kept
  (the island particle filter of Vergé, Dubarry, Del Moral and Moulines, 2015). No particle
  ever crosses devices; with few particles per island the variance grows.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from inference.sharding import _collectives
from inference.smc._resampling import (
    ResamplingScheme,
    effective_sample_size,
    log_mean_exp,
    resample_where,
    systematic,
)


@dataclasses.dataclass(frozen=True)
class Islands:
    """Resampling within each device's block of particles ("islands"), never across devices.

    Pass it as the ``resampling`` of a sharded SMC algorithm in place of a scheme:
    ``resampling=Islands(systematic)``. The estimate of the marginal likelihood stays
    unbiased; particles never move between devices, so resampling needs no communication.

    Attributes:
        scheme: the resampling scheme used within each island.
    """

    scheme: ResamplingScheme = systematic


@dataclasses.dataclass(frozen=True)
class _Sharded:
    axis_name: str

    def _block(self, count: int) -> jax.Array:
        return jax.lax.axis_index(self.axis_name) * count

    def keys(self, key: jax.Array, count: int) -> jax.Array:
        every = jax.random.split(key, count * jax.lax.axis_size(self.axis_name))
        return jax.lax.dynamic_slice_in_dim(every, self._block(count), count)

    def effective_sample_size(self, log_weights: jax.Array) -> jax.Array:
        return _collectives.effective_sample_size(log_weights, self.axis_name)

    def log_mean_exp(self, log_weights: jax.Array) -> jax.Array:
        return _collectives.log_mean_exp(log_weights, self.axis_name)


@dataclasses.dataclass(frozen=True)
class GlobalResampling(_Sharded):
    """Resampling among all ``N`` particles, as on one device (see the module docstring)."""

    def resample(
        self,
        key: jax.Array,
        log_weights: jax.Array,
        particles: Any,
        allowed: jax.Array,
        ess_threshold: float,
        scheme: ResamplingScheme,
    ) -> tuple[Any, jax.Array, jax.Array, jax.Array]:
        n = log_weights.shape[0]
        total = n * jax.lax.axis_size(self.axis_name)
        start = self._block(n)
        resampled = allowed & (self.effective_sample_size(log_weights) < ess_threshold * total)

        def gather(leaf):
            return jax.lax.all_gather(leaf, self.axis_name, axis=0, tiled=True)

        def resample(log_weights, particles):
            every = gather(log_weights)
            ancestors = scheme(key, every, total).astype(jnp.int32)
            mine = jax.lax.dynamic_slice_in_dim(ancestors, start, n)
            moved = jax.tree.map(lambda leaf: gather(leaf)[mine], particles)
            return moved, mine, jnp.full_like(log_weights, log_mean_exp(every))

        def keep(log_weights, particles):
            return particles, start + jnp.arange(n, dtype=jnp.int32), log_weights

        particles, ancestors, log_weights = jax.lax.cond(
            resampled, resample, keep, log_weights, particles
        )
        return particles, ancestors, log_weights, resampled


@dataclasses.dataclass(frozen=True)
class IslandResampling(_Sharded):
    """Resampling within each device's particles (see the module docstring)."""

    def resample(
        self,
        key: jax.Array,
        log_weights: jax.Array,
        particles: Any,
        allowed: jax.Array,
        ess_threshold: float,
        scheme: ResamplingScheme,
    ) -> tuple[Any, jax.Array, jax.Array, jax.Array]:
        n = log_weights.shape[0]
        island = jax.lax.axis_index(self.axis_name)
        resampled = allowed & (effective_sample_size(log_weights) < ess_threshold * n)
        ancestors, log_weights = resample_where(
            jax.random.fold_in(key, island), log_weights, resampled, scheme
        )
        particles = jax.tree.map(lambda leaf: leaf[ancestors], particles)
        any_island = jax.lax.pmax(resampled.astype(jnp.int32), self.axis_name) > 0
        return particles, self._block(n) + ancestors, log_weights, any_island


def population_for(
    axis_name: str, resampling: ResamplingScheme | Islands
) -> tuple[Any, ResamplingScheme]:
    """The population for ``resampling`` (a scheme: global; ``Islands``: per device), and
    the scheme to resample with."""
    if isinstance(resampling, Islands):
        return IslandResampling(axis_name), resampling.scheme
    if not callable(resampling):
        raise TypeError(
            f"resampling must be a resampling scheme (e.g. inference.smc.systematic) or "
            f"Islands(scheme), got {resampling!r}"
        )
    return GlobalResampling(axis_name), resampling
