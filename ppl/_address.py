"""Addresses: the names of random choices.

An address is a string, an integer, or a tuple of those (a path into a hierarchy). Internally
every address is normalised to a *path*: a tuple of components.
"""

from __future__ import annotations

import numbers
from typing import Any

Component = str | int
Path = tuple[Any, ...]


def to_path(address: Any) -> Path:
    """Normalises an address to a tuple of components, checking each component's type.

    Args:
        address: a string, an integer, ``...`` (in selections), or a tuple of those.

    Returns:
        The address as a tuple path.

    Raises:
        TypeError: if a component is neither a string nor a Python integer.

    Example:
        >>> to_path("slope"), to_path(("y", 3))
        (('slope',), ('y', 3))
    """
    path = address if isinstance(address, tuple) else (address,)
    out: list[Any] = []
    for component in path:
        if isinstance(component, str) or component is Ellipsis:
            out.append(component)
        elif isinstance(component, numbers.Integral) and not isinstance(component, bool):
            out.append(int(component))
        else:
            raise TypeError(
                f"address {address!r}: component {component!r} is a {type(component).__name__}; "
                "addresses are strings, Python ints and tuples of those (a traced integer "
                "cannot be an address: use a Vmap or Scan combinator for dynamic indices)"
            )
    return tuple(out)


def show(path: Path) -> str:
    """Renders a path as users write it: ``'slope'`` or ``('y', 3)``."""
    parts = ["..." if c is Ellipsis else repr(c) for c in path]
    if len(parts) == 1:
        return parts[0]
    return "(" + ", ".join(parts) + ")"


def show_many(paths: list[Path], limit: int = 12) -> str:
    """Renders a list of paths compactly, folding runs of integer indices (``('y', 0..4)``)."""
    folded: dict[tuple, list[int]] = {}
    order: list[tuple] = []
    for path in paths:
        ints = [i for i, c in enumerate(path) if isinstance(c, int)]
        if ints:
            pos = ints[-1]
            key = (path[:pos], path[pos + 1 :])
            if key not in folded:
                order.append(key)
                folded[key] = []
            folded[key].append(path[pos])
        else:
            order.append((path, None))
            folded[(path, None)] = []
    shown = []
    for key in order:
        head, tail = key
        if tail is None:
            shown.append(show(head))
            continue
        idx = sorted(folded[key])
        contiguous = idx == list(range(idx[0], idx[0] + len(idx)))
        span = f"{idx[0]}..{idx[-1]}" if contiguous and len(idx) > 2 else ",".join(map(str, idx))
        parts = [repr(c) if c is not Ellipsis else "..." for c in head]
        parts.append(span)
        parts += [repr(c) if c is not Ellipsis else "..." for c in tail]
        shown.append("(" + ", ".join(parts) + ")")
    if len(shown) > limit:
        shown = [*shown[:limit], f"... ({len(shown) - limit} more)"]
    return ", ".join(shown) if shown else "no addresses"
