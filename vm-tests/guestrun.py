"""The guest's pytest: its command line, and what the host reads back from a run directory.

Shared by the host-side tests (``test_vm.py``, ``test_vm_systemd.py``): the JUnit summary
of a finished run, the findings the guest recorded, and, when a boot timed out before the
guest's pytest could write its JUnit file, the progress log that says which test was
running.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

GUEST = "vm-tests/guest"


def guest_pytest(paths: Sequence[str] = (GUEST,), ignore: Sequence[str] = ()) -> list[str]:
    """The guest's pytest command for ``paths``, leaving out ``ignore`` (files under them)."""
    return [
        "python",
        "-m",
        "pytest",
        "-q",
        "-rfEs",
        "--color=no",
        "-p",
        "no:cacheprovider",  # the host's / is read-only in the guest
        "-p",
        "no:hypothesispytest",  # importing hypothesis costs 7.6 s under TCG; no guest test uses it
        "--junitxml={run_dir}/junit.xml",
        *(f"--ignore={path}" for path in ignore),
        *paths,
    ]


def junit_summary(path: Path) -> tuple[list[str], list[str]]:
    """(one line per test with its outcome, the failure texts) from the guest's JUnit XML."""
    if not path.exists():
        return [], []
    lines: list[str] = []
    failures: list[str] = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
                text = f"{child.get('message', '')}\n{child.text or ''}".strip()
                if child.tag != "skipped":
                    failures.append(f"--- {name} ({outcome})\n{text[-3000:]}")
                else:
                    outcome = f"skipped: {child.get('message', '')}"
        lines.append(f"{name}: {outcome} ({case.get('time')} s)")
    return lines, failures


def findings(run_dir: Path) -> list[dict[str, object]]:
    """What the guest's tests recorded with the ``finding`` fixture: one JSON file each
    under ``findings/``, in the order they were written (``findings.jsonl`` of older
    runs too). A file that does not parse is reported as such, never an error."""
    texts: list[str] = []
    legacy = run_dir / "findings.jsonl"
    if legacy.exists():
        texts += [line for line in legacy.read_text().splitlines() if line.strip()]
    folder = run_dir / "findings"
    if folder.is_dir():
        texts += [p.read_text() for p in sorted(folder.glob("*.json"))]
    out: list[dict[str, object]] = []
    for text in texts:
        try:
            out.append(json.loads(text))
        except json.JSONDecodeError as exc:
            out.append({"name": "unreadable finding", "value": f"{exc}: {text[:120]!r}"})
    return out


def progress_report(run_dir: Path, last: int = 15) -> str:
    """Which guest test was running when the guest stopped, and the last steps before it.

    Reads ``progress.log`` (written by the guest conftest: ``<uptime> start <nodeid>`` and
    ``<uptime> <phase> <outcome> <duration> <nodeid>``)."""
    path = run_dir / "progress.log"
    if not path.exists():
        return "guest progress: none recorded (the guest's pytest never started a test)"
    lines = path.read_text(errors="replace").splitlines()
    started = [line.split(" ", 2)[2] for line in lines if line.split(" ", 2)[1:2] == ["start"]]
    if not started:
        head = "guest progress: no test started"
    else:
        nodeid = started[-1]
        ended = any(
            line.endswith(f" {nodeid}") and line.split(" ", 2)[1] != "start" for line in lines
        )
        state = "its call had ended (teardown or later)" if ended else "still running"
        head = f"last guest test started: {nodeid} ({state})"
    tail = lines[-last:]
    return "\n".join([head, f"guest progress (last {len(tail)} of {len(lines)} lines):", *tail])
