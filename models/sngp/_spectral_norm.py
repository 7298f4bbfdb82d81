"""Spectral normalization with a norm bound, by power iteration on functional state."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp


def power_iteration(
    weight: jax.Array, u: jax.Array, iterations: int = 1
) -> tuple[jax.Array, jax.Array]:
    """Power iterations for the largest singular value of ``weight``.

    Each iteration sets ``v = Wᵀu/‖Wᵀu‖`` and ``u = Wv/‖Wv‖``; then ``σ = uᵀWv``. From a
    ``u`` with a component along the top left singular vector, ``σ`` converges to the largest
    singular value geometrically, at the rate ``(σ₂/σ₁)²`` per iteration.

    Args:
        weight: a ``[m, n]`` matrix.
        u: a ``[m]`` starting vector (the previous call's output, in training).
        iterations: the number of iterations, at least 1.

    Returns:
        ``(sigma, u)``: the estimate of the largest singular value and the new left vector.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> weight = jnp.array([[3.0, 0.0], [0.0, 1.0]])
        >>> sigma, u = power_iteration(weight, jnp.array([1.0, 1.0]), iterations=20)
        >>> round(float(sigma), 5)
        3.0
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    eps = jnp.finfo(weight.dtype).tiny
    for _ in range(iterations):
        v = u @ weight  # = Wᵀu, without a transposed copy of W
        v = v / jnp.maximum(jnp.linalg.norm(v), eps)
        u = weight @ v
        u = u / jnp.maximum(jnp.linalg.norm(u), eps)
    return u @ weight @ v, u


class SpectralNormalization(eqx.Module):
    """A linear layer whose weight is rescaled so that its spectral norm is at most ``c``:

    ``W̃ = W / max(1, σ̂(W)/c)``,

    with ``σ̂`` estimated by power iteration (Miyato et al., 2018; the bounded form of SNGP,
    Liu et al., 2020). The left singular vector estimate ``u`` lives in an
    ``eqx.nn.State``: in training mode each call runs ``power_iterations`` further
    iterations from the stored ``u`` and returns the updated state; in inference mode
    (``eqx.nn.inference_mode``) ``u`` is read and not changed, so evaluation is
    deterministic. No gradient flows through ``u``; it flows through ``W`` in
    ``σ̂ = uᵀWv``.

    Build it with ``eqx.nn.make_with_state``, which returns the layer and its initial state.

    Args:
        linear: the ``eqx.nn.Linear`` layer to normalize.
        norm_bound: the bound ``c > 0`` on the spectral norm.
        power_iterations: iterations per training call.
        inference: start in inference mode.
        key: the PRNG key of the starting vector ``u``.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp
        >>> linear = eqx.nn.Linear(3, 4, key=jax.random.key(0))
        >>> layer, state = eqx.nn.make_with_state(SpectralNormalization)(
        ...     eqx.tree_at(lambda l: l.weight, linear, 10 * linear.weight), norm_bound=0.9,
        ...     key=jax.random.key(1))
        >>> for _ in range(30):  # training calls refine the estimate of the top singular value
        ...     y, state = layer(jnp.ones(3), state)
        >>> weight, _ = eqx.nn.inference_mode(layer).normalized_weight(state)
        >>> round(float(jnp.linalg.norm(weight, ord=2)), 4)
        0.9
    """

    linear: eqx.nn.Linear
    u_index: eqx.nn.StateIndex
    norm_bound: float = eqx.field(static=True)
    power_iterations: int = eqx.field(static=True)
    inference: bool

    def __init__(
        self,
        linear: eqx.nn.Linear,
        norm_bound: float = 0.95,
        power_iterations: int = 1,
        inference: bool = False,
        *,
        key: jax.Array,
    ):
        if not norm_bound > 0:
            raise ValueError(f"norm_bound must be positive, got {norm_bound}")
        if power_iterations < 1:
            raise ValueError(f"power_iterations must be at least 1, got {power_iterations}")
        self.linear = linear
        self.norm_bound = float(norm_bound)
        self.power_iterations = power_iterations
        self.inference = inference
        u = jax.random.normal(key, (linear.weight.shape[0],), linear.weight.dtype)
        self.u_index = eqx.nn.StateIndex(u / jnp.linalg.norm(u))

    def scale(self, state: eqx.nn.State) -> tuple[jax.Array, eqx.nn.State]:
        """The factor ``1 / max(1, σ̂/c)`` with ``W̃ = factor · W``, and the state (updated
        unless in inference mode)."""
        weight = self.linear.weight
        u = state.get(self.u_index)
        if not self.inference:
            _, u = power_iteration(jax.lax.stop_gradient(weight), u, self.power_iterations)
            state = state.set(self.u_index, u)
        u = jax.lax.stop_gradient(u)
        v = u @ weight
        v = jax.lax.stop_gradient(v / jnp.maximum(jnp.linalg.norm(v), 1e-12))
        sigma = u @ weight @ v
        return 1.0 / jnp.maximum(1.0, sigma / self.norm_bound), state

    def normalized_weight(self, state: eqx.nn.State) -> tuple[jax.Array, eqx.nn.State]:
        """The rescaled weight ``W̃`` and the state (updated unless in inference mode)."""
        factor, state = self.scale(state)
        return factor * self.linear.weight, state

    def __call__(
        self, x: jax.Array, state: eqx.nn.State, *, key: jax.Array | None = None
    ) -> tuple[jax.Array, eqx.nn.State]:
        """``W̃x + b`` for one example ``x`` of shape ``[in]``, and the new state."""
        factor, state = self.scale(state)
        # (xWᵀ)·factor rather than (W·factor)x: vmapped over a batch, the product is then
        # one [batch, in] × [in, out] matrix product on the stored weight, with no
        # rescaled or transposed copies of W or of the activations
        y = (x @ self.linear.weight.T) * factor
        if self.linear.bias is not None:
            y = y + self.linear.bias
        return y, state
