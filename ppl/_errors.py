"""Errors that name the address at fault."""

from __future__ import annotations

from ppl._address import Path, show


class AddressError(ValueError):
    """A problem with the random choice at one address.

    The message template may use ``{addr}``; the address is filled in when the error reaches the
    user, after every enclosing generative function has prefixed its own part of the path.

    Example:
        >>> str(AddressError("no value at {addr}", ("y",)).with_prefix(("obs",)))
        "no value at ('obs', 'y')"
    """

    def __init__(self, template: str, path: Path = ()):
        self.template = template
        self.path = tuple(path)
        super().__init__(template.replace("{addr}", show(self.path) if self.path else "the root"))

    def with_prefix(self, prefix: Path) -> AddressError:
        """The same error, seen from a caller that placed this callee at ``prefix``."""
        return type(self)(self.template, tuple(prefix) + self.path)


class NonFiniteScoreError(FloatingPointError):
    """Raised in debug mode when a random choice has a non-finite log density."""


class GenerativeContextError(RuntimeError):
    """A ``gen_fn(...) @ addr`` or ``dist(...) @ addr`` outside a ``@gen`` function."""
