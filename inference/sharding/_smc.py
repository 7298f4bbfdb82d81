"""IS, particle filters and tempered SMC with the particles split along ``"particles"``.

Each function takes the arguments of its ``inference.smc`` namesake plus a ``mesh`` with an
axis ``"particles"``, runs the unsharded algorithm on every device's block of particles inside
``jax.shard_map``, and does the steps that need every particle with collectives (see
``_populations``). The outputs are global ``jax.Array``s split along ``"particles"``: index,
reduce or ``gather`` them like the unsharded results.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from inference.sharding._mesh import check_divisible
from inference.sharding._populations import GlobalResampling, Islands, population_for
from inference.smc._importance import as_observations, importance_weighted
from inference.smc._particle_filter import ParticleFilterResult, _particle_filter
from inference.smc._particles import WeightedParticles
from inference.smc._population import Population
from inference.smc._resampling import ResamplingScheme, systematic
from inference.smc._tempering import (
    Rejuvenation,
    TemperedSMCResult,
    _check_schedule,
    _tempered_smc,
)
from ppl import GenerativeFunction

PARTICLES = "particles"
"""The mesh axis that particles are split along."""


def importance_sampling(
    key: jax.Array,
    model: GenerativeFunction,
    observations: Any,
    *,
    num_particles: int,
    mesh: Mesh,
    args: tuple = (),
    proposal: GenerativeFunction | None = None,
    proposal_args: tuple = (),
) -> WeightedParticles:
    """``inference.smc.importance_sampling`` with the particles split across ``mesh``.

    Particle ``i`` uses the key it has on one device, so its trace and log weight are the
    unsharded ones (bit for bit where its arithmetic compiles alike for ``N / R`` and for
    ``N`` particles; see docs/scaling.md); ``log_marginal_likelihood`` reduces across
    devices and agrees to float rounding.

    Args:
        key: a PRNG key.
        model: the generative function.
        observations: a dict/``ChoiceMap`` of observed values.
        num_particles: ``N``, a multiple of the size of the mesh axis ``"particles"``.
        mesh: a mesh with an axis ``"particles"``.
        args: the model's arguments.
        proposal: a proposal generative function, or ``None`` for the internal proposal.
        proposal_args: the proposal's arguments.

    Returns:
        ``WeightedParticles`` whose traces and log weights are split along ``"particles"``.

    Raises:
        ValueError: if ``num_particles`` does not divide evenly, or the mesh has no axis
            ``"particles"``.

    Example:
        >>> import jax
        >>> from ppl import gen, normal
        >>> from inference.sharding import make_mesh
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 1.0) @ "y"
        >>> mesh = make_mesh(axis_names=("particles",))
        >>> particles = importance_sampling(jax.random.key(0), model, {"y": 1.0},
        ...                                 num_particles=1000 * mesh.size, mesh=mesh)
        >>> particles.log_weights.sharding.spec
        P('particles',)
    """
    n = check_divisible(num_particles, mesh, PARTICLES, "num_particles")
    observations = as_observations(observations)
    keys_of = GlobalResampling(PARTICLES).keys

    def local(key, observations, args, proposal_args):
        traces, log_weights = jax.vmap(
            lambda k: importance_weighted(k, model, observations, args, proposal, proposal_args)
        )(keys_of(key, n))
        return WeightedParticles(traces, log_weights)

    return jax.shard_map(local, mesh=mesh, in_specs=P(), out_specs=P(PARTICLES), check_vma=False)(
        key, observations, args, proposal_args
    )


def _filter(
    key: jax.Array,
    kernel: GenerativeFunction,
    proposal: GenerativeFunction | None,
    init_carry: Any,
    observations: Any,
    xs: Any,
    num_particles: int,
    mesh: Mesh,
    population: Population,
    scheme: ResamplingScheme,
    ess_threshold: float,
) -> ParticleFilterResult:
    """The unsharded filter on each device's block, with ``population``'s collectives."""
    n = check_divisible(num_particles, mesh, PARTICLES, "num_particles")

    def local(key, init_carry, observations, xs):
        return _particle_filter(
            key,
            kernel,
            init_carry,
            observations,
            xs,
            n,
            proposal,
            scheme,
            ess_threshold,
            population,
        )

    # The output specs: a ParticleFilterResult whose fields are PartitionSpecs (a pytree prefix).
    per_particle: Any = P(None, PARTICLES)
    everywhere: Any = P()
    specs = ParticleFilterResult(
        particles=per_particle,
        log_weights=per_particle,
        ancestors=per_particle,
        ess=everywhere,
        resampled=everywhere,
        final_carry=P(PARTICLES),
        log_marginal_likelihood=everywhere,
    )
    return jax.shard_map(local, mesh=mesh, in_specs=P(), out_specs=specs, check_vma=False)(
        key, init_carry, observations, xs
    )


def bootstrap_filter(
    key: jax.Array,
    kernel: GenerativeFunction,
    init_carry: Any,
    observations: Any,
    xs: Any = None,
    *,
    num_particles: int,
    mesh: Mesh,
    resampling: ResamplingScheme | Islands = systematic,
    ess_threshold: float = 0.5,
) -> ParticleFilterResult:
    """``inference.smc.bootstrap_filter`` with the particles split across ``mesh``.

    With a resampling scheme, resampling is global (the decision uses the ESS of all ``N``
    particles, and ancestors are drawn among all of them with the unsharded scheme):
    particles, log weights, ancestors and ``resampled`` are the unsharded filter's (bit for
    bit where each particle's arithmetic compiles alike; see docs/scaling.md), while ``ess``
    and ``log_marginal_likelihood`` (sums across devices) agree with it to float rounding.
    With ``Islands(scheme)`` each device resamples its own particles.

    Args:
        key: a PRNG key.
        kernel: the step kernel ``kernel(carry, x) -> (carry, y)``.
        init_carry: the carry before the first step.
        observations: observed addresses batched over time, e.g. ``{"y": ys}``.
        xs: per-step inputs (leading axis ``T``), or ``None``.
        num_particles: ``N``, a multiple of the size of the mesh axis ``"particles"``.
        mesh: a mesh with an axis ``"particles"``.
        resampling: a resampling scheme (global resampling) or ``Islands(scheme)``.
        ess_threshold: resample when ``ESS < ess_threshold * N`` (per island: ``* N / R``).

    Returns:
        A ``ParticleFilterResult`` whose per-particle arrays are split along
        ``"particles"`` (axis 1 of ``particles``, ``log_weights`` and ``ancestors``; axis 0
        of ``final_carry``); ``ancestors`` index all ``N`` particles.

    Raises:
        ValueError: as ``inference.smc.bootstrap_filter``, or if ``num_particles`` does not
            divide evenly.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, normal
        >>> from inference import smc
        >>> from inference.sharding import make_mesh
        >>> @gen
        ... def step(z, _):
        ...     z = normal(0.9 * z, 1.0) @ "z"
        ...     return z, normal(z, 0.5) @ "y"
        >>> ys = jnp.array([0.3, 1.2, 0.8, -0.4])
        >>> mesh = make_mesh(axis_names=("particles",))
        >>> sharded = bootstrap_filter(jax.random.key(0), step, 0.0, {"y": ys},
        ...                            num_particles=64 * mesh.size, mesh=mesh)
        >>> single = smc.bootstrap_filter(jax.random.key(0), step, 0.0, {"y": ys},
        ...                               num_particles=64 * mesh.size)
        >>> bool(jnp.array_equal(sharded.log_weights, single.log_weights))
        True
        >>> bool(jnp.allclose(sharded.log_marginal_likelihood, single.log_marginal_likelihood))
        True
    """
    return _filter(
        key,
        kernel,
        None,
        init_carry,
        observations,
        xs,
        num_particles,
        mesh,
        *population_for(PARTICLES, resampling),
        ess_threshold,
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
    mesh: Mesh,
    resampling: ResamplingScheme | Islands = systematic,
    ess_threshold: float = 0.5,
) -> ParticleFilterResult:
    """``inference.smc.guided_filter`` with the particles split across ``mesh``.

    As ``bootstrap_filter`` (sharded), with latents from ``proposal(carry, x, observation_t)``.

    Args:
        key: a PRNG key.
        kernel: the step kernel ``kernel(carry, x) -> (carry, y)``.
        proposal: a generative function ``proposal(carry, x, observation_t)``.
        init_carry: the carry before the first step.
        observations: observed addresses batched over time, e.g. ``{"y": ys}``.
        xs: per-step inputs (leading axis ``T``), or ``None``.
        num_particles: ``N``, a multiple of the size of the mesh axis ``"particles"``.
        mesh: a mesh with an axis ``"particles"``.
        resampling: a resampling scheme (global resampling) or ``Islands(scheme)``.
        ess_threshold: resample when ``ESS < ess_threshold * N`` (per island: ``* N / R``).

    Returns:
        A ``ParticleFilterResult`` split along ``"particles"`` (see ``bootstrap_filter``).
    """
    return _filter(
        key,
        kernel,
        proposal,
        init_carry,
        observations,
        xs,
        num_particles,
        mesh,
        *population_for(PARTICLES, resampling),
        ess_threshold,
    )


def tempered_smc(
    key: jax.Array,
    model: GenerativeFunction,
    observations: Any,
    rejuvenation: Rejuvenation,
    *,
    schedule: Any,
    num_particles: int,
    mesh: Mesh,
    args: tuple = (),
    num_mcmc_steps: int = 1,
    resampling: ResamplingScheme | Islands = systematic,
    ess_threshold: float = 0.5,
) -> TemperedSMCResult:
    """``inference.smc.tempered_smc`` with the particles split across ``mesh``.

    Reweighting and MCMC rejuvenation are per particle, with each particle's unsharded keys;
    the ESS and resampling are global as in ``bootstrap_filter`` (sharded), or per device
    with ``Islands(scheme)``. With global resampling the particles and log weights are the
    unsharded sampler's up to float rounding (bit for bit where each particle's arithmetic
    compiles alike), and ``ess`` and the evidence agree with it to float rounding.

    Args:
        key: a PRNG key.
        model: the generative function.
        observations: a dict/``ChoiceMap`` of observed values; their sites are tempered.
        rejuvenation: a function from the tempered target to an ``inference.mcmc.Kernel``.
        schedule: ``(K + 1,)`` non-decreasing inverse temperatures ending at 1.
        num_particles: ``N``, a multiple of the size of the mesh axis ``"particles"``.
        mesh: a mesh with an axis ``"particles"``.
        args: the model's arguments.
        num_mcmc_steps: MCMC steps per tempering step.
        resampling: a resampling scheme (global resampling) or ``Islands(scheme)``.
        ess_threshold: resample when ``ESS < ess_threshold * N`` (per island: ``* N / R``).

    Returns:
        A ``TemperedSMCResult`` whose particles are split along ``"particles"`` (and the
        rejuvenation info along its axis 1).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, normal, select
        >>> from inference import mcmc
        >>> from inference.sharding import make_mesh
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 0.5) @ "y"
        >>> mesh = make_mesh(axis_names=("particles",))
        >>> result = tempered_smc(jax.random.key(0), model, {"y": 1.0},
        ...                       lambda target: mcmc.mh(target, select("mu")),
        ...                       schedule=jnp.linspace(0.0, 1.0, 6),
        ...                       num_particles=256 * mesh.size, mesh=mesh)
        >>> result.particles.log_weights.sharding.spec
        P('particles',)
    """
    n = check_divisible(num_particles, mesh, PARTICLES, "num_particles")
    schedule = _check_schedule(schedule)
    population, scheme = population_for(PARTICLES, resampling)
    observations = as_observations(observations)

    def local(key, observations, schedule, args):
        return _tempered_smc(
            key,
            model,
            observations,
            rejuvenation,
            schedule,
            n,
            args,
            num_mcmc_steps,
            scheme,
            ess_threshold,
            population,
        )

    everywhere: Any = P()
    specs = TemperedSMCResult(
        particles=P(PARTICLES),  # type: ignore[arg-type]
        schedule=everywhere,
        ess=everywhere,
        resampled=everywhere,
        rejuvenation_info=P(None, PARTICLES),
        num_steps=everywhere,
    )
    return jax.shard_map(local, mesh=mesh, in_specs=P(), out_specs=specs, check_vma=False)(
        key, observations, schedule, args
    )
