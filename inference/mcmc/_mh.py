"""Metropolis–Hastings on traces: resimulation of a selection, or a user proposal."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from inference.mcmc._kernel import Kernel, _identity
from ppl import GenerativeFunction, Selection


class MHInfo(NamedTuple):
    """What one MH step did: ``acceptance_rate = min(1, exp(log_ratio))``."""

    acceptance_rate: jax.Array
    is_accepted: jax.Array


def _accept(key: jax.Array, old: Any, new: Any, log_ratio: jax.Array) -> tuple[Any, MHInfo]:
    log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
    accepted = jnp.log(jax.random.uniform(key)) < log_ratio
    trace = jax.tree.map(lambda a, b: jnp.where(accepted, a, b), new, old)
    return trace, MHInfo(jnp.exp(jnp.minimum(log_ratio, 0.0)), accepted)


def mh(model: GenerativeFunction, selection: Selection) -> Kernel:
    """MH that proposes fresh values for ``selection`` from the model's prior.

    The acceptance ratio is ``regenerate``'s weight: ``p(t')q(t|t') / p(t)q(t'|t)``.

    Args:
        model: the generative function whose trace is the state.
        selection: the addresses to resample.

    Returns:
        A ``Kernel``.

    Example:
        >>> import jax
        >>> from ppl import gen, normal, select
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 0.5) @ "y"
        >>> trace, _ = model.generate(jax.random.key(0), {"y": 1.0}, ())
        >>> trace, info = mh(model, select("mu")).step(jax.random.key(1), trace)
        >>> float(trace.choices["y"])
        1.0
    """

    def step(key, trace):
        propose_key, accept_key = jax.random.split(key)
        new, log_ratio = model.regenerate(propose_key, trace, selection)
        return _accept(accept_key, trace, new, log_ratio)

    return Kernel(_identity, step, selection)


def mh_proposal(
    model: GenerativeFunction, proposal: GenerativeFunction, proposal_args: tuple = ()
) -> Kernel:
    """MH with a user proposal ``proposal(trace, *proposal_args)`` over some of the choices.

    The proposal's choices are new values for the model's addresses. The log ratio is
    ``w_update + log q(old values | new trace) - log q(new values | old trace)``.

    Example:
        >>> import jax
        >>> from ppl import gen, normal
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 0.5) @ "y"
        >>> @gen
        ... def random_walk(trace, width):
        ...     return normal(trace.choices["mu"], width) @ "mu"
        >>> trace, _ = model.generate(jax.random.key(0), {"y": 1.0}, ())
        >>> kernel = mh_proposal(model, random_walk, (0.3,))
        >>> trace, info = kernel.step(jax.random.key(1), trace)
        >>> bool(0.0 <= info.acceptance_rate <= 1.0)
        True
    """

    def step(key, trace):
        propose_key, update_key, accept_key = jax.random.split(key, 3)
        forward = proposal.simulate(propose_key, (trace, *proposal_args))
        new, weight, discard = model.update(update_key, trace, forward.choices)
        backward_score, _ = proposal.assess(discard, (new, *proposal_args))
        return _accept(accept_key, trace, new, weight + backward_score - forward.score)

    return Kernel(_identity, step)
