"""Random generative programs: descriptions and their three interpretations.

A *program* is a small, hashable description (``Program``) of a ``@gen`` function: random
choices from many distribution families whose parameters are smooth functions of earlier
values (softplus for scales, sigmoid for probabilities, so every parameter stays valid),
hierarchical calls of generated programs at nested addresses, plates of a distribution,
``Vmap`` over a generated kernel, ``Scan`` of a generated kernel threading a carry, ``Switch`` /
``Cond`` between branches with one address space, and ``Mixture``.

One description has three interpretations, which the property tests compare:

* ``Model.gen_fn``: the ``@gen`` program with the combinators (what is under test);
* ``Model.loop_fn``: the same program with every combinator written as a Python loop or a
  Python ``if`` over ``@gen`` calls at the same concrete addresses (eager only: the branch is
  taken on a concrete value);
* ``Model.site_log_densities``: a direct NumPyro computation of every choice's log density
  from a flat ``{concrete address: value}`` map, not using ppl at all; differentiable with
  ``jax.grad``.

Every value's support is independent of the parameters (no ``uniform(low(x), ...)``), so the
values of one simulation are valid choices for any other execution of the same program.

The hypothesis strategies that draw programs are in ``tests/strategies.py``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd

import ppl
from ppl import Cond, Mixture, Scan, Switch, Vmap, gen

_softplus = jax.nn.softplus
_sigmoid = jax.nn.sigmoid
F32 = jnp.float32


# -- distribution families ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Family:
    """A distribution family: valid parameters from pre-activations, and two implementations.

    ``params`` maps ``n_params`` real pre-activations to valid parameters; ``ppl_args`` gives
    the positional arguments of the ppl distribution ``dist``; ``reference`` builds the NumPyro
    distribution directly (the independent route). ``kind`` says how a value may be perturbed
    for finite differences; ``group`` names the families that may replace each other at one
    address of a ``Switch`` (same value shape, same support, same argument structure).
    """

    name: str
    n_params: int
    kind: str  # real, positive, unit, simplex, vector, discrete, fixed
    group: str
    params: Callable[..., tuple]
    ppl_args: Callable[..., tuple]
    dist: Any
    reference: Callable[..., nd.Distribution]

    @property
    def discrete(self) -> bool:
        return self.kind == "discrete"

    def feature(self, value: Any) -> jax.Array:
        """A bounded scalar summary of a value, used to parameterise later choices."""
        value = jnp.asarray(value)
        if self.kind == "discrete":
            return jnp.tanh(0.5 * value.astype(F32))
        if self.kind == "positive":
            return jnp.tanh(jnp.log1p(value))
        if self.kind == "simplex":
            return value[0]
        if self.kind == "vector":
            return jnp.tanh(jnp.mean(value))
        return jnp.tanh(value)


def _locscale(h):
    return h[0], _softplus(h[1]) + 0.3


def _prob(h):
    return (0.05 + 0.9 * _sigmoid(h[0]),)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("normal", 2, "real", "locscale", _locscale, lambda m, s: (m, s), ppl.normal,
               lambda m, s: nd.Normal(m, s)),
        Family("laplace", 2, "real", "locscale", _locscale, lambda m, s: (m, s), ppl.laplace,
               lambda m, s: nd.Laplace(m, s)),
        Family("cauchy", 2, "real", "locscale", _locscale, lambda m, s: (m, s), ppl.cauchy,
               lambda m, s: nd.Cauchy(m, s)),
        Family("student_t", 3, "real", "student_t",
               lambda h: (_softplus(h[0]) + 2.0, h[1], _softplus(h[2]) + 0.3),
               lambda d, m, s: (d, m, s), ppl.student_t, lambda d, m, s: nd.StudentT(d, m, s)),
        Family("gamma", 2, "positive", "concentration_rate",
               lambda h: (_softplus(h[0]) + 1.0, _softplus(h[1]) + 0.5),
               lambda c, r: (c, r), ppl.gamma, lambda c, r: nd.Gamma(c, r)),
        Family("inverse_gamma", 2, "positive", "concentration_rate",
               lambda h: (_softplus(h[0]) + 2.0, _softplus(h[1]) + 0.5),
               lambda c, r: (c, r), ppl.inverse_gamma, lambda c, r: nd.InverseGamma(c, r)),
        Family("log_normal", 2, "positive", "log_normal",
               lambda h: (0.3 * h[0], 0.2 + 0.3 * _softplus(h[1])),
               lambda m, s: (m, s), ppl.log_normal, lambda m, s: nd.LogNormal(m, s)),
        Family("exponential", 1, "positive", "one_positive", lambda h: (_softplus(h[0]) + 0.5,),
               lambda r: (r,), ppl.exponential, lambda r: nd.Exponential(r)),
        Family("half_normal", 1, "positive", "one_positive", lambda h: (_softplus(h[0]) + 0.5,),
               lambda s: (s,), ppl.half_normal, lambda s: nd.HalfNormal(s)),
        Family("beta", 2, "unit", "beta", lambda h: (_softplus(h[0]) + 1.0, _softplus(h[1]) + 1.0),
               lambda a, b: (a, b), ppl.beta, lambda a, b: nd.Beta(a, b)),
        Family("uniform", 0, "fixed", "uniform",
               lambda h: (jnp.asarray(-1.0, F32), jnp.asarray(2.0, F32)),
               lambda lo, hi: (lo, hi), ppl.uniform, lambda lo, hi: nd.Uniform(lo, hi)),
        Family("flip", 1, "discrete", "flip", _prob, lambda p: (p,), ppl.flip,
               lambda p: nd.BernoulliProbs(p)),
        Family("bernoulli", 1, "discrete", "bernoulli", lambda h: (h[0],),
               lambda logit: (None, logit), ppl.bernoulli, lambda logit: nd.BernoulliLogits(logit)),
        Family("categorical", 2, "discrete", "categorical",
               lambda h: (jnp.stack([h[0], h[1], -h[0]]),),
               lambda logits: (None, logits), ppl.categorical,
               lambda logits: nd.CategoricalLogits(logits)),
        Family("poisson", 1, "discrete", "poisson", lambda h: (_softplus(h[0]) + 0.5,),
               lambda r: (r,), ppl.poisson, lambda r: nd.Poisson(r)),
        Family("geometric", 1, "discrete", "geometric",
               lambda h: (0.2 + 0.6 * _sigmoid(h[0]),),
               lambda p: (p, None), ppl.geometric, lambda p: nd.GeometricProbs(p)),
        Family("binomial", 1, "discrete", "binomial", _prob, lambda p: (4, p, None),
               ppl.binomial, lambda p: nd.BinomialProbs(p, total_count=4)),
        Family("negative_binomial", 1, "discrete", "negative_binomial",
               lambda h: (0.2 + 0.6 * _sigmoid(h[0]),), lambda p: (3.0, p, None),
               ppl.negative_binomial, lambda p: nd.NegativeBinomialProbs(3.0, p)),
        Family("mv_normal_diag", 2, "vector", "mv_normal_diag",
               lambda h: (h[0] * jnp.array([1.0, -1.0, 0.5]),
                          _softplus(h[1] + jnp.array([0.0, 0.5, -0.5])) + 0.3),
               lambda loc, scale: (loc, scale), ppl.mv_normal_diag,
               lambda loc, scale: nd.MultivariateNormal(loc, scale_tril=jnp.diag(scale))),
        Family("mv_normal", 2, "vector", "mv_normal",
               lambda h: (h[0] * jnp.array([1.0, -0.5]),
                          (_softplus(h[1]) + 0.5) * jnp.eye(2) + 0.3 * jnp.ones((2, 2))),
               lambda loc, cov: (loc, cov), ppl.mv_normal,
               lambda loc, cov: nd.MultivariateNormal(loc, scale_tril=jnp.linalg.cholesky(cov))),
        Family("dirichlet", 1, "simplex", "dirichlet",
               lambda h: (_softplus(h[0] + jnp.array([0.0, 0.5, -0.5])) + 0.5,),
               lambda c: (c,), ppl.dirichlet, lambda c: nd.Dirichlet(c)),
    ]
}  # fmt: skip
# Sampling by rejection (gamma, Poisson, ...) compiles slowly (seconds), once per batch shape,
# and a Scan's or Switch's body is compiled at every eager call: these families appear only
# outside combinators (and in top-level plates), KERNEL_FAMILIES inside them.
COMPILE_HEAVY = (
    "student_t", "gamma", "inverse_gamma", "beta", "poisson", "binomial",
    "negative_binomial", "mv_normal", "dirichlet",
)  # fmt: skip
TOP_FAMILIES = tuple(sorted(FAMILIES))
KERNEL_FAMILIES = tuple(n for n in TOP_FAMILIES if n not in COMPILE_HEAVY)
GROUPS: dict[str, list[str]] = {}
for _family in FAMILIES.values():
    GROUPS.setdefault(_family.group, []).append(_family.name)


# -- program descriptions -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Linear:
    """``bias + sum(weight * feature[slot])``: a pre-activation from earlier values."""

    bias: float
    terms: tuple[tuple[int, float], ...] = ()

    def __call__(self, features: list) -> jax.Array:
        out = jnp.asarray(self.bias, F32)
        for slot, weight in self.terms:
            out = out + weight * features[slot]
        return out


@dataclasses.dataclass(frozen=True)
class Site:
    """``family(params(pre)) @ name``."""

    name: str
    family: str
    pre: tuple[Linear, ...]


@dataclasses.dataclass(frozen=True)
class Plate:
    """``Vmap(family, in_axes=0)(params) @ name``: ``n`` repeats, repeat ``i`` shifted by 0.3 i."""

    name: str
    family: str
    pre: tuple[Linear, ...]
    n: int


@dataclasses.dataclass(frozen=True)
class Call:
    """``body(arg) @ name``: a generated ``@gen`` function at a nested address."""

    name: str
    body: Program
    arg: Linear


@dataclasses.dataclass(frozen=True)
class VmapCall:
    """``Vmap(kernel)(xs) @ name`` with ``xs = h + 0.5 * arange(n)`` (or ``h`` shared)."""

    name: str
    kernel: Program
    arg: Linear
    n: int
    mapped: bool


@dataclasses.dataclass(frozen=True)
class ScanCall:
    """``Scan(kernel, length=n)(h, xs) @ name``, ``xs = 0.3 * arange(n)`` or ``None``."""

    name: str
    kernel: Program
    init: Linear
    n: int
    with_xs: bool


@dataclasses.dataclass(frozen=True)
class SwitchCall:
    """``Switch``/``Cond`` between branches: index = value at ``slot`` mod branches (or const)."""

    name: str
    branches: tuple[Program, ...]
    arg: Linear
    slot: int | None
    const: int
    cond: bool


@dataclasses.dataclass(frozen=True)
class MixtureCall:
    """``Mixture(*components)(logits, (h,), ...) @ name``."""

    name: str
    components: tuple[Program, ...]
    logit: Linear
    arg: Linear


@dataclasses.dataclass(frozen=True)
class Program:
    """A ``@gen`` function: ``n_args`` arguments, statements, and a scalar return value.

    A scan kernel (``scan_kernel``) takes ``(carry, x)`` and returns
    ``(0.5 carry + 0.5 r, r)`` for its return value ``r``.
    """

    n_args: int
    stmts: tuple
    out: Linear
    scan_kernel: bool = False


def arg_features(args: tuple) -> tuple[list, list]:
    features = [
        jnp.zeros((), F32) if a is None else jnp.tanh(0.5 * jnp.asarray(a).astype(F32))
        for a in args
    ]
    return features, list(args)


def switch_index(stmt: SwitchCall, raws: list) -> Any:
    """The branch index (``Switch``) or predicate (``Cond``) as a JAX value."""
    nb = len(stmt.branches)
    if stmt.slot is None:
        value = jnp.asarray(stmt.const, jnp.int32)
    else:
        value = jnp.asarray(raws[stmt.slot]).astype(jnp.int32)
    if stmt.cond:
        return jnp.remainder(value, 2) == 1  # true: branches[0]
    return jnp.remainder(value, nb)


def taken_branch(stmt: SwitchCall, raws: list) -> int:
    """The branch a ``SwitchCall`` takes; the index is concrete (also under ``jax.jit``)."""
    value = stmt.const if stmt.slot is None else int(np.asarray(raws[stmt.slot]))
    if stmt.cond:
        return 0 if value % 2 == 1 else 1
    return value % len(stmt.branches)


def mixture_logits(stmt: MixtureCall, features: list) -> jax.Array:
    h = stmt.logit(features)
    return jnp.stack([h, -h, 0.5 * h + 0.2][: len(stmt.components)])


def _plate_params(family: Family, pre: tuple[Linear, ...], features: list, n: int) -> tuple:
    hs = jnp.stack([lin(features) for lin in pre] or [jnp.zeros((), F32)])
    shifted = hs[None, :] + 0.3 * jnp.arange(n, dtype=F32)[:, None]
    return jax.vmap(lambda h: tuple(jnp.asarray(p) for p in family.params(h)))(shifted)


def evaluate(program: Program, args: tuple, backend: Any) -> Any:
    """Runs a program description with a backend that gives each statement a meaning."""
    features, raws = arg_features(args)
    for stmt in program.stmts:
        if isinstance(stmt, Site):
            family = FAMILIES[stmt.family]
            params = family.params([lin(features) for lin in stmt.pre])
            value = backend.site(stmt.name, family, params)
            features.append(family.feature(value))
        elif isinstance(stmt, Plate):
            family = FAMILIES[stmt.family]
            params = _plate_params(family, stmt.pre, features, stmt.n)
            value = backend.plate(stmt, family, params)
            features.append(jnp.mean(jax.vmap(family.feature)(value)))
        elif isinstance(stmt, Call):
            value = backend.call(stmt, stmt.arg(features))
            features.append(jnp.tanh(value))
        elif isinstance(stmt, VmapCall):
            h = stmt.arg(features)
            xs = h + 0.5 * jnp.arange(stmt.n, dtype=F32) if stmt.mapped else h
            value = backend.vmap(stmt, xs)
            features.append(jnp.tanh(jnp.mean(value)))
        elif isinstance(stmt, ScanCall):
            xs = 0.3 * jnp.arange(stmt.n, dtype=F32) if stmt.with_xs else None
            value = backend.scan(stmt, stmt.init(features), xs)
            features.append(jnp.tanh(value[0] + 0.5 * jnp.mean(value[1])))
        elif isinstance(stmt, SwitchCall):
            value = backend.switch(stmt, switch_index(stmt, raws), stmt.arg(features), raws)
            features.append(jnp.tanh(value))
        elif isinstance(stmt, MixtureCall):
            logits = mixture_logits(stmt, features)
            value = backend.mixture(stmt, logits, stmt.arg(features))
            features.append(jnp.tanh(value))
        else:  # pragma: no cover
            raise TypeError(stmt)
        raws.append(value)
    r = jnp.tanh(program.out(features))
    if program.scan_kernel:
        return 0.5 * jnp.asarray(args[0], F32) + 0.5 * r, r
    return r


# -- interpretation 1: ppl with combinators -------------------------------------------------------
class _Combinators:
    def site(self, name, family, params):
        return family.dist(*family.ppl_args(*params)) @ name

    def plate(self, stmt, family, params):
        args = family.ppl_args(*params)
        in_axes = tuple(None if a is None or jnp.ndim(a) == 0 else 0 for a in args)
        return Vmap(family.dist, in_axes=in_axes)(*args) @ stmt.name

    def call(self, stmt, h):
        return build(stmt.body)(h) @ stmt.name

    def vmap(self, stmt, xs):
        kernel = build(stmt.kernel)
        if stmt.mapped:
            return Vmap(kernel, in_axes=0)(xs) @ stmt.name
        return Vmap(kernel, in_axes=None, axis_size=stmt.n)(xs) @ stmt.name

    def scan(self, stmt, init, xs):
        return Scan(build(stmt.kernel), length=stmt.n)(init, xs) @ stmt.name

    def switch(self, stmt, index, h, raws):
        branches = [build(b) for b in stmt.branches]
        combinator = Cond(*branches) if stmt.cond else Switch(*branches)
        return combinator(index, *[(h,)] * len(branches)) @ stmt.name

    def mixture(self, stmt, logits, h):
        components = [build(c) for c in stmt.components]
        return Mixture(*components)(logits, *[(h,)] * len(components)) @ stmt.name


# -- interpretation 2: ppl with Python loops and ifs (eager) --------------------------------------
class _Loops(_Combinators):
    def plate(self, stmt, family, params):
        values = [
            family.dist(*family.ppl_args(*[p[i] for p in params])) @ (stmt.name, i)
            for i in range(stmt.n)
        ]
        return jnp.stack(values)

    def call(self, stmt, h):
        return build_loop(stmt.body)(h) @ stmt.name

    def vmap(self, stmt, xs):
        kernel = build_loop(stmt.kernel)
        xs = xs if stmt.mapped else jnp.broadcast_to(xs, (stmt.n,))
        return jnp.stack([kernel(xs[i]) @ (stmt.name, i) for i in range(stmt.n)])

    def scan(self, stmt, init, xs):
        kernel = build_loop(stmt.kernel)
        carry, ys = init, []
        for t in range(stmt.n):
            carry, y = kernel(carry, None if xs is None else xs[t]) @ (stmt.name, t)
            ys.append(y)
        return carry, jnp.stack(ys)

    def switch(self, stmt, index, h, raws):
        return build_loop(stmt.branches[taken_branch(stmt, raws)])(h) @ stmt.name

    def mixture(self, stmt, logits, h):
        k = ppl.categorical(logits=logits) @ (stmt.name, "component")
        return build_loop(stmt.components[int(k)])(h) @ (stmt.name, "value")


@functools.lru_cache(maxsize=4096)
def build(program: Program) -> ppl.StaticGenerativeFunction:
    """The ``@gen`` function (with combinators) of a program description."""

    def body(*args):
        return evaluate(program, args, _Combinators())

    body.__name__ = "generated"
    return gen(body)


@functools.lru_cache(maxsize=4096)
def build_loop(program: Program) -> ppl.StaticGenerativeFunction:
    """The same program with combinators as Python loops/ifs over ``@gen`` calls."""

    def body(*args):
        return evaluate(program, args, _Loops())

    body.__name__ = "generated_loops"
    return gen(body)


# -- interpretation 3: NumPyro log densities from a flat map --------------------------------------
class _Reference:
    """Reads values from ``{concrete address: value}`` and records NumPyro log densities."""

    def __init__(self, values: dict, prefix: tuple = (), out: dict | None = None):
        self.values = values
        self.prefix = prefix
        self.out = {} if out is None else out

    def _at(self, *components) -> _Reference:
        return _Reference(self.values, self.prefix + components, self.out)

    def _score(self, path, family, params):
        value = self.values[path]
        self.out[path] = jnp.sum(family.reference(*params).log_prob(value))
        return value

    def site(self, name, family, params):
        return self._score((*self.prefix, name), family, params)

    def plate(self, stmt, family, params):
        return jnp.stack(
            [
                self._score((*self.prefix, stmt.name, i), family, [p[i] for p in params])
                for i in range(stmt.n)
            ]
        )

    def call(self, stmt, h):
        return evaluate(stmt.body, (h,), self._at(stmt.name))

    def vmap(self, stmt, xs):
        xs = xs if stmt.mapped else jnp.broadcast_to(xs, (stmt.n,))
        return jnp.stack(
            [evaluate(stmt.kernel, (xs[i],), self._at(stmt.name, i)) for i in range(stmt.n)]
        )

    def scan(self, stmt, init, xs):
        carry, ys = init, []
        for t in range(stmt.n):
            x = None if xs is None else xs[t]
            carry, y = evaluate(stmt.kernel, (carry, x), self._at(stmt.name, t))
            ys.append(y)
        return carry, jnp.stack(ys)

    def switch(self, stmt, index, h, raws):
        return evaluate(stmt.branches[taken_branch(stmt, raws)], (h,), self._at(stmt.name))

    def mixture(self, stmt, logits, h):
        path = (*self.prefix, stmt.name, "component")
        k = self.values[path]
        self.out[path] = nd.CategoricalLogits(logits).log_prob(k)
        return evaluate(stmt.components[int(k)], (h,), self._at(stmt.name, "value"))


# -- the model object the tests use ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Model:
    """A generated program and its interpretations."""

    program: Program

    @property
    def gen_fn(self) -> ppl.StaticGenerativeFunction:
        return build(self.program)

    @property
    def loop_fn(self) -> ppl.StaticGenerativeFunction:
        return build_loop(self.program)

    def site_log_densities(self, values: dict, args: tuple) -> tuple[dict, Any]:
        """``({concrete address: log density}, retval)`` computed with NumPyro only."""
        reference = _Reference(values)
        retval = evaluate(self.program, args, reference)
        return reference.out, retval

    def log_density(self, values: dict, args: tuple) -> jax.Array:
        sites, _ = self.site_log_densities(values, args)
        return sum(sites.values(), jnp.zeros((), F32))

    def __repr__(self) -> str:
        return f"Model({describe(self.program)})"


def describe(program: Program, indent: int = 0) -> str:
    """A readable listing of a program (shown by hypothesis on failure)."""
    pad = "  " * indent
    lines = [f"{pad}program(n_args={program.n_args}, scan_kernel={program.scan_kernel})"]
    for stmt in program.stmts:
        if isinstance(stmt, Site | Plate):
            extra = f" x{stmt.n}" if isinstance(stmt, Plate) else ""
            lines.append(f"{pad}  {stmt.name}: {stmt.family}{extra} {stmt.pre}")
        else:
            kind = type(stmt).__name__
            subs = [
                getattr(stmt, a)
                for a in ("body", "kernel", "branches", "components")
                if hasattr(stmt, a)
            ]
            flat = [p for s in subs for p in (s if isinstance(s, tuple) else (s,))]
            fields = {
                k: v
                for k, v in dataclasses.asdict(stmt).items()
                if k not in ("body", "kernel", "branches", "components")
            }
            lines.append(f"{pad}  {kind} {fields}")
            lines += [describe(p, indent + 2) for p in flat]
    return "\n".join(lines)


def flatten_choices(choices: Any, to_numpy: bool = True) -> dict[tuple, Any]:
    """``{concrete address: value}``; a combinator's ``...`` becomes every index.

    Uses only ``leaf_paths`` and the pytree leaves (in the same documented order), not
    address lookup, so it is independent of ``ChoiceMap.__getitem__``. With
    ``to_numpy=False`` the real values stay JAX values, traceable by ``jax.grad`` and
    ``jax.jit`` through a reference density; discrete values (never differentiated) stay
    concrete, as branch indices must be.
    """
    out: dict[tuple, Any] = {}
    leaves = jax.tree.leaves(choices)
    paths = choices.leaf_paths()
    assert len(leaves) == len(paths), (paths, len(leaves))
    for path, leaf in zip(paths, leaves, strict=True):
        real = jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
        array = leaf if real and not to_numpy else np.asarray(leaf)
        k = sum(c is Ellipsis for c in path)
        for index in np.ndindex(array.shape[:k]):
            it = iter(index)
            concrete = tuple(int(next(it)) if c is Ellipsis else c for c in path)
            out[concrete] = array[index]
    return out


def matches(pattern: tuple, path: tuple) -> bool:
    """Whether ``select(pattern)`` selects the concrete ``path`` (``...``: any component)."""
    return len(pattern) <= len(path) and all(
        p is Ellipsis or p == c for p, c in zip(pattern, path, strict=False)
    )


def selected(patterns: list[tuple], path: tuple) -> bool:
    return any(matches(p, path) for p in patterns)
