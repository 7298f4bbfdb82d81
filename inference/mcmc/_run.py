"""``run``: many chains of a kernel on a model conditioned on observations, to arviz."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import arviz
import jax
import numpy as np
from tqdm.auto import tqdm

from inference.mcmc._gradient import nuts, window_adaptation
from inference.mcmc._kernel import Kernel
from ppl import AddressError, ChoiceMap, GenerativeFunction, select

# blackjax/our info fields -> arviz sample_stats names
_STAT_NAMES = {
    "acceptance_rate": "acceptance_rate",
    "is_accepted": "accepted",
    "is_divergent": "diverging",
    "energy": "energy",
    "num_trajectory_expansions": "tree_depth",
    "num_integration_steps": "n_steps",
}


def _variable_name(path: tuple) -> str:
    return ".".join(str(c) for c in path if c is not Ellipsis)


def _check_initial_points(traces: Any, weights: jax.Array) -> None:
    bad = np.flatnonzero(~np.isfinite(np.asarray(traces.score)))
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


def _sample_stats(info: Any, prefix: str = "") -> dict[str, jax.Array]:
    if isinstance(info, tuple) and not hasattr(info, "_fields"):
        out: dict[str, jax.Array] = {}
        for i, sub in enumerate(info):
            out |= _sample_stats(sub, f"{prefix}kernel{i}_")
        return out
    return {
        prefix + name: getattr(info, field)
        for field, name in _STAT_NAMES.items()
        if hasattr(info, field)
    }


def run(
    model: GenerativeFunction,
    observations: Any,
    key: jax.Array,
    *,
    args: tuple = (),
    kernel: Kernel | Callable[[dict], Kernel] | None = None,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 1000,
    thinning: int = 1,
    init: Any = None,
    progress_bar: bool = True,
    num_chunks: int = 10,
) -> Any:
    """Runs vectorised MCMC chains on ``model`` conditioned on ``observations``.

    With ``kernel=None`` every unobserved choice (all must be continuous) is moved by NUTS
    after blackjax's window adaptation (per chain, ``num_warmup`` steps). A given ``kernel``
    runs ``num_warmup`` unadapted steps first.

    Args:
        model: the generative function.
        observations: a dict/``ChoiceMap`` of observed values.
        key: the PRNG key.
        args: the model's arguments.
        kernel: a ``Kernel`` (e.g. ``cycle(gibbs..., nuts...)``), or ``None`` for adapted NUTS.
        num_chains: chains, run with ``jax.vmap``.
        num_warmup: warm-up (adaptation) steps per chain.
        num_samples: kept draws per chain.
        thinning: steps per kept draw.
        init: initial values (dict/``ChoiceMap``) for some latent choices; the rest are
            drawn from the prior.
        progress_bar: show progress over the sampling chunks.
        num_chunks: sampling is compiled once and run in this many chunks (for progress).

    Returns:
        An arviz ``DataTree`` with groups posterior (one variable per latent address, dims
        ``chain, draw, ...``), sample_stats, observed_data and log_likelihood (pointwise for
        observed plates, so ``arviz.loo`` works).

    Raises:
        AddressError: if an initial point has log density -inf (naming the address), an
            observation is at an address the model never visits, or NUTS meets a discrete
            latent choice.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, normal, Vmap
        >>> @gen
        ... def model():
        ...     mu = normal(0.0, 1.0) @ "mu"
        ...     return Vmap(normal, in_axes=(None, None), axis_size=5)(mu, 1.0) @ "ys"
        >>> data = run(model, {"ys": jnp.ones(5)}, jax.random.key(0), num_chains=2,
        ...            num_warmup=100, num_samples=200, progress_bar=False)
        >>> data.posterior["mu"].shape, data.log_likelihood["ys"].shape
        ((2, 200), (2, 200, 5))
    """
    observations = ChoiceMap.from_dict(observations)
    latent = ~select(*observations.leaf_paths())
    init_key, warmup_key, sample_key = jax.random.split(key, 3)
    constraints = observations if init is None else ChoiceMap.from_dict(init) | observations
    traces, weights = jax.vmap(lambda k: model.generate(k, constraints, args))(
        jax.random.split(init_key, num_chains)
    )
    _check_initial_points(traces, weights)

    warmup_keys = jax.random.split(warmup_key, num_chains)
    if kernel is None:
        traces, parameters = jax.jit(
            jax.vmap(lambda k, t: window_adaptation(model, latent, t, k, num_warmup))
        )(warmup_keys, traces)

        def step(key, trace, parameters):
            return nuts(
                model, latent, parameters["step_size"], parameters["inverse_mass_matrix"]
            ).step(key, trace)

        step_sizes = parameters["step_size"]
    else:
        parameters = None
        fixed = kernel

        def step(key, trace, parameters):
            return fixed.step(key, trace)

        def warm(key, trace):
            return jax.lax.scan(
                lambda t, k: (step(k, t, None)[0], None), trace, jax.random.split(key, num_warmup)
            )[0]

        traces = jax.jit(jax.vmap(warm))(warmup_keys, traces)
        step_sizes = None

    def draw(trace, key, parameters):
        trace, info = jax.lax.scan(
            lambda t, k: step(k, t, parameters), trace, jax.random.split(key, thinning)
        )
        info = jax.tree.map(lambda x: x[-1], info)
        kept = (trace.choices.filter(latent), trace.site_scores.filter(~latent), info)
        return trace, kept

    def chunk(trace, key, parameters, length):
        return jax.lax.scan(
            lambda t, k: draw(t, k, parameters), trace, jax.random.split(key, length)
        )

    sizes = [len(part) for part in np.array_split(np.arange(num_samples), num_chunks)]
    run_chunk = jax.jit(jax.vmap(chunk, in_axes=(0, 0, 0, None)), static_argnums=3)
    pieces = []
    chunk_keys = jax.random.split(sample_key, len(sizes))
    for size, chunk_key in tqdm(
        list(zip(sizes, chunk_keys, strict=True)), disable=not progress_bar, desc="sampling"
    ):
        if size:
            traces, kept = run_chunk(
                traces, jax.random.split(chunk_key, num_chains), parameters, size
            )
            pieces.append(kept)
    choices, log_likelihood, info = jax.tree.map(
        lambda *xs: np.concatenate([np.asarray(x) for x in xs], axis=1), *pieces
    )
    stats = {k: np.asarray(v) for k, v in _sample_stats(info).items()}
    if step_sizes is not None:
        stats["step_size"] = np.broadcast_to(
            np.asarray(step_sizes)[:, None], (num_chains, num_samples)
        )
    return arviz.from_dict(
        {
            "posterior": _by_name(choices),
            "sample_stats": stats,
            "log_likelihood": _by_name(log_likelihood),
            "observed_data": _by_name(observations),
        }
    )


def _by_name(cm: ChoiceMap) -> dict[str, np.ndarray]:
    return {
        _variable_name(path): np.asarray(value)
        for path, value in zip(cm.leaf_paths(), jax.tree.leaves(cm), strict=True)
    }


def summary(data: Any, **kwargs: Any) -> Any:
    """``arviz.summary`` of the posterior: means, sds, r-hat, bulk and tail ESS."""
    return arviz.summary(data, **kwargs)
