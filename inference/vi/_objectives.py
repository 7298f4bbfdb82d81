"""Variational objectives, written as ordinary ``@expectation`` programs.

None of these is special to the core: each is a few lines over the generative function
interface, ``marginal``/``normalize`` and ADEV strategies, and a user-defined objective has the
same power. Conventions (all objectives are *maximised*):

* an objective is called ``objective(key, params, observations, *args)``;
* the guide is called with ``guide_args(params, *args)`` (default ``(params, *args)``) and the
  model with ``model_args(params, *args)`` (default ``args``), so a model with learned
  parameters (a VAE decoder) takes them from ``params`` through ``model_args``;
* ``observations`` (a dict or ``ChoiceMap``) are merged into the guide's choices for the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ppl import GenerativeFunction, marginal
from ppl._selection import all_addresses
from ppl.adev import Expectation, expectation, leave_one_out, reinforce

Args = Callable[..., tuple]


def _guide_default(params: Any, *args: Any) -> tuple:
    return (params, *args)


def _model_default(params: Any, *args: Any) -> tuple:
    return tuple(args)


def _log_weight(model, guide, key, params, observations, args, model_args, guide_args):
    tr = guide.simulate(key, guide_args(params, *args))
    log_p, _ = model.assess(tr.choices | observations, model_args(params, *args))
    return log_p - tr.score


def elbo(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    *,
    model_args: Args = _model_default,
    guide_args: Args = _guide_default,
) -> Expectation:
    """The evidence lower bound ``E_q[log p(x, z) − log q(z)]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, normal
        >>> @gen
        ... def model():
        ...     z = normal(0.0, 1.0) @ "z"
        ...     return normal(z, 1.0) @ "x"
        >>> @gen
        ... def guide(params):
        ...     return normal(params["mu"], jnp.exp(params["log_sigma"])) @ "z"
        >>> objective = elbo(model, guide)
        >>> exact = {"mu": jnp.array(1.0), "log_sigma": jnp.log(jnp.sqrt(0.5))}  # x = 2
        >>> values = jax.vmap(lambda k: objective.estimate(k, exact, {"x": 2.0}))(
        ...     jax.random.split(jax.random.key(0), 100))
        >>> float(values.std()) < 1e-5  # at the exact posterior the ELBO is log p(x) exactly
        True
    """

    @expectation
    def elbo_objective(key, params, observations, *args):
        return _log_weight(model, guide, key, params, observations, args, model_args, guide_args)

    return elbo_objective


def iwae(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    particles: int,
    *,
    model_args: Args = _model_default,
    guide_args: Args = _guide_default,
) -> Expectation:
    """The importance-weighted bound ``E[log 1/K Σ_k p(x, z_k)/q(z_k)]`` (``K = particles``).

    It increases with ``K`` towards ``log p(x)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, normal
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "z", 1.0) @ "x"
        >>> @gen
        ... def guide(params):
        ...     return normal(params, 1.0) @ "z"
        >>> keys = jax.random.split(jax.random.key(0), 2000)
        >>> def bound(k):
        ...     objective = iwae(model, guide, k)
        ...     return jax.vmap(lambda key: objective.estimate(key, 0.0, {"x": 2.0}))(keys).mean()
        >>> bool(bound(1) < bound(10))
        True
    """

    @expectation
    def iwae_objective(key, params, observations, *args):
        keys = jax.random.split(key, particles)
        w = jax.vmap(
            lambda k: _log_weight(
                model, guide, k, params, observations, args, model_args, guide_args
            )
        )(keys)
        return jax.nn.logsumexp(w) - jnp.log(particles)

    return iwae_objective


def vimco(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    particles: int,
    *,
    model_args: Args = _model_default,
    guide_args: Args = _guide_default,
) -> Expectation:
    """The IWAE bound with every guide choice estimated by REINFORCE with the multi-sample
    leave-one-out baseline (VIMCO-style): for guides with discrete choices.

    Example:
        >>> import jax
        >>> from ppl import flip, gen, normal
        >>> @gen
        ... def model():
        ...     c = flip(0.5) @ "c"
        ...     return normal(2.0 * c, 1.0) @ "x"
        >>> @gen
        ... def guide(logit):
        ...     return flip(jax.nn.sigmoid(logit)) @ "c"
        >>> g = vimco(model, guide, 4).grad_estimate(jax.random.key(0), 0.0, {"x": 2.0})[0]
        >>> g.shape
        ()
    """
    objective = iwae(model, guide, particles, model_args=model_args, guide_args=guide_args)
    return objective.with_estimators({all_addresses(): reinforce(leave_one_out())})


def hvi(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    keep: Any,
    reverse: GenerativeFunction,
    *,
    model_args: Args = _model_default,
    guide_args: Args = _guide_default,
) -> Expectation:
    """Hierarchical VI: the guide ``q(z, u)`` has auxiliary choices ``u`` (all but ``keep``),
    and a reverse model ``r(u | z)`` (called with ``(z, *guide_args)``) gives the bound
    ``E[log p(x, z) + log r(u | z) − log q(z, u)]``: the ELBO of ``marginal(guide, keep,
    reverse, particles=1)``.
    """
    return iwhvi(model, guide, keep, reverse, 1, model_args=model_args, guide_args=guide_args)


def iwhvi(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    keep: Any,
    reverse: GenerativeFunction,
    particles: int,
    *,
    model_args: Args = _model_default,
    guide_args: Args = _guide_default,
) -> Expectation:
    """Importance-weighted hierarchical VI: the ELBO of ``marginal(guide, keep, reverse, K)``,
    whose density estimate tightens the HVI bound as ``K`` grows.

    Example:
        >>> import jax
        >>> from ppl import gen, normal
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "z", 1.0) @ "x"
        >>> @gen
        ... def guide(params):
        ...     u = normal(0.0, 1.0) @ "u"
        ...     return normal(params + u, 0.5) @ "z"
        >>> @gen
        ... def reverse(z, params):
        ...     return normal(0.8 * (z["z"] - params), 0.5) @ "u"
        >>> objective = iwhvi(model, guide, "z", reverse, particles=8)
        >>> objective.estimate(jax.random.key(0), 1.0, {"x": 2.0}).shape
        ()
    """
    q = marginal(guide, keep, proposal=reverse, particles=particles)
    return elbo(model, q, model_args=model_args, guide_args=guide_args)


def diwhvi(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    keep: Any,
    reverse: GenerativeFunction,
    particles: int,
    inner_particles: int,
    *,
    model_args: Args = _model_default,
    guide_args: Args = _guide_default,
) -> Expectation:
    """Doubly importance-weighted HVI: the IWAE bound (``particles`` outer samples) of
    ``marginal(guide, keep, reverse, inner_particles)``."""
    q = marginal(guide, keep, proposal=reverse, particles=inner_particles)
    return iwae(model, q, particles, model_args=model_args, guide_args=guide_args)


def rws_wake_phi(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    particles: int,
    *,
    model_args: Args = _model_default,
    guide_args: Args = _guide_default,
) -> Expectation:
    """Reweighted wake-sleep, wake update of the guide: ``Σ_k w̄_k log q(z_k)`` with
    ``z_k ~ q`` drawn without gradient and ``w̄`` the self-normalized importance weights, whose
    gradient is the self-normalized estimate of ``E_{p(z|x)}[∇ log q(z)]``."""

    @expectation
    def wake_phi(key, params, observations, *args):
        frozen = jax.lax.stop_gradient(params)

        def particle(k):
            tr = guide.simulate(k, guide_args(frozen, *args))
            z = jax.lax.stop_gradient(tr.choices)
            log_p, _ = model.assess(z | observations, model_args(frozen, *args))
            log_q, _ = guide.assess(z, guide_args(params, *args))
            return log_p - tr.score, log_q

        w, log_q = jax.vmap(particle)(jax.random.split(key, particles))
        return jnp.sum(jax.lax.stop_gradient(jax.nn.softmax(w)) * log_q)

    return wake_phi


def rws_sleep_phi(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    observed: Any,
    *,
    model_args: Args = _model_default,
    guide_args: Callable[[Any, Any], tuple] = lambda params, observations: (
        params,
        observations,
    ),
) -> Expectation:
    """Reweighted wake-sleep, sleep update of the guide: ``E_{p(z, x)}[log q(z | x)]`` on
    fantasies from the model; called ``objective(key, params, *args)``. ``observed`` selects
    the model's observed addresses; the guide gets ``guide_args(params, fantasy_observations)``.
    """
    from ppl._selection import as_selection

    selection = as_selection(observed)

    @expectation
    def sleep_phi(key, params, *args):
        tr = model.simulate(key, model_args(jax.lax.stop_gradient(params), *args))
        choices = jax.lax.stop_gradient(tr.choices)
        observations = choices.filter(selection)
        log_q, _ = guide.assess(choices.filter(~selection), guide_args(params, observations))
        return log_q

    return sleep_phi


def forward_kl(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    particles: int,
    *,
    model_args: Args = _model_default,
    guide_args: Args = _guide_default,
) -> Expectation:
    """The "Q-wake" forward-KL objective ``E_{p(z|x)}[log q(z)]``: one posterior draw by
    sampling-importance-resampling from ``particles`` draws of the frozen guide, then the
    guide's log density of it (gradient: ``∇ log q(z)`` at an approximate posterior draw).

    Example:
        >>> import jax
        >>> from ppl import gen, normal
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "z", 1.0) @ "x"
        >>> @gen
        ... def guide(mu):
        ...     return normal(mu, 1.0) @ "z"
        >>> objective = forward_kl(model, guide, 64)
        >>> keys = jax.random.split(jax.random.key(0), 500)
        >>> grads = jax.vmap(lambda k: objective.grad_estimate(k, 0.0, {"x": 2.0})[0])(keys)
        >>> bool(abs(grads.mean() - 1.0) < 0.2)  # E_post[z] - mu = 1
        True
    """

    @expectation
    def q_wake(key, params, observations, *args):
        frozen = jax.lax.stop_gradient(params)
        k_draws, k_pick = jax.random.split(key)

        def particle(k):
            tr = guide.simulate(k, guide_args(frozen, *args))
            log_p, _ = model.assess(tr.choices | observations, model_args(frozen, *args))
            return tr.choices, log_p - tr.score

        zs, w = jax.vmap(particle)(jax.random.split(k_draws, particles))
        j = jax.random.categorical(k_pick, w)
        z = jax.lax.stop_gradient(jax.tree.map(lambda a: a[j], zs))
        log_q, _ = guide.assess(z, guide_args(params, *args))
        return log_q

    return q_wake
