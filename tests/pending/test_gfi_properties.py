"""The generative function interface's identities on randomly generated programs.

Each test draws a program (``tests/strategies.py``: many distribution families, dependent
parameters, nested calls, plates, ``Vmap``, ``Scan``, ``Switch``/``Cond`` and ``Mixture``) and
checks one identity of ``ppl/_interface.py`` against an independent route: log densities
computed with NumPyro from a flat ``{address: value}`` map (``Model.site_log_densities``), or
the same program with its combinators written as Python loops (``Model.loop_fn``).
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from strategies import (
    F32,
    KERNEL_FAMILIES,
    arguments,
    batched_like,
    families_at,
    flatten_choices,
    models,
    selected,
)

from ppl import ChoiceMap, Scan, Vmap, gen, normal, select

# A failing example is reported as drawn (printed with its program listing), not shrunk:
# every example compiles its combinators afresh, so shrinking would take minutes.
PROPERTY = settings(phases=(Phase.explicit, Phase.generate))
KEY = jax.random.key(20240611)
RTOL, ATOL = 1e-5, 1e-4
seeds = st.integers(0, 2**16)


def keys(seed: int, n: int = 3) -> list:
    return list(jax.random.split(jax.random.fold_in(KEY, seed), n))


def close(actual, expected, rtol=RTOL, atol=ATOL, err_msg=""):
    np.testing.assert_allclose(
        np.asarray(actual, np.float64),
        np.asarray(expected, np.float64),
        rtol=rtol,
        atol=atol,
        err_msg=err_msg,
    )


def trees_close(actual, expected, **kwargs):
    a, ta = jax.tree.flatten(actual)
    b, tb = jax.tree.flatten(expected)
    assert ta == tb, (ta, tb)
    for x, y in zip(a, b, strict=True):
        close(x, y, **kwargs)


def same_values(actual: dict, expected: dict, exact: bool = False):
    """Two flat ``{address: value}`` maps hold the same addresses and values."""
    assert set(actual) == set(expected), (sorted(map(repr, actual)), sorted(map(repr, expected)))
    for path, value in expected.items():
        if exact:
            np.testing.assert_array_equal(actual[path], value, err_msg=repr(path))
        else:
            close(actual[path], value, err_msg=repr(path))


def total(sites: dict, paths=None) -> float:
    chosen = sites if paths is None else [p for p in sites if p in paths]
    return float(sum(float(sites[p]) for p in chosen))


@st.composite
def patterns(draw, paths: list) -> list[tuple]:
    """Addresses to select or constrain: some of ``paths``, where an index may become ``...``
    (every repeat) and an address may be cut to a prefix (a whole sub-tree)."""
    ordered = sorted(paths, key=repr)
    chosen = draw(st.lists(st.sampled_from(ordered), min_size=1, max_size=3, unique=True))
    out = []
    for path in chosen:
        path = tuple(Ellipsis if isinstance(c, int) and draw(st.booleans()) else c for c in path)
        out.append(path[: draw(st.integers(1, len(path)))])
    return out


def simulate(model, args, key):
    trace = model.gen_fn.simulate(key, args)
    return trace, flatten_choices(trace.choices)


# -- simulate / assess ----------------------------------------------------------------------------
@PROPERTY
@given(models(), arguments(), seeds)
def test_assess_of_simulated_choices_is_the_score(model, args, seed):
    trace, flat = simulate(model, args, keys(seed)[0])
    log_p, retval = model.gen_fn.assess(trace.choices, args)
    close(log_p, trace.score)
    trees_close(retval, trace.retval)
    sites, reference_retval = model.site_log_densities(flat, args)
    assert set(sites) == set(flat), "the reference visits exactly the trace's addresses"
    close(total(sites), trace.score)
    trees_close(reference_retval, trace.retval)
    # Per-choice scores: one per concrete address, equal to NumPyro's log density there.
    same_values(flatten_choices(trace.site_scores), sites)


@PROPERTY
@given(models(), arguments(), seeds)
def test_combinators_agree_with_python_loops(model, args, seed):
    k1, k2, k3 = keys(seed)
    trace, flat = simulate(model, args, k1)
    # Same values at the same concrete addresses: the loop program gives the same density.
    log_p, retval = model.loop_fn.assess(ChoiceMap(flat), args)
    close(log_p, trace.score)
    trees_close(retval, trace.retval)
    # And the other way: the loop program's sample, in the combinators' batched form.
    loop_trace = model.loop_fn.simulate(k2, args)
    loop_flat = flatten_choices(loop_trace.choices)
    batched = batched_like(trace.choices, loop_flat)
    log_p, retval = model.gen_fn.assess(batched, args)
    close(log_p, loop_trace.score)
    trees_close(retval, loop_trace.retval)
    new, weight = model.gen_fn.generate(k3, batched, args)
    close(weight, loop_trace.score)
    same_values(flatten_choices(new.choices), loop_flat, exact=True)


@PROPERTY
@given(models(), arguments(), seeds)
def test_choices_given_address_by_address_are_accepted(model, args, seed):
    """``{("v", 0, "x"): ..., ("v", 1, "x"): ...}`` is a complete choice map for a ``Vmap`` at
    ``"v"``, at any depth of nesting: assess and generate take it like the batched form."""
    trace, flat = simulate(model, args, keys(seed)[0])
    by_address = ChoiceMap(flat)
    new, weight = model.gen_fn.generate(keys(seed)[1], by_address, args)
    close(weight, trace.score)
    same_values(flatten_choices(new.choices), flat, exact=True)
    log_p, _ = model.gen_fn.assess(by_address, args)
    close(log_p, trace.score)


# -- generate -------------------------------------------------------------------------------------
@PROPERTY
@given(models(), arguments(), seeds, st.data())
def test_generate_weights(model, args, seed, data):
    k1, k2, _ = keys(seed)
    trace, flat = simulate(model, args, k1)
    # Every choice constrained: weight = score = assess.
    full, weight = model.gen_fn.generate(k2, trace.choices, args)
    close(weight, trace.score)
    close(full.score, trace.score)
    same_values(flatten_choices(full.choices), flat, exact=True)
    # Nothing constrained: weight 0, and the same key gives simulate's trace.
    free, weight = model.gen_fn.generate(k1, None, args)
    assert float(weight) == 0.0
    close(free.score, trace.score)
    same_values(flatten_choices(free.choices), flat, exact=True)
    # Some constrained: weight = sum of the constrained choices' log densities (p/q cancels
    # on the rest), computed by NumPyro on the new trace.
    chosen = data.draw(patterns(list(flat)))
    constrained = {p for p in flat if selected(chosen, p)}
    partial, weight = model.gen_fn.generate(k2, trace.choices.filter(select(*chosen)), args)
    new_flat = flatten_choices(partial.choices)
    for p in constrained:
        np.testing.assert_array_equal(new_flat[p], flat[p], err_msg=repr(p))
    sites, _ = model.site_log_densities(new_flat, args)
    close(weight, total(sites, constrained))
    close(partial.score, total(sites))


# -- update ---------------------------------------------------------------------------------------
@PROPERTY
@given(models(), arguments(), seeds)
def test_update_without_changes_is_the_identity(model, args, seed):
    k1, k2, _ = keys(seed)
    trace, flat = simulate(model, args, k1)
    new, weight, discard = model.gen_fn.update(k2, trace, None, args)
    close(weight, 0.0)
    close(new.score, trace.score)
    same_values(flatten_choices(new.choices), flat, exact=True)
    assert flatten_choices(discard) == {}


@PROPERTY
@given(models(), arguments(), seeds, st.data())
def test_update_with_changed_choices(model, args, seed, data):
    k1, k2, k3 = keys(seed)
    trace, flat = simulate(model, args, k1)
    other, other_flat = simulate(model, args, k2)
    chosen = data.draw(patterns(list(flat)))
    changed = {p for p in flat if selected(chosen, p)}
    new, weight, discard = model.gen_fn.update(k3, trace, other.choices.filter(select(*chosen)))
    new_flat = flatten_choices(new.choices)
    expected = {p: (other_flat[p] if p in changed else v) for p, v in flat.items()}
    same_values(new_flat, expected, exact=True)
    new_log_p = model.log_density(new_flat, args)
    old_log_p = model.log_density(flat, args)
    close(new.score, new_log_p)
    close(weight, new_log_p - old_log_p)
    same_values(flatten_choices(discard), {p: flat[p] for p in changed}, exact=True)


@PROPERTY
@given(models(), arguments(), arguments(), seeds)
def test_update_with_changed_arguments(model, args, new_args, seed):
    k1, k2, _ = keys(seed)
    trace, flat = simulate(model, args, k1)
    new, weight, discard = model.gen_fn.update(k2, trace, None, new_args)
    same_values(flatten_choices(new.choices), flat, exact=True)
    new_log_p = model.log_density(flat, new_args)
    close(new.score, new_log_p)
    close(weight, new_log_p - model.log_density(flat, args))
    assert flatten_choices(discard) == {}
    trees_close(new.retval, model.site_log_densities(flat, new_args)[1])


# -- regenerate -----------------------------------------------------------------------------------
@PROPERTY
@given(models(), arguments(), seeds, st.data())
def test_regenerate_weights(model, args, seed, data):
    k1, k2, k3 = keys(seed)
    trace, flat = simulate(model, args, k1)
    # Nothing selected: weight 0, trace unchanged.
    for nothing in (None, select()):
        same, weight = model.gen_fn.regenerate(k2, trace, nothing)
        close(weight, 0.0)
        close(same.score, trace.score)
        same_values(flatten_choices(same.choices), flat, exact=True)
    # Everything selected: a draw from the prior, which is its own proposal: weight 0.
    fresh, weight = model.gen_fn.regenerate(k2, trace, ~select())
    close(weight, 0.0)
    close(fresh.score, model.log_density(flatten_choices(fresh.choices), args))
    # Some selected: w = log p(t')/p(t) - log q(t'_sel)/q(t_sel), with q the product of the
    # selected choices' prior conditionals, all from NumPyro.
    chosen = data.draw(patterns(list(flat)))
    picked = {p for p in flat if selected(chosen, p)}
    new, weight = model.gen_fn.regenerate(k3, trace, select(*chosen))
    new_flat = flatten_choices(new.choices)
    assert set(new_flat) == set(flat)
    for p in set(flat) - picked:
        np.testing.assert_array_equal(new_flat[p], flat[p], err_msg=repr(p))
    new_sites, _ = model.site_log_densities(new_flat, args)
    old_sites, _ = model.site_log_densities(flat, args)
    expected = (total(new_sites) - total(old_sites)) - (
        total(new_sites, picked) - total(old_sites, picked)
    )
    close(weight, expected)
    close(new.score, total(new_sites))


# -- jit and vmap ---------------------------------------------------------------------------------
# Compiling whole programs: fewer examples, and no rejection samplers (slow to compile).
@settings(PROPERTY, max_examples=15)
@given(models(families=KERNEL_FAMILIES), arguments(), seeds, st.data())
def test_results_unchanged_under_jit_and_vmap(model, args, seed, data):
    k1, k2, _ = keys(seed)
    gf = model.gen_fn
    trace, flat = simulate(model, args, k1)
    simulate_jit = jax.jit(gf.simulate)
    jitted = simulate_jit(k1, args)
    close(jitted.score, trace.score)
    same_values(flatten_choices(jitted.choices), flat)
    trees_close(jitted.retval, trace.retval)
    # vmap over keys: row i is the un-vmapped call with key i.
    batch = jax.random.split(k2, 3)
    rows = jax.vmap(gf.simulate, in_axes=(0, None))(batch, args)
    for i in range(3):
        single = simulate_jit(batch[i], args)
        row = jax.tree.map(lambda v, i=i: v[i], rows)
        close(row.score, single.score)
        same_values(flatten_choices(row.choices), flatten_choices(single.choices))
    log_p, _ = jax.vmap(gf.assess, in_axes=(0, None))(rows.choices, args)
    close(log_p, rows.score)
    close(jax.jit(gf.assess)(trace.choices, args)[0], trace.score)
    # update and regenerate under jit equal their eager results.
    chosen = data.draw(patterns(list(flat)))
    selection = select(*chosen)
    eager, eager_w = gf.regenerate(k2, trace, selection)
    compiled, compiled_w = jax.jit(lambda k, t: gf.regenerate(k, t, selection))(k2, trace)
    close(compiled_w, eager_w)
    same_values(flatten_choices(compiled.choices), flatten_choices(eager.choices))
    constraints = rows.choices.filter(selection)
    constraints = jax.tree.map(lambda v: v[0], constraints)
    eager, eager_w, _ = gf.update(k2, trace, constraints, args)
    compiled, compiled_w, _ = jax.jit(gf.update)(k2, trace, constraints, args)
    close(compiled_w, eager_w)
    same_values(flatten_choices(compiled.choices), flatten_choices(eager.choices))


# -- gradients ------------------------------------------------------------------------------------
def _tangent(kind: str, value, direction):
    """``(perturb(t), d perturb / dt at 0)``: a path through ``value`` inside its support."""
    if kind in ("real", "vector"):
        return lambda t: value + t * direction, direction
    if kind == "positive":
        return lambda t: value * jnp.exp(t * direction), value * direction
    if kind == "unit":
        logit = jnp.log(value) - jnp.log1p(-value)
        return lambda t: jax.nn.sigmoid(logit + t * direction), value * (1 - value) * direction
    if kind == "simplex":
        centred = direction - jnp.sum(value * direction, axis=-1, keepdims=True)
        return lambda t: jax.nn.softmax(jnp.log(value) + t * direction, axis=-1), value * centred
    return lambda t: value, jnp.zeros_like(value)  # uniform: fixed


@settings(PROPERTY, max_examples=25)
@given(models(), arguments(), seeds)
def test_gradients_of_assess_match_numpyro_and_finite_differences(model, args, seed):
    k1, k2, _ = keys(seed)
    gf = model.gen_fn
    trace, flat = simulate(model, args, k1)
    leaves, treedef = jax.tree.flatten(trace.choices)
    continuous = [i for i, v in enumerate(leaves) if jnp.issubdtype(v.dtype, jnp.floating)]
    x, j = args

    def rebuild(values):
        full = list(leaves)
        for i, v in zip(continuous, values, strict=True):
            full[i] = v
        return jax.tree.unflatten(treedef, full)

    def log_p(values, x):
        return gf.assess(rebuild(values), (x, j))[0]

    def reference(values, x):
        return model.log_density(flatten_choices(rebuild(values), to_numpy=False), (x, j))

    values = [leaves[i] for i in continuous]
    grads = jax.grad(log_p, argnums=(0, 1))(values, x)
    expected = jax.grad(reference, argnums=(0, 1))(values, x)
    trees_close(grads, expected, rtol=2e-3, atol=2e-3)
    # A directional finite difference through each value's support.
    family = families_at(model, flat, args)
    paths = trace.choices.leaf_paths()
    perturbs, tangents = [], []
    for n, i in enumerate(continuous):
        concrete = next(p for p in flat if _instance(paths[i], p))
        direction = jax.random.normal(jax.random.fold_in(k2, n), values[n].shape)
        perturb, tangent = _tangent(family[concrete].kind, values[n], direction)
        perturbs.append(perturb)
        tangents.append(tangent)
    dx = 0.7

    def along(t):
        return log_p([f(t) for f in perturbs], x + t * dx)

    along = jax.jit(along)
    eps = 3e-3
    finite = (along(eps) - along(-eps)) / (2 * eps)
    directional = sum(float(jnp.sum(g * t)) for g, t in zip(grads[0], tangents, strict=True))
    directional += float(grads[1]) * dx
    close(finite, directional, rtol=2e-2, atol=2e-2)


def _instance(pattern: tuple, path: tuple) -> bool:
    return len(pattern) == len(path) and all(
        p is Ellipsis or p == c for p, c in zip(pattern, path, strict=True)
    )


# -- deterministic cases the generator found, kept as named regressions ---------------------------
def test_assess_accepts_every_repeat_given_by_index():
    """A choice map that names every repeat by index is a complete set of choices."""

    @gen
    def model():
        return Vmap(normal, in_axes=(0, None))(jnp.arange(3.0), 1.0) @ "v"

    trace = model.simulate(KEY, ())
    by_index = ChoiceMap({("v", i): trace.choices["v", i] for i in range(3)})
    close(model.generate(KEY, by_index, ())[1], trace.score)
    close(model.assess(by_index, ())[0], trace.score)


def test_nested_combinator_choices_look_up_by_any_mix_of_indices_and_wildcards():
    @gen
    def step(c, _):
        a = normal(c, 1.0) @ "a"
        return a, a

    @gen
    def kernel(x):
        return Scan(step, length=2)(x, None) @ "s"

    @gen
    def model():
        return Vmap(kernel, in_axes=0)(jnp.arange(3.0, dtype=F32)) @ "v"

    choices = model.simulate(KEY, ()).choices
    a = np.asarray(jax.tree.leaves(choices)[0])  # (3 repeats, 2 steps)
    assert a.shape == (3, 2)
    assert float(choices["v", 1, "s", 0, "a"]) == a[1, 0]
    np.testing.assert_array_equal(choices["v", 1, "s", ..., "a"], a[1, :])
    np.testing.assert_array_equal(choices["v", ..., "s", 1, "a"], a[:, 1])
    np.testing.assert_array_equal(choices["v", ..., "s", ..., "a"], a)
