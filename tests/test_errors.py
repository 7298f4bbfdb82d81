"""Every bad input gets an error that names the address and says what to do."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

from ppl import (
    AddressError,
    GenerativeContextError,
    NonFiniteScoreError,
    Scan,
    Vmap,
    debug,
    exponential,
    gen,
    mv_normal_diag,
    normal,
    poisson,
    validation,
)

KEY = jax.random.key(0)


@gen
def inner():
    return normal(0.0, 1.0) @ "a"


@gen
def model(n):
    """x, a nested call at "sub", and n observations at ("y", i)."""
    x = normal(0.0, 1.0) @ "x"
    inner() @ "sub"
    for i in range(n):
        normal(x, 1.0) @ ("y", i)
    return x


def test_duplicate_address_names_it():
    @gen
    def twice():
        normal(0.0, 1.0) @ "x"
        return normal(0.0, 1.0) @ "x"

    with pytest.raises(AddressError, match=r"address 'x' is used twice .*twice"):
        twice.simulate(KEY, ())


def test_address_below_a_choice_is_rejected():
    @gen
    def clash():
        normal(0.0, 1.0) @ "y"
        return normal(0.0, 1.0) @ ("y", 0)

    with pytest.raises(AddressError, match=r"\('y', 0\) lies below the address 'y'"):
        clash.simulate(KEY, ())


def test_duplicate_inside_a_hierarchical_call_has_the_full_path():
    @gen
    def bad_inner():
        normal(0.0, 1.0) @ "a"
        return normal(0.0, 1.0) @ "a"

    @gen
    def outer():
        return bad_inner() @ "layer"

    with pytest.raises(AddressError, match=r"\('layer', 'a'\) is used twice"):
        outer.simulate(KEY, ())


@pytest.mark.parametrize("method", ["generate", "update", "assess"])
def test_constraint_on_unvisited_address_lists_what_is_visited(method):
    trace = model.simulate(KEY, (5,))
    bad = trace.choices | {("y", 7): 1.0}
    pattern = r"constraint on \('y', 7\), but model never visits it; it visits .*\('y', 0\.\.4\)"
    with pytest.raises(AddressError, match=pattern):
        if method == "generate":
            model.generate(KEY, {("y", 7): 1.0}, (5,))
        elif method == "update":
            model.update(KEY, trace, {("y", 7): 1.0})
        else:
            model.assess(bad, (5,))


def test_constraint_on_unvisited_nested_address():
    with pytest.raises(AddressError, match=r"constraint on \('sub', 'b'\).*visits 'a'"):
        model.generate(KEY, {("sub", "b"): 1.0}, (2,))


def test_missing_choice_in_assess_names_it():
    with pytest.raises(AddressError, match=r"\('y', 0\) \(normal\) has none"):
        model.assess({"x": 0.1, ("sub", "a"): 0.2}, (3,))
    with pytest.raises(AddressError, match=r"\('sub', 'a'\) \(normal\) has none"):
        model.assess({"x": 0.1}, (0,))


def test_wrong_shape_names_address_and_expected_shape():
    @gen
    def vec():
        return mv_normal_diag(jnp.zeros(3), jnp.ones(3)) @ "w"

    with pytest.raises(AddressError, match=r"'w' has shape \(2,\), but mv_normal_diag .*\(3,\)"):
        vec.generate(KEY, {"w": jnp.zeros(2)}, ())


def test_wrong_leading_axis_for_a_plate():
    plate = Vmap(normal, in_axes=(0, None))

    @gen
    def m():
        return plate(jnp.zeros(4), 1.0) @ "ys"

    with pytest.raises(AddressError, match=r"\('ys', \.\.\.\).*leading axis of length 4"):
        m.generate(KEY, {"ys": jnp.zeros(3)}, ())


@pytest.mark.parametrize(
    ("dist", "value", "support"),
    [(exponential(1.0), -1.0, "Positive"), (poisson(2.0), 1.5, "IntegerNonnegative")],
)
def test_value_outside_support(dist, value, support):
    @gen
    def m():
        return dist @ "z"

    with pytest.raises(
        AddressError, match=rf"value -?[\d.]+ at 'z' is outside the support {support}"
    ):
        m.generate(KEY, {"z": value}, ())
    with validation(False):
        _, weight = m.generate(KEY, {"z": value}, ())
    assert weight == -jnp.inf


def test_out_of_support_under_jit_scores_minus_infinity():
    @gen
    def m():
        return exponential(1.0) @ "z"

    weight = jax.jit(lambda v: m.generate(KEY, {"z": v}, ())[1])(-1.0)
    assert weight == -jnp.inf


def test_at_outside_gen_function():
    with pytest.raises(GenerativeContextError, match=r"only meaningful inside a @gen function"):
        normal(0.0, 1.0) @ "x"
    with pytest.raises(GenerativeContextError, match=r"inner.simulate\(key, args\)"):
        inner() @ "x"


def test_traced_address_is_refused():
    @gen
    def m(i):
        return normal(0.0, 1.0) @ ("y", i)

    with pytest.raises(TypeError, match=r"traced integer cannot be an address.*Vmap or Scan"):
        jax.jit(m.simulate)(KEY, (jnp.asarray(1),))


def test_args_must_be_a_tuple():
    with pytest.raises(TypeError, match=r"`args` must be a tuple.*\(x,\)"):
        model.simulate(KEY, 3)


def test_debug_names_first_nonfinite_address_eagerly_and_under_jit():
    @gen
    def m(scale):
        x = normal(0.0, 1.0) @ "x"
        inner_chain = Scan(step, length=3)
        inner_chain(x, None) @ "chain"
        return normal(x, scale) @ "y"

    @gen
    def step(c, _):
        z = normal(c, jnp.where(c > 1e9, 1.0, -1.0)) @ "z"
        return z, z

    with debug(), pytest.raises(Exception, match=re.escape("at ('chain', ..., 'z')")):
        jax.jit(m.simulate)(KEY, (1.0,))
    # Without debug the same program runs and the NaN passes silently into the score.
    assert jnp.isnan(jax.jit(m.simulate)(KEY, (1.0,)).score)


def test_debug_eager_raises_nonfinite_score_error():
    @gen
    def m():
        return normal(0.0, 1.0) @ "x"

    # An infinite value has density zero; validation off lets it past the support check.
    expected = pytest.raises(NonFiniteScoreError, match=r"non-finite log density -inf at 'x'")
    with debug(), validation(False), expected:
        m.assess({"x": -jnp.inf}, ())


def test_numpyro_distribution_errors_are_named_too():
    from ppl import from_numpyro

    @gen
    def m():
        return from_numpyro(nd.Dirichlet(jnp.ones(3))) @ "p"

    with pytest.raises(AddressError, match=r"'p' is outside the support Simplex"):
        m.generate(KEY, {"p": jnp.array([0.5, 0.6, -0.1])}, ())


def test_switch_branches_with_different_shapes_show_their_addresses():
    from ppl import Switch

    @gen
    def scalar(m):
        return normal(m, 1.0) @ "x"

    @gen
    def vector(m):
        return normal(jnp.full(2, m), 1.0) @ "x"

    pattern = r"branch 0: 'x': float32\[\]; .*\n  branch 1: 'x': float32\[2\]"
    with pytest.raises(TypeError, match=pattern):
        Switch(scalar, vector).simulate(KEY, (0, (0.0,), (0.0,)))


def test_assess_with_per_index_choices_needs_every_index():
    @gen
    def plate():
        return Vmap(normal, in_axes=(None, None), axis_size=3)(0.0, 1.0) @ "ys"

    tr = plate.simulate(KEY, ())
    by_index = {("ys", i): tr.choices["ys", i] for i in range(3)}
    np.testing.assert_allclose(plate.assess(by_index, ())[0], tr.score, rtol=1e-6)
    with pytest.raises(AddressError, match=r"no choices for indices \[1\] at 'ys'"):
        plate.assess({("ys", 0): 1.0, ("ys", 2): 1.0}, ())
