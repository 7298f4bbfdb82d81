"""The ADEV interpreter: evaluates a traced integrand, choosing an estimator at every draw.

The integrand is traced once to a jaxpr in which every draw is an ``adev_sample`` equation.
The interpreter walks the equations with an explicit stack of frames (calls, unrolled loops),
so that at any draw the *rest of the program* is a value: a copy of the stack. That is the
continuation ``enum``, ``mvd`` and leave-one-out baselines need (Lew et al., ADEV, POPL 2023).
Local strategies (``reparam``, ``reinforce`` with a local baseline) need no continuation; they
add score-function terms to ``Accumulators``, which are threaded through ``lax.scan``,
``while_loop`` and ``cond`` bodies as extra carries, so draws inside loops are never dropped.
A ``lax.scan`` whose body needs a continuation is unrolled (its trip count is static); a
``while_loop`` or ``cond`` whose body needs one is an error that names the address.

When every continuation strategy in a program branches (a vectorised ``enum``, an ``mvd``),
``_paths`` runs the program once over every path of those draws instead (its
``PathsMachine`` extends this one), so that tracing does not nest a ``vmap`` per draw.

Results are ``(v, s)``: ``v`` the integrand's value (an unbiased estimate of the expectation)
and ``s`` a surrogate whose gradient is an unbiased estimate of the expectation's gradient.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import ClosedJaxpr, DropVar, Jaxpr, Literal, jaxpr_as_fun, jaxprs_in_params

from ppl._address import show
from ppl._errors import AddressError
from ppl._jax_internals import split_scan_operands
from ppl._selection import Selection
from ppl.adev._estimators import Accumulators, Baseline, Context, Estimator, default_estimator
from ppl.adev._primitive import Site, cached, sample_p, unpack

_CALLS = {"jit", "pjit", "closed_call", "core_call", "remat", "checkpoint"}


class Run:
    """One interpretation: estimator overrides, estimator state, and what was seen."""

    def __init__(self, overrides: tuple[tuple[Any, Selection, Estimator], ...], state: dict):
        self.overrides = overrides
        self.state = state
        self.matched: set[int] = set()
        self.addresses: list[tuple] = []
        self.tracked: dict[tuple, Baseline] = {}
        self.in_while: list[tuple] = []  # addresses drawn inside a while_loop body

    def estimator_for(self, site: Site, guide_estimator: Estimator | None) -> Estimator:
        dist = probe(site)
        chosen = None
        if site.address:
            self.addresses.append(site.address)
            for i, (_, selection, estimator) in enumerate(self.overrides):
                if site.address in selection:
                    self.matched.add(i)
                    chosen = estimator if chosen is None else chosen
        if chosen is None:
            chosen = guide_estimator if guide_estimator is not None else default_estimator(dist)
        chosen.check(site, dist)
        return chosen

    def static_estimator(self, params: dict) -> Estimator | None:
        """The estimator an equation will use, decided before its operands exist."""
        address = params["address"]
        if address:
            for _, selection, estimator in self.overrides:
                if address in selection:
                    return estimator
        tree = params["estimator_tree"]
        return jax.tree_util.tree_unflatten(tree, [None] * tree.num_leaves)

    def unmatched(self) -> list:
        return [key for i, (key, _, _) in enumerate(self.overrides) if i not in self.matched]


def probe(site: Site) -> Any:
    """The NumPyro distribution of one copy of the draw (abstract: for its type and flags),
    built once per distribution and argument shapes and dtypes."""
    one = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(jnp.shape(a)[site.plate_ndims :], jnp.result_type(a)),
        site.args,
    )
    leaves, tree = jax.tree.flatten(one)
    key = (site.distribution, tree, tuple((x.shape, x.dtype) for x in leaves))

    def build() -> Any:
        held: list = []

        def numpyro_dist(args):
            held.append(site.distribution.numpyro(args))
            return jnp.zeros(())

        jax.eval_shape(numpyro_dist, one)
        return held[0]

    return cached(_PROBES, key, build)


_PROBES: dict[tuple, Any] = {}


def _read(env: dict, var: Any) -> Any:
    return var.val if isinstance(var, Literal) else env[var]


def _write(env: dict, variables: list, values: list) -> None:
    for var, value in zip(variables, values, strict=True):
        if not isinstance(var, DropVar):
            env[var] = value


def _bind(eqn: Any, invals: list) -> list:
    params = eqn.primitive.get_bind_params(eqn.params)
    out = eqn.primitive.bind(*invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


@functools.cache
def _samples_in(jaxpr: Jaxpr) -> tuple[Any, ...]:
    """Every ``adev_sample`` equation's parameters in ``jaxpr``, sub-jaxprs included."""
    found: list = []
    for eqn in jaxpr.eqns:
        if eqn.primitive is sample_p:
            found.append(eqn.params)
        for sub in jaxprs_in_params(eqn.params):
            found.extend(_samples_in(sub))
    return tuple(found)


@functools.cache
def _needed(jaxpr: Jaxpr) -> tuple[bool, ...]:
    """Which equations of ``jaxpr`` the interpreter evaluates: those that draw, have effects,
    or feed one of those or an output. The rest (the score of a ``simulate`` whose trace is
    never read, say) would only be traced, under every enclosing ``vmap``, for XLA to drop."""
    live = {v for v in jaxpr.outvars if not isinstance(v, Literal)}
    needed = []
    for eqn in reversed(jaxpr.eqns):
        keep = (
            eqn.primitive is sample_p
            or bool(eqn.effects)
            or any(v in live for v in eqn.outvars if not isinstance(v, DropVar))
            or bool(_samples_in_eqn(eqn))
        )
        if keep:
            live.update(v for v in eqn.invars if not isinstance(v, Literal))
        needed.append(keep)
    return tuple(reversed(needed))


class _Frame:
    """Evaluation of one jaxpr's equations."""

    def __init__(self, jaxpr: Jaxpr, env: dict, pc: int = 0):
        self.jaxpr, self.env, self.pc = jaxpr, env, pc

    def copy(self) -> _Frame:
        return _Frame(self.jaxpr, dict(self.env), self.pc)

    def receive(self, outs: list) -> None:
        _write(self.env, self.jaxpr.eqns[self.pc].outvars, outs)
        self.pc += 1


def _frame(closed: ClosedJaxpr | Jaxpr, args: list) -> _Frame:
    jaxpr = closed.jaxpr if isinstance(closed, ClosedJaxpr) else closed
    consts = list(closed.consts) if isinstance(closed, ClosedJaxpr) else []
    env: dict = {}
    _write(env, list(jaxpr.constvars) + list(jaxpr.invars), consts + list(args))
    return _Frame(jaxpr, env)


def _index(x: Any, t: int) -> Any:
    return x[t]


class _Unrolled:
    """A ``lax.scan`` run one iteration at a time, because its body needs a continuation.

    ``index(x, t)`` is row ``t`` of a scanned operand and ``stack(rows)`` stacks the rows of
    an output (the paths machine's values carry a leading axis of their own).
    """

    def __init__(self, body, consts, carry, xs, length, reverse, index=_index, stack=jnp.stack):
        self.body, self.consts, self.carry, self.xs = body, consts, carry, xs
        self.length, self.reverse, self.index, self.stack = length, reverse, index, stack
        self.ys: list = []
        self.i = 0

    def copy(self) -> _Unrolled:
        c = self
        copied = _Unrolled(c.body, c.consts, c.carry, c.xs, c.length, c.reverse, c.index, c.stack)
        copied.ys, copied.i = list(c.ys), c.i
        return copied

    def receive(self, outs: list) -> None:
        n = len(self.carry)
        self.carry, self.ys = outs[:n], [*self.ys, outs[n:]]
        self.i += 1

    def next_frame(self) -> _Frame | None:
        if self.i == self.length:
            return None
        t = self.length - 1 - self.i if self.reverse else self.i
        rows = [self.index(x, t) for x in self.xs]
        return _frame(self.body, [*self.consts, *self.carry, *rows])

    def outputs(self) -> list:
        ys = self.ys[::-1] if self.reverse else self.ys
        n_ys = len(self.body.jaxpr.outvars) - len(self.carry)
        stacked = [self.stack([y[j] for y in ys]) for j in range(n_ys)]
        return [*self.carry, *stacked]


class Machine(Context):
    """The frame stack plus the accumulators since the last continuation point."""

    def __init__(self, run: Run, frames: list, local: bool):
        self.run_info, self.frames, self.local = run, frames, local
        self.acc = Accumulators.zeros()

    # -- Context -------------------------------------------------------------------------------
    def add(self, terms: Accumulators) -> None:
        self.acc = self.acc + terms

    def state(self, address: tuple) -> jax.Array | None:
        return self.run_info.state.get(address)

    def track(self, address: tuple, baseline: Baseline) -> None:
        self.run_info.tracked[address] = baseline

    # -- evaluation ------------------------------------------------------------------------------
    def clone(self) -> Machine:
        return Machine(self.run_info, [f.copy() for f in self.frames], self.local)

    def execute(self) -> Any:
        """Runs to the end: ``(outs, acc)`` in a loop body, ``(v, s)`` at the top level."""
        while True:
            frame = self.frames[-1]
            if isinstance(frame, _Unrolled):
                nxt = frame.next_frame()
                if nxt is not None:
                    self.frames.append(nxt)
                    continue
                self.frames.pop()
                self.frames[-1].receive(frame.outputs())
                continue
            if frame.pc == len(frame.jaxpr.eqns):
                outs = [_read(frame.env, v) for v in frame.jaxpr.outvars]
                self.frames.pop()
                if not self.frames:
                    return (outs, self.acc) if self.local else self._finish(outs)
                self.frames[-1].receive(outs)
                continue
            if not _needed(frame.jaxpr)[frame.pc]:
                frame.pc += 1
                continue
            eqn = frame.jaxpr.eqns[frame.pc]
            invals = [_read(frame.env, v) for v in eqn.invars]
            if eqn.primitive is sample_p:
                done = self._sample(frame, eqn, invals)
                if done is not None:
                    return done
            elif _samples_in_eqn(eqn) or self._inlined(eqn, invals):
                self._structured(frame, eqn, invals)
            else:
                frame.receive(self._apply(eqn, invals))

    def _inlined(self, eqn: Any, invals: list) -> bool:
        """Whether a call without draws is evaluated equation by equation."""
        return False

    def _apply(self, eqn: Any, invals: list) -> list:
        """The outputs of an equation without draws."""
        return _bind(eqn, invals)

    def _finish(self, outs: list) -> tuple[jax.Array, jax.Array]:
        (value,) = outs
        return value, self.acc.finish(value, value)

    def _sample(self, frame: _Frame, eqn: Any, invals: list) -> Any:
        site, guide_estimator = unpack(invals, eqn.params)
        estimator = self.run_info.estimator_for(site, guide_estimator)
        if not estimator.needs_continuation:
            frame.receive([estimator.local(site, self)])
            return None
        if self.local:
            raise AddressError(
                f"{estimator.name()} at {show(site.address) if site.address else 'a choice'} "
                "needs the rest of the program, but the choice is inside a jax.lax.while_loop "
                "or cond body; use reparam() or reinforce() there (a lax.scan body is unrolled)"
            )
        snapshot = self.clone()

        def continuation(x: jax.Array) -> tuple[jax.Array, jax.Array]:
            machine = snapshot.clone()
            machine.frames[-1].receive([x])
            return machine.execute()

        v, s = estimator.with_continuation(site, continuation, self)
        return v, self.acc.finish(v, s)

    # -- calls and control flow containing draws --------------------------------------------------
    def _structured(self, frame: _Frame, eqn: Any, invals: list) -> None:
        name = eqn.primitive.name
        if name in _CALLS:
            self.frames.append(_frame(eqn.params["jaxpr"], invals))
        elif name == "scan" and self._needs_continuation(eqn) and not self.local:
            consts, carry, xs = split_scan_operands(eqn.params, invals)
            body, length = eqn.params["jaxpr"], eqn.params["length"]
            self.frames.append(
                self._unrolled(body, consts, carry, xs, length, eqn.params["reverse"])
            )
        elif name in ("scan", "while", "cond"):
            outs, acc = self._local_structured(eqn, invals)
            self.add(acc)
            frame.receive(outs)
        else:
            addresses = [show(p["address"]) for p in _samples_in_eqn(eqn)]
            raise AddressError(
                f"random choices {', '.join(addresses)} are drawn inside a {name} (e.g. a "
                "function with a custom derivative); ADEV cannot see through it: draw them "
                "outside, or pass the draw in as an argument"
            )

    def _unrolled(self, body, consts, carry, xs, length, reverse) -> _Unrolled:
        """A scan run one iteration at a time."""
        return _Unrolled(body, consts, carry, xs, length, reverse)

    def _local_structured(self, eqn: Any, invals: list) -> tuple[list, Accumulators]:
        """The outputs of a ``scan``/``while``/``cond`` whose draws are all local, and the
        accumulators of those draws."""
        name = eqn.primitive.name
        if name == "scan":
            return self._scan(eqn, invals)
        if name == "while":
            return self._while(eqn, invals)
        return self._cond(eqn, invals)

    def _needs_continuation(self, eqn: Any) -> bool:
        for params in _samples_in_eqn(eqn):
            estimator = self.run_info.static_estimator(params)
            if estimator is not None and estimator.needs_continuation:
                return True
        return False

    def _local(self, closed: ClosedJaxpr, args: list) -> tuple[list, Accumulators]:
        return Machine(self.run_info, [_frame(closed, args)], local=True).execute()

    def _scan(self, eqn: Any, invals: list) -> tuple[list, Accumulators]:
        consts, carry, xs = split_scan_operands(eqn.params, invals)
        body, length = eqn.params["jaxpr"], eqn.params["length"]

        def step(state, x):
            carry, acc = state
            outs, more = self._local(body, [*consts, *carry, *x])
            return (outs[: len(carry)], acc + more), outs[len(carry) :]

        (carry, acc), ys = jax.lax.scan(
            step,
            (carry, Accumulators.zeros()),
            xs,
            length=length,
            reverse=eqn.params["reverse"],
        )
        return [*carry, *ys], acc

    def _while(self, eqn: Any, invals: list) -> tuple[list, Accumulators]:
        p = eqn.params
        cond_consts = invals[: p["cond_nconsts"]]
        body_consts = invals[p["cond_nconsts"] : p["cond_nconsts"] + p["body_nconsts"]]
        init = invals[p["cond_nconsts"] + p["body_nconsts"] :]
        if _samples_in(p["cond_jaxpr"].jaxpr):
            raise AddressError(
                "a jax.lax.while_loop condition draws random choices; draw them in the body"
            )

        self.run_info.in_while.extend(
            params["address"] for params in _samples_in(p["body_jaxpr"].jaxpr)
        )

        def cond(state):
            (out,) = jaxpr_as_fun(p["cond_jaxpr"])(*cond_consts, *state[0])
            return out

        def body(state):
            carry, acc = state
            outs, more = self._local(p["body_jaxpr"], [*body_consts, *carry])
            return outs, acc + more

        carry, acc = jax.lax.while_loop(cond, body, (init, Accumulators.zeros()))
        return list(carry), acc

    def _cond(self, eqn: Any, invals: list) -> tuple[list, Accumulators]:
        index, operands = invals[0], invals[1:]
        branches = [
            functools.partial(lambda closed, ops: self._local(closed, list(ops)), branch)
            for branch in eqn.params["branches"]
        ]
        outs, acc = jax.lax.switch(index, branches, operands)
        return list(outs), acc


def _samples_in_eqn(eqn: Any) -> tuple:
    found: list = []
    for sub in jaxprs_in_params(eqn.params):
        found.extend(_samples_in(sub))
    return tuple(found)


def interpret_nested(run: Run, closed: ClosedJaxpr, args: list) -> tuple[jax.Array, jax.Array]:
    """``(v, s)`` of a traced integrand (one output) at ``args``, each continuation strategy
    calling the rest of the program (``_paths.interpret`` chooses between this and paths)."""
    return Machine(run, [_frame(closed, args)], local=False).execute()
