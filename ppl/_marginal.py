"""Approximate marginalization and normalization: generative functions with estimated densities.

``marginal(gf, keep, proposal, particles)`` is the marginal of ``gf`` on the choices ``keep``
selects; the other choices ``u`` are integrated out by importance sampling with ``proposal``
(a generative function of ``(kept_choices, *args)``; by default ``gf``'s own internal
proposal). With ``K = particles`` and ``w(x, u) = p(x, u) / r(u | x)``:

* ``assess(x, args, key=...)``: ``p̂(x) = 1/K Σ_k w(x, u_k)``, ``u_k ~ r``: unbiased for ``p(x)``;
* ``simulate``: ``(x, u_1) ~ p``, ``u_{2..K} ~ r``, score ``log p̂(x)`` with the same formula:
  then ``1/p̂(x)`` is unbiased for ``1/p(x)`` (the sampled ``u_1`` is kept), so ``-score`` is an
  upper bound of ``-log p(x)`` in expectation — what hierarchical variational families (HVI,
  IWHVI) need for a lower bound.

``normalize(model, proposal, particles, observations)`` is the sampling-importance-resampling
approximation of the normalized target ``p(x | observations) ∝ p(x, observations)`` with the
same pair of density estimates for its ``simulate`` and ``assess``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from ppl._choicemap import EMPTY, ChoiceMap
from ppl._errors import AddressError
from ppl._interface import GenerativeFunction, Trace, as_constraints
from ppl._selection import Selection, as_selection


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EstimatedTrace(Trace):
    """A trace whose score is a density *estimate* (see ``marginal`` and ``normalize``)."""

    value: Any
    score: jax.Array
    args: tuple
    retval: Any

    @property
    def choices(self) -> Any:
        return self.value

    @property
    def site_scores(self) -> Any:
        return self.score


def _log_mean_exp(w: jax.Array) -> jax.Array:
    return jax.nn.logsumexp(w) - math.log(w.shape[0])


def _needs_key(owner: Any) -> AddressError:
    return AddressError(
        f"{owner!r} estimates its density by sampling, so its assess needs a key: call "
        "assess(choices, args, key=key) (inside a @gen model it cannot be scored by assess; "
        "use generate, which takes a key)"
    )


class _Estimated(GenerativeFunction):
    """Shared GFI for generative functions whose density is estimated with fresh draws."""

    particles: int

    def _fresh_weights(self, key: jax.Array, x: Any, args: tuple, n: int) -> jax.Array:
        raise NotImplementedError

    def assess(self, choices: Any, args: tuple = (), *, key: jax.Array | None = None):
        """``(log p̂(choices), choices)`` with ``p̂`` unbiased for the density; needs ``key``."""
        if key is None:
            raise _needs_key(self)
        x = as_constraints(choices)
        score = _log_mean_exp(self._fresh_weights(key, x, tuple(args), self.particles))
        return score, x

    def _retval(self, x: Any, args: tuple) -> Any:
        """The return value of a trace holding the choices ``x``."""
        raise NotImplementedError

    def _assess(self, choices, args):
        raise _needs_key(self)

    def _generate(self, key, constraints, args):
        if isinstance(constraints, ChoiceMap) and constraints.is_empty():
            return self._simulate(key, args), jnp.zeros(())
        score, x = self.assess(constraints, args, key=key)
        return EstimatedTrace(x, score, args, self._retval(x, args)), score

    def _update(self, key, trace, constraints, args):
        merged = trace.choices if _empty(constraints) else trace.choices | constraints
        new, _ = self._generate(key, merged, args)
        discard = EMPTY if _empty(constraints) else trace.choices.filter(_addresses(constraints))
        return new, new.score - trace.score, discard

    def _regenerate(self, key, trace, selection, args):
        if selection.is_empty():
            return self._update(key, trace, EMPTY, args)[:2]
        new = self._simulate(key, args)
        kept = trace.choices.filter(~selection)
        new, _ = self._generate(key, new.choices | kept, args)
        return new, new.score - trace.score


def _empty(constraints: Any) -> bool:
    return isinstance(constraints, ChoiceMap) and constraints.is_empty()


def _addresses(choices: ChoiceMap) -> Selection:
    from ppl._selection import select

    return select(*[path for path, _ in _paths(choices.to_dict())])


def _paths(tree: Any, prefix: tuple = ()) -> list:
    if isinstance(tree, dict):
        out: list = []
        for k, v in tree.items():
            out.extend(_paths(v, (*prefix, k)))
        return out
    return [(prefix, tree)]


class Marginal(_Estimated):
    """The marginal of ``gen_fn`` on the choices ``keep`` selects (see module docs).

    Example:
        >>> import jax
        >>> from ppl import gen, normal
        >>> @gen
        ... def joint():
        ...     u = normal(0.0, 1.0) @ "u"
        ...     return normal(u, 1.0) @ "x"  # marginally, x ~ N(0, sqrt 2)
        >>> q = marginal(joint, "x", particles=64)
        >>> tr = q.simulate(jax.random.key(0), ())
        >>> sorted(tr.choices.to_dict())
        ['x']
    """

    def __init__(
        self,
        gen_fn: GenerativeFunction,
        keep: Any,
        proposal: GenerativeFunction | None = None,
        particles: int = 1,
    ):
        if particles < 1:
            raise ValueError(f"particles={particles}; give at least 1")
        self.gen_fn, self.keep = gen_fn, as_selection(keep)
        self.proposal, self.particles = proposal, particles

    def __repr__(self) -> str:
        return f"marginal({self.gen_fn!r}, particles={self.particles})"

    def _weight(self, key: jax.Array, x: Any, args: tuple) -> jax.Array:
        if self.proposal is None:
            _, w = self.gen_fn.generate(key, x, args)
            return w
        u = self.proposal.simulate(key, (x, *args))
        log_p, _ = self.gen_fn.assess(u.choices | x, args)
        return log_p - u.score

    def _fresh_weights(self, key, x, args, n):
        return jax.vmap(lambda k: self._weight(k, x, args))(jax.random.split(key, n))

    def _retval(self, x, args):
        return x  # the kept choices: what the joint returns depends on the integrated-out ones

    def _simulate(self, key, args):
        k_joint, k_rest = jax.random.split(key)
        joint = self.gen_fn.simulate(k_joint, args)
        x = joint.choices.filter(self.keep)
        if self.proposal is None:
            kept = joint.site_scores.filter(self.keep)
            w_own = sum(jnp.sum(s) for s in jax.tree_util.tree_leaves(kept))
        else:
            u = joint.choices.filter(~self.keep)
            log_r, _ = self.proposal.assess(u, (x, *args))
            w_own = joint.score - log_r
        w = jnp.concatenate(
            [jnp.reshape(w_own, (1,)), self._fresh_weights(k_rest, x, args, self.particles - 1)]
        )
        return EstimatedTrace(x, _log_mean_exp(w), args, self._retval(x, args))

    def _sites(self, trace, args, query):
        raise NotImplementedError("supports of a marginal: use the joint's supports")


def marginal(
    gen_fn: GenerativeFunction,
    keep: Any,
    proposal: GenerativeFunction | None = None,
    particles: int = 1,
) -> Marginal:
    """The marginal of ``gen_fn`` on ``keep``, with densities estimated by importance sampling.

    Args:
        gen_fn: the joint generative function ``p(x, u; args)``.
        keep: the selection (or address) of the choices ``x`` to keep.
        proposal: a generative function of ``(x, *args)`` proposing the other choices ``u``;
            ``None`` uses ``gen_fn``'s internal proposal (``generate``).
        particles: ``K``, the number of ``u`` draws per density estimate.

    Returns:
        A ``Marginal``: ``simulate`` samples ``x`` with score ``log p̂(x)`` (``1/p̂`` unbiased
        for ``1/p``); ``assess(x, args, key=key)`` gives ``log p̂(x)`` (``p̂`` unbiased). Its
        return value is ``x``, the kept choices (what ``gen_fn`` returns may depend on the
        choices integrated out).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, normal
        >>> @gen
        ... def joint():
        ...     u = normal(0.0, 1.0) @ "u"
        ...     return normal(u, 1.0) @ "x"
        >>> q = marginal(joint, "x", particles=1000)
        >>> log_p, _ = q.assess({"x": 0.5}, (), key=jax.random.key(1))
        >>> exact = jax.scipy.stats.norm.logpdf(0.5, 0.0, jnp.sqrt(2.0))
        >>> bool(abs(log_p - exact) < 0.05)
        True
    """
    return Marginal(gen_fn, keep, proposal, particles)


class Normalize(_Estimated):
    """SIR approximation of ``p(x | observations)`` from ``model`` and ``proposal``."""

    def __init__(
        self,
        model: GenerativeFunction,
        proposal: GenerativeFunction,
        particles: int,
        observations: Any = None,
    ):
        if particles < 1:
            raise ValueError(f"particles={particles}; give at least 1")
        self.model, self.proposal, self.particles = model, proposal, particles
        self.observations = as_constraints(observations if observations is not None else {})

    def __repr__(self) -> str:
        return f"normalize({self.model!r}, particles={self.particles})"

    def _log_weight(self, x: Any, log_q: jax.Array, args: tuple) -> jax.Array:
        log_p, _ = self.model.assess(x | self.observations, args)
        return log_p - log_q

    def _fresh(self, key: jax.Array, args: tuple, n: int):
        def one(k):
            tr = self.proposal.simulate(k, args)
            return tr.choices, self._log_weight(tr.choices, tr.score, args)

        return jax.vmap(one)(jax.random.split(key, n))

    def _fresh_weights(self, key, x, args, n):
        own_q, _ = self.proposal.assess(x, args)
        _, others = self._fresh(key, args, n - 1)
        own = self._log_weight(x, own_q, args)
        return jnp.concatenate([jnp.reshape(own, (1,)), others])

    def _retval(self, x, args):
        return self.model.assess(x | self.observations, args)[1]

    def _simulate(self, key, args):
        k_draws, k_pick = jax.random.split(key)
        xs, w = self._fresh(k_draws, args, self.particles)
        j = jax.random.categorical(k_pick, w)
        x = jax.tree.map(lambda a: a[j], xs)
        log_p, retval = self.model.assess(x | self.observations, args)
        # log p̃(x) − log Ẑ: the SIR density estimate of the chosen particle
        return EstimatedTrace(x, log_p - _log_mean_exp(w), args, retval)

    def assess(self, choices: Any, args: tuple = (), *, key: jax.Array | None = None):
        """``log p̃(x) − log Ẑ`` with ``Ẑ`` from ``x`` and ``K − 1`` fresh proposals."""
        if key is None:
            raise _needs_key(self)
        x = as_constraints(choices)
        w = self._fresh_weights(key, x, tuple(args), self.particles)
        log_p, _ = self.model.assess(x | self.observations, tuple(args))
        return log_p - _log_mean_exp(w), x

    def _sites(self, trace, args, query):
        raise NotImplementedError("supports of a normalized target: use the model's supports")


def normalize(
    model: GenerativeFunction,
    proposal: GenerativeFunction,
    particles: int,
    observations: Any = None,
) -> Normalize:
    """The normalized posterior ``p(x | observations)``, approximated by SIR with ``proposal``.

    Args:
        model: the joint ``p(x, observations; args)``.
        proposal: a generative function of ``args`` proposing every latent choice ``x``.
        particles: ``K``, the number of proposals per sample or density estimate.
        observations: the observed choices (a dict or ``ChoiceMap``).

    Returns:
        A ``Normalize``: ``simulate`` picks one of ``K`` proposals by importance weight (score
        ``log p̃(x) − log Ẑ``); ``assess(x, args, key=key)`` estimates the same density.

    Example:
        >>> import jax
        >>> from ppl import gen, normal
        >>> @gen
        ... def model():
        ...     z = normal(0.0, 1.0) @ "z"
        ...     return normal(z, 1.0) @ "x"
        >>> @gen
        ... def prior():
        ...     return normal(0.0, 1.0) @ "z"
        >>> posterior = normalize(model, prior, particles=500, observations={"x": 2.0})
        >>> zs = jax.jit(jax.vmap(lambda k: posterior.simulate(k, ()).choices["z"]))(
        ...     jax.random.split(jax.random.key(0), 400))
        >>> bool(abs(zs.mean() - 1.0) < 0.15)  # exact posterior mean: 1
        True
    """
    return Normalize(model, proposal, particles, observations)
