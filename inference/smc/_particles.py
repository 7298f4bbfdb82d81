"""``WeightedParticles``: traces with importance log weights, the output of IS, SIR and SMC."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from inference.smc._resampling import (
    ResamplingScheme,
    effective_sample_size,
    log_mean_exp,
    systematic,
)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class WeightedParticles:
    """``N`` traces of a model with unnormalised log importance weights.

    The weights are kept on the scale of the marginal likelihood: ``mean(exp(log_weights))``
    is an unbiased estimate of the normalising constant ``Z = p(observations)`` (for importance
    sampling, and for SMC with a fixed schedule), and ``softmax(log_weights)`` weights the
    traces as a sample of the posterior.

    Attributes:
        traces: the model's traces, batched: every leaf has a leading axis of length ``N``.
        log_weights: ``(N,)`` log importance weights.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, normal
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 1.0) @ "y"
        >>> traces, w = jax.vmap(lambda k: model.generate(k, {"y": 0.5}, ()))(
        ...     jax.random.split(jax.random.key(0), 1000))
        >>> particles = WeightedParticles(traces, w)
        >>> particles.num_particles, round(float(particles.mean(lambda c: c["mu"])), 1)
        (1000, 0.2)
    """

    traces: Any
    log_weights: jax.Array

    @property
    def num_particles(self) -> int:
        """``N``."""
        return int(self.log_weights.shape[-1])

    @property
    def log_marginal_likelihood(self) -> jax.Array:
        """``log mean exp(log_weights)``: the log of an unbiased estimate of ``Z``."""
        return log_mean_exp(self.log_weights)

    @property
    def normalized_weights(self) -> jax.Array:
        """``softmax(log_weights)``: the self-normalised importance weights."""
        return jax.nn.softmax(self.log_weights, axis=-1)

    @property
    def effective_sample_size(self) -> jax.Array:
        """Kish's ESS of the weights."""
        return effective_sample_size(self.log_weights)

    def mean(self, fn: Any) -> Any:
        """The self-normalised estimate of ``E[fn(choices)]`` under the posterior.

        Args:
            fn: a function of one particle's choices (a ``ChoiceMap``) to a pytree of arrays.

        Returns:
            ``sum_i w_i fn(choices_i)`` with ``w = normalized_weights``.
        """
        values = jax.vmap(lambda trace: fn(trace.choices))(self.traces)
        weights = self.normalized_weights
        return jax.tree.map(lambda v: jnp.tensordot(weights, v, axes=(0, 0)), values)

    def resample(
        self, key: jax.Array, num_samples: int | None = None, scheme: ResamplingScheme = systematic
    ) -> WeightedParticles:
        """Resamples to ``num_samples`` equally weighted traces (sampling importance resampling).

        Every new log weight is ``log_marginal_likelihood``, so the estimate of ``Z`` is kept.

        Args:
            key: a PRNG key.
            num_samples: how many traces to draw (default ``N``).
            scheme: the resampling scheme.

        Returns:
            ``WeightedParticles`` with ``num_samples`` traces.
        """
        m = self.num_particles if num_samples is None else num_samples
        ancestors = scheme(key, self.log_weights, m)
        traces = jax.tree.map(lambda leaf: leaf[ancestors], self.traces)
        log_weights = jnp.full((m,), self.log_marginal_likelihood, self.log_weights.dtype)
        return WeightedParticles(traces, log_weights)
