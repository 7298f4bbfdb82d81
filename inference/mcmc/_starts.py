"""Where ``run``'s chains start: prior draws, per-choice prior medians or user values, each
checked to have a finite log density (and, for NUTS, to lie inside its support's interior)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from inference.mcmc._unconstrained import Unconstrained, is_constraint
from ppl import AddressError, ChoiceMap, GenerativeFunction, select


def initial_traces(model, observations, observed, init, key, args, num_chains, interior=False):
    """Prior draws (``init=None``), per-choice prior medians (``"median"``), or user values;
    with ``interior``, each in the interior of its support (for NUTS)."""
    if isinstance(init, str) and init != "median":
        raise ValueError(f"init must be None, 'median' or a dict of values, got {init!r}")
    given = (
        observations
        if init is None or isinstance(init, str)
        else (ChoiceMap.from_dict(init) | observations)
    )
    # Compiled once per model and kind of start.
    compiled = compilable(args)
    inputs = (jax.random.split(key, num_chains), given, observations, args)
    traces, scores, positions = _starter(model, observed, init == "median", compiled, interior)(
        *inputs
    )
    if compiled and not np.all(np.isfinite(np.asarray(scores))):
        # Run again eagerly, where a value outside its support is named with its support.
        traces, scores, positions = _starter(model, observed, init == "median", False, interior)(
            *inputs
        )
    _check_initial_points(traces, scores)
    if positions is not None:
        _check_interior(traces, positions)
    return traces


def _check_initial_points(traces: Any, scores: Any) -> None:
    """Raises naming the first chain whose start has a non-finite log density (``scores``,
    one per chain), and the address that gave it."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(scores)))
    if bad.size == 0:
        return
    chain = int(bad[0])
    scores = jax.tree.map(lambda s: s[chain], traces.site_scores)
    for path, score in zip(scores.leaf_paths(), jax.tree.leaves(scores), strict=True):
        if not np.all(np.isfinite(np.asarray(score))):
            raise AddressError(
                f"chain {chain} starts at a point of log density {float(np.sum(score))} at "
                "{addr}; give init values inside the support there (or check the observations)",
                path,
            )


def _check_interior(traces: Any, positions: ChoiceMap) -> None:
    """Raises naming the first start that NUTS cannot move: a value on the boundary of a
    closed support (``uniform``'s 1.0), which the map onto the unconstrained space sends to
    infinity."""
    for path, u in zip(positions.leaf_paths(), jax.tree.leaves(positions), strict=True):
        finite = np.isfinite(np.asarray(u)).reshape(np.shape(u)[0], -1).all(axis=1)
        if not finite.all():
            chain = int(np.flatnonzero(~finite)[0])
            value = np.asarray(jax.tree.map(lambda x, c=chain: x[c], traces).choices[path])
            shown = value.tolist() if value.size <= 6 else f"an array of shape {value.shape}"
            raise AddressError(
                f"chain {chain} starts at {{addr}} = {shown}, on the boundary of its support: "
                "NUTS moves the choice on the unconstrained space, where that point lies at "
                "infinity; give an init value inside the support's interior",
                path,
            )


def compilable(args: tuple) -> bool:
    """Whether a model's arguments can be traced by ``jax.jit``: a Python int or bool
    argument may be structural (a shape, a count), so calls with one run eagerly."""
    return all(isinstance(leaf, jax.Array | np.ndarray | float) for leaf in jax.tree.leaves(args))


@functools.lru_cache(maxsize=32)
def _starter(
    model: GenerativeFunction, observed: tuple, median: bool, compiled: bool, interior: bool
) -> Callable:
    """``(keys, given, observations, args) -> (traces, scores, positions)``, one per key
    (jitted if ``compiled``; the scores are computed in the same program, not read from the
    traces afterwards, which would take an eager computation per call's score). ``positions``
    are the latent choices on the unconstrained space (``interior``), else ``None``."""
    latent = ~select(*observed)

    def start(key, given, observations, args):
        if median:
            draws, _ = jax.vmap(lambda k: model.generate(k, observations, args))(
                jax.random.split(jax.random.fold_in(key, 1), 15)
            )
            trace = model.generate(key, _medians(model, draws, latent) | observations, args)[0]
        else:
            trace = model.generate(key, given, args)[0]
        position = Unconstrained(model, trace, latent).position(trace) if interior else None
        return trace, trace.score, position

    starts = jax.vmap(start, in_axes=(0, None, None, None))
    return jax.jit(starts) if compiled else starts


def _medians(model: GenerativeFunction, draws: Any, latent: Any) -> ChoiceMap:
    """Each latent choice's median over ``draws`` (a batch of traces): of a continuous choice
    on the unconstrained space, mapped back (the element-wise median of points on a simplex
    is not on it), of a discrete one element-wise."""
    first = jax.tree.map(lambda x: x[0], draws)
    supports = model.supports(first).filter(latent)
    kinds = [s.is_discrete for s in jax.tree.leaves(supports, is_leaf=is_constraint)]
    discrete = [path for path, d in zip(supports.leaf_paths(), kinds, strict=True) if d]
    medians = jax.tree.map(
        lambda v: jnp.median(v, axis=0).astype(v.dtype),
        draws.choices.filter(latent & select(*discrete)),
    )
    continuous = latent & ~select(*discrete)
    if not all(kinds):  # some latent choice is continuous
        view = Unconstrained(model, first, continuous)
        positions = jax.vmap(view.position)(draws)
        medians = medians | view.constrain(jax.tree.map(lambda u: jnp.median(u, 0), positions))
    return medians
