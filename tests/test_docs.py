"""Every ```python block of the documentation runs.

The blocks of one page run in order in one fresh namespace, as a reader would paste them into
one session; a failure names the page, the block number and the line of the page it starts on.
"""

from __future__ import annotations

import linecache
import pathlib
import re
import textwrap
import traceback

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))

# An opening fence ```python (possibly indented, inside an admonition or a list), up to the
# closing fence at the same indentation.
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?:python|py)[ \t]*(?:\{[^}\n]*\})?[ \t]*\n"
    r"(?P<body>.*?)"
    r"^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """The ```python blocks of a Markdown page: ``(line of the first code line, source)``."""
    blocks = []
    for match in FENCE.finditer(text):
        first_line = text.count("\n", 0, match.start("body")) + 1
        blocks.append((first_line, textwrap.dedent(match.group("body"))))
    return blocks


def test_fences_are_found():
    page = "text\n```python\nx = 1\n```\n\n    ```python\n    y = x\n    ```\n```bash\nls\n```\n"
    assert python_blocks(page) == [(3, "x = 1\n"), (7, "y = x\n")]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_code_runs(page: pathlib.Path):
    name = page.relative_to(ROOT)
    namespace: dict = {"__name__": f"docs.{page.stem}"}
    for number, (line, source) in enumerate(python_blocks(page.read_text()), start=1):
        # Line numbers in tracebacks are the page's own: pad with the lines before the block.
        filename = f"{name} (block {number})"
        padded = "\n" * (line - 1) + source
        linecache.cache[filename] = (len(padded), None, padded.splitlines(True), filename)
        failure = None
        try:
            exec(compile(padded, filename, "exec"), namespace)
        except Exception as error:
            failure = (
                f"{name}: python block {number} (starting at line {line}) raised "
                f"{type(error).__name__}: {error}\n\n{traceback.format_exc()}"
            )
        if failure is not None:
            pytest.fail(failure, pytrace=False)
