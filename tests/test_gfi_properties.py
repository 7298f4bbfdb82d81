"""The generative function interface's identities on randomly generated programs.

Each test draws programs (``tests/strategies.py``: many distribution families, dependent
parameters, nested calls, plates, ``Vmap``, ``Scan``, ``Switch``/``Cond`` and ``Mixture``) and
checks identities of ``ppl/_interface.py`` against an independent route: log densities
computed with NumPyro from a flat ``{address: value}`` map (``Model.site_log_densities``), or
the same program with its combinators written as Python loops (``Model.loop_fn``).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from generated_programs import KERNEL_FAMILIES, flatten_choices, selected
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from strategies import FIRST_KINDS, arguments, batched_like, families_at, models

from ppl import ChoiceMap, select


def properties(max_examples: int) -> settings:
    """A fixed sequence of examples (``derandomize``), so the suite never flakes.

    Every example is a new program that XLA compiles afresh (its new shapes, and its ``Scan`` or
    ``Switch`` at every eager call: seconds per example), so each property sees a few programs
    for each kind of first statement (``every_first_statement``), which covers every
    combinator. A failing example is reported as drawn (with its program listing), not
    shrunk: shrinking would compile hundreds of programs.
    """
    return settings(
        max_examples=max_examples,
        derandomize=True,
        deadline=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


KEY = jax.random.key(20240611)
RTOL, ATOL = 1e-5, 1e-4
seeds = st.integers(0, 2**16)
every_first_statement = pytest.mark.parametrize("first", FIRST_KINDS, ids=lambda k: k or "any")


def draw_model(data, first, **kwargs) -> tuple:
    """``(model, args, seed)``: a model whose first statement is ``first`` (see ``models``)."""
    model = data.draw(models(first=first, **kwargs), label="model")
    return model, data.draw(arguments(), label="args"), data.draw(seeds, label="seed")


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


def same_structure(new, old):
    """Traces of one program have one tree structure whichever method made them (so they can
    be a ``lax.scan`` carry or the branches of a ``lax.cond``); arguments aside."""
    strip = lambda t: dataclasses.replace(t, args=None)
    assert jax.tree.structure(strip(new)) == jax.tree.structure(strip(old))


def simulate(model, args, key):
    trace = model.gen_fn.simulate(key, args)
    return trace, flatten_choices(trace.choices)


# -- simulate, assess, generate -------------------------------------------------------------------
# A new program costs seconds of compilation and a further check on it little, so each test
# checks several identities of one program; each identity is a function below.
@every_first_statement
@properties(2)
@given(st.data())
def test_simulate_assess_and_generate(first, data):
    model, args, seed = draw_model(data, first)
    k1, k2, k3 = keys(seed)
    trace, flat = simulate(model, args, k1)
    assess_of_simulated_choices_is_the_score(model, args, trace, flat)
    generate_weights(model, args, trace, flat, k1, k2, data)
    combinators_agree_with_python_loops(model, args, trace, flat, k2, k3)


def assess_of_simulated_choices_is_the_score(model, args, trace, flat):
    log_p, retval = model.gen_fn.assess(trace.choices, args)
    close(log_p, trace.score)
    trees_close(retval, trace.retval)
    sites, reference_retval = model.site_log_densities(flat, args)
    assert set(sites) == set(flat), "the reference visits exactly the trace's addresses"
    close(total(sites), trace.score)
    trees_close(reference_retval, trace.retval)
    # Per-choice scores: one per concrete address, equal to NumPyro's log density there.
    same_values(flatten_choices(trace.site_scores), sites)
    # The same choices given address by address (``("v", 0, "x")``, ``("v", 1, "x")``, ...,
    # at any depth of nesting) are a complete choice map too.
    close(model.gen_fn.assess(ChoiceMap(flat), args)[0], trace.score)


def generate_weights(model, args, trace, flat, key, other_key, data):
    # Every choice constrained, batched or address by address: weight = score = assess.
    for every in (trace.choices, ChoiceMap(flat)):
        full, weight = model.gen_fn.generate(other_key, every, args)
        same_structure(full, trace)
        close(weight, trace.score)
        close(full.score, trace.score)
        same_values(flatten_choices(full.choices), flat, exact=True)
    # Nothing constrained: weight 0, and simulate's key gives simulate's trace.
    free, weight = model.gen_fn.generate(key, None, args)
    assert float(weight) == 0.0
    close(free.score, trace.score)
    same_values(flatten_choices(free.choices), flat, exact=True)
    # Some constrained: weight = sum of the constrained choices' log densities (p/q cancels
    # on the rest), computed by NumPyro on the new trace.
    chosen = data.draw(patterns(list(flat)), label="constrained")
    constrained = {p for p in flat if selected(chosen, p)}
    partial, weight = model.gen_fn.generate(other_key, trace.choices.filter(select(*chosen)), args)
    same_structure(partial, trace)
    new_flat = flatten_choices(partial.choices)
    for p in constrained:
        np.testing.assert_array_equal(new_flat[p], flat[p], err_msg=repr(p))
    sites, _ = model.site_log_densities(new_flat, args)
    close(weight, total(sites, constrained))
    close(partial.score, total(sites))


def combinators_agree_with_python_loops(model, args, trace, flat, key, other_key):
    # Same values at the same concrete addresses: the loop program gives the same density.
    log_p, retval = model.loop_fn.assess(ChoiceMap(flat), args)
    close(log_p, trace.score)
    trees_close(retval, trace.retval)
    # And the other way: the loop program's sample, in the combinators' batched form.
    loop_trace = model.loop_fn.simulate(key, args)
    loop_flat = flatten_choices(loop_trace.choices)
    batched = batched_like(trace.choices, loop_flat)
    log_p, retval = model.gen_fn.assess(batched, args)
    close(log_p, loop_trace.score)
    trees_close(retval, loop_trace.retval)
    new, weight = model.gen_fn.generate(other_key, batched, args)
    close(weight, loop_trace.score)
    same_values(flatten_choices(new.choices), loop_flat, exact=True)


# -- update, regenerate ---------------------------------------------------------------------------
@every_first_statement
@properties(2)
@given(st.data())
def test_update_and_regenerate(first, data):
    model, args, seed = draw_model(data, first)
    k1, k2, k3 = keys(seed)
    trace, flat = simulate(model, args, k1)
    update_without_constraints_rescores_the_same_choices(model, args, trace, flat, k2, data)
    update_with_changed_choices(model, args, trace, flat, k2, k3, data)
    regenerate_weights(model, args, trace, flat, k2, k3, data)


def update_without_constraints_rescores_the_same_choices(model, args, trace, flat, key, data):
    # Same arguments: the identity, weight 0.
    new, weight, discard = model.gen_fn.update(key, trace, None, args)
    same_structure(new, trace)
    close(weight, 0.0)
    close(new.score, trace.score)
    same_values(flatten_choices(new.choices), flat, exact=True)
    assert flatten_choices(discard) == {}
    # New arguments: the same choices, rescored; weight = new - old log density.
    new_args = data.draw(arguments(), label="new args")
    new, weight, discard = model.gen_fn.update(key, trace, None, new_args)
    same_values(flatten_choices(new.choices), flat, exact=True)
    new_log_p = model.log_density(flat, new_args)
    close(new.score, new_log_p)
    close(weight, new_log_p - model.log_density(flat, args))
    assert flatten_choices(discard) == {}
    trees_close(new.retval, model.site_log_densities(flat, new_args)[1])


def update_with_changed_choices(model, args, trace, flat, other_key, key, data):
    # New values (another simulation's) for some addresses: w = new - old log density, and
    # the discard holds exactly the replaced values.
    other, other_flat = simulate(model, args, other_key)
    chosen = data.draw(patterns(list(flat)), label="changed")
    changed = {p for p in flat if selected(chosen, p)}
    new, weight, discard = model.gen_fn.update(key, trace, other.choices.filter(select(*chosen)))
    same_structure(new, trace)
    new_flat = flatten_choices(new.choices)
    expected = {p: (other_flat[p] if p in changed else v) for p, v in flat.items()}
    same_values(new_flat, expected, exact=True)
    new_log_p = model.log_density(new_flat, args)
    old_log_p = model.log_density(flat, args)
    close(new.score, new_log_p)
    close(weight, new_log_p - old_log_p)
    same_values(flatten_choices(discard), {p: flat[p] for p in changed}, exact=True)


def regenerate_weights(model, args, trace, flat, key, other_key, data):
    # Nothing selected: weight 0, trace unchanged.
    for nothing in (None, select()):
        same, weight = model.gen_fn.regenerate(key, trace, nothing)
        close(weight, 0.0)
        close(same.score, trace.score)
        same_values(flatten_choices(same.choices), flat, exact=True)
    # Everything selected: a draw from the prior, which is its own proposal: weight 0.
    fresh, weight = model.gen_fn.regenerate(key, trace, ~select())
    close(weight, 0.0)
    close(fresh.score, model.log_density(flatten_choices(fresh.choices), args))
    # Some selected: w = log p(t')/p(t) - log q(t'_sel)/q(t_sel), with q the product of the
    # selected choices' prior conditionals, all from NumPyro.
    chosen = data.draw(patterns(list(flat)), label="resampled")
    picked = {p for p in flat if selected(chosen, p)}
    new, weight = model.gen_fn.regenerate(other_key, trace, select(*chosen))
    same_structure(new, trace)
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
# One compilation per program: simulate and assess under jit of vmap over four keys (a size no
# repeat count has, so a mixed-up axis shows), assess, regenerate and update under jit, against
# eager calls. Small programs without rejection samplers, compiled without XLA's backend
# optimisations: what is under test is what ppl traces, and compiling takes half the time.
@every_first_statement
@properties(2)
@given(st.data())
def test_results_unchanged_under_jit_and_vmap(first, data):
    model, args, seed = draw_model(data, first, budget=5, families=KERNEL_FAMILIES)
    k1, k2, k3 = keys(seed)
    gf = model.gen_fn
    trace, flat = simulate(model, args, k1)
    other, other_flat = simulate(model, args, k2)
    selection = select(*data.draw(patterns(list(flat)), label="selected"))
    constraints = other.choices.filter(selection)

    def everything(batch, trace, constraints):
        rows = jax.vmap(gf.simulate, in_axes=(0, None))(batch, args)
        return {
            "rows": rows,
            "assess_rows": jax.vmap(gf.assess, in_axes=(0, None))(rows.choices, args),
            "assess": gf.assess(trace.choices, args),
            "regenerate": gf.regenerate(k3, trace, selection),
            "update": gf.update(k3, trace, constraints, args),
        }

    inputs = (jnp.stack([k1, k2, *jax.random.split(k3, 2)]), trace, constraints)
    compiled = jax.jit(everything).lower(*inputs).compile({"xla_backend_optimization_level": 0})
    out = compiled(*inputs)
    for i, (eager, eager_flat) in enumerate([(trace, flat), (other, other_flat)]):
        row = jax.tree.map(lambda v, i=i: v[i], out["rows"])
        close(row.score, eager.score)
        same_values(flatten_choices(row.choices), eager_flat)
        trees_close(row.retval, eager.retval)
        # The calls' scores, packed in one array, read back from a row and from the batch.
        eager_sites = flatten_choices(eager.site_scores)
        same_values(flatten_choices(row.site_scores), eager_sites)
        batched = jax.tree.map(lambda v, i=i: v[i], out["rows"].site_scores)
        same_values(flatten_choices(batched), eager_sites)
    log_p, retval = out["assess_rows"]
    close(log_p, out["rows"].score)
    trees_close(retval, out["rows"].retval)
    close(out["assess"][0], trace.score)
    # regenerate and update under jit equal their eager results.
    eager, eager_w = gf.regenerate(k3, trace, selection)
    jitted, jitted_w = out["regenerate"]
    close(jitted_w, eager_w)
    same_values(flatten_choices(jitted.choices), flatten_choices(eager.choices))
    eager, eager_w, eager_discard = gf.update(k3, trace, constraints, args)
    jitted, jitted_w, jitted_discard = out["update"]
    close(jitted_w, eager_w)
    same_values(flatten_choices(jitted.choices), flatten_choices(eager.choices))
    same_values(flatten_choices(jitted_discard), flatten_choices(eager_discard))


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


@every_first_statement
@properties(2)
@given(st.data())
def test_gradients_of_assess_match_numpyro_and_finite_differences(first, data):
    model, args, seed = draw_model(data, first)
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
    # Compiled: differentiating eagerly would compile every transposed operation on its own.
    grads = jax.jit(jax.grad(log_p, argnums=(0, 1)))(values, x)
    expected = jax.jit(jax.grad(reference, argnums=(0, 1)))(values, x)
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
