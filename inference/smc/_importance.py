"""Importance sampling and sampling importance resampling on a generative function."""

from __future__ import annotations

from typing import Any

import jax

from inference.smc._particles import WeightedParticles
from inference.smc._resampling import ResamplingScheme, systematic
from ppl import ChoiceMap, GenerativeFunction
from ppl._address import show


def as_observations(observations: Any) -> ChoiceMap:
    """A dict/``ChoiceMap``/``None`` of observed values as a plain, batched ``ChoiceMap``."""
    if observations is None:
        return ChoiceMap({})
    if not isinstance(observations, dict | ChoiceMap):
        raise TypeError(
            f"observations must be a dict or ChoiceMap of observed values keyed by address, got "
            f"{type(observations).__name__}"
        )
    return _batched_form(ChoiceMap.from_dict(observations), "observations")


def _batched_form(choices: ChoiceMap, what: str) -> ChoiceMap:
    """``choices`` with every indexed (combinator) node in the batched form ``{"y": ys}``.

    ``ChoiceMap`` refuses to merge an indexed node (as in ``trace.choices``) with a plain one
    (as users write observations); both forms are the same constraints to a combinator.
    """
    plain = choices.to_dict()
    if not isinstance(plain, dict):
        raise TypeError(
            f"the {what} are the bare repeats of one distribution; give them at an address"
        )
    return ChoiceMap(plain)


def _without_indices(path: tuple) -> tuple:
    """A path without ``...`` (a combinator's index axis), as batched constraints write it."""
    return tuple(c for c in path if c is not Ellipsis)


def proposed_choices(proposal: GenerativeFunction, choices: Any, observations: ChoiceMap) -> Any:
    """Checks that a proposal's choices form a map disjoint from the observations."""
    if not isinstance(choices, ChoiceMap):
        raise TypeError(
            f"the proposal {proposal!r} must make its random choices at the model's latent "
            f"addresses (a @gen function); its choices are a bare {type(choices).__name__}"
        )
    overlap = {
        proposed
        for proposed in map(_without_indices, choices.leaf_paths())
        for observed in map(_without_indices, observations.leaf_paths())
        if proposed[: len(observed)] == observed or observed[: len(proposed)] == proposed
    }
    if overlap:
        shown = ", ".join(show(p) for p in sorted(overlap, key=str))
        raise ValueError(
            f"the proposal {proposal!r} proposes {shown}, which is observed; a proposal "
            "samples latent choices only"
        )
    return choices


def importance_weighted(
    key: jax.Array,
    model: GenerativeFunction,
    observations: ChoiceMap,
    args: tuple,
    proposal: GenerativeFunction | None,
    proposal_args: tuple,
) -> tuple[Any, jax.Array]:
    """One particle: ``(trace, log p(trace) - log q(latents))``.

    With a proposal, ``model.generate`` is constrained by the proposed choices and the
    observations; its weight is ``log p`` of the whole trace when the proposal covers every
    latent choice, and otherwise also accounts for the latents it drew itself.
    """
    if proposal is None:
        return model.generate(key, observations, args)
    propose_key, generate_key = jax.random.split(key)
    proposed = proposal.simulate(propose_key, proposal_args)
    choices = proposed_choices(proposal, proposed.choices, observations)
    constraints = _batched_form(choices, f"choices of the proposal {proposal!r}") | observations
    trace, weight = model.generate(generate_key, constraints, args)
    return trace, weight - proposed.score


def importance_sampling(
    key: jax.Array,
    model: GenerativeFunction,
    observations: Any,
    *,
    num_particles: int,
    args: tuple = (),
    proposal: GenerativeFunction | None = None,
    proposal_args: tuple = (),
) -> WeightedParticles:
    """Importance sampling of ``model`` conditioned on ``observations``.

    Each of ``N`` particles draws its latent choices ``x ~ q`` and has the log weight
    ``log p(x, y) - log q(x)``. With ``proposal=None``, ``q`` is the model's internal proposal
    (``model.generate``: ancestral sampling of the unobserved choices, so the weight is the
    likelihood of the observations). The log marginal-likelihood estimate
    ``log mean exp(log_weights)`` is the log of an unbiased estimate of ``p(y)``.

    Args:
        key: a PRNG key.
        model: the generative function.
        observations: a dict/``ChoiceMap`` of observed values.
        num_particles: ``N``.
        args: the model's arguments.
        proposal: a generative function whose choices are at (some of) the model's latent
            addresses, or ``None`` for the internal proposal.
        proposal_args: the proposal's arguments.

    Returns:
        ``WeightedParticles`` (traces batched along a leading axis of length ``N``).

    Raises:
        ValueError: if the proposal proposes an observed address.
        AddressError: if it proposes an address the model never visits.

    Example:
        >>> import jax
        >>> from ppl import gen, normal
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 1.0) @ "y"
        >>> @gen
        ... def proposal(y):
        ...     return normal(y / 2, 0.8) @ "mu"
        >>> particles = importance_sampling(jax.random.key(0), model, {"y": 1.0},
        ...                                 num_particles=2000, proposal=proposal,
        ...                                 proposal_args=(1.0,))
        >>> exact = jax.scipy.stats.norm.logpdf(1.0, 0.0, 2.0 ** 0.5)
        >>> round(float(particles.log_marginal_likelihood - exact), 2)
        0.0
    """
    observations = as_observations(observations)
    keys = jax.random.split(key, num_particles)
    traces, log_weights = jax.vmap(
        lambda k: importance_weighted(k, model, observations, args, proposal, proposal_args)
    )(keys)
    return WeightedParticles(traces, log_weights)


def sampling_importance_resampling(
    key: jax.Array,
    model: GenerativeFunction,
    observations: Any,
    *,
    num_particles: int,
    num_samples: int | None = None,
    args: tuple = (),
    proposal: GenerativeFunction | None = None,
    proposal_args: tuple = (),
    scheme: ResamplingScheme = systematic,
) -> WeightedParticles:
    """Sampling importance resampling: importance sampling, then resampling by weight.

    As ``N`` grows the resampled traces tend to draws from the posterior. Their log weights are
    all the log marginal-likelihood estimate of the importance-sampling step, so
    ``log_marginal_likelihood`` still gives it.

    Args:
        key: a PRNG key.
        model: the generative function.
        observations: a dict/``ChoiceMap`` of observed values.
        num_particles: ``N``, the number of importance samples.
        num_samples: how many traces to resample (default ``N``).
        args: the model's arguments.
        proposal: as for ``importance_sampling``.
        proposal_args: the proposal's arguments.
        scheme: the resampling scheme.

    Returns:
        ``WeightedParticles`` of ``num_samples`` equally weighted traces.

    Example:
        >>> import jax
        >>> from ppl import gen, normal
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 1.0) @ "y"
        >>> sir = jax.jit(lambda key: sampling_importance_resampling(
        ...     key, model, {"y": 2.0}, num_particles=4000, num_samples=1000))
        >>> draws = sir(jax.random.key(0))
        >>> draws.traces.choices["mu"].shape, round(float(draws.traces.choices["mu"].mean()), 1)
        ((1000,), 1.0)
    """
    is_key, resample_key = jax.random.split(key)
    particles = importance_sampling(
        is_key,
        model,
        observations,
        num_particles=num_particles,
        args=args,
        proposal=proposal,
        proposal_args=proposal_args,
    )
    return particles.resample(resample_key, num_samples, scheme)
