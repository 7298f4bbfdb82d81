"""``@expectation``: a program that samples, read as the expected value of what it returns."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ppl._address import show, show_many, to_path
from ppl._errors import AddressError
from ppl._selection import Selection, as_selection
from ppl.adev._estimators import Estimator
from ppl.adev._interpreter import Run
from ppl.adev._paths import interpret
from ppl.adev._primitive import is_tracing, overriding, tracing


def _is_dynamic(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array | float) or (
        hasattr(leaf, "dtype") and hasattr(leaf, "shape") and not isinstance(leaf, int)
    )


def _split(args: tuple) -> tuple[list, list, Any]:
    """Array and float leaves (traced, differentiable) apart from everything else (static)."""
    leaves, tree = jax.tree_util.tree_flatten(args, is_leaf=lambda x: x is None)
    dynamic = [jnp.asarray(x) if _is_dynamic(x) else None for x in leaves]
    static = [None if _is_dynamic(x) else x for x in leaves]
    return dynamic, static, tree


def _join(dynamic: list, static: list, tree: Any) -> tuple:
    leaves = [s if d is None else d for d, s in zip(dynamic, static, strict=True)]
    return jax.tree_util.tree_unflatten(tree, leaves)


class _Plate:
    """How a vmapped expectation maps its arguments and reduces its copies (``vmap``)."""

    def __init__(self, in_axes: Any, reduce: str | None, copy: Callable):
        self.in_axes = in_axes
        self.reduce = reduce
        self.copy = copy  # the integrand of one copy

    def argument_axes(self, args: tuple) -> tuple:
        """One mapped axis (or ``None``) per argument after the key."""
        if self.in_axes is None or isinstance(self.in_axes, int):
            return (self.in_axes,) * len(args)
        axes = tuple(self.in_axes)
        if len(axes) != len(args) or not all(a is None or isinstance(a, int) for a in axes):
            raise ValueError(
                f"in_axes={self.in_axes!r}: give an int or None, or one int or None per "
                f"argument after the key ({len(args)} here)"
            )
        return axes

    def size(self, args: tuple, axes: tuple) -> int:
        """The number of copies: the size of every mapped axis."""
        sizes = {
            jnp.shape(leaf)[axis]
            for arg, axis in zip(args, axes, strict=True)
            if axis is not None
            for leaf in jax.tree_util.tree_leaves(arg)
        }
        if len(sizes) != 1:
            raise ValueError(
                "the mapped arguments of a vmapped expectation need one common size along "
                f"their mapped axes (in_axes={self.in_axes!r}); they have "
                + (", ".join(map(str, sorted(sizes))) if sizes else "no mapped array")
            )
        return sizes.pop()

    def reduced(self, values: jax.Array) -> jax.Array:
        if self.reduce == "mean":
            return jnp.mean(values, axis=0)
        if self.reduce == "sum":
            return jnp.sum(values, axis=0)
        return values


class Expectation:
    """``E_{randomness}[f(key, *args)]`` for a function ``f`` that samples: estimates of its
    value and of its gradient, with one gradient estimator per random choice.

    Build one with ``@expectation``. ``estimate`` is an unbiased estimate of the value,
    ``grad_estimate`` an unbiased estimate of the gradient with respect to the arguments (any
    pytrees: arrays, dicts, Equinox modules; Python floats count as arrays, ints as static).
    Inside another expectation, ``estimate`` is the integrand itself, so expectations compose
    linearly and vectorise with ``jax.vmap``.

    Example:
        >>> import jax
        >>> from ppl import normal
        >>> @expectation
        ... def loss(key, mu):
        ...     x = normal.simulate(key, (mu, 1.0)).retval  # reparameterized by default
        ...     return (x - 3.0) ** 2
        >>> keys = jax.random.split(jax.random.key(0), 4000)
        >>> grads = jax.vmap(lambda k: loss.grad_estimate(k, 1.0)[0])(keys)
        >>> abs(float(grads.mean()) - 2 * (1.0 - 3.0)) < 0.15
        True
    """

    def __init__(self, fn: Callable[..., Any], overrides: tuple = (), plate: _Plate | None = None):
        self.fn = fn
        self.overrides = overrides
        self.plate = plate
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        name = f"expectation({getattr(self.fn, '__name__', 'integrand')})"
        if self.plate is None:
            return name
        return f"{name}.vmap(in_axes={self.plate.in_axes!r}, reduce={self.plate.reduce!r})"

    def vmap(self, in_axes: Any = 0, reduce: str | None = "mean") -> Expectation:
        """Independent copies of this expectation over a batch, reduced to their mean or sum.

        Each copy has its own key (``split(key, n)``) and its own estimators, interpreted once
        for all copies with ``jax.vmap``: ``enum`` enumerates each copy's choices on their own
        (``K`` values per copy, every copy at once), where ``jax.vmap`` inside one expectation
        makes one draw of all the copies, enumerated jointly (``K^n`` values). A gradient is
        taken once, of the reduced surrogate, so no per-copy gradients are formed; values that
        do not depend on the batch (a decoder's output for each class) are computed once.

        Args:
            in_axes: the mapped axis of each argument after the key: an int or ``None`` for
                all of them, or a tuple with one int or ``None`` per argument (``None``: shared
                by every copy, e.g. the parameters). Only array arguments can be mapped.
            reduce: ``"mean"`` (default) or ``"sum"`` over the copies, or ``None`` for the
                vector of per-copy values (``estimate`` only: a gradient needs a scalar).

        Returns:
            An ``Expectation`` of the reduced value. Inside another expectation its
            ``estimate`` is the vmapped integrand (the copies' draws are then one draw).

        Example:
            >>> import jax, jax.numpy as jnp
            >>> from ppl import categorical
            >>> from ppl.adev import enum
            >>> @expectation
            ... def match(key, logits, target):  # P(c == target)
            ...     c = categorical.enum().simulate(key, (None, logits)).retval
            ...     return (c == target).astype(jnp.float32)
            >>> logits = jnp.log(jnp.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]]))
            >>> batch = match.vmap(in_axes=(0, 0))
            >>> value = batch.estimate(jax.random.key(0), logits, jnp.array([1, 0, 0]))
            >>> round(float(value), 4)  # (0.8 + 0.5 + 0.9) / 3
            0.7333
        """
        if self.plate is not None:
            raise TypeError(f"{self!r} is already vmapped; vmap the integrand's copy instead")
        if reduce not in ("mean", "sum", None):
            raise ValueError(f"reduce must be 'mean', 'sum' or None, got {reduce!r}")
        plate = _Plate(in_axes, reduce, self.fn)

        def batched(key, *args):
            axes = plate.argument_axes(args)
            n = plate.size(args, axes)
            values = jax.vmap(self.fn, in_axes=(0, *axes))(jax.random.split(key, n), *args)
            return plate.reduced(values)

        functools.update_wrapper(batched, self.fn)
        return Expectation(batched, self.overrides, plate)

    def with_estimators(self, estimators: Mapping[Any, Estimator]) -> Expectation:
        """The same expectation with estimators chosen by address, without editing the program.

        Args:
            estimators: ``{address or Selection: estimator}``; ``...`` in an address matches a
                combinator's index. Overrides take precedence over estimators chosen in the
                program's code, and a later ``with_estimators`` over an earlier one (so
                ``vi.vimco(...).with_estimators({"z": reparam()})`` refines VIMCO's choice for
                every address); within one mapping the first matching entry wins.

        Returns:
            A new ``Expectation``.

        Raises:
            AddressError: (when estimated) an address that the program never samples.

        Example:
            >>> import jax
            >>> from ppl import flip, gen
            >>> from ppl.adev import enum
            >>> @gen
            ... def coin(p):
            ...     return flip(p) @ "c"
            >>> @expectation
            ... def payoff(key, p):
            ...     return 3.0 * coin.simulate(key, (p,)).retval
            >>> exact = payoff.with_estimators({"c": enum()})
            >>> float(exact.grad_estimate(jax.random.key(0), 0.25)[0])
            3.0
        """
        added = []
        for key, estimator in estimators.items():
            if not isinstance(estimator, Estimator):
                raise TypeError(
                    f"the estimator for {key!r} is {estimator!r}; give a strategy object such "
                    "as reparam(), reinforce(), enum() or mvd()"
                )
            selection = key if isinstance(key, Selection) else as_selection(to_path(key))
            added.append((key, selection, estimator))
        return Expectation(self.fn, tuple(added) + self.overrides, self.plate)

    # -- tracing and interpretation ----------------------------------------------------------------
    def _run(self, key: jax.Array, dynamic: list, static: list, tree: Any, state: dict):
        """Traces the integrand and interprets it: ``(v, s, run)``."""

        def integrand(key, dynamic):
            return self.fn(key, *_join(dynamic, static, tree))

        with tracing():
            closed, out = jax.make_jaxpr(integrand, return_shape=True)(key, dynamic)
        leaves = jax.tree_util.tree_leaves(out)
        if len(leaves) != 1:
            raise TypeError(
                f"{self!r} returns {jax.tree_util.tree_structure(out)}; an integrand returns "
                "one array (its value at the sampled randomness)"
            )
        run = Run(self.overrides, state)
        flat = [key, *(d for d in dynamic if d is not None)]
        v, s = interpret(run, closed, flat)
        self._check_matched(run.unmatched(), run.addresses)
        return v, s, run

    def _check_matched(self, unmatched: list, addresses: list) -> None:
        """Raises for the override keys that matched none of the ``addresses`` drawn."""
        if not unmatched:
            return
        seen = show_many(sorted(set(addresses), key=str)) if addresses else "none"
        named = ", ".join(
            repr(k) if isinstance(k, Selection) else show(to_path(k)) for k in unmatched
        )
        raise AddressError(
            f"an estimator is given for {named}, but {self!r} never samples there; it samples "
            f"at {seen}"
        )

    def _run_copies(self, key: jax.Array, dynamic: list, static: list, tree: Any, state: dict):
        """``_run`` of each copy of a vmapped expectation, vmapped: ``(v, s, run, v_mean)``.

        ``v`` and ``s`` are reduced as the plate says; ``v_mean`` is the mean of the copies'
        values, which estimator state (a running mean of the objective) tracks per copy.
        """
        assert self.plate is not None
        plate, copy = self.plate, Expectation(self.plate.copy, self.overrides)
        args = _join(dynamic, static, tree)
        axes = plate.argument_axes(args)
        leaf_axes = [
            axis
            for arg, axis in zip(args, axes, strict=True)
            for _ in jax.tree_util.tree_leaves(arg, is_leaf=lambda x: x is None)
        ]
        for leaf, axis in zip(static, leaf_axes, strict=True):
            if axis is not None and leaf is not None:
                raise TypeError(
                    f"{self!r} maps axis {axis} of a static argument ({leaf!r}); only array "
                    "arguments can be mapped: give it in_axes None"
                )
        runs: list = []

        def one(key, dynamic):
            v, s, run = copy._run(key, dynamic, static, tree, state)
            runs.append(run)
            return v, s

        keys = jax.random.split(key, plate.size(args, axes))
        dynamic_axes = [None if d is None else a for d, a in zip(dynamic, leaf_axes, strict=True)]
        v, s = jax.vmap(one, in_axes=(0, dynamic_axes))(keys, dynamic)
        return plate.reduced(v), plate.reduced(s), runs[0], jnp.mean(v, axis=0)

    def _run_all(self, key: jax.Array, dynamic: list, static: list, tree: Any, state: dict):
        """``(v, s, run, tracked value)``: ``_run``, or ``_run_copies`` of a vmapped one."""
        if self.plate is None:
            v, s, run = self._run(key, dynamic, static, tree, state)
            return v, s, run, v
        return self._run_copies(key, dynamic, static, tree, state)

    def _interpret(self, key: jax.Array, dynamic: list, static: list, tree: Any, state: dict):
        """``(v, s, new estimator state, run)``."""
        v, s, run, tracked_value = self._run_all(key, dynamic, static, tree, state)
        new_state = {
            a: b.update_state(state.get(a, b.init_state()), tracked_value)
            for a, b in run.tracked.items()
        }
        return v, s, new_state, run

    def estimate(self, key: jax.Array, *args: Any) -> jax.Array:
        """An unbiased estimate of the expected value (``enum`` choices are summed exactly).

        Differentiating it (``jax.grad(objective.estimate)``, forward or reverse mode) gives
        the gradient ``grad_estimate`` gives for the same key: the derivative of the estimate
        is the ADEV estimator's, not that of the values drawn (which would miss every score
        and enumeration term). Inside another expectation it is the integrand itself, drawn
        with this expectation's estimators (the outer expectation's overrides still win).

        Args:
            key: a PRNG key.
            *args: the integrand's arguments.

        Returns:
            The estimate, with the integrand's shape.

        Example:
            >>> import jax
            >>> from ppl import flip
            >>> @expectation
            ... def payoff(key, p):  # E = 3 p
            ...     return 3.0 * flip.enum().simulate(key, (p,)).retval
            >>> float(payoff.estimate(jax.random.key(0), 0.25))
            0.75
            >>> float(jax.grad(payoff.estimate, argnums=1)(jax.random.key(0), 0.25))
            3.0
        """
        if is_tracing():
            if not self.overrides:
                return self.fn(key, *args)
            with overriding(self.overrides) as scope:
                value = self.fn(key, *args)
            unmatched = [k for i, (k, _, _) in enumerate(self.overrides) if i not in scope.matched]
            self._check_matched(unmatched, scope.addresses)
            return value
        dynamic, static, tree = _split(args)
        return self._differentiable_value(key, dynamic, static, tree)

    def _differentiable_value(self, key: jax.Array, dynamic: list, static: list, tree: Any):
        """The estimate, whose JAX derivative is the surrogate's (ADEV's gradient); the
        surrogate is only computed when the estimate is differentiated."""

        @jax.custom_jvp
        def value(key, dynamic):
            return self._interpret(key, dynamic, static, tree, {})[0]

        @value.defjvp
        def value_jvp(primals, tangents):
            key, dynamic = primals

            def surrogate(dynamic):
                v, s, _, _ = self._interpret(key, dynamic, static, tree, {})
                return s, v

            _, tangent, v = jax.jvp(surrogate, (dynamic,), (tangents[1],), has_aux=True)
            return v, tangent

        return value(key, dynamic)

    def value_and_grad(
        self,
        key: jax.Array,
        *args: Any,
        argnums: int | tuple[int, ...] | None = None,
        state: dict | None = None,
    ) -> Any:
        """The value estimate and an unbiased gradient estimate, from one set of draws.

        Args:
            key: a PRNG key.
            *args: the integrand's arguments.
            argnums: which arguments to differentiate (an int gives that gradient alone);
                default all, as a tuple.
            state: estimator state (``running_mean`` baselines) from ``init_state`` or a
                previous call; when given, the updated state is returned too.

        Returns:
            ``(value, grads)``, or ``(value, grads, state)`` when ``state`` is given. Gradients
            have the structure of the arguments, with ``None`` at static (non-float) leaves.
        """
        if is_tracing():
            raise TypeError("take gradients of the outermost expectation, not inside one")
        dynamic, static, tree = _split(args)

        runs: list = []

        def surrogate(dynamic):
            v, s, new_state, run = self._interpret(key, dynamic, static, tree, state or {})
            runs.append(run)
            if jnp.ndim(s) != 0:
                raise TypeError(
                    f"{self!r} returns shape {jnp.shape(s)}; a gradient needs a scalar value "
                    "(sum or average it in the integrand)"
                )
            return s, (v, new_state)

        try:
            grads, (value, new_state) = jax.grad(surrogate, has_aux=True, allow_int=True)(dynamic)
        except ValueError as error:
            looped = runs[0].in_while if runs else []
            if "while_loop" not in str(error) or not looped:
                raise
            addressed = sorted({a for a in looped if a}, key=str)
            named = [f"at {show_many(addressed)}"] if addressed else []
            named += ["without address"] if len(addressed) < len(set(looped)) else []
            raise AddressError(
                f"the random choices {' and '.join(named)} are drawn "
                "inside a jax.lax.while_loop (or a fori_loop with traced bounds), and JAX "
                "cannot differentiate through one in reverse mode: draw them in a "
                "jax.lax.scan, or a fori_loop with Python int bounds (estimate still works "
                "there, and jax.jvp of estimate gives directional derivatives)"
            ) from error
        grad_args = _join(grads, [None] * len(static), tree)
        if isinstance(argnums, int):
            chosen: Any = grad_args[argnums]
        elif argnums is None:
            chosen = tuple(grad_args)
        else:
            chosen = tuple(grad_args[i] for i in argnums)
        return (value, chosen) if state is None else (value, chosen, new_state)

    def grad_estimate(
        self, key: jax.Array, *args: Any, argnums: int | tuple[int, ...] | None = None
    ) -> Any:
        """An unbiased estimate of the gradient of the expectation.

        Args:
            key: a PRNG key.
            *args: the integrand's arguments.
            argnums: which arguments to differentiate; default all (a tuple of gradients).

        Returns:
            Gradients with the structure of the chosen arguments (``None`` at static leaves).
        """
        return self.value_and_grad(key, *args, argnums=argnums)[1]

    def init_state(self, key: jax.Array, *args: Any) -> dict:
        """The initial estimator state (one entry per ``running_mean`` baseline)."""
        dynamic, static, tree = _split(args)
        tracked: dict = {}

        def probe(dynamic):
            tracked.update(self._run_all(key, dynamic, static, tree, {})[2].tracked)
            return jnp.zeros(())

        jax.eval_shape(probe, dynamic)
        return {address: baseline.init_state() for address, baseline in tracked.items()}


def expectation(fn: Callable[..., Any]) -> Expectation:
    """Declares ``fn(key, *args)``, a program that samples, as the expectation of its value.

    The program may call ``simulate``, ``assess``, ``generate`` of any generative function,
    other expectations' ``estimate``, and any JAX code (``jax.vmap``, ``jax.lax.scan``, ...).
    Each random choice's gradient is estimated by the strategy chosen in the program
    (``normal.reinforce()``), by address with ``with_estimators``, or by its default
    (``reparam`` when NumPyro can reparameterize, ``reinforce`` otherwise).

    Args:
        fn: ``fn(key, *args) -> array``.

    Returns:
        An ``Expectation``.

    Example:
        >>> import jax
        >>> from ppl import gen, normal
        >>> @gen
        ... def guide(mu):
        ...     return normal(mu, 1.0) @ "z"
        >>> @expectation
        ... def objective(key, mu):
        ...     return guide.simulate(key, (mu,)).retval ** 2  # E = mu^2 + 1
        >>> round(float(objective.estimate(jax.random.key(0), 0.0) >= 0.0))
        1
    """
    return Expectation(fn)
