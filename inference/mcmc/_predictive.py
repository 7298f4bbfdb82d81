"""Prior and posterior predictive draws: the model re-run with latents fixed or free."""

from __future__ import annotations

import json
from typing import Any

import jax
import numpy as np

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
        keys = jax.random.split(key, num_samples)
        return jax.vmap(lambda k: model.simulate(k, args).choices)(keys)
    if not isinstance(posterior, ChoiceMap | dict):
        posterior, sample_ndim = posterior_choices(posterior), 2
    posterior = ChoiceMap.from_dict(posterior)
    sample_shape = np.shape(jax.tree.leaves(posterior)[0])[:sample_ndim]
    flat = jax.tree.map(lambda v: np.reshape(v, (-1, *np.shape(v)[len(sample_shape) :])), posterior)
    count = int(np.prod(sample_shape))
    choices = jax.vmap(lambda k, c: model.generate(k, c, args)[0].choices)(
        jax.random.split(key, count), flat
    )
    return jax.tree.map(lambda v: v.reshape(*sample_shape, *v.shape[1:]), choices)
