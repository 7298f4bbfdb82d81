"""ChoiceMap and Selection: round trips and algebra, as properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ppl
from ppl import ChoiceMap, Scan, Vmap, gen, normal, select

components = st.one_of(st.sampled_from(["a", "b", "c", "y"]), st.integers(0, 3))
paths = st.lists(components, min_size=1, max_size=3).map(tuple)


@st.composite
def choice_dicts(draw):
    """Flat {path: value} dicts whose paths are prefix-free (a path is a value or a map)."""
    out: dict = {}
    for path in draw(st.lists(paths, max_size=8)):
        clash = any(p[: len(path)] == path or path[: len(p)] == p for p in out)
        if not clash:
            shape = draw(st.sampled_from([(), (2,), (2, 3)]))
            out[path] = np.full(shape, draw(st.floats(-5, 5, width=32)), np.float32)
    return out


@given(choice_dicts())
def test_flat_dict_round_trip(flat):
    cm = ChoiceMap(flat)
    assert set(cm.leaf_paths()) == set(flat)
    for path, value in flat.items():
        np.testing.assert_array_equal(cm[path], value)


@given(choice_dicts())
def test_ravel_round_trip_keeps_order_and_values(flat):
    cm = ChoiceMap(flat)
    vector, unravel = cm.ravel()
    assert vector.shape == (sum(v.size for v in flat.values()),)
    back = unravel(vector)
    assert back.leaf_paths() == cm.leaf_paths()
    for path in flat:
        np.testing.assert_array_equal(back[path], cm[path])


@given(choice_dicts(), st.lists(paths, min_size=1, max_size=3))
def test_filter_and_complement_partition_the_choices(flat, selected):
    cm = ChoiceMap(flat)
    sel = select(*selected)
    kept, dropped = cm.filter(sel).leaf_paths(), cm.filter(~sel).leaf_paths()
    assert set(kept) | set(dropped) == set(flat)
    assert not set(kept) & set(dropped)
    for path in kept:
        assert path in sel
    for path in dropped:
        assert path not in sel


@given(paths, st.lists(paths, max_size=3), st.lists(paths, max_size=3))
def test_selection_algebra(path, a, b):
    sa, sb = select(*a), select(*b)
    assert (path in (sa | sb)) == (path in sa or path in sb)
    assert (path in (sa & sb)) == (path in sa and path in sb)
    assert (path in ~sa) == (path not in sa)
    prefix_selected = any(path[: len(p)] == p for p in a)
    assert (path in sa) == prefix_selected


def test_wildcard_matches_any_component():
    s = select(("y", ..., "w"))
    assert ("y", 3, "w") in s and ("y", "k", "w") in s
    assert ("y", 3, "b") not in s and ("x", 3, "w") not in s


def test_merge_right_wins_and_nests():
    cm = ChoiceMap({"a": 1.0, ("b", "c"): 2.0}) | {("b", "d"): 3.0, "a": 4.0}
    assert cm.to_dict() == {"a": 4.0, "b": {"c": 2.0, "d": 3.0}}


def test_indexed_choices_from_combinators():
    @gen
    def kernel(carry, x):
        z = normal(carry + x, 1.0) @ "z"
        return z, z

    @gen
    def model():
        Vmap(normal, in_axes=(0, None))(jnp.zeros(3), 1.0) @ "plate"
        Scan(kernel)(0.0, jnp.arange(4.0)) @ "chain"
        return None

    tr = model.simulate(jax.random.key(0), ())
    cm = tr.choices
    assert cm["plate"].shape == (3,) and cm["chain", "z"].shape == (4,)
    assert cm["chain", 2, "z"] == cm["chain", "z"][2]
    assert cm["plate", 1] == cm["plate"][1]
    assert cm.leaf_paths() == [("plate", ...), ("chain", ..., "z")]
    sub = cm.filter(select(("chain", 2, "z"), ("plate", ...)))
    assert sub.to_dict()["chain"] == {2: {"z": cm["chain", "z"][2]}}
    np.testing.assert_array_equal(sub["plate"], cm["plate"])
    vector, unravel = cm.ravel(select("chain"))
    np.testing.assert_array_equal(vector, cm["chain", "z"])
    np.testing.assert_array_equal(unravel(vector + 1)["chain", "z"], cm["chain", "z"] + 1)
    # The flattening of a trace's selection is stable across traces of the same model.
    other = model.simulate(jax.random.key(1), ()).choices
    assert jax.tree.structure(other.filter(select("chain"))) == jax.tree.structure(
        cm.filter(select("chain"))
    )


def test_missing_address_message_lists_contents():
    cm = ChoiceMap({"a": 1.0, ("y", 0): 1.0, ("y", 1): 2.0, ("y", 2): 3.0})
    try:
        cm["b"]
    except KeyError as error:
        assert "no choice at 'b'" in str(error) and "('y', 0..2)" in str(error)
    else:
        raise AssertionError("expected KeyError")


def test_indexed_choices_merge_with_batched_values():
    @gen
    def step(z, _):
        z = normal(z, 1.0) @ "z"
        normal(z, 1.0) @ "x"
        return z, z

    chain = Scan(step, length=3)
    tr = chain.simulate(jax.random.key(0), (0.0, None))
    merged = tr.choices.filter(select((..., "z"))) | {"x": tr.choices["x"]}
    np.testing.assert_allclose(chain.assess(merged, (0.0, None))[0], tr.score, rtol=1e-6)


def test_nested_combinator_choices_look_up_by_any_mix_of_indices_and_wildcards():
    """``...`` (or a left-out index) keeps a repeat axis; a later integer indexes the next
    combinator's axis, also through a ``@gen`` call between the two combinators."""

    @gen
    def step(c, _):
        a = normal(c, 1.0) @ "a"
        return a, a

    @gen
    def kernel(x):
        return Scan(step, length=2)(x, None) @ "s"

    @gen
    def model():
        Vmap(Vmap(normal, in_axes=(0, None)), in_axes=(0, None))(jnp.zeros((3, 2)), 1.0) @ "p"
        return Vmap(kernel, in_axes=0)(jnp.arange(3.0)) @ "v"

    choices = model.simulate(jax.random.key(0), ()).choices
    assert choices.leaf_paths() == [("p", ..., ...), ("v", ..., "s", ..., "a")]
    a, p = (np.asarray(leaf) for leaf in jax.tree.leaves(choices)[::-1])
    assert a.shape == (3, 2) and p.shape == (3, 2)
    assert float(choices["v", 1, "s", 0, "a"]) == a[1, 0]
    for address, expected in [
        (("v", ..., "s", ..., "a"), a),
        (("v", "s", "a"), a),
        (("v", 1, "s", ..., "a"), a[1]),
        (("v", ..., "s", 1, "a"), a[:, 1]),
        (("v", "s", 1, "a"), a[:, 1]),
        (("p",), p),
        (("p", ..., 1), p[:, 1]),
        (("p", 2), p[2]),
    ]:
        np.testing.assert_array_equal(choices[address], expected, err_msg=repr(address))
    np.testing.assert_array_equal(choices["v", ..., "s"][1, "a"], a[1])
    np.testing.assert_array_equal(choices["v", ..., "s"][..., 1, "a"], a[:, 1])


def test_filter_by_an_index_below_a_wildcard_picks_the_inner_repeat():
    """``select(("w", ..., "h", 1))``: repeat 1 of the plate ``"h"`` in every repeat of
    ``"w"`` (both of size 3, so slicing the wrong axis would go unnoticed by shapes)."""

    @gen
    def kernel(x):
        return Vmap(normal, in_axes=(None, None), axis_size=3)(x, 1.0) @ "h"

    @gen
    def model():
        return Vmap(kernel, in_axes=0)(jnp.arange(3.0)) @ "w"

    choices = model.simulate(jax.random.key(0), ()).choices
    h = np.asarray(choices["w", "h"])
    assert h.shape == (3, 3)
    picked = choices.filter(select(("w", ..., "h", 1)))
    assert picked.leaf_paths() == [("w", ..., "h", 1)]
    np.testing.assert_array_equal(picked["w", ..., "h", 1], h[:, 1])
    assert picked["w", 2, "h", 1] == h[2, 1]


@given(
    rows=st.sets(st.integers(0, 4), max_size=5),
    values=st.lists(st.floats(-5, 5, width=32), min_size=5, max_size=5),
)
def test_some_repeats_by_index_merge_into_the_batched_repeats(rows, values):
    # A selection of some repeats filters them one by one ({1: v}); merged back into the
    # repeats' batched value they replace those rows (and the batched value replaces them all).
    plate = Vmap(normal, in_axes=(0, None))
    trace = plate.simulate(jax.random.key(0), (jnp.zeros(5), 1.0))
    some = ChoiceMap({i: values[i] for i in rows})
    merged = trace.choices | some
    expected = np.asarray(trace.choices[...]).copy()
    for i in rows:
        expected[i] = values[i]
    np.testing.assert_array_equal(np.asarray(merged[...]), expected)
    if rows:
        np.testing.assert_array_equal(np.asarray((some | trace.choices)[...]), trace.choices[...])


@given(
    rows=st.sets(st.integers(0, 3), max_size=4),
    values=st.lists(st.floats(-5, 5, width=32), min_size=8, max_size=8),
)
def test_some_repeats_of_a_model_by_index_merge_into_the_batched_repeats(rows, values):
    # The same for repeats of a model: {1: {"b": v}} replaces row 1 of b alone.
    @gen
    def pair(mu):
        a = normal(mu, 1.0) @ "a"
        return normal(jnp.full(2, a), 1.0) @ "b"

    trace = Vmap(pair, in_axes=(0,)).simulate(jax.random.key(0), (jnp.zeros(4),))
    some = ChoiceMap({i: {"b": jnp.array(values[2 * i : 2 * i + 2])} for i in rows})
    merged = trace.choices | some
    expected = np.asarray(trace.choices["b"]).copy()
    for i in rows:
        expected[i] = values[2 * i : 2 * i + 2]
    np.testing.assert_array_equal(np.asarray(merged["b"]), expected)
    np.testing.assert_array_equal(np.asarray(merged["a"]), trace.choices["a"])
    with pytest.raises(ValueError, match="repeat 0 has addresses"):
        trace.choices | ChoiceMap({0: {"c": 1.0}})


def test_a_repeat_of_supports_keeps_their_static_parameters():
    plate = Vmap(ppl.uniform, in_axes=(None, 0))
    trace = plate.simulate(jax.random.key(0), (0.0, jnp.array([1.0, 2.0, 3.0])))
    support = plate.supports(trace)[1]
    assert support.lower_bound == 0.0 and float(support.upper_bound) == 2.0
