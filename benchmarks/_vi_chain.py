"""Part (c) of ``benchmarks/vi_step.py``: trace and compile time of ``value_and_grad`` of
``E[c_1 + ... + c_n]`` for a chain of ``n`` enumerated coins, ours against GenJAX and the
hand-written forward recursion (see that script's docstring)."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
from collections.abc import Callable, Iterator
from typing import Any

import genjax
import jax
import jax.numpy as jnp
from _timing import compile_once, show_seconds
from _vi_systems import (
    COUPLING,
    GENJAX,
    GENJAX_PARALLEL,
    HAND,
    OURS,
    RELATIVE_TOLERANCE,
    Agreement,
    Sizes,
    failure,
)
from genjax.adev import expectation as genjax_expectation
from genjax.adev import flip_enum, flip_enum_parallel
from genjax.adev import invoke_closed_over as genjax_invoke

import ppl
from ppl.adev import expectation


def chain_exact(theta: jax.Array) -> jax.Array:
    """``E[c_1 + ... + c_n]`` by the forward recursion on ``P(c_i = 1)``."""
    heads, total = jnp.zeros(()), jnp.zeros(())
    for theta_i in theta:
        heads = (1 - heads) * jax.nn.sigmoid(theta_i - 1.0) + heads * jax.nn.sigmoid(
            theta_i + COUPLING - 1.0
        )
        total = total + heads
    return total


def chain_hand(n: int) -> Callable:
    """Hand-written: the gradient of the forward recursion."""
    del n
    return lambda key, theta: jax.value_and_grad(chain_exact)(theta)


def chain_ours(n: int) -> Callable:
    """ppl: ``flip.enum()`` at every coin of a ``@gen`` chain."""

    @ppl.gen
    def coins(theta):
        previous, total = jnp.zeros(()), jnp.zeros(())
        for i in range(n):
            p = jax.nn.sigmoid(theta[i] + COUPLING * previous - 1.0)
            previous = ppl.flip.enum()(p) @ ("c", i)
            previous = previous.astype(jnp.float32)
            total = total + previous
        return total

    @expectation
    def heads(key, theta):
        return coins.simulate(key, (theta,)).retval

    return lambda key, theta: heads.value_and_grad(key, theta, argnums=0)


def chain_genjax(primitive: Any) -> Callable[[int], Callable]:
    """GenJAX: an enumerating primitive (``flip_enum``, ``flip_enum_parallel``) at every coin."""

    def build(n: int) -> Callable:
        @genjax_expectation
        def heads(theta):
            previous, total = jnp.zeros(()), jnp.zeros(())
            for i in range(n):
                p = jax.nn.sigmoid(theta[i] + COUPLING * previous - 1.0)
                previous = primitive(p).astype(jnp.float32)
                total = total + previous
            return total

        def value_and_grad(theta):
            return jax.value_and_grad(lambda theta: genjax_invoke(heads, (theta,)))(theta)

        return lambda key, theta: genjax.seed(value_and_grad)(key, theta)

    return build


class OverBudget(BaseException):
    """Raised by the alarm when a measurement runs past its budget (a ``BaseException`` so
    that no library's ``except Exception`` swallows it)."""


@contextlib.contextmanager
def budget(seconds: float | None) -> Iterator[None]:
    """Interrupts the Python part of the work (tracing) after ``seconds``."""
    if seconds is None:
        yield
        return

    def interrupt(signum, frame):
        raise OverBudget

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclasses.dataclass(frozen=True)
class ChainRow:
    """One chain length of one implementation.

    Attributes:
        sites: coins in the chain.
        name: the implementation.
        lower: seconds to trace and lower, or ``None`` if not measured.
        total: seconds to lower and compile.
        note: why it was not measured.
    """

    sites: int
    name: str
    lower: float | None = None
    total: float | None = None
    note: str = ""


def predicted(rows: list[ChainRow], sites: int) -> float | None:
    """Extrapolated total time at ``sites``, growing per coin as between the last two sizes."""
    done = [row for row in rows if row.total is not None]
    if len(done) < 2:
        return None
    (first, last) = done[-2:]
    per_site = (last.total / first.total) ** (1 / (last.sites - first.sites))
    return last.total * per_site ** (sites - last.sites)


def measure_chains(sizes: Sizes) -> tuple[list[ChainRow], list[Agreement]]:
    """Trace and compile time, and exactness, of every implementation at every length."""
    implementations: dict[str, tuple[Callable[[int], Callable], float | None]] = {
        HAND: (chain_hand, None),
        OURS: (chain_ours, None),
        GENJAX: (chain_genjax(flip_enum), sizes.genjax_budget),
        GENJAX_PARALLEL: (chain_genjax(flip_enum_parallel), sizes.genjax_budget),
    }
    rows: list[ChainRow] = []
    agreements: list[Agreement] = []
    key = jax.random.key(6)
    for name, (build, seconds) in implementations.items():
        mine: list[ChainRow] = []
        for sites in sizes.enum_sites:
            theta = jnp.linspace(-1.0, 1.0, sites)
            if any(row.note for row in mine):
                mine.append(ChainRow(sites, name, note="skipped (over budget)"))
                continue
            guess = predicted(mine, sites)
            if seconds is not None and guess is not None and guess > seconds:
                note = f"skipped (over budget: predicted {guess:.3g} s)"
                mine.append(ChainRow(sites, name, note=note))
                continue
            try:
                with budget(seconds):
                    executable, lowered, total = compile_once(build(sites), (key, theta))
            except OverBudget:
                assert seconds is not None
                note = f"skipped (over budget: stopped at {show_seconds(seconds)})"
                mine.append(ChainRow(sites, name, note=note))
                continue
            except Exception as error:  # a peer's failure is a row of the table
                mine.append(ChainRow(sites, name, note=failure(error)))
                mine += [ChainRow(n, name, note="not run") for n in sizes.enum_sites if n > sites]
                break
            mine.append(ChainRow(sites, name, lowered, total))
            value, gradient = executable(key, theta)
            exact_value, exact_gradient = jax.value_and_grad(chain_exact)(theta)
            allowed = RELATIVE_TOLERANCE * 10 * max(float(exact_value), 1.0)  # sums of 2^n paths
            what = f"(c) chain of {sites} coins: value and gradient"
            difference = max(
                abs(float(value - exact_value)),
                float(jnp.max(jnp.abs(gradient - exact_gradient))),
            )
            agreements.append(Agreement(what, name, difference, allowed))
        rows += mine
    return rows, agreements
