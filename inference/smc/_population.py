"""Where an SMC algorithm's particles live, and the steps that need all of them at once.

An SMC algorithm is written for the particles it holds: an array of ``n`` of them, with a
leading particle axis. The few steps that depend on every particle, not just one (the effective
sample size, the log mean weight, resampling), go through a ``Population``. ``Unsharded`` holds
all ``N`` particles in one array; ``inference.sharding`` provides populations whose ``N``
particles are split across devices, with collectives for these steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax

from inference.smc._resampling import (
    ResamplingScheme,
    effective_sample_size,
    log_mean_exp,
    resample_where,
)


class Population(Protocol):
    """The steps of an SMC algorithm that read every particle's weight."""

    def keys(self, key: jax.Array, count: int) -> jax.Array:
        """Keys for the ``count`` particles held here: the rows of
        ``jax.random.split(key, N)`` of these particles, so results do not depend on the
        layout."""
        ...

    def effective_sample_size(self, log_weights: jax.Array) -> jax.Array:
        """Kish's ESS over all particles (the last axis of ``log_weights``)."""
        ...

    def log_mean_exp(self, log_weights: jax.Array) -> jax.Array:
        """``log mean exp`` over all particles (the last axis of ``log_weights``)."""
        ...

    def resample(
        self,
        key: jax.Array,
        log_weights: jax.Array,
        particles: Any,
        allowed: jax.Array,
        ess_threshold: float,
        scheme: ResamplingScheme,
    ) -> tuple[Any, jax.Array, jax.Array, jax.Array]:
        """Resamples if ``allowed`` and the ESS is below ``ess_threshold * N``.

        Returns:
            ``(particles, ancestors, log_weights, resampled)``: ``ancestors`` are indices
            among all ``N`` particles; resampled log weights keep the log mean weight.
        """
        ...


@dataclasses.dataclass(frozen=True)
class Unsharded:
    """All ``N`` particles in one array (on one device, or laid out by the compiler)."""

    def keys(self, key: jax.Array, count: int) -> jax.Array:
        return jax.random.split(key, count)

    def effective_sample_size(self, log_weights: jax.Array) -> jax.Array:
        return effective_sample_size(log_weights)

    def log_mean_exp(self, log_weights: jax.Array) -> jax.Array:
        return log_mean_exp(log_weights)

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
        resampled = allowed & (effective_sample_size(log_weights) < ess_threshold * n)
        ancestors, log_weights = resample_where(key, log_weights, resampled, scheme)
        particles = jax.tree.map(lambda leaf: leaf[ancestors], particles)
        return particles, ancestors, log_weights, resampled


UNSHARDED = Unsharded()
"""The default population: every particle in one array."""
