"""The conformance kit tested against transports with one deliberate mistake each (the uds
example, broken: tests/kit_broken_transports.py): every mistake fails the case meant to
catch it, with a message that says what was expected, and nothing hangs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

TESTS = Path(__file__).resolve().parent

#: broken transport -> (the kit case that must fail, words its failure must contain)
CATCHES = {
    "hangingclose": (
        "test_unary_echo",
        "server aclose() did not return within 2 s: does it close its clients' connections?",
    ),
    "crashing": ("test_unary_echo", "RuntimeError: bug in the accept loop"),
    "nogauge": ("test_open_connections_gauge", "open_connections was 0 while a call"),
    "nosizecheck": (
        "test_client_refuses_oversize_request_before_sending",
        "must refuse it before sending",
    ),
    "ignorestimeout": (
        "test_request_timeout_setting_bounds_calls_without_timeout",
        "the client must use request_timeout",
    ),
    "wrongscheme": ("test_address_round_trips", "not one of the schemes the transport declares"),
}


def install_broken_transports(root: Path) -> None:
    """Entry points for the broken transports, visible only to a process given ``root``."""
    info = root / "kit_broken_transports-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kit-broken-transports\n")
    lines = "".join(f"{name} = kit_broken_transports:{name.upper()}\n" for name in CATCHES)
    (info / "entry_points.txt").write_text(f"[requestplane.transports]\n{lines}")


def test_the_kit_catches_each_mistake_and_says_what_it_expected(tmp_path: Path) -> None:
    install_broken_transports(tmp_path)
    classes = "".join(
        f"class Test{name.capitalize()}(Bounded):\n    mode = {name!r}\n\n" for name in CATCHES
    )
    (tmp_path / "test_broken.py").write_text(
        textwrap.dedent(
            """
            from requestplane_core.testing import TransportConformance

            class Bounded(TransportConformance):
                step_timeout = 2.0
                case_timeout = 60.0

            """
        )
        + classes
    )
    report = tmp_path / "report.xml"
    node_ids = [f"test_broken.py::Test{n.capitalize()}::{case}" for n, (case, _) in CATCHES.items()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(TESTS)])}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            *node_ids,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    failures: dict[tuple[str, str], str] = {}
    for case in ET.parse(report).iter("testcase"):
        failure = case.find("failure")
        name = case.get("classname", "").rpartition(".")[2][len("Test") :].lower()
        failures[(name, case.get("name", ""))] = "" if failure is None else failure.text or ""
    for name, (case, expected) in CATCHES.items():
        for backend in ("asyncio", "trio"):
            text = failures.get((name, f"{case}[{backend}]"))
            assert text is not None, f"{name}: {case}[{backend}] did not run:\n{done.stdout}"
            assert text, f"the kit let {name!r} pass {case}[{backend}]"
            assert expected in text, (
                f"{name}: {case}[{backend}] failed without {expected!r}:\n{text}"
            )
