"""The one place that touches private JAX APIs (see tests/test_jax_internals.py).

``ppl.debug()`` changes what a traced program contains (host callbacks that check scores), so
its state must be part of JAX's trace-context cache key: otherwise a function jitted outside
``debug()`` would be reused, unchecked, inside it. JAX offers this only through
``jax._src.config.bool_state``; if a future JAX removes it, ``DEBUG_STATE`` is ``None`` and
``ppl.debug`` falls back to a plain context variable (checks then apply to functions first
traced inside the context).
"""

from __future__ import annotations

from typing import Any

DEBUG_STATE: Any
try:
    from jax._src import config as _config

    DEBUG_STATE = _config.bool_state(
        name="ppl_debug",
        default=False,
        help="ppl: check every random choice's log density for NaN/inf.",
        include_in_jit_key=True,
        include_in_trace_context=True,
    )
except Exception:  # pragma: no cover - depends on the installed JAX
    DEBUG_STATE = None


def split_scan_operands(params: dict, operands: list) -> tuple[list, list, list]:
    """A ``scan`` equation's operands as ``(consts, carry, xs)``.

    JAX 0.11 describes the split with a private flat-tree parameter ``ft_in``; older releases
    used ``num_consts`` / ``num_carry``. ADEV reads it to thread its gradient accumulators
    through loops that sample.
    """
    if "ft_in" in params:
        consts, carry, xs = params["ft_in"].update(list(operands)).unpack()
        return list(consts), list(carry), list(xs)
    n_consts, n_carry = params["num_consts"], params["num_carry"]  # pragma: no cover
    return (  # pragma: no cover
        list(operands[:n_consts]),
        list(operands[n_consts : n_consts + n_carry]),
        list(operands[n_consts + n_carry :]),
    )


def input_dependence(fn: Any, *args: Any) -> list[list[bool]]:
    """Which input leaves each output leaf of ``fn(*args)`` depends on, by data flow.

    ``result[o][i]`` is true if output leaf ``o`` may depend on input leaf ``i`` (both
    flattened). It reads JAX's dead-code elimination of ``fn``'s jaxpr
    (``partial_eval.dce_jaxpr``), which follows loops, conditionals and nested calls; without
    it every output is taken to depend on every input (the safe answer).
    """
    import jax

    closed = jax.make_jaxpr(fn)(*args)
    n_in, n_out = len(closed.jaxpr.invars), len(closed.jaxpr.outvars)
    try:
        from jax._src.interpreters.partial_eval import dce_jaxpr
    except ImportError:  # pragma: no cover - depends on the installed JAX
        return [[True] * n_in for _ in range(n_out)]
    return [list(dce_jaxpr(closed.jaxpr, [o == k for k in range(n_out)])[1]) for o in range(n_out)]
