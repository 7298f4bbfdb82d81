"""Gibbs sampling of discrete choices by enumerating their finite support."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

from inference.mcmc._kernel import Kernel, _identity
from ppl import AddressError, ChoiceMap, GenerativeFunction, select
from ppl._address import to_path
from ppl._choicemap import Masked


class GibbsInfo(NamedTuple):
    """The enumerated conditional log probabilities of the last updated element."""

    log_conditional: jax.Array


def _enumerate(support: Any, path: tuple) -> jax.Array:
    if isinstance(support, constraints._Boolean):
        return jnp.arange(2)
    if isinstance(support, constraints._IntegerInterval):
        low, high = support.lower_bound, support.upper_bound
        try:
            return jnp.arange(int(np.min(low)), int(np.max(high)) + 1)
        except jax.errors.ConcretizationTypeError:
            pass
    raise AddressError(
        f"{{addr}} has support {support}, which gibbs cannot enumerate (it needs a boolean or "
        "an integer interval with bounds fixed by shapes); pass support=jnp.arange(K)",
        path,
    )


def gibbs(model: GenerativeFunction, address: Any, support: Any = None) -> Kernel:
    """Exact Gibbs updates of the discrete choice(s) at ``address``, one element at a time.

    For each element ``z_j`` of the value at ``address`` (a single choice, a batched choice,
    or the repeats of a ``Vmap``/``Scan`` site, addressed without the index as in
    ``choices["zs", "z"]``), every value ``v`` of the finite support is scored with
    ``update`` (weight ``log p(z_j = v, rest) - log p(t)``) and ``z_j`` is drawn from the
    normalised conditional. Elements are swept in order with ``jax.lax.scan``, so a sweep
    compiles once; its cost is ``elements × support size`` model evaluations.

    Args:
        model: the generative function.
        address: the discrete site (path without combinator indices; a ``...`` index
            wildcard is dropped).
        support: the values to enumerate; by default read from the choice's support.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, flip, normal, Vmap
        >>> @gen
        ... def model():
        ...     zs = Vmap(flip, in_axes=None, axis_size=3)(0.5) @ "z"
        ...     return Vmap(normal, in_axes=(0, None))(4.0 * zs, 0.5) @ "x"
        >>> trace, _ = model.generate(jax.random.key(0), {"x": jnp.array([4.0, 0.0, 4.1])}, ())
        >>> trace, _ = gibbs(model, "z").step(jax.random.key(1), trace)
        >>> trace.choices["z"].tolist()
        [1, 0, 1]
    """
    # the repeats of a combinator's site are addressed in the batched form, so an index
    # wildcard written as in a selection, ("zs", ..., "z"), means the same as ("zs", "z")
    path = tuple(c for c in to_path(address) if c is not Ellipsis)

    def step(key, trace):
        current = trace.choices[path]
        values = (
            jnp.asarray(support)
            if support is not None
            else _enumerate(_support_at(model, trace, path), path)
        )
        size = int(np.prod(jnp.shape(current)))

        def one(trace, inputs):
            j, key = inputs
            update_key, pick_key = jax.random.split(key)
            flag = (jnp.arange(size) == j).reshape(jnp.shape(current))

            def score(v):
                value = jnp.full(jnp.shape(current), v, trace.choices[path].dtype)
                constraint = ChoiceMap({path: Masked(value, flag)})
                new, weight, _ = model.update(update_key, trace, constraint)
                return new, weight

            news, weights = jax.vmap(score)(values)
            weights = jnp.where(jnp.isnan(weights), -jnp.inf, weights)
            pick = jax.random.categorical(pick_key, weights)
            chosen = jax.tree.map(lambda leaf: leaf[pick], news)
            return chosen, weights - jax.nn.logsumexp(weights)

        keys = jax.random.split(key, size)
        trace, log_conditionals = jax.lax.scan(one, trace, (jnp.arange(size), keys))
        return trace, GibbsInfo(log_conditionals[-1])

    return Kernel(_identity, step, select(path))


def _support_at(model: GenerativeFunction, trace: Any, path: tuple) -> Any:
    node: Any = model.supports(trace)
    for component in path:
        node = node._child(component) if isinstance(node, ChoiceMap) else None
        if node is None:
            raise AddressError("gibbs: the model has no choice at {addr}", path)
    if isinstance(node, ChoiceMap):
        node = node._entries.get(next(iter(node._entries)))
    return node
