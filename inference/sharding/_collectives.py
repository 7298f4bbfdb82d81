"""Reductions over particles split across the devices of a mesh axis.

Inside ``jax.shard_map`` each device holds a block of the particles' log weights. The log mean
weight and Kish's effective sample size need every particle; computing them from a
device-local maximum and two sums costs two scalar all-reduces (``pmax``, ``psum``) per row,
whatever the number of particles:

``m = max_i lw_i``, ``S_k = sum_i exp(k (lw_i - m))``,
``log mean exp(lw) = m + log S_1 - log N``, ``ESS = S_1^2 / S_2``.

The sums are added in another order than on one device, so the results agree with the
unsharded ones to float rounding, not bit for bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _shifted_sums(log_weights: jax.Array, axis_name: str, powers: tuple[int, ...]) -> tuple:
    """The global max ``m`` (0 where it is not finite) and ``sum exp(k (lw - m))`` per power."""
    local_max = jnp.max(log_weights, axis=-1)
    global_max = jax.lax.pmax(local_max, axis_name)
    shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(global_max), global_max, 0.0))
    centred = log_weights - shift[..., None]
    sums = tuple(jax.lax.psum(jnp.sum(jnp.exp(k * centred), axis=-1), axis_name) for k in powers)
    return shift, sums


def log_mean_exp(log_weights: jax.Array, axis_name: str) -> jax.Array:
    """``log mean exp`` over the last axis of ``log_weights``, split along ``axis_name``.

    Call it inside ``jax.shard_map`` over a mesh with the axis ``axis_name``; the mean is over
    the particles of every device.

    Args:
        log_weights: ``(..., n)`` this device's log weights.
        axis_name: the mesh axis the particles are split along.

    Returns:
        ``(...)`` the log mean weight of all ``n * axis_size`` particles, the same on every
        device.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jax.sharding import PartitionSpec as P
        >>> from inference.sharding import make_mesh
        >>> mesh = make_mesh(axis_names=("particles",))
        >>> lw = jnp.log(jnp.arange(1.0, 1.0 + 4 * mesh.size))
        >>> f = jax.shard_map(lambda w: log_mean_exp(w, "particles"), mesh=mesh,
        ...                   in_specs=P("particles"), out_specs=P())
        >>> bool(jnp.allclose(f(lw), jnp.log(jnp.mean(jnp.exp(lw)))))
        True
    """
    shift, (total,) = _shifted_sums(log_weights, axis_name, (1,))
    count = log_weights.shape[-1] * jax.lax.axis_size(axis_name)
    return shift + jnp.log(total) - jnp.log(count)


def effective_sample_size(log_weights: jax.Array, axis_name: str) -> jax.Array:
    """Kish's ``(sum w)^2 / sum w^2`` over the last axis, split along ``axis_name``.

    Call it inside ``jax.shard_map``; see ``log_mean_exp``.

    Args:
        log_weights: ``(..., n)`` this device's log weights.
        axis_name: the mesh axis the particles are split along.

    Returns:
        ``(...)`` the ESS of all particles, in ``[1, n * axis_size]``.
    """
    _, (first, second) = _shifted_sums(log_weights, axis_name, (1, 2))
    return first**2 / second
