"""Applying a per-example stateful model to a batch."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax


def apply_to_batch(
    model: Any,
    state: eqx.nn.State,
    inputs: jax.Array,
    *,
    key: jax.Array | None = None,
    method: str | None = None,
) -> tuple[Any, eqx.nn.State]:
    """Calls ``model(x, state, key=k)`` on every row ``x`` of ``inputs`` with one shared
    state.

    The state must not depend on the example (true of spectral-norm vectors, which depend
    on the weights only), so it is returned once, not per example.

    Args:
        model: an Equinox module called as ``model(x, state, *, key=None)``.
        state: its ``eqx.nn.State``.
        inputs: ``[N, ...]`` examples, or a pytree of arrays with a common leading axis.
        key: a PRNG key, split into one key per example (for dropout); ``None`` for none.
        method: the name of another method with the same signature to call instead.

    Returns:
        ``(outputs, state)`` with outputs stacked along a leading axis.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp
        >>> from models.sngp import SNGPClassifier
        >>> model, state = eqx.nn.make_with_state(SNGPClassifier)(
        ...     2, 3, width=8, depth=1, num_features=16, key=jax.random.key(0))
        >>> logits, state = apply_to_batch(model, state, jnp.zeros((5, 2)))
        >>> logits.shape
        (5, 3)
    """
    function = model if method is None else getattr(model, method)
    if key is None:
        return jax.vmap(lambda x, s: function(x, s), in_axes=(0, None), out_axes=(0, None))(
            inputs, state
        )
    keys = jax.random.split(key, num_rows(inputs))
    return jax.vmap(
        lambda x, s, k: function(x, s, key=k), in_axes=(0, None, 0), out_axes=(0, None)
    )(inputs, state, keys)


def num_rows(inputs: Any) -> int:
    """The common leading size of a pytree of arrays (the number of examples).

    Raises:
        ValueError: if the arrays disagree on it or there are none.

    Example:
        >>> import jax.numpy as jnp
        >>> num_rows({"nodes": jnp.zeros((4, 3, 2)), "mask": jnp.zeros((4, 3))})
        4
    """
    sizes = {leaf.shape[0] if leaf.ndim else -1 for leaf in jax.tree.leaves(inputs)}
    if len(sizes) != 1 or -1 in sizes:
        shown = sorted("a scalar" if size == -1 else str(size) for size in sizes)
        raise ValueError(
            "the input arrays need one common leading axis (the examples); their leading "
            f"sizes are {shown}"
        )
    return sizes.pop()
