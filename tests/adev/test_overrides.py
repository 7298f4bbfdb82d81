"""How estimator choices compose: ``with_estimators`` called twice, selections as keys, an
expectation's choices inside another expectation, and differentiating ``estimate`` itself.

``payoff`` is ``E[3 c]`` with ``c ~ flip(p)``: its gradient is 3, which ``enum`` gives exactly
and REINFORCE (without baseline) only on average, as 0 or ``3 / p`` / ``-0``; so one key tells
which estimator ran.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from ppl import AddressError, flip, gen, normal, select
from ppl.adev import enum, expectation, reinforce, reparam
from ppl.adev._primitive import is_tracing


@gen
def coin(p):
    return flip(p) @ "c"


@expectation
def payoff(key, p):
    return 3.0 * coin.simulate(key, (p,)).retval


@gen
def two(p, mu):
    c = flip(p) @ "c"
    z = normal(mu, 1.0) @ "z"
    return c, z


@expectation
def product(key, p, mu):  # E = p * (mu^2 + 1): d/dp = mu^2 + 1, d/dmu = 2 p mu
    c, z = two.simulate(key, (p, mu)).retval
    return c * z**2


KEYS = jax.random.split(jax.random.key(0), 8)


def gradients(objective, *args):
    return jax.vmap(lambda k: objective.grad_estimate(k, *args)[0])(KEYS)


def test_a_later_with_estimators_refines_an_earlier_one():
    layered = payoff.with_estimators({"c": reinforce()}).with_estimators({"c": enum()})
    assert jnp.allclose(gradients(layered, 0.3), 3.0)
    back = payoff.with_estimators({"c": enum()}).with_estimators({"c": reinforce()})
    assert not jnp.allclose(gradients(back, 0.3), 3.0)


def test_a_later_choice_is_checked_even_where_an_earlier_one_covers_every_address():
    from ppl._selection import all_addresses

    everything = payoff.with_estimators({all_addresses(): reinforce()})
    with pytest.raises(ValueError, match=r"reparam.*'c'|'c'.*reparam"):
        everything.with_estimators({"c": reparam()}).grad_estimate(jax.random.key(0), 0.3)
    assert jnp.allclose(gradients(everything.with_estimators({"c": enum()}), 0.3), 3.0)


@pytest.mark.parametrize("selection", [select("c"), ~select("z"), select("c") | select("w")])
def test_selections_choose_estimators(selection):
    # With c enumerated, d/dmu = 2 p z and d/dp = z^2 for the key's z draw, so
    # d/dp = (d/dmu / 2p)^2 per key; REINFORCE on c breaks it whenever c = 1 (d/dp = z^2 / p).
    grads = jax.vmap(
        lambda k: product.with_estimators({selection: enum()}).grad_estimate(k, 0.6, 1.5)
    )(KEYS)
    assert jnp.allclose(grads[0], (grads[1] / (2 * 0.6)) ** 2, rtol=1e-4)
    plain = jax.vmap(lambda k: product.grad_estimate(k, 0.6, 1.5))(KEYS)
    assert not jnp.allclose(plain[0], (plain[1] / (2 * 0.6)) ** 2, rtol=1e-4)


def test_a_selection_that_matches_nothing_is_named():
    with pytest.raises(AddressError, match="never samples"):
        product.with_estimators({select("w"): enum()}).estimate(jax.random.key(0), 0.3, 1.5)


def test_an_inner_expectation_keeps_its_estimators():
    exact = payoff.with_estimators({"c": enum()})

    @expectation
    def outer(key, p):
        return 2.0 * exact.estimate(key, p)

    assert jnp.allclose(gradients(outer, 0.3), 6.0)


def test_the_outer_expectation_has_the_last_word():
    exact = payoff.with_estimators({"c": enum()})

    @expectation
    def outer(key, p):
        return exact.estimate(key, p)

    assert not jnp.allclose(gradients(outer.with_estimators({"c": reinforce()}), 0.3), 3.0)


def test_an_inner_choice_for_an_address_it_never_samples_is_named():
    bad = payoff.with_estimators({"nope": enum()})

    @expectation
    def outer(key, p):
        return bad.estimate(key, p)

    with pytest.raises(AddressError, match="'nope'"):
        outer.estimate(jax.random.key(0), 0.3)


def test_inner_choices_end_with_the_inner_call():
    exact = payoff.with_estimators({"c": enum()})

    @expectation
    def outer(key, p):
        k1, k2 = jax.random.split(key)
        return exact.estimate(k1, p) + 3.0 * coin.simulate(k2, (p,)).retval

    grads = gradients(outer, 0.3)
    assert not jnp.allclose(grads, 6.0)  # the second coin is REINFORCE's
    assert jnp.allclose(grads.mean(), 6.0, atol=3 * grads.std())
    assert not is_tracing()


def test_differentiating_estimate_gives_the_unbiased_gradient():
    for objective in (payoff, payoff.with_estimators({"c": enum()})):
        by_jax = jax.vmap(jax.grad(lambda p, k, o=objective: o.estimate(k, p)), (None, 0))(
            0.3, KEYS
        )
        assert jnp.allclose(by_jax, gradients(objective, 0.3))
    exact = jax.grad(lambda p: payoff.with_estimators({"c": enum()}).estimate(KEYS[0], p))(0.3)
    assert exact == pytest.approx(3.0)


def test_differentiating_estimate_under_jit_and_in_forward_mode():
    objective = product.with_estimators({"c": enum()})
    value, grad = jax.jit(jax.value_and_grad(objective.estimate, argnums=(1, 2)))(KEYS[1], 0.3, 1.5)
    expected = objective.value_and_grad(KEYS[1], 0.3, 1.5)
    assert value == pytest.approx(float(expected[0]))
    assert jnp.allclose(jnp.array(grad), jnp.array(expected[1]))
    tangent = jax.jvp(lambda p: objective.estimate(KEYS[1], p, 1.5), (0.3,), (1.0,))[1]
    assert tangent == pytest.approx(float(expected[1][0]))


def test_draws_in_a_while_loop_cannot_be_differentiated_and_say_why():
    @expectation
    def until_heads(key, p):
        def body(state):
            n, _, k = state
            k, sub = jax.random.split(k)
            return n + 1.0, coin.simulate(sub, (p,)).retval.astype(bool), k

        n, _, _ = jax.lax.while_loop(lambda s: ~s[1], body, (0.0, False, key))
        return n  # E = 1 / p

    assert until_heads.estimate(jax.random.key(0), 0.5) >= 1.0
    with pytest.raises(AddressError, match=r"'c'.*while_loop.*scan"):
        until_heads.grad_estimate(jax.random.key(0), 0.5)
