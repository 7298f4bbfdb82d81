"""SMC samplers by likelihood tempering, with MCMC rejuvenation.

The particles move through the targets ``p_beta(x | y) ∝ p0(x) exp(beta L(x))`` (see
``Tempered``) for ``0 = beta_0 < beta_1 < ... < beta_K = 1``: from the prior of the latents to
the posterior. Step ``k`` (Del Moral, Doucet & Jasra 2006, with MCMC moves):

1. reweight: ``log w += (beta_k - beta_{k-1}) L(x)``, computed as the weight of
   ``Tempered.update`` changing only the argument ``beta`` (``L`` is the sum of the model's
   log densities at the observed sites, from ``trace.site_scores``);
2. resample if ``ESS < ess_threshold * N``;
3. rejuvenate: ``num_mcmc_steps`` steps of an MCMC kernel built on the ``Tempered`` target, so
   it leaves ``p_{beta_k}(x | y)`` invariant.

After the last step the weighted particles target the posterior ``p(x | y)`` and, for a fixed
schedule, ``mean(exp(log_weights))`` is an unbiased estimate of ``p(y)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from inference.smc._importance import as_observations
from inference.smc._particles import WeightedParticles
from inference.smc._population import UNSHARDED, Population
from inference.smc._resampling import (
    ResamplingScheme,
    check_ess_threshold,
    effective_sample_size,
    systematic,
)
from inference.smc._tempered_target import Tempered
from ppl import GenerativeFunction

if TYPE_CHECKING:  # importing inference.mcmc at run time would import arviz (seconds)
    from inference.mcmc import Kernel

Rejuvenation = Callable[[GenerativeFunction], "Kernel"]
"""Builds the MCMC kernel from the tempered target, e.g. ``lambda t: mcmc.mh(t, select("mu"))``."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TemperedSMCResult:
    """The output of a tempered SMC sampler.

    Attributes:
        particles: ``WeightedParticles`` of the model's traces (``beta = 1``): weighted by
            ``log_weights`` they target the posterior, and
            ``particles.log_marginal_likelihood`` estimates ``log p(y)``.
        schedule: ``(K + 1,)`` the inverse temperatures used (for the adaptive sampler, padded
            with ``1.0`` after ``num_steps``).
        ess: ``(K,)`` the ESS after reweighting at each step (before resampling).
        resampled: ``(K,)`` whether each step resampled.
        rejuvenation_info: the MCMC kernel's info at each step's last MCMC move, leading axes
            ``(K, N)``.
        num_steps: the number of tempering steps taken.
    """

    particles: WeightedParticles
    schedule: jax.Array
    ess: jax.Array
    resampled: jax.Array
    rejuvenation_info: Any
    num_steps: jax.Array

    @property
    def log_marginal_likelihood(self) -> jax.Array:
        """``log mean exp(log_weights)``: the log evidence estimate."""
        return self.particles.log_marginal_likelihood


@dataclasses.dataclass(frozen=True)
class _Sampler:
    """What every tempering step shares (a plain container, closed over by the loops)."""

    target: Tempered
    kernel: Kernel
    num_particles: int
    num_mcmc_steps: int
    resampling: ResamplingScheme
    population: Population = UNSHARDED  # the particles held here, of all (see _population)

    def init(self, key: jax.Array, observations: Any, args: tuple, beta: Any) -> tuple:
        keys = self.population.keys(key, self.num_particles)
        traces, log_weights = jax.vmap(
            lambda k: self.target.generate(k, observations, (beta, *args))
        )(keys)
        return jax.vmap(self.kernel.init)(traces), log_weights

    def log_likelihoods(self, traces: Any) -> jax.Array:
        return jax.vmap(self.target.log_likelihood)(traces)

    def step(
        self, key: jax.Array, traces: Any, log_weights: jax.Array, beta: Any, threshold: float
    ) -> tuple:
        """Reweight to ``beta``, resample if the ESS is low, rejuvenate at ``beta``."""
        reweight_key, resample_key, move_key = jax.random.split(key, 3)
        n = self.num_particles

        def reweight(key, trace):
            new, weight, _ = self.target.update(key, trace, None, (beta, *trace.args[1:]))
            return new, weight

        traces, increments = jax.vmap(reweight)(self.population.keys(reweight_key, n), traces)
        log_weights = log_weights + increments
        ess = self.population.effective_sample_size(log_weights)
        traces, _, log_weights, resampled = self.population.resample(
            resample_key, log_weights, traces, jnp.asarray(True), threshold, self.resampling
        )

        def move(traces, key):
            return jax.vmap(self.kernel.step)(self.population.keys(key, n), traces)

        traces, infos = jax.lax.scan(move, traces, jax.random.split(move_key, self.num_mcmc_steps))
        info = jax.tree.map(lambda x: x[-1], infos)
        return traces, log_weights, ess, resampled, info


def _sampler(
    model: GenerativeFunction,
    observations: Any,
    rejuvenation: Rejuvenation,
    num_particles: int,
    num_mcmc_steps: int,
    resampling: ResamplingScheme,
    population: Population = UNSHARDED,
) -> tuple[_Sampler, Any]:
    observations = as_observations(observations)
    if observations.is_empty():
        raise ValueError("tempering needs observations: the likelihood is what gets tempered")
    if num_mcmc_steps < 1:
        raise ValueError(f"num_mcmc_steps must be at least 1, got {num_mcmc_steps}")
    target = Tempered(model, observations)
    kernel = rejuvenation(target)
    if not (callable(getattr(kernel, "init", None)) and callable(getattr(kernel, "step", None))):
        raise TypeError(
            "rejuvenation must build an inference.mcmc Kernel from the tempered target "
            f"(e.g. lambda target: mcmc.mh(target, select('mu'))); it returned "
            f"{type(kernel).__name__}"
        )
    sampler = _Sampler(target, kernel, num_particles, num_mcmc_steps, resampling, population)
    return sampler, observations


def _check_schedule(schedule: Any) -> jax.Array:
    schedule = jnp.asarray(schedule, dtype=jnp.result_type(float))
    if schedule.ndim != 1 or schedule.shape[0] < 2:
        raise ValueError(
            f"schedule must be a vector of at least two inverse temperatures, got shape "
            f"{schedule.shape}"
        )
    try:
        values = np.asarray(schedule)
    except jax.errors.TracerArrayConversionError:
        return schedule  # a traced schedule (inside jit) cannot be checked here
    if values[0] < 0 or values[-1] != 1 or np.any(np.diff(values) < 0):
        raise ValueError(
            f"schedule must be non-decreasing from beta_0 >= 0 (usually 0) to exactly 1, got "
            f"{values.tolist()}"
        )
    return schedule


def tempered_smc(
    key: jax.Array,
    model: GenerativeFunction,
    observations: Any,
    rejuvenation: Rejuvenation,
    *,
    schedule: Any,
    num_particles: int,
    args: tuple = (),
    num_mcmc_steps: int = 1,
    resampling: ResamplingScheme = systematic,
    ess_threshold: float = 0.5,
) -> TemperedSMCResult:
    """SMC from the prior to the posterior along a fixed tempering schedule.

    The particles start at ``Tempered.generate`` with ``beta = schedule[0]`` (the model's
    internal proposal: prior draws of the latents, equal weights when ``schedule[0] = 0``);
    each step reweights by ``(beta_k - beta_{k-1}) L``, resamples when the ESS is low and
    moves every particle with ``num_mcmc_steps`` steps of ``rejuvenation(target)``, an MCMC
    kernel on the ``Tempered`` target that leaves ``p_{beta_k}(x | y)`` invariant. With a
    fixed schedule, ``exp(log_marginal_likelihood)`` is an unbiased estimate of ``p(y)``.

    Args:
        key: a PRNG key.
        model: the generative function.
        observations: a dict/``ChoiceMap`` of observed values; their sites are tempered.
        rejuvenation: a function from the tempered target (a generative function) to an
            ``inference.mcmc.Kernel`` on it, e.g. ``lambda target: mcmc.hmc(target,
            select("mu"), 0.1, jnp.ones(1), 10)``.
        schedule: ``(K + 1,)`` non-decreasing inverse temperatures ending at 1.
        num_particles: ``N``.
        args: the model's arguments.
        num_mcmc_steps: MCMC steps per tempering step.
        resampling: the resampling scheme.
        ess_threshold: resample when ``ESS < ess_threshold * N`` after reweighting.

    Returns:
        A ``TemperedSMCResult``.

    Raises:
        ValueError: for a bad schedule or threshold, or no observations.
        AddressError: if an observation is at an address the model never visits.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, normal, select
        >>> from inference import mcmc
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 0.5) @ "y"
        >>> result = tempered_smc(jax.random.key(0), model, {"y": 1.0},
        ...                       lambda target: mcmc.mh(target, select("mu")),
        ...                       schedule=jnp.linspace(0.0, 1.0, 6), num_particles=2000,
        ...                       num_mcmc_steps=2)
        >>> round(float(result.particles.mean(lambda c: c["mu"])), 1)  # exact: 0.8
        0.8
        >>> exact = jax.scipy.stats.norm.logpdf(1.0, 0.0, 1.25 ** 0.5)
        >>> bool(abs(result.log_marginal_likelihood - exact) < 0.05)
        True
    """
    return _tempered_smc(
        key,
        model,
        observations,
        rejuvenation,
        schedule,
        num_particles,
        args,
        num_mcmc_steps,
        resampling,
        ess_threshold,
    )


def _tempered_smc(
    key: jax.Array,
    model: GenerativeFunction,
    observations: Any,
    rejuvenation: Rejuvenation,
    schedule: Any,
    num_particles: int,
    args: tuple,
    num_mcmc_steps: int,
    resampling: ResamplingScheme,
    ess_threshold: float,
    population: Population = UNSHARDED,
) -> TemperedSMCResult:
    """``tempered_smc`` on the ``num_particles`` particles held here, of ``population``."""
    check_ess_threshold(ess_threshold)
    schedule = _check_schedule(schedule)
    sampler, observations = _sampler(
        model, observations, rejuvenation, num_particles, num_mcmc_steps, resampling, population
    )
    init_key, steps_key = jax.random.split(key)
    traces, log_weights = sampler.init(init_key, observations, args, schedule[0])

    def body(state, inputs):
        traces, log_weights = state
        step_key, beta = inputs
        traces, log_weights, ess, resampled, info = sampler.step(
            step_key, traces, log_weights, beta, ess_threshold
        )
        return (traces, log_weights), (ess, resampled, info)

    num_steps = schedule.shape[0] - 1
    (traces, log_weights), (ess, resampled, info) = jax.lax.scan(
        body,
        (traces, log_weights),
        (jax.random.split(steps_key, num_steps), schedule[1:]),
    )
    return TemperedSMCResult(
        particles=WeightedParticles(traces.inner, log_weights),
        schedule=schedule,
        ess=ess,
        resampled=resampled,
        rejuvenation_info=info,
        num_steps=jnp.asarray(num_steps),
    )


def next_inverse_temperature(
    log_weights: jax.Array,
    log_likelihoods: jax.Array,
    beta: jax.Array,
    target_ess: float,
    num_bisections: int = 50,
) -> jax.Array:
    """The ``beta' in (beta, 1]`` at which the reweighted particles have the target ESS.

    Solves ``ESS(log_weights + (beta' - beta) L) = target_ess * N`` by bisection, or returns 1
    if the ESS at ``beta' = 1`` is still at least the target.

    Args:
        log_weights: ``(N,)`` current log weights.
        log_likelihoods: ``(N,)`` ``L`` of each particle.
        beta: the current inverse temperature.
        target_ess: the ESS to keep, as a fraction of ``N`` in ``(0, 1)``.
        num_bisections: bisection steps (the error in ``beta'`` is ``2^-num_bisections``).

    Example:
        >>> import jax.numpy as jnp
        >>> lw, L = jnp.zeros(4), jnp.array([0.0, -1.0, -2.0, -3.0])
        >>> beta = next_inverse_temperature(lw, L, jnp.asarray(0.0), 0.5)
        >>> round(float(effective_sample_size(lw + beta * L)), 3)
        2.0
    """
    n = log_weights.shape[0]
    log_likelihoods = jnp.where(jnp.isnan(log_likelihoods), -jnp.inf, log_likelihoods)

    def ess_at(delta):
        return effective_sample_size(log_weights + delta * log_likelihoods)

    room = 1.0 - beta

    def bisect(_, bounds):
        low, high = bounds
        middle = (low + high) / 2
        enough = ess_at(middle) >= target_ess * n
        return jnp.where(enough, middle, low), jnp.where(enough, high, middle)

    low, _ = jax.lax.fori_loop(0, num_bisections, bisect, (jnp.zeros_like(room), room))
    return jnp.where(ess_at(room) >= target_ess * n, 1.0, beta + low)


def adaptive_tempered_smc(
    key: jax.Array,
    model: GenerativeFunction,
    observations: Any,
    rejuvenation: Rejuvenation,
    *,
    num_particles: int,
    target_ess: float = 0.5,
    max_num_steps: int = 100,
    args: tuple = (),
    num_mcmc_steps: int = 1,
    resampling: ResamplingScheme = systematic,
) -> TemperedSMCResult:
    """Tempered SMC with the schedule chosen on the fly to keep the ESS at ``target_ess``.

    Each step picks ``beta_k`` by bisection (``next_inverse_temperature``) so the reweighted
    particles have ``ESS = target_ess * N``, then always resamples and rejuvenates as in
    ``tempered_smc``. It runs in one ``jax.lax.while_loop`` until ``beta = 1``; step
    ``max_num_steps`` jumps to ``beta = 1`` whatever the ESS (see ``result.ess``), so the
    particles always target the posterior. Because the schedule depends on the particles, the
    evidence estimate is consistent but no longer exactly unbiased.

    Args:
        key: a PRNG key.
        model: the generative function.
        observations: a dict/``ChoiceMap`` of observed values.
        rejuvenation: as for ``tempered_smc``.
        num_particles: ``N``.
        target_ess: the ESS fraction in ``(0, 1)`` to keep at each step.
        max_num_steps: the most tempering steps (the size of the recorded histories).
        args: the model's arguments.
        num_mcmc_steps: MCMC steps per tempering step.
        resampling: the resampling scheme.

    Returns:
        A ``TemperedSMCResult``; ``schedule``, ``ess``, ``resampled`` and
        ``rejuvenation_info`` have ``max_num_steps`` entries, of which ``num_steps`` are used.

    Example:
        >>> import jax
        >>> from ppl import gen, normal, select
        >>> from inference import mcmc
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 0.2) @ "y"
        >>> result = adaptive_tempered_smc(jax.random.key(0), model, {"y": 1.0},
        ...     lambda target: mcmc.mh(target, select("mu")), num_particles=1000)
        >>> int(result.num_steps) > 1, float(result.schedule[result.num_steps])
        (True, 1.0)
    """
    if not 0.0 < target_ess < 1.0:
        raise ValueError(f"target_ess is a fraction in (0, 1), got {target_ess!r}")
    sampler, observations = _sampler(
        model, observations, rejuvenation, num_particles, num_mcmc_steps, resampling
    )
    init_key, steps_key = jax.random.split(key)
    traces, log_weights = sampler.init(init_key, observations, args, 0.0)

    def one_step(k, beta, traces, log_weights):
        beta_next = next_inverse_temperature(
            log_weights, sampler.log_likelihoods(traces), beta, target_ess
        )
        beta_next = jnp.where(k == max_num_steps - 1, 1.0, beta_next)
        return beta_next, *sampler.step(
            jax.random.fold_in(steps_key, k), traces, log_weights, beta_next, 1.0
        )

    info_type = jax.eval_shape(
        lambda: one_step(jnp.asarray(0), jnp.asarray(0.0), traces, log_weights)[-1]
    )
    history = (
        jnp.ones(max_num_steps + 1).at[0].set(0.0),
        jnp.zeros(max_num_steps),
        jnp.zeros(max_num_steps, bool),
        jax.tree.map(lambda t: jnp.zeros((max_num_steps, *t.shape), t.dtype), info_type),
    )

    def cond(state):
        k, beta, *_ = state
        return (beta < 1.0) & (k < max_num_steps)

    def body(state):
        k, beta, traces, log_weights, (schedule, ess_history, resampled_history, infos) = state
        beta, traces, log_weights, ess, resampled, info = one_step(k, beta, traces, log_weights)
        history = (
            schedule.at[k + 1].set(beta),
            ess_history.at[k].set(ess),
            resampled_history.at[k].set(resampled),
            jax.tree.map(lambda buffer, x: buffer.at[k].set(x), infos, info),
        )
        return k + 1, beta, traces, log_weights, history

    state = (jnp.asarray(0), jnp.asarray(0.0), traces, log_weights, history)
    k, _, traces, log_weights, (schedule, ess, resampled, info) = jax.lax.while_loop(
        cond, body, state
    )
    return TemperedSMCResult(
        particles=WeightedParticles(traces.inner, log_weights),
        schedule=schedule,
        ess=ess,
        resampled=resampled,
        rejuvenation_info=info,
        num_steps=k,
    )
