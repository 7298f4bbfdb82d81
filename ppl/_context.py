"""Scoped interpreter state: the handler stack, the address prefix, debug and validation.

State lives in ``contextvars`` set by context managers, never in module globals, so nested and
concurrent executions do not leak into each other.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from ppl._address import Path
from ppl._jax_internals import DEBUG_STATE

_handler: contextvars.ContextVar[Any] = contextvars.ContextVar("ppl_handler", default=None)
_prefix: contextvars.ContextVar[Path] = contextvars.ContextVar("ppl_prefix", default=())
_debug: contextvars.ContextVar[bool] = contextvars.ContextVar("ppl_debug", default=False)
_validate: contextvars.ContextVar[bool] = contextvars.ContextVar("ppl_validate", default=True)


def current_handler() -> Any:
    """The interpreter of the innermost running ``@gen`` function, or ``None``."""
    return _handler.get()


@contextlib.contextmanager
def handling(handler: Any) -> Iterator[None]:
    token = _handler.set(handler)
    try:
        yield
    finally:
        _handler.reset(token)


@contextlib.contextmanager
def at_prefix(path: Path) -> Iterator[None]:
    """Marks that execution is now below ``path`` (for messages naming full addresses)."""
    token = _prefix.set(_prefix.get() + tuple(path))
    try:
        yield
    finally:
        _prefix.reset(token)


def current_prefix() -> Path:
    return _prefix.get()


@contextlib.contextmanager
def debug(enabled: bool = True) -> Iterator[None]:
    """Checks every random choice's log density for NaN/inf and names the first bad address.

    Under ``jax.jit`` the check runs as a host callback; eagerly it raises at once. The switch
    is part of JAX's compilation cache key, so a function jitted outside ``debug()`` is traced
    again (with the checks) inside it.

    Example:
        >>> import jax
        >>> from ppl import gen, normal
        >>> @gen
        ... def model(scale):
        ...     x = normal(0.0, 1.0) @ "x"
        ...     return normal(x, scale) @ "y"
        >>> with debug():
        ...     try:
        ...         jax.jit(model.simulate)(jax.random.key(0), (-1.0,))
        ...     except Exception as error:
        ...         print("non-finite log density nan at 'y'" in str(error))
        True
    """
    if DEBUG_STATE is not None:
        with DEBUG_STATE(enabled):
            yield
        return
    token = _debug.set(enabled)
    try:
        yield
    finally:
        _debug.reset(token)


def debugging() -> bool:
    return bool(DEBUG_STATE.value) if DEBUG_STATE is not None else _debug.get()


@contextlib.contextmanager
def validation(enabled: bool = True) -> Iterator[None]:
    """Turns the user-boundary checks of concrete values (support, shape) on or off.

    Validation is on by default; it costs nothing under ``jax.jit``, where values are traced.
    """
    token = _validate.set(enabled)
    try:
        yield
    finally:
        _validate.reset(token)


def validating() -> bool:
    return _validate.get()
