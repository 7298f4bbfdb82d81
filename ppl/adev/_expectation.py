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
from ppl.adev._interpreter import Run, interpret
from ppl.adev._primitive import is_tracing, tracing


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

    def __init__(self, fn: Callable[..., Any], overrides: tuple = ()):
        self.fn = fn
        self.overrides = overrides
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"expectation({getattr(self.fn, '__name__', 'integrand')})"

    def with_estimators(self, estimators: Mapping[Any, Estimator]) -> Expectation:
        """The same expectation with estimators chosen by address, without editing the program.

        Args:
            estimators: ``{address or Selection: estimator}``; ``...`` in an address matches a
                combinator's index. Overrides take precedence over estimators chosen in the
                program's code; the first matching entry wins.

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
        return Expectation(self.fn, self.overrides + tuple(added))

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
        unmatched = run.unmatched()
        if unmatched:
            seen = show_many(sorted(set(run.addresses), key=str)) if run.addresses else "none"
            raise AddressError(
                f"an estimator is given for {', '.join(show(to_path(k)) for k in unmatched)}, "
                f"but {self!r} never samples there; it samples at {seen}"
            )
        return v, s, run

    def _interpret(self, key: jax.Array, dynamic: list, static: list, tree: Any, state: dict):
        v, s, run = self._run(key, dynamic, static, tree, state)
        new_state = {
            a: b.update_state(state.get(a, b.init_state()), v) for a, b in run.tracked.items()
        }
        return v, s, new_state

    def estimate(self, key: jax.Array, *args: Any) -> jax.Array:
        """An unbiased estimate of the expected value (``enum`` choices are summed exactly).

        Args:
            key: a PRNG key.
            *args: the integrand's arguments.

        Returns:
            The estimate, with the integrand's shape.
        """
        if is_tracing():
            return self.fn(key, *args)
        dynamic, static, tree = _split(args)
        return self._interpret(key, dynamic, static, tree, {})[0]

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

        def surrogate(dynamic):
            v, s, new_state = self._interpret(key, dynamic, static, tree, state or {})
            if jnp.ndim(s) != 0:
                raise TypeError(
                    f"{self!r} returns shape {jnp.shape(s)}; a gradient needs a scalar value "
                    "(sum or average it in the integrand)"
                )
            return s, (v, new_state)

        grads, (value, new_state) = jax.grad(surrogate, has_aux=True, allow_int=True)(dynamic)
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
            tracked.update(self._run(key, dynamic, static, tree, {})[2].tracked)
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
