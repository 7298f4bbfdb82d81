"""HMC, NUTS and MALA over the continuous choices of a selection, through blackjax.

Each step maps the selected choices to the unconstrained space (``Unconstrained``), runs one
blackjax transition on ``log p(T(u), rest) + log|det dT/du|`` with the rest of the trace held
fixed, and writes the result back into the trace. The state is the trace, so these kernels
cycle with ``mh``/``gibbs`` kernels on other choices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import blackjax

from inference.mcmc._kernel import Kernel, _identity
from inference.mcmc._unconstrained import Unconstrained
from ppl import GenerativeFunction, Selection


def _on_trace(model: GenerativeFunction, selection: Selection, make: Callable) -> Kernel:
    """Wraps ``make(logdensity_fn) -> blackjax.SamplingAlgorithm`` as a kernel on traces."""

    def step(key, trace):
        view = Unconstrained(model, trace, selection)
        algorithm = make(view.logdensity_fn(trace))
        state, info = algorithm.step(key, algorithm.init(view.position(trace)))
        return view.to_trace(state.position, trace), info

    return Kernel(_identity, step, selection)


def hmc(
    model: GenerativeFunction,
    selection: Selection,
    step_size: float,
    inverse_mass_matrix: Any,
    num_integration_steps: int,
) -> Kernel:
    """Hamiltonian Monte Carlo (``blackjax.hmc``) on the selected continuous choices.

    Args:
        model: the generative function.
        selection: continuous choices to move (discrete ones are an error).
        step_size: leapfrog step size.
        inverse_mass_matrix: diagonal (1-d) or dense (2-d) over the flattened position.
        num_integration_steps: leapfrog steps per transition.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, normal, select
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 0.5) @ "y"
        >>> trace, _ = model.generate(jax.random.key(0), {"y": 1.0}, ())
        >>> kernel = hmc(model, select("mu"), 0.3, jnp.ones(1), 5)
        >>> trace, info = jax.jit(kernel.step)(jax.random.key(1), trace)
        >>> float(trace.choices["y"])
        1.0
    """
    return _on_trace(
        model,
        selection,
        lambda logdensity: blackjax.hmc(
            logdensity, step_size, inverse_mass_matrix, num_integration_steps
        ),
    )


def nuts(
    model: GenerativeFunction,
    selection: Selection,
    step_size: float,
    inverse_mass_matrix: Any,
    max_num_doublings: int = 10,
) -> Kernel:
    """The No-U-Turn sampler (``blackjax.nuts``) on the selected continuous choices.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, normal, select
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 0.5) @ "y"
        >>> trace, _ = model.generate(jax.random.key(0), {"y": 1.0}, ())
        >>> trace, info = nuts(model, select("mu"), 0.5, jnp.ones(1)).step(jax.random.key(1), trace)
        >>> bool(info.acceptance_rate >= 0.0)
        True
    """
    return _on_trace(
        model,
        selection,
        lambda logdensity: blackjax.nuts(
            logdensity, step_size, inverse_mass_matrix, max_num_doublings=max_num_doublings
        ),
    )


def mala(model: GenerativeFunction, selection: Selection, step_size: float) -> Kernel:
    """Metropolis-adjusted Langevin (``blackjax.mala``) on the selected continuous choices.

    Example:
        >>> import jax
        >>> from ppl import gen, normal, select
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 0.5) @ "y"
        >>> trace, _ = model.generate(jax.random.key(0), {"y": 1.0}, ())
        >>> trace, info = mala(model, select("mu"), 0.1).step(jax.random.key(1), trace)
        >>> float(trace.choices["y"])
        1.0
    """
    return _on_trace(model, selection, lambda logdensity: blackjax.mala(logdensity, step_size))
