"""Hypothesis strategies for random generative programs (``tests/generated_programs.py``):
programs of every kind of first statement, the models built from them, their arguments and
values."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from generated_programs import (
    F32,
    FAMILIES,
    GROUPS,
    KERNEL_FAMILIES,
    TOP_FAMILIES,
    Call,
    Family,
    Linear,
    MixtureCall,
    Model,
    Plate,
    Program,
    ScanCall,
    Site,
    SwitchCall,
    VmapCall,
    _Reference,
    evaluate,
)
from hypothesis import strategies as st

# -- strategies -----------------------------------------------------------------------------------
WEIGHTS = (-1.0, -0.5, 0.5, 1.0)
BIASES = (-1.0, -0.3, 0.0, 0.4, 1.0)
NAMES = ("a", "b", "c", "d", "e", "f", "g", "h", "k", "m", "z", "w")


@st.composite
def linears(draw: Any, n_slots: int) -> Linear:
    bias = draw(st.sampled_from(BIASES))
    k = draw(st.integers(0, min(2, n_slots)))
    slots = draw(st.lists(st.integers(0, n_slots - 1), min_size=k, max_size=k, unique=True))
    return Linear(bias, tuple((s, draw(st.sampled_from(WEIGHTS))) for s in slots))


@st.composite
def _branch_set(draw: Any, count: int) -> tuple[Program, ...]:
    """``count`` flat programs with one address space: the same names, families of one group."""
    n_sites = draw(st.integers(1, 2))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=n_sites, max_size=n_sites, unique=True))
    groups = [FAMILIES[draw(st.sampled_from(KERNEL_FAMILIES))].group for _ in range(n_sites)]
    branches = []
    for _ in range(count):
        stmts = []
        for i, (name, group) in enumerate(zip(names, groups, strict=True)):
            family = FAMILIES[draw(st.sampled_from(GROUPS[group]))]
            pre = tuple(draw(linears(1 + i)) for _ in range(family.n_params))
            stmts.append(Site(name, family.name, pre))
        branches.append(Program(1, tuple(stmts), draw(linears(1 + n_sites))))
    return tuple(branches)


@st.composite
def programs(
    draw: Any,
    n_args: int = 2,
    discrete_args: tuple[int, ...] = (1,),
    budget: int = 8,
    depth: int = 2,
    scan_kernel: bool = False,
    compiled: bool = True,
    families: tuple[str, ...] = TOP_FAMILIES,
    first: str | None = None,
) -> Program:
    """A random program description whose choices number about ``budget`` or fewer.

    Args:
        n_args: the number of (scalar) arguments.
        discrete_args: which argument slots hold integers (usable as a switch index).
        budget: the largest number of distinct choice sites (a kernel counts once).
        depth: how deeply calls and combinators may nest.
        scan_kernel: make a ``(carry, x) -> (carry, y)`` kernel.
        compiled: whether a ``Scan``/``Switch``/``Cond``/``Mixture`` may appear. Their bodies
            are compiled by XLA at every eager call (``Vmap`` and calls run op by op), so a
            program holds at most one of them.
        families: the families of the choices at this level (``KERNEL_FAMILIES`` inside
            combinators).
        first: the kind of the first statement (one of ``FIRST_KINDS``), so that a few
            examples cover every combinator; ``None``: any kind.
    """
    n_stmts = draw(st.integers(1, min(4, budget)))
    used = 0
    stmts: list = []
    discrete_slots = list(discrete_args)
    names = iter(draw(st.permutations(NAMES)))
    # Repeat counts are fixed per level (3 outside, 2 inside): distinct sizes catch mixed-up
    # axes, and few distinct shapes keep the number of eager compilations down.
    size = 3 if depth >= 2 else 2
    for position in range(n_stmts):
        if used >= budget:
            break
        slots = n_args + len(stmts)
        kinds = ["site"] * 4 + ["plate"] * 2
        if depth > 0 and budget - used >= 2:
            kinds += ["call", "vmap", "vmap"]
            if compiled:
                kinds += ["compiled"] * 2
        kind = draw(st.sampled_from(kinds)) if position or first is None else first
        if kind == "compiled":
            kind = draw(st.sampled_from(["scan", "switch", "cond", "mixture"]))
        elif kind == "branch":
            kind = draw(st.sampled_from(["switch", "cond"]))
        name = next(names)
        room = max(1, min(3, budget - used))
        if kind in ("site", "plate"):
            # A plate is a Vmap: its batched sampler is compiled again, so it uses light families.
            family = FAMILIES[
                draw(st.sampled_from(families if kind == "site" else KERNEL_FAMILIES))
            ]
            pre = tuple(draw(linears(slots)) for _ in range(family.n_params))
            if kind == "site":
                stmts.append(Site(name, family.name, pre))
                if family.discrete:
                    discrete_slots.append(slots)
            else:
                stmts.append(Plate(name, family.name, pre, size))
            used += 1
        elif kind == "call":
            body = draw(programs(1, (), room, depth - 1, compiled=compiled, families=families))
            stmts.append(Call(name, body, draw(linears(slots))))
            used += count_sites(body)
            compiled = compiled and not has_compiled(body)
        elif kind == "vmap":
            kernel = draw(
                programs(1, (), room, depth - 1, compiled=compiled, families=KERNEL_FAMILIES)
            )
            n, mapped = size, draw(st.booleans())
            stmts.append(VmapCall(name, kernel, draw(linears(slots)), n, mapped))
            used += count_sites(kernel)
            compiled = compiled and not has_compiled(kernel)
        elif kind == "scan":
            kernel = draw(
                programs(2, (), room, depth - 1, True, compiled=False, families=KERNEL_FAMILIES)
            )
            n, with_xs = draw(st.sampled_from([1, size])), draw(st.booleans())
            stmts.append(ScanCall(name, kernel, draw(linears(slots)), n, with_xs))
            used += count_sites(kernel)
            compiled = False
        elif kind in ("switch", "cond"):
            count = 2 if kind == "cond" else draw(st.integers(2, 3))
            branches = draw(_branch_set(count))
            slot = draw(st.sampled_from([None, *discrete_slots]))
            const = draw(st.integers(0, count - 1))
            stmts.append(
                SwitchCall(name, branches, draw(linears(slots)), slot, const, kind == "cond")
            )
            used += count_sites(branches[0])
            compiled = False
        else:
            components = draw(_branch_set(draw(st.integers(2, 3))))
            stmts.append(MixtureCall(name, components, draw(linears(slots)), draw(linears(slots))))
            used += 1 + count_sites(components[0])
            compiled = False
    out = draw(linears(n_args + len(stmts)))
    return Program(n_args, tuple(stmts), out, scan_kernel)


def has_compiled(program: Program) -> bool:
    """Whether a ``Scan``/``Switch``/``Cond``/``Mixture`` appears anywhere in ``program``."""
    for stmt in program.stmts:
        if isinstance(stmt, ScanCall | SwitchCall | MixtureCall):
            return True
        if isinstance(stmt, Call) and has_compiled(stmt.body):
            return True
        if isinstance(stmt, VmapCall) and has_compiled(stmt.kernel):
            return True
    return False


def count_sites(program: Program) -> int:
    total = 0
    for stmt in program.stmts:
        if isinstance(stmt, Site | Plate):
            total += 1
        elif isinstance(stmt, Call):
            total += count_sites(stmt.body)
        elif isinstance(stmt, VmapCall | ScanCall):
            total += count_sites(stmt.kernel)
        elif isinstance(stmt, SwitchCall):
            total += count_sites(stmt.branches[0])
        elif isinstance(stmt, MixtureCall):
            total += 1 + count_sites(stmt.components[0])
    return total


# What a model's first statement may be forced to: anything, a ``Vmap`` (whose kernel may hold
# plates and other combinators), a ``Scan``, a ``Switch`` or ``Cond``, or a ``Mixture``.
FIRST_KINDS = (None, "vmap", "scan", "branch", "mixture")


def models(
    budget: int = 8,
    depth: int = 2,
    families: tuple[str, ...] = TOP_FAMILIES,
    first: str | None = None,
) -> st.SearchStrategy[Model]:
    """Random models with arguments ``(x: float, j: int)``; see ``programs``."""
    return programs(budget=budget, depth=depth, families=families, first=first).map(Model)


def batched_like(template: Any, values: dict) -> Any:
    """The choice map shaped like ``template`` (a trace's choices) holding ``values``.

    ``values`` is flat (``{concrete address: value}``); the result has the combinators'
    batched form, built from ``leaf_paths`` and the pytree structure only.
    """
    leaves, treedef = jax.tree.flatten(template)
    filled = []
    for path, leaf in zip(template.leaf_paths(), leaves, strict=True):
        array = np.array(leaf)
        k = sum(c is Ellipsis for c in path)
        for index in np.ndindex(array.shape[:k]):
            it = iter(index)
            array[index] = values[tuple(int(next(it)) if c is Ellipsis else c for c in path)]
        filled.append(jnp.asarray(array))
    return jax.tree.unflatten(treedef, filled)


def arguments() -> st.SearchStrategy[tuple]:
    """An argument tuple ``(x, j)`` for a model from ``models``."""
    return st.tuples(
        st.sampled_from([-1.5, -0.4, 0.0, 0.3, 1.2]).map(lambda x: jnp.asarray(x, F32)),
        st.integers(0, 2).map(lambda j: jnp.asarray(j, jnp.int32)),
    )


def families_at(model: Model, values: dict, args: tuple) -> dict[tuple, Family]:
    """``{concrete address: Family}`` of an execution (branches depend on values)."""
    found: dict[tuple, Family] = {}

    class _Record(_Reference):
        def _score(self, path, family, params):
            found[path] = family
            return super()._score(path, family, params)

        def _at(self, *components):
            return _Record(self.values, self.prefix + components, self.out)

        def mixture(self, stmt, logits, h):
            found[(*self.prefix, stmt.name, "component")] = FAMILIES["categorical"]
            return super().mixture(stmt, logits, h)

    evaluate(model.program, args, _Record(values))
    return found
