"""Arrays that are part of a model but not trained (random features, fixed projections)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax


class Fixed(eqx.Module):
    """An array held fixed during training: ``trainable`` leaves it out of the parameters
    the optimizer sees (and of weight decay).

    Attributes:
        value: the array.

    Example:
        >>> import jax.numpy as jnp
        >>> Fixed(jnp.ones(3)).value
        Array([1., 1., 1.], dtype=float32)
    """

    value: jax.Array


def trainable(model: Any) -> Any:
    """The filter of a model's trainable leaves, for ``eqx.partition``: its floating-point
    arrays outside ``Fixed`` wrappers.

    Args:
        model: any pytree (an Equinox module).

    Returns:
        A pytree of booleans with the structure of ``model`` (``Fixed`` nodes become one
        ``False``), to pass as ``eqx.partition(model, trainable(model))``.

    Example:
        >>> import equinox as eqx, jax.numpy as jnp
        >>> model = {"weights": jnp.ones(2), "features": Fixed(jnp.ones(2)), "size": 2}
        >>> params, static = eqx.partition(model, trainable(model))
        >>> params["weights"], params["features"], params["size"]
        (Array([1., 1.], dtype=float32), Fixed(value=None), None)
    """
    return jax.tree.map(
        lambda leaf: False if isinstance(leaf, Fixed) else eqx.is_inexact_array(leaf),
        model,
        is_leaf=lambda leaf: isinstance(leaf, Fixed),
    )
