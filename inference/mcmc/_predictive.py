"""Prior and posterior predictive draws: the model re-run with latents fixed or free."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from inference.mcmc._arviz import from_dict
from inference.mcmc._starts import compilable
from ppl import ChoiceMap, GenerativeFunction


def posterior_choices(data: Any) -> ChoiceMap:
    """The posterior draws of ``run``'s output as a ``ChoiceMap`` with leading (chain, draw).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, normal
        >>> from inference.mcmc import run
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 1.0) @ "y"
        >>> data = run(model, {"y": 0.5}, jax.random.key(0), num_chains=2, num_warmup=50,
        ...            num_samples=10, progress_bar=False)
        >>> posterior_choices(data)["mu"].shape
        (2, 10)
    """
    addresses = json.loads(data.posterior.attrs["ppl_addresses"])
    return ChoiceMap(
        {
            # Values below a combinator index are stored batched: the batched form drops "...".
            tuple(c for c in path if c != "..."): np.asarray(data.posterior[name].values)
            for name, path in addresses.items()
        }
    )


def posterior_predictive(
    model: GenerativeFunction, data: Any, key: jax.Array, args: tuple = ()
) -> Any:
    """``run``'s output with a posterior_predictive group: the observations simulated anew
    given each posterior draw (``predictive``), one variable per observed_data variable, with
    its name and shape and leading ``(chain, draw)``: what ``arviz.loo_pit`` and arviz's
    ``plot_ppc_*`` read.

    Args:
        model: the generative function ``run`` sampled.
        data: ``run``'s output.
        key: the PRNG key.
        args: the model's arguments, as given to ``run``.

    Returns:
        A copy of ``data`` with the group added (or replaced).

    Example:
        >>> import jax
        >>> from ppl import gen, normal
        >>> from inference.mcmc import run
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 1.0) @ "y"
        >>> data = run(model, {"y": 0.5}, jax.random.key(0), num_chains=2, num_warmup=50,
        ...            num_samples=10, progress_bar=False)
        >>> posterior_predictive(model, data, jax.random.key(1)).posterior_predictive["y"].shape
        (2, 10)
    """
    if "ppl_addresses" not in data.observed_data.attrs:
        raise ValueError(
            "data.observed_data does not say where its variables are observed (a run saved "
            "before posterior_predictive existed?); run the sampler again with mcmc.run"
        )
    observed = {
        name: tuple(Ellipsis if c == "..." else c for c in path)
        for name, path in json.loads(data.observed_data.attrs["ppl_addresses"]).items()
    }
    draws = predictive(model, key, args, posterior=data)
    sample_shape = (data.posterior.sizes["chain"], data.posterior.sizes["draw"])
    flat = jax.tree.map(lambda v: np.reshape(v, (-1, *np.shape(v)[2:])), draws)
    # each observed address looked up in each draw's choices (an index then indexes the
    # repeats of that draw, not the draws)
    simulated = jax.vmap(lambda cm: {name: cm[path] for name, path in observed.items()})(flat)
    group = {
        name: np.reshape(np.asarray(value), (*sample_shape, *np.shape(value)[1:]))
        for name, value in simulated.items()
    }
    out = data.copy()
    out["posterior_predictive"] = from_dict({"posterior_predictive": group})["posterior_predictive"]
    return out


def predictive(
    model: GenerativeFunction,
    key: jax.Array,
    args: tuple = (),
    *,
    posterior: Any = None,
    num_samples: int | None = None,
    sample_ndim: int = 1,
) -> ChoiceMap:
    """Draws every choice of ``model``: from the prior, or given posterior draws of latents.

    Posterior predictive: for each draw, the latent choices are fixed at the draw and every
    other choice (the observations, new data) is simulated by ``generate``.

    Args:
        model: the generative function.
        key: the PRNG key.
        args: the model's arguments (e.g. new inputs for predictions).
        posterior: ``run``'s output, or a ``ChoiceMap`` whose values have leading sample axes;
            ``None`` for the prior predictive.
        num_samples: the number of prior predictive draws.
        sample_ndim: how many leading axes of a ``ChoiceMap`` posterior index draws (``run``'s
            output always has two: chain and draw).

    Returns:
        A ``ChoiceMap`` of all choices, with the posterior's leading sample axes (or
        ``(num_samples,)``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, normal
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 1.0) @ "y"
        >>> prior = predictive(model, jax.random.key(0), num_samples=1000)
        >>> prior["y"].shape
        (1000,)
        >>> draws = predictive(model, jax.random.key(1), posterior={"mu": jnp.full((2, 5), 3.0)},
        ...                    sample_ndim=2)
        >>> draws["y"].shape, bool(jnp.all(draws["mu"] == 3.0))
        ((2, 5), True)
    """
    if posterior is None:
        if num_samples is None:
            raise ValueError("the prior predictive needs num_samples")
        return _draws(model, False, compilable(args))(jax.random.split(key, num_samples), args)
    if not isinstance(posterior, ChoiceMap | dict):
        posterior, sample_ndim = posterior_choices(posterior), 2
    posterior = ChoiceMap.from_dict(posterior)
    sample_shape = np.shape(jax.tree.leaves(posterior)[0])[:sample_ndim]
    flat = jax.tree.map(lambda v: np.reshape(v, (-1, *np.shape(v)[len(sample_shape) :])), posterior)
    keys = jax.random.split(key, int(np.prod(sample_shape)))
    choices, scores = _draws(model, True, compilable(args))(keys, args, flat)
    bad = np.flatnonzero(~np.isfinite(np.asarray(scores)))
    if bad.size:
        # The first such draw again, alone and eagerly: a given value outside its support is
        # then named with its support (a traced value cannot be checked).
        model.generate(keys[bad[0]], jax.tree.map(lambda v: v[bad[0]], flat), args)
    return jax.tree.map(lambda v: v.reshape(*sample_shape, *v.shape[1:]), choices)


@functools.lru_cache(maxsize=32)
def _draws(model: GenerativeFunction, given: bool, compiled: bool) -> Callable:
    """One draw of ``model``'s choices per key: ``(keys, args) -> choices`` simulated, or
    ``(keys, args, choices) -> (choices, scores)`` generated from the given choices (one set
    per key). Jitted if ``compiled``: one program, where eager vmapping compiles each
    operation on its own (seconds on a first call)."""

    def posterior_draws(key, args, choices):
        trace = model.generate(key, choices, args)[0]
        return trace.choices, trace.score

    def prior_draws(key, args):
        return model.simulate(key, args).choices

    draws = jax.vmap(posterior_draws, (0, None, 0)) if given else jax.vmap(prior_draws, (0, None))
    return jax.jit(draws) if compiled else draws
