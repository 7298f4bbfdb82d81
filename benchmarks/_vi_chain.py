"""Part (c) of ``benchmarks/vi_step.py``: trace and compile time of ``value_and_grad`` of
``E[c_1 + ... + c_n]`` for a chain of ``n`` enumerated coins, ours against GenJAX and the
hand-written forward recursion (see that script's docstring)."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import statistics
from collections.abc import Callable, Iterator
from typing import Any

import genjax
import jax
import jax.numpy as jnp
from _timing import compile_functions, compile_once, show_seconds
from _vi_systems import (
    COUPLING,
    GENJAX,
    GENJAX_PARALLEL,
    HAND,
    HAND_EVERY_PATH,
    OURS,
    RELATIVE_TOLERANCE,
    Agreement,
    Sizes,
    failure,
)
from genjax.adev import expectation as genjax_expectation
from genjax.adev import flip_enum, flip_enum_parallel, flip_mvd
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


def chain_every_path(n: int) -> Callable:
    """Hand-written JAX enumerating as ``enum`` does: coin by coin, the expectation summed over
    all ``2^n`` paths, kept as a flat axis (the latest coin's value its slowest-varying index)
    and reduced coin by coin from the last, with the ``enum`` surrogate's stop-gradients."""
    sg = jax.lax.stop_gradient

    def surrogate(theta):
        previous, total, weights, rows = jnp.zeros((1,)), jnp.zeros((1,)), [], 1
        for i in range(n):
            p = jax.nn.sigmoid(theta[i] + COUPLING * previous - 1.0)  # [rows]
            weights.append(jnp.stack([1 - p, p]))  # [2, rows]: P(c_i = 0), P(c_i = 1)
            previous = jnp.repeat(jnp.array([0.0, 1.0]), rows)  # path m * rows + r
            total = jnp.broadcast_to(total, (2, rows)).reshape(2 * rows) + previous
            rows *= 2
        value, surrogate = total, total
        for w in reversed(weights):
            rows //= 2
            vs, ss = value.reshape(2, rows), surrogate.reshape(2, rows)
            value = jnp.sum(sg(w) * vs, axis=0)
            surrogate = jnp.sum(w * sg(vs) + sg(w) * ss, axis=0)
        return surrogate[0], value[0]

    def value_and_grad(key, theta):
        del key
        (_, value), gradient = jax.value_and_grad(surrogate, has_aux=True)(theta)
        return value, gradient

    return value_and_grad


def chain_every_path_mvd(n: int) -> Callable:
    """Hand-written JAX taking measure-valued derivatives as ``mvd`` does: each coin turns the
    paths so far into three (its draw, then ``x⁺ = 1`` and ``x⁻ = 0``), and the surrogate is
    folded back coin by coin from the last (``s = s_x + δp·sg(v_1 − v_0)``)."""
    sg = jax.lax.stop_gradient

    def surrogate(theta, key):
        previous, total, weights, rows = jnp.zeros((1,)), jnp.zeros((1,)), [], 1
        for i, key_i in enumerate(jax.random.split(key, n)):
            p = jax.nn.sigmoid(theta[i] + COUPLING * previous - 1.0)  # [rows]
            x = jax.random.bernoulli(key_i, sg(p)).astype(jnp.float32)
            weights.append(p - sg(p))
            previous = jnp.concatenate([x, jnp.ones(rows), jnp.zeros(rows)])  # path m*rows+r
            total = jnp.broadcast_to(total, (3, rows)).reshape(3 * rows) + previous
            rows *= 3
        value, surrogate = total, total
        for w in reversed(weights):
            rows //= 3
            vs, ss = value.reshape(3, rows), surrogate.reshape(3, rows)
            value, surrogate = vs[0], ss[0] + w * sg(vs[1] - vs[2])
        return surrogate[0], value[0]

    def value_and_grad(key, theta):
        (_, value), gradient = jax.value_and_grad(surrogate, has_aux=True)(theta, key)
        return value, gradient

    return value_and_grad


def chain_ours(strategy: str) -> Callable[[int], Callable]:
    """ppl: ``flip.enum()`` (or ``flip.mvd()``) at every coin of a ``@gen`` chain."""

    def build(n: int) -> Callable:
        @ppl.gen
        def coins(theta):
            previous, total = jnp.zeros(()), jnp.zeros(())
            for i in range(n):
                p = jax.nn.sigmoid(theta[i] + COUPLING * previous - 1.0)
                previous = getattr(ppl.flip, strategy)()(p) @ ("c", i)
                previous = previous.astype(jnp.float32)
                total = total + previous
            return total

        @expectation
        def heads(key, theta):
            return coins.simulate(key, (theta,)).retval

        return lambda key, theta: heads.value_and_grad(key, theta, argnums=0)

    return build


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
        executable: the compiled function, where it was compiled once (GenJAX's).
        totals: seconds of each compilation, where it was compiled in turns.
    """

    sites: int
    name: str
    lower: float | None = None
    total: float | None = None
    note: str = ""
    executable: Any = dataclasses.field(default=None, repr=False, compare=False)
    totals: tuple[float, ...] = ()


def predicted(rows: list[ChainRow], sites: int) -> float | None:
    """Extrapolated total time at ``sites``, growing per coin as between the last two sizes."""
    done = [row for row in rows if row.total is not None]
    if len(done) < 2:
        return None
    (first, last) = done[-2:]
    per_site = (last.total / first.total) ** (1 / (last.sites - first.sites))
    return last.total * per_site ** (sites - last.sites)


NOT_RUN = "not run (a shorter chain was not measured)"


def measure_chains(sizes: Sizes, strategy: str = "enum") -> tuple[list[ChainRow], list[Agreement]]:
    """Trace and compile time, and (``enum``) exactness, of every implementation at every
    length, every coin enumerated (``strategy="enum"``) or with measure-valued derivatives
    (``"mvd"``: chains of ``sizes.mvd_sites``; Monte Carlo estimates, not checked here).

    Ours and the hand-written ones compile in turns (``compile_functions``: medians of up to
    ``sizes.compile_repeats``); GenJAX's, whose cost grows exponentially, once each, within
    its budget.
    """
    in_turns: dict[str, Callable[[int], Callable]]
    budgeted: dict[str, Callable[[int], Callable]]
    if strategy == "enum":
        in_turns = {HAND: chain_hand, HAND_EVERY_PATH: chain_every_path, OURS: chain_ours("enum")}
        budgeted = {
            GENJAX: chain_genjax(flip_enum),
            GENJAX_PARALLEL: chain_genjax(flip_enum_parallel),
        }
        lengths, checked = sizes.enum_sites, sizes.checked_sites
    else:
        in_turns = {HAND_EVERY_PATH: chain_every_path_mvd, OURS: chain_ours("mvd")}
        budgeted = {GENJAX: chain_genjax(flip_mvd)}
        lengths, checked = sizes.mvd_sites, 0
    found: dict[str, list[ChainRow]] = {name: [] for name in [*in_turns, *budgeted]}
    agreements: list[Agreement] = []
    key = jax.random.key(6)

    def check(name: str, sites: int, executable: Any, theta: jax.Array) -> None:
        value, gradient = executable(key, theta)
        exact_value, exact_gradient = jax.value_and_grad(chain_exact)(theta)
        allowed = RELATIVE_TOLERANCE * 10 * max(float(exact_value), 1.0)  # sums of 2^n paths
        difference = max(
            abs(float(value - exact_value)),
            float(jnp.max(jnp.abs(gradient - exact_gradient))),
        )
        what = f"(c) chain of {sites} coins: value and gradient"
        agreements.append(Agreement(what, name, difference, allowed))

    for sites in lengths:
        theta = jnp.linspace(-1.0, 1.0, sites)
        running = {}
        for name, build in in_turns.items():
            if any(row.note for row in found[name]):  # as _budgeted's
                found[name].append(ChainRow(sites, name, note=NOT_RUN))
            else:
                running[name] = build
        functions = {name: (build(sites), (key, theta)) for name, build in running.items()}
        compilations, errors = compile_functions(functions, sizes)
        for name in running:
            if name in errors:
                found[name].append(ChainRow(sites, name, note=failure(errors[name])))
                continue
            done = compilations[name]
            lower, total = statistics.median(done.lowers), statistics.median(done.totals)
            found[name].append(ChainRow(sites, name, lower, total, totals=tuple(done.totals)))
            if sites <= checked:
                check(name, sites, done.executable, theta)
        for name, build in budgeted.items():
            row = _budgeted(found[name], name, build, sites, sizes.genjax_budget, key, theta)
            found[name].append(row)
            if row.executable is not None and sites <= checked:
                check(name, sites, row.executable, theta)
    rows = [row for name in found for row in found[name]]
    return rows, agreements


def _budgeted(
    mine: list[ChainRow],
    name: str,
    build: Callable[[int], Callable],
    sites: int,
    seconds: float,
    key: jax.Array,
    theta: jax.Array,
) -> ChainRow:
    """One compilation within ``seconds``, unless an earlier length failed or ran over, or the
    growth so far predicts it would."""
    if any(row.note for row in mine):
        return ChainRow(sites, name, note=NOT_RUN)
    guess = predicted(mine, sites)
    if guess is not None and guess > seconds:
        return ChainRow(sites, name, note=f"skipped (over budget: predicted {guess:.3g} s)")
    try:
        with budget(seconds):
            executable, lowered, total = compile_once(build(sites), (key, theta))
    except OverBudget:
        note = f"skipped (over budget: stopped at {show_seconds(seconds)})"
        return ChainRow(sites, name, note=note)
    except Exception as error:  # a peer's failure is a row of the table
        return ChainRow(sites, name, note=failure(error))
    return ChainRow(sites, name, lowered, total, executable=executable)
