"""Weak-derivative couplings for measure-valued derivatives.

For a parameter ``θ`` of ``p_θ``, ``∂_θ p_θ = c_θ (p⁺ − p⁻)`` with ``p±`` probability
distributions, so ``∂_θ E_{p_θ}[f] = c_θ (E_{p⁺}[f] − E_{p⁻}[f])``. ``couplings`` returns, for
one distribution and its draw ``x``, a list of ``(θ, c, x⁺, x⁻)`` with every entry broadcast to
the draw's shape (one derivative per element); ``x⁻ = None`` means "the draw ``x`` itself".

- Normal, location:  c = 1/(σ√(2π)),  x± = μ ± σR,  R ~ Rayleigh (Weibull(√2, 2)).
- Normal, scale:     c = 1/σ,  x⁺ = μ + σM (M double-sided Maxwell),  x⁻ = μ + σε.
- Bernoulli(p):      c = 1,  x⁺ = 1,  x⁻ = 0.
- Categorical(π):    for each class i: c = 1,  x⁺ = i,  x⁻ = x  (``Σ_i ∂π_i = 0``).
- Poisson(λ):        c = 1,  x⁺ = x + 1,  x⁻ = x.
- Geometric(p) (failures before the first success): c = 1/p,  x⁺ = x,
  x⁻ = G₁ + G₂ + 1 with fresh ``G₁, G₂ ~ Geometric(p)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpyro.distributions as nd

from ppl._errors import AddressError
from ppl.adev._primitive import where

_SUPPORTED = (
    nd.Normal,
    nd.BernoulliProbs,
    nd.BernoulliLogits,
    nd.CategoricalProbs,
    nd.CategoricalLogits,
    nd.Poisson,
    nd.GeometricProbs,
    nd.GeometricLogits,
)


def couplings(
    dist: Any, x: Any, key_data: Any, address: tuple, check_only: bool = False
) -> list[tuple[Any, Any, Any, Any]]:
    if not isinstance(dist, _SUPPORTED) or type(dist) is nd.ZeroInflatedPoisson:
        raise AddressError(
            f"mvd at {where(address)}: no measure-valued derivative for {type(dist).__name__} (mvd "
            "serves normal, bernoulli/flip, categorical, poisson and geometric); use "
            "reinforce() there"
        )
    if check_only:
        return []
    shape = jnp.shape(x)

    def full(a):
        return jnp.broadcast_to(a, shape)

    def fresh() -> jax.Array:  # only normal and geometric couplings draw
        return jax.random.fold_in(jax.random.wrap_key_data(key_data), 2)

    if isinstance(dist, nd.Normal):
        k1, k2, k3, k4 = jax.random.split(fresh(), 4)
        mu, sigma = full(dist.loc), full(dist.scale)
        rayleigh = jnp.sqrt(2.0) * jnp.sqrt(-jnp.log(jax.random.uniform(k1, shape, minval=1e-12)))
        maxwell = jnp.sqrt(jax.random.chisquare(k2, 3.0, shape))
        sign = jnp.where(jax.random.bernoulli(k3, 0.5, shape), 1.0, -1.0)
        eps = jax.random.normal(k4, shape)
        return [
            (
                mu,
                1.0 / (sigma * jnp.sqrt(2.0 * jnp.pi)),
                mu + sigma * rayleigh,
                mu - sigma * rayleigh,
            ),
            (sigma, 1.0 / sigma, mu + sigma * sign * maxwell, mu + sigma * eps),
        ]
    if isinstance(dist, nd.BernoulliProbs | nd.BernoulliLogits):
        one = jnp.ones(shape, x.dtype)
        return [(full(dist.probs), jnp.ones(shape), one, jnp.zeros(shape, x.dtype))]
    if isinstance(dist, nd.CategoricalProbs | nd.CategoricalLogits):
        probs = jnp.broadcast_to(dist.probs, (*shape, dist.probs.shape[-1]))
        return [
            (probs[..., i], jnp.ones(shape), jnp.full(shape, i, x.dtype), None)
            for i in range(probs.shape[-1])
        ]
    if isinstance(dist, nd.Poisson):
        return [(full(dist.rate), jnp.ones(shape), x + 1, None)]
    # geometric
    p = full(dist.probs)
    k1, k2 = jax.random.split(fresh())
    g1 = nd.GeometricProbs(p).sample(k1)
    g2 = nd.GeometricProbs(p).sample(k2)
    return [(p, 1.0 / p, x, (g1 + g2 + 1).astype(x.dtype))]
