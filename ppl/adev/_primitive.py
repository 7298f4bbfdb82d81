"""The ``adev_sample`` primitive: a random choice that ADEV can see in a traced program.

While an expectation's integrand is traced (``tracing()``), every distribution draw of the
generative function interface binds ``adev_sample`` instead of calling NumPyro's sampler. The
primitive carries, as static parameters, the distribution, the address of the choice and the
estimator chosen in the guide's code; its operands are the key, the distribution's arguments
and the estimator's traced fields (e.g. a learned baseline). ``jax.vmap`` keeps it one
primitive with ``plate_ndims`` leading plate axes, so the ADEV interpreter sees every draw,
however deeply it is vectorised. Evaluated outside the interpreter it simply samples.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

sample_p = Primitive("adev_sample")

_tracing: contextvars.ContextVar[bool] = contextvars.ContextVar("ppl_adev", default=False)


@contextlib.contextmanager
def tracing() -> Iterator[None]:
    """Marks that an expectation's integrand is being traced: draws bind ``adev_sample``."""
    token = _tracing.set(True)
    try:
        yield
    finally:
        _tracing.reset(token)


def is_tracing() -> bool:
    return _tracing.get()


@dataclasses.dataclass
class Scope:
    """The estimator overrides of an expectation whose ``estimate`` is called inside another
    expectation's integrand, applied to its draws as they are traced (``overriding``).

    Attributes:
        overrides: ``(key, selection, estimator)`` entries, as ``with_estimators`` makes them.
        matched: indices of the entries some draw matched.
        addresses: the addresses drawn while the scope was open.
    """

    overrides: tuple
    matched: set = dataclasses.field(default_factory=set)
    addresses: list = dataclasses.field(default_factory=list)


_scopes: contextvars.ContextVar[tuple[Scope, ...]] = contextvars.ContextVar(
    "ppl_adev_scopes", default=()
)


@contextlib.contextmanager
def overriding(overrides: tuple) -> Iterator[Scope]:
    """Applies ``overrides`` to the draws traced inside (an inner expectation's choices)."""
    scope = Scope(overrides)
    token = _scopes.set((*_scopes.get(), scope))
    try:
        yield scope
    finally:
        _scopes.reset(token)


def _scoped(address: tuple, estimator: Any) -> Any:
    """The estimator a draw at ``address`` binds with: the outermost open scope's matching
    override (an enclosing expectation has the last word, as its own overrides have over
    everything it calls), else the one chosen in the code."""
    chosen = None
    for scope in _scopes.get():
        scope.addresses.append(address)
        for i, (_, selection, override) in enumerate(scope.overrides):
            if address and address in selection:
                scope.matched.add(i)
                chosen = override if chosen is None else chosen
    return estimator if chosen is None else chosen


def where(address: tuple) -> str:
    """How messages name a choice's address."""
    from ppl._address import show

    return show(address) if address else "a choice without address"


@dataclasses.dataclass(frozen=True)
class Site:
    """One random choice as the ADEV interpreter sees it (a plain record, not a pytree).

    ``plate_ndims`` leading axes of ``key`` and of every argument index independent copies of
    the draw (from ``jax.vmap``); ``distribution(args)`` builds the NumPyro distribution of one
    copy.
    """

    distribution: Any  # ppl Distribution: its .numpyro(args) builds the NumPyro one
    args: tuple
    key: jax.Array  # raw key data, uint32
    address: tuple
    plate_ndims: int

    def sample(self, key: jax.Array | None = None) -> jax.Array:
        """A draw of every copy, as ``simulate`` would make it with this key."""
        key = self.key if key is None else key
        return _sample(self.distribution, self.plate_ndims, key, self.args)

    def map(self, fn: Any, *extra: Any) -> Any:
        """``fn(numpyro_dist, *extra)`` for each plate copy, vectorised over the plate axes."""

        def one(args, *more):
            return fn(self.distribution.numpyro(args), *more)

        for _ in range(self.plate_ndims):
            one = jax.vmap(one)
        return one(self.args, *extra)

    def sample_struct(self) -> jax.ShapeDtypeStruct:
        """The shape and dtype of ``sample()``, traced once per kind of site (``sample_struct``)."""
        return sample_struct(self.distribution, self.plate_ndims, self.key, self.args)

    def log_prob(self, value: jax.Array) -> jax.Array:
        """The log density of each plate copy (summed over the distribution's own axes)."""
        # the distribution's own score of a drawn value (a Bernoulli's exact derivative at a
        # logit of 0, for instance), without the support mask a given value needs
        return self.map(lambda dist, x: self.distribution._log_density(dist, x, drawn=True), value)

    @property
    def plate_shape(self) -> tuple:
        return tuple(self.key.shape[: self.plate_ndims])


def _sample(distribution: Any, plate_ndims: int, key_data: jax.Array, args: tuple) -> jax.Array:
    def one(key_data, args):
        key = jax.random.wrap_key_data(key_data)
        return distribution.numpyro(args).sample(key)

    for _ in range(plate_ndims):
        one = jax.vmap(one)
    return one(key_data, args)


def sample_struct(
    distribution: Any, plate_ndims: int, key_data: Any, args: tuple
) -> jax.ShapeDtypeStruct:
    """The shape and dtype of a draw, traced once per distribution, plate depth and kind of
    arguments (shapes and dtypes; Python numbers by value, as they may fix shapes). A chain of
    ``n`` draws of one distribution is then not ``n`` traces of its sampler."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    key = (distribution, plate_ndims, tree, tuple(_kind(x) for x in [key_data, *leaves]))

    def trace() -> jax.ShapeDtypeStruct:
        static = [isinstance(x, bool | int | float | complex) for x in leaves]

        def draw(key_data, dynamic):
            given = iter(dynamic)
            merged = [x if fixed else next(given) for x, fixed in zip(leaves, static, strict=True)]
            args = jax.tree_util.tree_unflatten(tree, merged)
            return _sample(distribution, plate_ndims, key_data, args)

        dynamic = [x for x, fixed in zip(leaves, static, strict=True) if not fixed]
        out = jax.eval_shape(draw, key_data, dynamic)
        return jax.ShapeDtypeStruct(out.shape, out.dtype)

    return cached(_STRUCTS, key, trace)


_STRUCTS: dict[tuple, jax.ShapeDtypeStruct] = {}


def cached(cache: dict, key: Any, compute: Any, limit: int = 4096) -> Any:
    """``cache[key]``, computed by ``compute()`` if missing; the cache is emptied when it holds
    ``limit`` entries (its keys hold distributions, which a long session may make many of)."""
    found = cache.get(key)
    if found is None:
        if len(cache) >= limit:
            cache.clear()
        found = cache[key] = compute()
    return found


def _kind(leaf: Any) -> Any:
    if isinstance(leaf, bool | int | float | complex):
        return (type(leaf), leaf)
    aval = getattr(leaf, "aval", leaf)  # a tracer's; arrays and ShapeDtypeStructs have these
    return (tuple(aval.shape), aval.dtype, getattr(aval, "weak_type", False))


def bind(distribution: Any, key: jax.Array, args: tuple, address: tuple, estimator: Any) -> Any:
    """Draws from ``distribution(*args)`` through ``adev_sample`` (only while tracing)."""
    key_data = jax.random.key_data(key)
    args_leaves, args_tree = jax.tree_util.tree_flatten(args)
    estimator = _scoped(tuple(address), estimator)
    est_leaves, est_tree = jax.tree_util.tree_flatten(estimator)
    return sample_p.bind(
        key_data,
        *args_leaves,
        *est_leaves,
        distribution=distribution,
        args_tree=args_tree,
        estimator_tree=est_tree,
        address=tuple(address),
        plate_ndims=0,
    )


def unpack(operands: list, params: dict) -> tuple[Site, Any]:
    """The site and the guide-code estimator (or ``None``) of an ``adev_sample`` equation."""
    n_args = params["args_tree"].num_leaves
    key_data, rest = operands[0], operands[1:]
    args = jax.tree_util.tree_unflatten(params["args_tree"], rest[:n_args])
    estimator = jax.tree_util.tree_unflatten(params["estimator_tree"], rest[n_args:])
    site = Site(params["distribution"], args, key_data, params["address"], params["plate_ndims"])
    return site, estimator


def _impl(*operands, **params):
    site, _ = unpack(list(operands), params)
    return site.sample()


def _abstract_eval(*avals, **params):
    shaped = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals]
    site, _ = unpack(shaped, params)
    out = site.sample_struct()
    return jax.core.ShapedArray(out.shape, out.dtype)


def _batch(operands, dims, **params):
    size = next(x.shape[d] for x, d in zip(operands, dims, strict=True) if d is not None)
    moved = [
        jnp.broadcast_to(x, (size, *jnp.shape(x))) if d is None else jnp.moveaxis(x, d, 0)
        for x, d in zip(operands, dims, strict=True)
    ]
    params = dict(params, plate_ndims=params["plate_ndims"] + 1)
    return sample_p.bind(*moved, **params), 0


def _jvp(primals, tangents, **params):
    raise TypeError(
        f"a random choice at {params['address'] or '(no address)'} was differentiated "
        "directly; differentiate an expectation with its grad_estimate (ADEV), which chooses "
        "an unbiased estimator for every choice"
    )


sample_p.def_impl(_impl)
sample_p.def_abstract_eval(_abstract_eval)
batching.primitive_batchers[sample_p] = _batch
ad.primitive_jvps[sample_p] = _jvp
mlir.register_lowering(sample_p, mlir.lower_fun(_impl, multiple_results=False))
