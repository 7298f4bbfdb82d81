"""The flat axis of paths (``PathsMachine``) computes what nested ``enum`` and ``mvd`` do.

Hypothesis draws small programs of statements, each reading a random subset of the earlier
values: enumerated flips and 3-way categoricals, a plate of flips (enumerated jointly), flips,
3-way categoricals and Gaussians (location and scale) with ``mvd``, REINFORCE flips and
reparameterized Gaussians (local draws, on the paths their arguments depend on), a ``Scan`` of
enumerated flips (unrolled), a ``lax.cond`` with a local draw, and plain computations. Both
interpreters see the same keys, so the value and the gradient must agree to rounding,
including for statements whose arguments depend on no enumerated value and results that
ignore some of them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppl import Scan, categorical, flip, gen, normal
from ppl.adev import _paths as paths
from ppl.adev import enum, expectation, mvd, reinforce
from ppl.adev._interpreter import interpret_nested

KINDS = (
    "flip",
    "categorical",
    "plate",
    "mvd flip",
    "mvd categorical",
    "mvd normal",
    "reinforce",
    "normal",
    "scan",
    "cond",
    "plain",
)


@gen
def scan_step(carry, theta):
    x = flip.enum()(jax.nn.sigmoid(theta + carry)) @ "x"
    return carry + x.astype(jnp.float32), x


def build(statements: tuple[tuple[str, tuple[int, ...]], ...]):
    """``statements[i] = (kind, reads)``: the ``i``-th value, a function of the values
    ``reads`` (indices of earlier statements) and of ``theta[i]``."""

    @gen
    def program(theta):
        values: list = []
        for i, (kind, reads) in enumerate(statements):
            h = theta[i] + sum((0.4 + 0.1 * j) * values[j] for j in reads)
            if kind == "flip":
                x = flip.enum()(jax.nn.sigmoid(h)) @ f"v{i}"
            elif kind == "categorical":
                logits = h * jnp.array([0.0, 0.7, -0.4])
                x = categorical.enum()(logits=logits) @ f"v{i}"
            elif kind == "plate":
                xs = flip.enum()(jax.nn.sigmoid(h + jnp.array([0.0, 0.5]))) @ f"v{i}"
                x = jnp.sum(xs.astype(jnp.float32) * jnp.array([1.0, 2.0]))
            elif kind == "mvd flip":
                x = flip.mvd()(jax.nn.sigmoid(h)) @ f"v{i}"
            elif kind == "mvd categorical":
                logits = h * jnp.array([0.0, 0.7, -0.4])
                x = categorical.mvd()(logits=logits) @ f"v{i}"
            elif kind == "mvd normal":
                x = normal.mvd()(h, 1.0 + 0.5 * jax.nn.sigmoid(h)) @ f"v{i}"
            elif kind == "reinforce":
                x = flip.reinforce(baseline=0.5)(jax.nn.sigmoid(h)) @ f"v{i}"
            elif kind == "normal":
                x = normal(h, 1.0) @ f"v{i}"
            elif kind == "scan":
                carry, xs = Scan(scan_step)(h, jnp.stack([theta[i], -theta[i]])) @ f"v{i}"
                x = carry + jnp.sum(xs)
            elif kind == "cond":
                x = jax.lax.cond(
                    h > 0.3,
                    lambda h, i=i: normal.reinforce()(h, 1.0) @ f"v{i}",
                    lambda h: jnp.tanh(h),
                    h,
                )
            else:
                x = jnp.sin(h)
            values.append(jnp.asarray(x, jnp.float32))
        return sum(jnp.cos(0.7 * v + k) for k, v in enumerate(values))

    @expectation
    def objective(key, theta):
        return program.simulate(key, (theta,)).retval

    return objective


def statements_():
    def statement(i):
        reads = st.lists(st.integers(0, i - 1), unique=True, max_size=2) if i else st.just([])
        return st.tuples(st.sampled_from(KINDS), reads.map(lambda r: tuple(sorted(r))))

    return st.integers(1, 5).flatmap(lambda n: st.tuples(*(statement(i) for i in range(n))))


@settings(max_examples=10, deadline=None)
@given(statements_(), st.integers(0, 2**16))
def test_the_paths_interpreter_matches_nested_enumeration(statements, seed):
    objective = build(statements)
    theta = jax.random.normal(jax.random.key(seed), (len(statements),))
    key = jax.random.key(seed + 1)
    # Jitted: one compilation per program (eagerly, every operation compiles on its own).
    flat_value, (flat_grad,) = jax.jit(objective.value_and_grad)(key, theta)
    with pytest.MonkeyPatch.context() as m:
        m.setattr("ppl.adev._expectation.interpret", interpret_nested)
        value, (grad,) = jax.jit(objective.value_and_grad)(key, theta)
    np.testing.assert_allclose(flat_value, value, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(flat_grad, grad, rtol=1e-4, atol=1e-5)


def test_only_branching_strategies_take_the_flat_axis():
    """Vectorised ``enum`` and ``mvd`` take the flat axis; sequential ``enum`` and programs
    without continuation strategies keep the nested interpreter."""
    objective = build((("flip", ()), ("flip", (0,))))
    theta, key = jnp.array([0.2, -0.3]), jax.random.key(0)
    made = []

    class Spy(paths.PathsMachine):
        def __init__(self, *args):
            made.append(True)
            super().__init__(*args)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(paths, "PathsMachine", Spy)
        for overrides in ({}, {"v1": mvd()}, {"v0": mvd(), "v1": mvd()}):
            made.clear()
            objective.with_estimators(overrides).estimate(key, theta)
            assert made, overrides
        for overrides in (
            {"v1": enum(vectorized=False)},
            {"v0": reinforce(), "v1": reinforce()},
        ):
            made.clear()
            objective.with_estimators(overrides).estimate(key, theta)
            assert not made, overrides


def _chain(n: int, strategy: str):
    @gen
    def coins(theta):
        previous, total = jnp.zeros(()), jnp.zeros(())
        for i in range(n):
            p = jax.nn.sigmoid(theta[i] + 2.0 * previous - 1.0)
            previous = getattr(flip, strategy)()(p) @ ("c", i)
            previous = previous.astype(jnp.float32)
            total = total + previous
        return total

    @expectation
    def heads(key, theta):
        return coins.simulate(key, (theta,)).retval

    return lambda key, theta: heads.value_and_grad(key, theta)


@pytest.mark.parametrize("strategy", ["enum", "mvd"])
def test_the_traced_program_grows_linearly_with_branching_draws(strategy):
    """A chain of ``n`` enumerated or ``mvd`` coins traces to a program of ``O(n)`` equations
    (running the rest of the program once per branch would make it ``2^n`` or ``3^n``)."""

    def size(n):
        jaxpr = jax.make_jaxpr(_chain(n, strategy))(jax.random.key(0), jnp.zeros(n))
        return len(jaxpr.eqns)

    small, large = size(4), size(8)
    assert large < 2.5 * small, (small, large)
