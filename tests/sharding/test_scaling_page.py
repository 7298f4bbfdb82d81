"""The Scaling out page (docs/scaling.md) runs on 8 simulated devices.

tests/test_docs.py runs every page on the test process's one device; the page's equalities
between sharded and single-device runs only mean something with several devices.
"""

from conftest import run_program


def test_scaling_out_page_runs_on_eight_devices():
    assert run_program("docs_page.py") == {"devices": 8, "blocks": 5}
