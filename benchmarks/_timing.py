"""Timing shared by the benchmarks: compile time from cleared caches, and median run times
taken in rounds that alternate the implementations."""

from __future__ import annotations

import dataclasses
import math
import random
import re
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jax


class Effort(Protocol):
    """How long to spend measuring (a benchmark's ``Sizes``)."""

    seconds_per_function: float
    minimum_calls: int
    compile_repeats: int
    compile_seconds: float


@dataclasses.dataclass(frozen=True)
class Compilation:
    """What compiling one function cost, and the executable.

    Attributes:
        executable: the compiled function of the last repeat.
        lowers: seconds of ``jax.jit(f).lower(*arguments)`` (tracing and lowering), per repeat.
        totals: seconds of lowering and ``.compile()`` together, per repeat.
    """

    executable: Callable[..., Any]
    lowers: list[float]
    totals: list[float]


def compile_once(function: Callable[..., Any], arguments: tuple) -> tuple[Any, float, float]:
    """Lowers and compiles ``jax.jit(function)`` from cleared caches.

    Returns:
        ``(executable, seconds to lower, seconds to lower and compile)``.
    """
    jax.clear_caches()
    start = time.perf_counter()
    lowered = jax.jit(function).lower(*arguments)
    lowered_at = time.perf_counter()
    executable = lowered.compile()
    return executable, lowered_at - start, time.perf_counter() - start


def compile_functions(
    functions: Mapping[str, tuple[Callable[..., Any], tuple]], sizes: Effort
) -> tuple[dict[str, Compilation], dict[str, Exception]]:
    """Compiles each ``(function, arguments)`` up to ``sizes.compile_repeats`` times (while its
    compilations add up to at most ``sizes.compile_seconds``), the functions taking turns:
    every function's ``i``-th compilation comes before any one's ``i + 1``-th, so that drift
    in machine load falls on all of them alike, as in ``run_times``.

    Returns:
        ``(compilations, errors)`` by name; a function whose compilation raised is in
        ``errors`` only (a failing peer is a row of a table, not a crash).
    """
    lowers: dict[str, list[float]] = {name: [] for name in functions}
    totals: dict[str, list[float]] = {name: [] for name in functions}
    executables: dict[str, Any] = {}
    errors: dict[str, Exception] = {}
    turning = list(functions)
    for _ in range(sizes.compile_repeats):
        for name in list(turning):
            function, arguments = functions[name]
            try:
                executable, lowered, total = compile_once(function, arguments)
            except Exception as error:
                errors[name] = error
                executables.pop(name, None)
                turning.remove(name)
                continue
            executables[name] = executable
            lowers[name].append(lowered)
            totals[name].append(total)
            if sum(totals[name]) + max(totals[name]) > sizes.compile_seconds:
                turning.remove(name)
    compilations = {
        name: Compilation(executable, lowers[name], totals[name])
        for name, executable in executables.items()
    }
    return compilations, errors


# An instruction of an HLO computation: ``%name = type opcode(operands), attributes``.
_OPCODE = re.compile(r"=\s.*?\s([a-z][a-z0-9-]*)\(")
# Instructions that move no data and launch nothing.
_NO_KERNEL = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast"}


def top_level_operations(executable: Any) -> int | None:
    """How many operations the compiled program's entry computation runs: each fusion, matrix
    product, loop or library call counts one (on a GPU, roughly one kernel launch each, which
    bounds the step time of a small model); ``None`` if the executable gives no HLO text.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> f = jax.jit(lambda x: jnp.tanh(x @ x) + 1.0).lower(jnp.ones((4, 4))).compile()
        >>> top_level_operations(f) >= 1
        True
    """
    try:
        text = executable.as_text()
    except Exception:
        return None
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("ENTRY")), None)
    if start is None:
        return None
    count = 0
    for line in lines[start + 1 :]:
        if line.startswith("}"):
            break
        match = _OPCODE.search(line)
        count += bool(match) and match.group(1) not in _NO_KERNEL
    return count


def run_times(calls: Mapping[str, Callable[[], Any]], sizes: Effort, rounds: int = 100) -> dict:
    """Median seconds per call of each function, timed in rounds that alternate them (the
    medians of ``run_samples``)."""
    samples = run_samples(calls, sizes, rounds)
    return {name: statistics.median(times) for name, times in samples.items()}


def run_samples(
    calls: Mapping[str, Callable[[], Any]], sizes: Effort, rounds: int = 100
) -> dict[str, list[float]]:
    """Seconds of every timed call of each function, timed in rounds that alternate them.

    Each round calls every function in turn, in a new random order, so neither drift in machine
    load nor a place in the order favours one.

    Args:
        calls: zero-argument calls of the functions, by name.
        sizes: how long to spend (``seconds_per_function``, ``minimum_calls``).
        rounds: how many times the functions take turns, at most; never more than the fewest
            calls any function gets.

    Returns:
        The seconds of each timed call, by name.
    """
    counts = {}
    for name, call in calls.items():
        jax.block_until_ready(call())  # warm-up
        start = time.perf_counter()
        for _ in range(3):
            jax.block_until_ready(call())
        estimate = (time.perf_counter() - start) / 3
        counts[name] = max(sizes.minimum_calls, int(sizes.seconds_per_function / estimate))
    rounds = min(rounds, *counts.values())
    per_round = {name: math.ceil(count / rounds) for name, count in counts.items()}
    return interleaved_samples(calls, rounds, per_round)


def bootstrap_medians(*samples: Any, draws: int = 2000) -> list[Any]:
    """``draws`` bootstrap medians of each list of numbers, each resampled on its own (seeded:
    the same medians for the same numbers)."""
    import numpy as np

    rng = np.random.default_rng(0)
    return [np.median(rng.choice(s, (draws, len(s))), axis=1) for s in samples]


def interval95(ratios: Any) -> tuple[float, float]:
    """The central 95% of bootstrap ratios."""
    import numpy as np

    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def median_ratio_interval(ours: list[float], theirs: list[float]) -> tuple[float, float]:
    """A 95% bootstrap interval of ``median(ours) / median(theirs)``."""
    mine, other = bootstrap_medians(ours, theirs)
    return interval95(mine / other)


def interleaved_samples(
    calls: Mapping[str, Callable[[], Any]], rounds: int, per_round: Mapping[str, int] | None = None
) -> dict[str, list[float]]:
    """Seconds of every call (blocked until ready), over ``rounds`` rounds in which the
    functions take turns in a new shuffled order (seeded: the same orders every run), each
    called ``per_round[name]`` times (default once) per turn."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    shuffler = random.Random(0)
    for _ in range(rounds):
        shuffler.shuffle(order)
        for name in order:
            call = calls[name]
            for _ in range((per_round or {}).get(name, 1)):
                start = time.perf_counter()
                jax.block_until_ready(call())
                samples[name].append(time.perf_counter() - start)
    return samples


def show_seconds(seconds: float) -> str:
    """Seconds in the unit that suits them."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def met(condition: bool) -> str:
    """How a target reads in the report."""
    return "met" if condition else "NOT met"
