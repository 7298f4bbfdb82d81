"""Combinator behaviour that the generic identities do not pin down."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd

from ppl import Cond, Mixture, Scan, Switch, Vmap, gen, normal, select

KEY = jax.random.key(0)


@gen
def loop_model(n):
    """x, then n observations ("y", i) in a Python loop: the address set depends on n."""
    x = normal(0.0, 1.0) @ "x"
    for i in range(n):
        normal(x, 1.0) @ ("y", i)
    return x


def test_scan_of_ten_thousand_steps_traces_the_kernel_once():
    calls = []

    @gen
    def step(z, _):
        calls.append(1)
        z = normal(0.9 * z, 1.0) @ "z"
        return z, z

    chain = Scan(step, length=10_000)
    tr = jax.jit(chain.simulate)(KEY, (0.0, None))
    assert len(calls) == 1
    assert tr.choices["z"].shape == (10_000,)
    zs = tr.choices["z"]
    previous = jnp.concatenate([jnp.zeros(1), zs[:-1]])
    expected = jnp.sum(nd.Normal(0.9 * previous, 1.0).log_prob(zs))
    np.testing.assert_allclose(tr.score, expected, rtol=1e-5)


def test_scan_per_step_update_changes_only_that_step_and_its_successor_scores():
    @gen
    def step(z, x):
        z = normal(0.9 * z + x, 1.0) @ "z"
        return z, z

    chain = Scan(step)
    args = (0.0, jnp.zeros(6))
    tr = chain.simulate(KEY, args)
    new, weight, discard = chain.update(KEY, tr, {3: {"z": 2.0}}, args)
    zs = np.array(tr.choices["z"])
    expected = zs.copy()
    expected[3] = 2.0
    np.testing.assert_allclose(new.choices["z"], expected)
    np.testing.assert_allclose(weight, new.score - tr.score, rtol=1e-5, atol=1e-5)
    assert discard.to_dict() == {3: {"z": zs[3]}}


def test_vmap_regenerate_at_one_index_resamples_only_it():
    @gen
    def model():
        return Vmap(normal, in_axes=(0, None))(jnp.zeros(5), 1.0) @ "ys"

    tr = model.simulate(KEY, ())
    new, weight = model.regenerate(jax.random.key(9), tr, select(("ys", 2)))
    changed = np.array(new.choices["ys"] != tr.choices["ys"])
    assert changed.tolist() == [False, False, True, False, False]
    assert weight == 0.0  # independent repeats: the prior proposal cancels exactly


def test_switch_update_to_another_branch_rescores_the_same_choice():
    switch = Switch(normal, normal)
    args0 = (0, (0.0, 1.0), (3.0, 2.0))
    tr = switch.simulate(KEY, args0)
    x = tr.choices
    new, weight, _ = switch.update(KEY, tr, None, (1, (0.0, 1.0), (3.0, 2.0)))
    assert new.choices == x
    expected = nd.Normal(3.0, 2.0).log_prob(x) - nd.Normal(0.0, 1.0).log_prob(x)
    np.testing.assert_allclose(weight, expected, rtol=1e-5)


def test_cond_picks_the_true_branch_when_pred_holds():
    @gen
    def high(m):
        return normal(m + 100.0, 1.0) @ "x"

    @gen
    def low(m):
        return normal(m - 100.0, 1.0) @ "x"

    cond = Cond(high, low)
    traces = jax.vmap(lambda p: cond.simulate(KEY, (p, (0.0,), (0.0,))))(jnp.array([True, False]))
    assert traces.choices["x"][0] > 50 and traces.choices["x"][1] < -50


def test_mixture_marginal_by_enumeration_matches_numpyro():
    mix = Mixture(normal, normal)
    logits = jnp.log(jnp.array([0.25, 0.75]))
    args = (logits, (-1.0, 0.5), (2.0, 1.5))
    value = 0.3
    joint = jnp.array([mix.assess({"component": k, "value": value}, args)[0] for k in range(2)])
    reference = nd.MixtureSameFamily(
        nd.Categorical(logits=logits), nd.Normal(jnp.array([-1.0, 2.0]), jnp.array([0.5, 1.5]))
    ).log_prob(value)
    np.testing.assert_allclose(jax.nn.logsumexp(joint), reference, rtol=1e-5)


def test_nested_vmap_choices_and_score():
    inner = Vmap(normal, in_axes=(0, None))
    outer = Vmap(inner, in_axes=(0, None))
    locs = jnp.arange(6.0).reshape(2, 3)
    tr = outer.simulate(KEY, (locs, 1.0))
    assert tr.choices[1, 2].shape == ()
    np.testing.assert_allclose(
        tr.score, jnp.sum(nd.Normal(locs, 1.0).log_prob(tr.retval)), rtol=1e-5
    )
    np.testing.assert_allclose(outer.assess(tr.choices, (locs, 1.0))[0], tr.score, rtol=1e-6)


def test_static_update_with_new_arguments_visits_new_addresses_and_drops_old_ones():
    tr = loop_model.simulate(KEY, (3,))
    shorter, weight, discard = loop_model.update(KEY, tr, None, (2,))
    assert shorter.choices.leaf_paths() == [("x",), ("y", 0), ("y", 1)]
    assert discard.to_dict() == {"y": {2: tr.choices["y", 2]}}
    np.testing.assert_allclose(weight, shorter.score - tr.score, rtol=1e-6)
    longer, weight, discard = loop_model.update(KEY, tr, {("y", 3): 0.5}, (4,))
    assert longer.choices["y", 3] == 0.5 and discard.is_empty()
    # A new constrained choice enters the weight with its density; a new free one with none.
    np.testing.assert_allclose(weight, longer.score - tr.score, rtol=1e-6)


def test_python_int_arguments_stay_static_through_jit():
    tr = loop_model.simulate(KEY, (2,))
    new, weight = jax.jit(lambda k, t: loop_model.regenerate(k, t, select("x")))(
        jax.random.key(1), tr
    )
    assert new.args == (2,)
    np.testing.assert_allclose(
        weight,
        (new.score - new.subtrace("x").score) - (tr.score - tr.subtrace("x").score),
        rtol=1e-5,
    )


def _chains_in_a_plate():
    """``"v"``: 3 repeats, each a value ``"d"`` and a 2-step chain ``"s"`` of ``"a"``."""

    @gen
    def step(c, _):
        a = normal(c, 1.0) @ "a"
        return a, a

    @gen
    def kernel(x):
        normal(x, 1.0) @ "d"
        return Scan(step, length=2)(x, None) @ "s"

    @gen
    def model():
        return Vmap(kernel, in_axes=0)(jnp.arange(3.0)) @ "v"

    def log_density(d, a):
        x = jnp.arange(3.0)
        previous = jnp.concatenate([x[:, None], a[:, :1]], axis=1)
        return jnp.sum(nd.Normal(x, 1.0).log_prob(d)) + jnp.sum(
            nd.Normal(previous, 1.0).log_prob(a)
        )

    return model, log_density


def test_nested_combinators_take_choices_given_index_by_index():
    model, _ = _chains_in_a_plate()
    tr = model.simulate(KEY, ())
    by_address = {("v", i, "d"): tr.choices["v", i, "d"] for i in range(3)}
    by_address |= {
        ("v", i, "s", t, "a"): tr.choices["v", i, "s", t, "a"] for i in range(3) for t in range(2)
    }
    np.testing.assert_allclose(model.assess(by_address, ())[0], tr.score, rtol=1e-6)
    new, weight = model.generate(jax.random.key(1), by_address, ())
    np.testing.assert_allclose(weight, tr.score, rtol=1e-6)
    np.testing.assert_array_equal(new.choices["v", "s", "a"], tr.choices["v", "s", "a"])


def test_nested_update_with_a_chain_given_whole_in_one_repeat_and_by_step_in_another():
    """``filter(select(("v", 2, "s"), ("v", 0, "s", 1)))`` gives repeat 2's chain batched and
    repeat 0's by step: both forms in one set of constraints."""
    model, log_density = _chains_in_a_plate()
    tr = model.simulate(KEY, ())
    other = model.simulate(jax.random.key(1), ())
    constraints = other.choices.filter(select(("v", 2, "s"), ("v", 0, "s", 1)))
    new, weight, discard = model.update(jax.random.key(2), tr, constraints)
    d = np.asarray(tr.choices["v", "d"])
    a, a_other = (np.asarray(c["v", "s", "a"]) for c in (tr.choices, other.choices))
    expected = a.copy()
    expected[2] = a_other[2]
    expected[0, 1] = a_other[0, 1]
    np.testing.assert_array_equal(new.choices["v", "s", "a"], expected)
    np.testing.assert_array_equal(new.choices["v", "d"], d)
    np.testing.assert_allclose(new.score, log_density(d, expected), rtol=1e-6)
    np.testing.assert_allclose(weight, log_density(d, expected) - log_density(d, a), rtol=1e-5)
    assert discard["v", 0, "s", 1, "a"] == a[0, 1]
    np.testing.assert_array_equal(discard["v", 2, "s", "a"], a[2])
    assert sorted(discard["v"]) == [0, 2]


def test_three_nested_combinators_take_constraints_given_in_both_forms():
    """Repeat 2 of ``"f"`` gives its plates batched, repeat 1 one value by index: both reach
    the plate ``("a", "c")`` of every repeat, and no constraint is lost."""

    @gen
    def inner(x):
        return Vmap(normal, in_axes=(None, None), axis_size=2)(x, 1.0) @ "c"

    @gen
    def middle(x):
        return Vmap(inner, in_axes=None, axis_size=2)(x) @ "a"

    @gen
    def model():
        return Vmap(middle, in_axes=0)(jnp.arange(3.0)) @ "f"

    tr = model.simulate(KEY, ())
    c = np.asarray(tr.choices["f", "a", "c"])
    assert c.shape == (3, 2, 2)
    constraints = tr.choices.filter(select(("f", 2, "a", ...), ("f", 1, "a", 0, "c", 1)))
    new, weight = model.generate(jax.random.key(1), constraints, ())
    given = np.zeros(c.shape, bool)
    given[2] = given[1, 0, 1] = True
    fresh = np.asarray(new.choices["f", "a", "c"])
    np.testing.assert_array_equal(fresh[given], c[given])
    assert not np.any(fresh[~given] == c[~given])
    log_p = np.asarray(nd.Normal(jnp.arange(3.0)[:, None, None], 1.0).log_prob(c))
    np.testing.assert_allclose(weight, log_p[given].sum(), rtol=1e-5)
