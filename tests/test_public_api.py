"""The public surface is documented: every exported name has a docstring and an API entry.

The public names of a package are those in ``dir(package)`` that do not start with ``_``,
submodules excepted. The API reference pages under ``docs/api/`` name objects with
mkdocstrings directives (``::: ppl.gen``); every public object must be named by one of them.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import re
from types import ModuleType
from typing import Any

import pytest

import models.baselines
import models.gnn_sngp
import models.last_layer
import models.metrics
import models.sngp
import models.training
import ppl
import ppl.adev
import ppl.combinators
from ppl import Distribution

ROOT = pathlib.Path(__file__).resolve().parents[1]
API_PAGES = sorted((ROOT / "docs" / "api").glob("*.md"))
DIRECTIVE = re.compile(r"^:::[ \t]+([\w.]+)[ \t]*$", re.MULTILINE)
MODEL_PACKAGES = (
    models.metrics,
    models.sngp,
    models.last_layer,
    models.baselines,
    models.gnn_sngp,
    models.training,
)
PACKAGES = (ppl, ppl.combinators, ppl.adev, *MODEL_PACKAGES)


def public_names(package: ModuleType) -> list[str]:
    return sorted(
        name
        for name in dir(package)
        if not name.startswith("_") and not inspect.ismodule(getattr(package, name))
    )


PUBLIC = [(package.__name__, name) for package in PACKAGES for name in public_names(package)]


def resolve(dotted: str) -> Any:
    """The object at a dotted path: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(f"no module in {dotted!r}")


def documented() -> dict[str, Any]:
    """Every ``::: path`` directive of the API pages, with the object it names."""
    found = {}
    for page in API_PAGES:
        for path in DIRECTIVE.findall(page.read_text()):
            try:
                found[path] = resolve(path)
            except (ImportError, AttributeError) as error:
                pytest.fail(f"{page.relative_to(ROOT)}: `::: {path}` names nothing: {error}")
    return found


def test_the_public_surface_is_found():
    assert ("ppl", "gen") in PUBLIC and ("ppl", "normal") in PUBLIC
    assert ("ppl", "combinators") not in PUBLIC  # submodules are not names
    assert ("ppl.combinators", "ScanTrace") in PUBLIC


@pytest.mark.parametrize(("package", "name"), PUBLIC, ids=[f"{p}.{n}" for p, n in PUBLIC])
def test_public_name_has_a_docstring(package: str, name: str):
    # inspect.getdoc falls back to the class docstring for an instance, so a distribution
    # instance (normal, gamma, ...) is covered by the documentation of `Distribution`.
    docstring = inspect.getdoc(getattr(importlib.import_module(package), name))
    assert docstring and docstring.strip(), f"{package}.{name} has no docstring; write one"


MODEL_PUBLIC = [
    (package.__name__, name) for package in MODEL_PACKAGES for name in public_names(package)
]


@pytest.mark.parametrize(
    ("package", "name"), MODEL_PUBLIC, ids=[f"{p}.{n}" for p, n in MODEL_PUBLIC]
)
def test_model_name_has_an_example(package: str, name: str):
    # Every class and function of the models packages shows its use in a doctest (run by
    # `pytest --doctest-modules`); a constant has its own attribute docstring instead.
    obj = getattr(importlib.import_module(package), name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        docstring = inspect.getdoc(obj) or ""
        assert ">>>" in docstring, f"{package}.{name}: add an `Example:` section that runs"
    else:
        griffe = pytest.importorskip("griffe")
        loaded = griffe.load(package, search_paths=[str(ROOT)])
        assert loaded[name].docstring, (
            f"{package}.{name}: write an attribute docstring (a string literal on the line "
            "after the assignment)"
        )


def test_distribution_instances_have_their_own_docstrings():
    # What the API page shows under `::: ppl.normal`: the attribute docstring after the
    # assignment in ppl/_distributions.py (it says the arguments), read as mkdocstrings does.
    griffe = pytest.importorskip("griffe")
    package = griffe.load("ppl", search_paths=[str(ROOT)])
    instances = [name for name in public_names(ppl) if isinstance(getattr(ppl, name), Distribution)]
    assert "normal" in instances
    missing = [name for name in instances if not package[name].docstring]
    assert not missing, (
        f"distributions without an attribute docstring (a string literal on the line after "
        f"`name = Distribution(...)`, giving the arguments): {missing}"
    )


def test_every_public_name_is_in_the_api_reference():
    assert API_PAGES, "no API reference pages under docs/api/"
    objects = list(documented().values())
    missing = [
        f"{package}.{name}"
        for package, name in PUBLIC
        if not any(getattr(importlib.import_module(package), name) is obj for obj in objects)
    ]
    assert not missing, (
        f"public names missing from the API reference ({', '.join(p.name for p in API_PAGES)} "
        f"under docs/api/): {missing}; add a `::: <dotted.name>` directive for each"
    )
