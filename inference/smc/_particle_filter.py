"""Particle filters for state-space models written as the step kernel of a ``Scan``.

The model is ``Scan(kernel)``: ``kernel(carry, x) -> (carry, y)`` is a generative function, and
step ``t`` is conditioned on the observations of step ``t``. A filter runs ``N`` particles
(``jax.vmap``) through one ``jax.lax.scan`` over time. At step ``t``:

1. if ``t > 0`` and ``ESS < ess_threshold * N``, resample the particles (their log weights all
   become the log mean weight, so the running estimate of ``log p(y_{0:t-1})`` is kept);
2. extend each particle by one kernel step and multiply its weight by the incremental weight:

   * bootstrap: ``kernel.generate`` with the step's observations as constraints, weight
     ``log p(y_t | x_t, ...)`` (the latents come from the kernel's own prior);
   * guided: ``x_t ~ q(. | carry, x, y_t)`` from a user proposal, weight
     ``log p(x_t, y_t | carry) - log q(x_t | carry, x, y_t)`` (``kernel.generate`` with every
     choice constrained, i.e. ``kernel.assess`` of the merged choices, minus the proposal score).

``log mean exp`` of the final log weights is the log of an unbiased estimate of
``p(y_{0:T-1})``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from inference.smc._importance import as_observations, importance_weighted
from inference.smc._population import UNSHARDED, Population
from inference.smc._resampling import ResamplingScheme, check_ess_threshold, systematic
from ppl import ChoiceMap, GenerativeFunction, Scan
from ppl._address import show


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ParticleFilterResult:
    """The particles of every step of a particle filter, their weights and genealogy.

    Attributes:
        particles: the kernel's choices of each particle at each step (observations included),
            a ``ChoiceMap`` whose leaves have leading axes ``(T, N)``.
        log_weights: ``(T, N)`` log weights after step ``t``'s reweighting; with
            ``particles`` they are the weighted sample of the filtering distribution
            ``p(x_t | y_{0:t})``.
        ancestors: ``(T, N)`` int: particle ``i`` of step ``t`` extends particle
            ``ancestors[t, i]`` of step ``t - 1`` (``arange(N)`` where no resampling happened).
        ess: ``(T,)`` the ESS of ``log_weights[t]``.
        resampled: ``(T,)`` whether step ``t`` began by resampling.
        final_carry: the carries after the last step, leading axis ``N``.
        log_marginal_likelihood: ``log mean exp(log_weights[-1])``, the log of an unbiased
            estimate of ``p(y_{0:T-1})``.
    """

    particles: ChoiceMap
    log_weights: jax.Array
    ancestors: jax.Array
    ess: jax.Array
    resampled: jax.Array
    final_carry: Any
    log_marginal_likelihood: jax.Array

    @property
    def final_log_weights(self) -> jax.Array:
        """``(N,)`` the log weights after the last step."""
        return self.log_weights[-1]

    @property
    def trajectories(self) -> ChoiceMap:
        """The choices along each final particle's ancestral line, leaves ``(N, T, ...)``.

        Weighted by ``final_log_weights`` they are a sample of the smoothing distribution
        ``p(x_{0:T-1} | y_{0:T-1})``; particle ``i``'s trajectory,
        ``jax.tree.map(lambda v: v[i], trajectories)``, is a batched choice map that
        ``Scan(kernel)`` accepts as constraints. Cost ``O(T N)``.
        """
        n = self.ancestors.shape[1]
        _, lineage = jax.lax.scan(
            lambda index, parents: (parents[index], index),
            jnp.arange(n),
            self.ancestors,
            reverse=True,
        )
        return jax.tree.map(
            lambda leaf: jnp.moveaxis(jax.vmap(lambda v, i: v[i])(leaf, lineage), 0, 1),
            self.particles,
        )

    def smoothing_mean(self, fn: Callable[[ChoiceMap], Any]) -> Any:
        """``E[fn(choices_t) | y_{0:T-1}]`` for every step ``t``, from the weighted ancestral
        lines (``trajectories``) of the final particles: the genealogy smoother.

        Early steps rest on few distinct ancestors (path degeneracy), so their estimates are
        noisier than the filtering ones; they are consistent as the particle count grows.

        Args:
            fn: a function of one particle's step choices to a pytree of arrays.

        Returns:
            The estimates, each leaf with a leading axis ``T``.
        """
        values = jax.vmap(jax.vmap(fn))(self.trajectories)
        weights = jax.nn.softmax(self.final_log_weights)
        return jax.tree.map(
            lambda v: jnp.einsum("n,nt...->t...", weights, v.astype(weights.dtype)), values
        )

    def filtering_mean(self, fn: Callable[[ChoiceMap], Any]) -> Any:
        """``E[fn(choices_t) | y_{0:t}]`` for every step ``t``, self-normalised.

        Args:
            fn: a function of one particle's step choices to a pytree of arrays.

        Returns:
            The estimates, each leaf with a leading axis ``T``.
        """
        values = jax.vmap(jax.vmap(fn))(self.particles)
        weights = jax.nn.softmax(self.log_weights, axis=1)
        return jax.tree.map(
            lambda v: jnp.einsum("tn,tn...->t...", weights, v.astype(weights.dtype)), values
        )


def _per_step_observations(observations: Any) -> tuple[ChoiceMap, int | None]:
    """The observations as a plain ``ChoiceMap`` batched over time, and its number of steps."""
    observations = as_observations(observations)
    steps = None
    for path, leaf in zip(observations.leaf_paths(), jax.tree.leaves(observations), strict=True):
        if any(isinstance(c, int) for c in path):
            raise ValueError(
                f"observations at {show(path)} are given per index; a particle filter takes them "
                "batched over time, one array per address with a leading time axis: "
                "{'y': ys} with ys of shape (T, ...)"
            )
        shape = jnp.shape(leaf)
        if not shape:
            raise ValueError(
                f"the observations at {show(path)} are a scalar; give one value per time step "
                "(a leading time axis)"
            )
        if steps is not None and shape[0] != steps:
            raise ValueError(
                f"the observations at {show(path)} have {shape[0]} time steps, but others have "
                f"{steps}; every observed address needs one value per step"
            )
        steps = shape[0]
    return observations, steps


def _num_steps(observed_steps: int | None, xs: Any) -> int:
    leaves = jax.tree.leaves(xs)
    input_steps = int(jnp.shape(leaves[0])[0]) if leaves else None
    if observed_steps is None and input_steps is None:
        raise ValueError("give observations (batched over time) or per-step inputs xs")
    if observed_steps is not None and input_steps is not None and observed_steps != input_steps:
        raise ValueError(
            f"the observations have {observed_steps} time steps but xs has {input_steps}"
        )
    steps = observed_steps if observed_steps is not None else input_steps
    assert steps is not None
    return steps


def _new_carry(kernel: GenerativeFunction, trace: Any) -> Any:
    retval = trace.retval
    if not (isinstance(retval, tuple) and len(retval) == 2):
        raise TypeError(
            f"the kernel {kernel!r} must return (new_carry, y) like a Scan kernel; it returned "
            f"{type(retval).__name__}"
        )
    return retval[0]


def _particle_filter(
    key: jax.Array,
    kernel: GenerativeFunction,
    init_carry: Any,
    observations: Any,
    xs: Any,
    num_particles: int,
    proposal: GenerativeFunction | None,
    resampling: ResamplingScheme,
    ess_threshold: float,
    population: Population = UNSHARDED,
) -> ParticleFilterResult:
    """The filter of the module docstring; ``proposal=None`` is the bootstrap filter.

    ``num_particles`` is the number held here; ``population`` does the steps that read every
    particle (ESS, resampling, the log mean weight), e.g. across devices.
    """
    check_ess_threshold(ess_threshold)
    if isinstance(kernel, Scan):
        raise TypeError(
            f"particle filters take the step kernel, not the chain: pass {kernel!r}.kernel"
        )
    observed, observed_steps = _per_step_observations(observations)
    num_steps = _num_steps(observed_steps, xs)

    def extend(key, carry, observation, x):
        return importance_weighted(
            key, kernel, observation, (carry, x), proposal, (carry, x, observation)
        )

    def first_step(x_of):
        return jax.tree.map(lambda v: v[0], x_of)

    # The carry's type is what the kernel returns (a Python float init would be weakly typed).
    carry_type = jax.eval_shape(
        lambda k: _new_carry(
            kernel, extend(k, init_carry, first_step(observed), first_step(xs))[0]
        ),
        key,
    )
    carries = jax.tree.map(
        lambda c, t: jnp.broadcast_to(jnp.asarray(c, t.dtype), (num_particles, *t.shape)),
        init_carry,
        carry_type,
    )

    def step(state, inputs):
        carries, log_weights = state
        t, step_key, observation, x = inputs
        resample_key, extend_key = jax.random.split(step_key)
        carries, ancestors, log_weights, resampled = population.resample(
            resample_key, log_weights, carries, t > 0, ess_threshold, resampling
        )
        traces, weights = jax.vmap(extend, in_axes=(0, 0, None, None))(
            population.keys(extend_key, num_particles), carries, observation, x
        )
        log_weights = log_weights + weights
        record = (traces.choices, log_weights, ancestors, resampled)
        return (_new_carry(kernel, traces), log_weights), record

    (final_carry, final_log_weights), (particles, log_weights, ancestors, resampled) = jax.lax.scan(
        step,
        (carries, jnp.zeros(num_particles)),
        (jnp.arange(num_steps), jax.random.split(key, num_steps), observed, xs),
    )
    return ParticleFilterResult(
        particles=particles,
        log_weights=log_weights,
        ancestors=ancestors,
        ess=population.effective_sample_size(log_weights),
        resampled=resampled,
        final_carry=final_carry,
        log_marginal_likelihood=population.log_mean_exp(final_log_weights),
    )


def bootstrap_filter(
    key: jax.Array,
    kernel: GenerativeFunction,
    init_carry: Any,
    observations: Any,
    xs: Any = None,
    *,
    num_particles: int,
    resampling: ResamplingScheme = systematic,
    ess_threshold: float = 0.5,
) -> ParticleFilterResult:
    """The bootstrap particle filter: latents from the kernel's prior, weight the likelihood.

    Each step calls ``kernel.generate(key, observations_t, (carry, x_t))``; its weight is the
    log density of the step's observations given the particle (see the module docstring).

    Args:
        key: a PRNG key.
        kernel: the step kernel, a generative function ``kernel(carry, x) -> (carry, y)``.
        init_carry: the carry before the first step (shared by all particles).
        observations: the kernel's observed addresses batched over time, e.g.
            ``{"y": ys}`` with ``ys`` of shape ``(T, ...)``.
        xs: per-step inputs (leading axis ``T``), or ``None``.
        num_particles: ``N``.
        resampling: the resampling scheme.
        ess_threshold: resample before a step when ``ESS < ess_threshold * N`` (``1``: every
            step, ``0``: never).

    Returns:
        A ``ParticleFilterResult``: per-step particles, log weights, ESS and ancestors, the
        trajectories, and the log marginal-likelihood estimate.

    Raises:
        ValueError: if the observations are not batched over time, time lengths differ, or
            ``ess_threshold`` is outside ``[0, 1]``.
        AddressError: if an observed or proposed address is not one of the kernel's.
        TypeError: if ``kernel`` is a ``Scan`` (give its step kernel).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, normal
        >>> @gen
        ... def step(z, _):
        ...     z = normal(0.9 * z, 1.0) @ "z"
        ...     return z, normal(z, 0.5) @ "y"
        >>> ys = jnp.array([0.3, 1.2, 0.8, -0.4])
        >>> result = bootstrap_filter(jax.random.key(0), step, 0.0, {"y": ys},
        ...                           num_particles=500)
        >>> result.log_weights.shape, result.trajectories["z"].shape
        ((4, 500), (500, 4))
        >>> means = result.filtering_mean(lambda c: c["z"])  # E[z_t | y_0..t]
        >>> bool(jnp.all(jnp.abs(means - ys) < 0.5))
        True
    """
    return _particle_filter(
        key, kernel, init_carry, observations, xs, num_particles, None, resampling, ess_threshold
    )


def guided_filter(
    key: jax.Array,
    kernel: GenerativeFunction,
    proposal: GenerativeFunction,
    init_carry: Any,
    observations: Any,
    xs: Any = None,
    *,
    num_particles: int,
    resampling: ResamplingScheme = systematic,
    ess_threshold: float = 0.5,
) -> ParticleFilterResult:
    """A guided particle filter: latents from ``proposal(carry, x, observation_t)``.

    The incremental log weight is ``log p(x_t, y_t | carry) - log q(x_t)``; a proposal that
    leaves some latent choice out lets the kernel draw it from its prior (and the weight
    accounts for it).

    Args:
        key: a PRNG key.
        kernel: the step kernel, a generative function ``kernel(carry, x) -> (carry, y)``.
        proposal: a generative function ``proposal(carry, x, observation_t)``
            (``observation_t`` the step's observations, a ``ChoiceMap``) whose choices are
            at the kernel's latent addresses.
        init_carry: the carry before the first step (shared by all particles).
        observations: the kernel's observed addresses batched over time, e.g.
            ``{"y": ys}`` with ``ys`` of shape ``(T, ...)``.
        xs: per-step inputs (leading axis ``T``), or ``None``.
        num_particles: ``N``.
        resampling: the resampling scheme.
        ess_threshold: resample before a step when ``ESS < ess_threshold * N`` (``1``: every
            step, ``0``: never).

    Returns:
        A ``ParticleFilterResult``: per-step particles, log weights, ESS and ancestors, the
        trajectories, and the log marginal-likelihood estimate.

    Raises:
        ValueError: if the observations are not batched over time, time lengths differ, or
            ``ess_threshold`` is outside ``[0, 1]``.
        AddressError: if an observed or proposed address is not one of the kernel's.
        TypeError: if ``kernel`` is a ``Scan`` (give its step kernel).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, normal
        >>> @gen
        ... def step(z, _):
        ...     z = normal(0.9 * z, 1.0) @ "z"
        ...     return z, normal(z, 0.5) @ "y"
        >>> @gen
        ... def optimal(z, _, observation):  # p(z_t | z_{t-1}, y_t), in closed form
        ...     return normal((0.9 * z + 4.0 * observation["y"]) / 5.0, 0.2 ** 0.5) @ "z"
        >>> ys = jnp.array([0.3, 1.2, 0.8, -0.4])
        >>> result = guided_filter(jax.random.key(0), step, optimal, 0.0, {"y": ys},
        ...                        num_particles=100)
        >>> float(result.ess[0])  # the weight p(y_0 | z_prev) is the same for every particle
        100.0
    """
    return _particle_filter(
        key,
        kernel,
        init_carry,
        observations,
        xs,
        num_particles,
        proposal,
        resampling,
        ess_threshold,
    )
