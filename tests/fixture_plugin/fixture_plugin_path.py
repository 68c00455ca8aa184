"""Makes the test-only ``fixture`` plugin visible to this test process and the processes it
starts, without installing it: test scaffolding stays out of every user's listing.

It is still found the way an installed plugin is (through its entry point): the metadata
pip would write (a ``.dist-info`` with ``entry_points.txt``) is written to a temporary
directory put on ``sys.path`` and ``PYTHONPATH`` with the plugin's source.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def activate() -> None:
    site = Path(tempfile.mkdtemp(prefix="requestplane-fixture-plugin-"))
    atexit.register(shutil.rmtree, site, ignore_errors=True)
    info = site / "requestplane_fixture-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: requestplane-fixture\nVersion: 0.0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[requestplane.transports]\nfixture = requestplane_fixture\n"
    )
    paths = [str(site), str(HERE)]
    sys.path[:0] = paths
    inherited = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, *([inherited] if inherited else [])])
