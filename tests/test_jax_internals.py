"""The private JAX API we rely on still exists and still keys the jit cache."""

import jax
import jax.numpy as jnp
import pytest

from ppl import debug, gen, normal
from ppl._jax_internals import DEBUG_STATE


def test_debug_state_is_available():
    assert DEBUG_STATE is not None, "jax._src.config.bool_state moved: update ppl/_jax_internals"


def test_debug_switch_retraces_a_function_jitted_before():
    @gen
    def m(scale):
        return normal(0.0, scale) @ "x"

    simulate = jax.jit(m.simulate)
    assert jnp.isnan(simulate(jax.random.key(0), (-1.0,)).score)  # compiled without checks
    with debug(), pytest.raises(Exception, match="non-finite log density nan at 'x'"):
        simulate(jax.random.key(0), (-1.0,))
    assert jnp.isnan(simulate(jax.random.key(0), (-1.0,)).score)  # and back without them


def test_scan_operands_split_into_consts_carry_and_xs():
    from ppl._jax_internals import split_scan_operands

    def loop(w, xs):
        return jax.lax.scan(lambda c, x: (c + w * x, c), jnp.zeros(()), xs)

    jaxpr = jax.make_jaxpr(loop)(2.0, jnp.ones(3))
    (eqn,) = [e for e in jaxpr.eqns if e.primitive.name == "scan"]
    consts, carry, xs = split_scan_operands(eqn.params, ["w", "c", "xs"])
    assert (consts, carry, xs) == (["w"], ["c"], ["xs"])


def test_input_dependence_follows_data_through_loops_and_calls():
    from ppl._jax_internals import input_dependence

    def fn(a, b, c):
        carried = jax.lax.scan(lambda s, x: (s * x, None), a, jnp.ones(3))[0]
        return carried, jax.jit(lambda u: 2 * u)(b) + c, jnp.zeros(2), a + jnp.sum(c)

    deps = input_dependence(fn, 1.0, 2.0, jnp.ones(2))
    assert deps == [
        [True, False, False],
        [False, True, True],
        [False, False, False],
        [True, False, True],
    ]
