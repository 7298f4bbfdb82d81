"""Runs the python blocks of docs/scaling.md in order, in one namespace, on this process's
devices (the test runs it on 8 simulated CPU devices), as tests/test_docs.py does on one.

Prints one JSON object: the number of devices and of blocks run.
"""

from __future__ import annotations

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests"))

import jax  # noqa: E402
from test_docs import python_blocks  # noqa: E402

page = ROOT / "docs" / "scaling.md"
namespace: dict = {"__name__": "docs.scaling"}
blocks = python_blocks(page.read_text())
for line, source in blocks:
    code = compile("\n" * (line - 1) + source, str(page), "exec")
    exec(code, namespace)
print(json.dumps({"devices": jax.device_count(), "blocks": len(blocks)}))
