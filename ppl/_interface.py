"""The generative function interface (GFI).

Every generative function — a distribution, a ``@gen`` program, a combinator — implements five
methods. With ``p`` the model's joint density over choices ``t`` given arguments, and ``q`` its
internal proposal (ancestral sampling of the choices not constrained):

* ``simulate(key, args) -> trace``: ``t ~ p``; ``trace.score = log p(t)``.
* ``assess(choices, args) -> (log p(t), retval)``: every choice given.
* ``generate(key, constraints, args) -> (trace, w)``: the constrained choices fixed, the rest
  from ``q``; ``w = log p(t) - log q(t_unconstrained)`` (importance weight).
* ``update(key, trace, constraints, args) -> (trace', w, discard)``: change choices and/or
  arguments; ``w = log p'(t') - log p(t) - log q(t'_new)`` for fresh choices ``t'_new``;
  ``discard`` holds the replaced values.
* ``regenerate(key, trace, selection) -> (trace', w)``: resample the selected choices from
  ``q``; ``w = log p(t')/p(t) - log q(t'_sel)/q(t_sel)``, the Metropolis–Hastings log ratio of
  the "resimulate from the prior" proposal.

All are pure functions of explicit PRNG keys and work under ``jax.jit``, ``jax.vmap`` and
``jax.grad``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from ppl._choicemap import EMPTY, ChoiceMap
from ppl._context import current_handler
from ppl._errors import GenerativeContextError
from ppl._selection import Selection, as_selection


class Trace(abc.ABC):
    """A record of one execution: choices, score (``log p``), return value and arguments.

    ``args`` is ``None`` in a trace nested in another one (see
    ``GenerativeFunction._with_args``).
    """

    args: tuple | None
    retval: Any
    score: jax.Array

    @property
    @abc.abstractmethod
    def choices(self) -> Any:
        """The random choices, as a ``ChoiceMap`` (or a bare value for a distribution)."""

    @property
    @abc.abstractmethod
    def site_scores(self) -> Any:
        """The log density of each random choice, shaped like ``choices`` without event dims.

        A plate's sites give one score per repeat, so observed plates give pointwise
        log-likelihoods (for LOO/WAIC).
        """

    def _held_scores(self) -> tuple[jax.Array, ...]:
        """The score arrays among this trace's leaves that an enclosing ``@gen`` trace may hold
        for it, packed with its other calls' scores (see ``StaticTrace``); ``()`` keeps them."""
        return ()

    def _with_held_scores(self, scores: tuple) -> Trace:
        """This trace with ``scores`` in place of ``_held_scores()`` (``None``s: held by the
        enclosing trace)."""
        return self


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Invocation:
    """``gen_fn(*args)``: waiting for ``@ address`` inside a ``@gen`` function."""

    gen_fn: Any = dataclasses.field(metadata={"static": True})
    args: tuple

    def __matmul__(self, address: Any) -> Any:
        handler = current_handler()
        if handler is None:
            raise GenerativeContextError(
                f"`{self.gen_fn!r}(...) @ {address!r}` is only meaningful inside a @gen "
                f"function; to run it directly use {self.gen_fn!r}.simulate(key, args) or "
                ".assess(choices, args)"
            )
        return handler.visit(address, self.gen_fn, self.args)


SiteQuery = Callable[[Any, Any], Any]
"""``(numpyro_distribution, value) -> result``: what ``GenerativeFunction._sites`` asks of
each choice."""


def _support(distribution: Any, value: Any) -> Any:
    return distribution.support


def _log_prob(distribution: Any, value: Any) -> Any:
    return distribution.log_prob(value)


def _trace_args(trace: Trace, method: str) -> tuple:
    if trace.args is None:
        raise TypeError(
            f"{method}: this trace was recorded inside another generative function, so it does "
            "not hold its arguments; pass args=... explicitly (or use the outer trace)"
        )
    return trace.args


def _check_args(args: Any, method: str) -> tuple:
    if not isinstance(args, tuple):
        raise TypeError(
            f"{method}: `args` must be a tuple of the function's arguments, got "
            f"{type(args).__name__}; write (x,) for a single argument"
        )
    return args


def as_constraints(constraints: Any) -> Any:
    """``None``/dict/``ChoiceMap``/bare value to the internal constraint tree."""
    if constraints is None:
        return EMPTY
    if isinstance(constraints, dict):
        return ChoiceMap(constraints)
    return constraints


class GenerativeFunction(abc.ABC):
    """Base class of generative functions: the five GFI methods, plus ``f(*args) @ addr``.

    Subclasses implement the underscored methods on internal representations; the public
    methods normalise their inputs (dicts become ``ChoiceMap``s, addresses become selections).
    """

    def __call__(self, *args: Any) -> Invocation:
        return Invocation(self, tuple(args))

    # -- public interface ------------------------------------------------------------------
    def simulate(self, key: jax.Array, args: tuple = ()) -> Trace:
        """Samples every choice from the model.

        Args:
            key: a PRNG key.
            args: the arguments, as a tuple.

        Returns:
            A trace ``t ~ p(. ; args)`` with ``t.score = log p(t)``.
        """
        args = _check_args(args, "simulate")
        return self._with_args(self._simulate(key, args), args)

    def assess(self, choices: Any, args: tuple = ()) -> tuple[jax.Array, Any]:
        """Scores a complete set of choices.

        Args:
            choices: a dict or ``ChoiceMap`` holding every choice the model makes.
            args: the arguments, as a tuple.

        Returns:
            ``(log p(choices; args), retval)``.

        Raises:
            AddressError: a choice is missing, or a given address is never visited.
        """
        return self._assess(as_constraints(choices), _check_args(args, "assess"))

    def generate(
        self, key: jax.Array, constraints: Any, args: tuple = ()
    ) -> tuple[Trace, jax.Array]:
        """Importance sampling: the constrained choices fixed, the others drawn from ``q``.

        Args:
            key: a PRNG key.
            constraints: a dict or ``ChoiceMap`` of values for some addresses.
            args: the arguments, as a tuple.

        Returns:
            ``(trace, w)`` with ``w = log p(t) - log q(t_unconstrained)``: the log likelihood
            of the constraints when ``q`` is the prior (0 with no constraints, ``t.score``
            with all of them).
        """
        args = _check_args(args, "generate")
        trace, weight = self._generate(key, as_constraints(constraints), args)
        return self._with_args(trace, args), weight

    def update(
        self,
        key: jax.Array,
        trace: Trace,
        constraints: Any = None,
        args: tuple | None = None,
    ) -> tuple[Trace, jax.Array, Any]:
        """Changes some choices and/or the arguments of a trace.

        Args:
            key: a PRNG key (for choices that become newly visited).
            trace: the trace to change.
            constraints: new values for some addresses (``None``: none).
            args: new arguments (``None``: the trace's own).

        Returns:
            ``(t', w, discard)`` with ``w = log p'(t') - log p(t) - log q(t'_new)`` (``t'_new``:
            choices visited only now, drawn from ``q``) and ``discard`` the replaced values.
        """
        args = _trace_args(trace, "update") if args is None else _check_args(args, "update")
        new, weight, discard = self._update(key, trace, as_constraints(constraints), args)
        return self._with_args(new, args), weight, discard

    def regenerate(self, key: jax.Array, trace: Trace, selection: Any) -> tuple[Trace, jax.Array]:
        """Resamples the selected choices from the model's internal proposal (the prior).

        Args:
            key: a PRNG key.
            trace: the current trace.
            selection: a ``Selection`` (or an address, or a list of them).

        Returns:
            ``(t', w)`` with ``w = log p(t')/p(t) - log q(t'_sel)/q(t_sel)``: the
            Metropolis–Hastings log acceptance ratio of this proposal.
        """
        args = _trace_args(trace, "regenerate")
        new, weight = self._regenerate(key, trace, as_selection(selection), args)
        return self._with_args(new, args), weight

    def propose(self, key: jax.Array, args: tuple = ()) -> tuple[Any, jax.Array, Any]:
        """``(choices, log q(choices), retval)``: ``simulate`` seen as a proposal."""
        trace = self.simulate(key, args)
        return trace.choices, trace.score, trace.retval

    def supports(self, trace: Trace) -> Any:
        """The support of every choice in ``trace``: NumPyro constraints, shaped like choices.

        Inference uses it to map constrained choices to an unconstrained space
        (``numpyro.distributions.transforms.biject_to``) and to enumerate finite supports.

        Example:
            >>> import jax
            >>> from ppl import gen, gamma, normal
            >>> @gen
            ... def model():
            ...     return normal(gamma(2.0, 1.0) @ "scale", 1.0) @ "x"
            >>> model.supports(model.simulate(jax.random.key(0), ())).to_dict()
            {'scale': Positive(lower_bound=0.0), 'x': Real()}
        """
        return self._sites(trace, _trace_args(trace, "supports"), _support)

    def pointwise_scores(self, trace: Trace) -> Any:
        """The log density of every choice in ``trace`` per element of its distribution's batch
        shape, shaped like the choices (``site_scores`` holds their sums): the pointwise
        log-likelihood that arviz's LOO and WAIC need when the choices are observations.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> from ppl import gen, normal
            >>> @gen
            ... def model():
            ...     return normal(jnp.zeros(3), 1.0) @ "x"
            >>> trace, _ = model.generate(jax.random.key(0), {"x": jnp.zeros(3)}, ())
            >>> model.pointwise_scores(trace)["x"].round(4).tolist()
            [-0.9189, -0.9189, -0.9189]
        """
        return self._sites(trace, _trace_args(trace, "pointwise_scores"), _log_prob)

    # -- combinator shorthands ---------------------------------------------------------------
    def vmap(self, in_axes: Any = 0, axis_size: int | None = None) -> GenerativeFunction:
        """``Vmap(self, in_axes, axis_size)``: independent repeats."""
        from ppl.combinators import Vmap

        return Vmap(self, in_axes=in_axes, axis_size=axis_size)

    def scan(self, length: int | None = None) -> GenerativeFunction:
        """``Scan(self, length)``: a Markov chain of this kernel."""
        from ppl.combinators import Scan

        return Scan(self, length=length)

    # -- what subclasses implement -----------------------------------------------------------
    def _with_args(self, trace: Trace, args: tuple) -> Trace:
        """The trace a public method returns, holding its arguments.

        Traces made by the underscored methods hold ``args=None``: nested in another trace,
        their arguments are the caller's intermediate values (a plate's parameters, a chain's
        carries), and holding them would make every traced program return copies of them.
        Methods that need a nested trace's arguments are given them by the caller.
        """
        return dataclasses.replace(trace, args=args)  # type: ignore[type-var]

    @abc.abstractmethod
    def _simulate(self, key: jax.Array, args: tuple) -> Trace: ...

    @abc.abstractmethod
    def _assess(self, choices: Any, args: tuple) -> tuple[jax.Array, Any]: ...

    @abc.abstractmethod
    def _generate(self, key: jax.Array, constraints: Any, args: tuple) -> tuple[Trace, Any]: ...

    @abc.abstractmethod
    def _update(
        self, key: jax.Array, trace: Trace, constraints: Any, args: tuple
    ) -> tuple[Trace, jax.Array, Any]: ...

    @abc.abstractmethod
    def _sites(self, trace: Trace, args: tuple, query: SiteQuery) -> Any:
        """``query(numpyro_distribution, value)`` at every choice of ``trace``, shaped like the
        choices (``supports``, ``pointwise_scores``)."""

    @abc.abstractmethod
    def _regenerate(
        self, key: jax.Array, trace: Trace, selection: Selection, args: tuple
    ) -> tuple[Trace, jax.Array]: ...
