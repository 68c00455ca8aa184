"""The conformance kit tested against transports with one deliberate mistake each (the uds
example, broken: tests/kit_broken_transports.py; a multiplexed variant of it:
tests/kit_mux_transport.py): every mistake fails the case meant to catch it, with a message
that says what was expected, the same transports done right pass, and nothing hangs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

TESTS = Path(__file__).resolve().parent
BOTH = ("asyncio", "trio")

#: broken transport -> (the kit case that must fail, on which backends, words its failure
#: must contain)
CATCHES = {
    "hangingclose": (
        "test_unary_echo",
        BOTH,
        "server aclose() did not return within 2 s: does it close its clients' connections?",
    ),
    "crashing": ("test_unary_echo", BOTH, "RuntimeError: bug in the accept loop"),
    "nogauge": ("test_open_connections_gauge", BOTH, "open_connections was 0 while a call"),
    "nosizecheck": (
        "test_client_refuses_oversize_request_before_sending",
        BOTH,
        "must refuse it before sending",
    ),
    "ignorestimeout": (
        "test_request_timeout_setting_bounds_calls_without_timeout",
        BOTH,
        "the client must use request_timeout",
    ),
    "wrongscheme": (
        "test_address_round_trips",
        BOTH,
        "not one of the schemes the transport declares",
    ),
}
#: Mistakes whose failure depends on timing (where a cancellation lands): the case must
#: catch them on at least one of the two loops in one of LIKELY_RUNS runs.
LIKELY = {"muxtorn": "test_cancelled_callers_leave_shared_connections_usable"}
LIKELY_RUNS = 4
#: The same transports done right pass the same cases: the kit fails only the mistake.
CONTROLS = {
    "muxshielded": "test_cancelled_callers_leave_shared_connections_usable",
    "uds": "test_cancelled_callers_leave_shared_connections_usable",
}
MODULES = {"muxtorn": "kit_mux_transport", "muxshielded": "kit_mux_transport"}


def install_transports(root: Path) -> None:
    """Entry points for the test transports, visible only to a process given ``root``."""
    info = root / "kit_test_transports-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kit-test-transports\n")
    names = [*CATCHES, *LIKELY, *(n for n in CONTROLS if n != "uds")]
    lines = "".join(f"{n} = {MODULES.get(n, 'kit_broken_transports')}:{n.upper()}\n" for n in names)
    (info / "entry_points.txt").write_text(f"[requestplane.transports]\n{lines}")


def run_kit(root: Path, cases: dict[str, str]) -> dict[tuple[str, str], str | None]:
    """Run the kit's ``cases`` (transport -> case) on both loops in a fresh process; the
    failure text of each (transport, case[backend]), "" if it passed."""
    classes = "".join(f"class Test_{name}(Bounded):\n    mode = {name!r}\n\n" for name in cases)
    (root / "test_kit.py").write_text(
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
    report = root / "report.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={report}"]
        + [f"test_kit.py::Test_{name}::{case}" for name, case in cases.items()],
        cwd=root,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(TESTS)])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.exists(), done.stdout + done.stderr
    outcomes: dict[tuple[str, str], str | None] = {}
    for case in ET.parse(report).iter("testcase"):
        failure = case.find("failure")
        name = case.get("classname", "").rpartition(".Test_")[2]
        outcomes[(name, case.get("name", ""))] = "" if failure is None else failure.text or "?"
    return outcomes


def test_the_kit_catches_each_mistake_and_says_what_it_expected(tmp_path: Path) -> None:
    install_transports(tmp_path)
    cases = {**{n: c for n, (c, _, _) in CATCHES.items()}, **LIKELY, **CONTROLS}
    outcomes = run_kit(tmp_path, cases)
    for name, (case, backends, expected) in CATCHES.items():
        for backend in backends:
            text = outcomes.get((name, f"{case}[{backend}]"))
            assert text is not None, f"{name}: {case}[{backend}] did not run"
            assert text, f"the kit let {name!r} pass {case}[{backend}]"
            assert expected in text, (
                f"{name}: {case}[{backend}] failed without {expected!r}:\n{text}"
            )
    for name, case in LIKELY.items():
        texts = [outcomes.get((name, f"{case}[{backend}]")) for backend in BOTH]
        # On a loaded machine the cancellations can all land between writes in one run; a
        # kit that catches the mistake catches it within a few runs, one that cannot never does.
        for _ in range(LIKELY_RUNS - 1):
            if any(texts):
                break
            again = run_kit(tmp_path, {name: case})
            texts = [again.get((name, f"{case}[{backend}]")) for backend in BOTH]
        assert any(texts), f"the kit let {name!r} pass {case} on both loops, {LIKELY_RUNS} runs"
    for name, case in CONTROLS.items():
        for backend in BOTH:
            assert outcomes.get((name, f"{case}[{backend}]")) == "", (name, backend, outcomes)
