"""blackjax's window adaptation on traces, as ``init``/``step``/``final`` over explicit state.

``blackjax.window_adaptation(...).run`` is one call over the whole warm-up. Here the same
algorithm (blackjax's ``window_adaptation.base`` updates, ``build_schedule`` schedule and
kernel) is driven one step at a time over an explicit ``AdaptationState``, so a warm-up can
run in chunks, be saved between them and resume; run in one go it gives blackjax's result.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation import window_adaptation as blackjax_window_adaptation

from inference.mcmc._unconstrained import Unconstrained
from ppl import GenerativeFunction, Selection


@functools.lru_cache(maxsize=16)
def schedule(num_steps: int) -> np.ndarray:
    """blackjax's Stan warm-up schedule: ``num_steps`` rows ``(stage, is_window_end)``.

    Cached (blackjax builds it as a Python list); the array is read-only.
    """
    with jax.ensure_compile_time_eval():  # a constant, also when called inside a jit
        rows = blackjax_window_adaptation.build_schedule(num_steps)
    table = np.asarray(rows, dtype=np.int32).reshape(num_steps, 2)
    table.flags.writeable = False
    return table


class AdaptationState(NamedTuple):
    """Where a warm-up is: the trace, blackjax's chain state and its adaptation state.

    ``trace`` holds the choices outside the selection (fixed during adaptation); the selected
    ones are ``chain.position`` on the unconstrained space.
    """

    trace: Any
    chain: Any
    adaptation: Any


class WindowAdaptation(NamedTuple):
    """The warm-up as pure functions, and sampling on from where it ends.

    ``init(trace)``; ``step(key, stage, state)`` for one row of ``schedule(num_steps)``;
    ``final(state) -> (state, parameters)`` with the adapted step size and inverse mass
    matrix; ``sample(key, state, parameters) -> (state, info)``, one transition with them;
    ``to_trace(state, position)``, the model's trace at a position of the chain (e.g.
    ``state.chain.position``).

    Sampling carries blackjax's chain state (position, log density and its gradient) from
    step to step, where a kernel on traces (``nuts``) starts it afresh from each trace: one
    evaluation of the log density and its gradient less per transition.
    """

    init: Callable[[Any], AdaptationState]
    step: Callable[[jax.Array, jax.Array, AdaptationState], AdaptationState]
    final: Callable[[AdaptationState], tuple[AdaptationState, dict]]
    sample: Callable[[jax.Array, AdaptationState, dict], tuple[AdaptationState, Any]]
    to_trace: Callable[[AdaptationState, Any], Any]


def stepwise_window_adaptation(
    model: GenerativeFunction,
    selection: Selection,
    algorithm: Any = blackjax.nuts,
    is_mass_matrix_diagonal: bool = True,
    target_acceptance_rate: float = 0.8,
    initial_step_size: float = 1.0,
) -> WindowAdaptation:
    """blackjax's window adaptation of the selected continuous choices, step by step.

    Each step is blackjax's: one transition of ``algorithm`` at the current step size and
    inverse mass matrix, then ``window_adaptation.base``'s update for the schedule row.
    """
    with warnings.catch_warnings():
        # base() is deprecated in favour of window_adaptation(...).run, which cannot stop
        # and resume; blackjax keeps base() at its released API, and window_adaptation is
        # the same algorithm on the same Welford and dual-averaging updates.
        warnings.simplefilter("ignore", DeprecationWarning)
        adapt_init, adapt_update, adapt_final = blackjax_window_adaptation.base(
            is_mass_matrix_diagonal, target_acceptance_rate=target_acceptance_rate
        )
    kernel = algorithm.build_kernel()

    def logdensity(trace):
        return Unconstrained(model, trace, selection).logdensity_fn(trace)

    def init(trace):
        position = Unconstrained(model, trace, selection).position(trace)
        return AdaptationState(
            trace,
            algorithm.init(position, logdensity(trace)),
            adapt_init(position, initial_step_size),
        )

    def transition(key, state, step_size, inverse_mass_matrix):
        """One transition of ``algorithm`` from the chain of ``state``: ``(chain, info)``."""
        return kernel(key, state.chain, logdensity(state.trace), step_size, inverse_mass_matrix)

    def step(key, stage, state):
        chain, info = transition(
            key, state, state.adaptation.step_size, state.adaptation.inverse_mass_matrix
        )
        adaptation = adapt_update(
            state.adaptation, (stage[0], stage[1]), chain.position, info.acceptance_rate
        )
        return AdaptationState(state.trace, chain, adaptation)

    def final(state):
        step_size, inverse_mass_matrix = adapt_final(state.adaptation)
        parameters = {"step_size": step_size, "inverse_mass_matrix": inverse_mass_matrix}
        return AdaptationState(state.trace, state.chain, None), parameters

    def sample(key, state, parameters):
        chain, info = transition(
            key, state, parameters["step_size"], parameters["inverse_mass_matrix"]
        )
        return AdaptationState(state.trace, chain, state.adaptation), info

    def to_trace(state, position):
        return Unconstrained(model, state.trace, selection).to_trace(position, state.trace)

    return WindowAdaptation(init, step, final, sample, to_trace)


def window_adaptation(
    model: GenerativeFunction,
    selection: Selection,
    trace: Any,
    key: jax.Array,
    num_steps: int,
    algorithm: Any = blackjax.nuts,
    is_mass_matrix_diagonal: bool = True,
    target_acceptance_rate: float = 0.8,
) -> tuple[Any, dict]:
    """blackjax's Stan-style window adaptation of step size and mass matrix.

    The other choices are held at their values in ``trace`` during adaptation. The result
    is that of ``blackjax.window_adaptation(...).run(key, position, num_steps)`` on the
    unconstrained log density of the selection.

    Args:
        model: the generative function.
        selection: continuous choices to adapt for (discrete ones are an error).
        trace: the starting trace.
        key: the PRNG key.
        num_steps: warm-up steps.
        algorithm: the blackjax algorithm run during warm-up (``blackjax.nuts``).
        is_mass_matrix_diagonal: adapt a diagonal (else dense) inverse mass matrix.
        target_acceptance_rate: the dual-averaging target of the step size.

    Returns:
        ``(adapted trace, parameters)`` with ``parameters`` the dict
        ``{"step_size", "inverse_mass_matrix"}`` to pass to ``nuts``/``hmc``.

    Example:
        >>> import jax
        >>> from ppl import gen, normal, select
        >>> @gen
        ... def model():
        ...     return normal(normal(0.0, 1.0) @ "mu", 0.5) @ "y"
        >>> trace, _ = model.generate(jax.random.key(0), {"y": 1.0}, ())
        >>> trace, parameters = window_adaptation(model, select("mu"), trace,
        ...                                       jax.random.key(1), 100)
        >>> parameters["inverse_mass_matrix"].shape
        (1,)
    """
    adaptation = stepwise_window_adaptation(
        model,
        selection,
        algorithm,
        is_mass_matrix_diagonal=is_mass_matrix_diagonal,
        target_acceptance_rate=target_acceptance_rate,
    )
    state, _ = jax.lax.scan(
        lambda state, step: (adaptation.step(*step, state), None),
        adaptation.init(trace),
        (jax.random.split(key, num_steps), jnp.asarray(schedule(num_steps))),
    )
    state, parameters = adaptation.final(state)
    return adaptation.to_trace(state, state.chain.position), parameters
