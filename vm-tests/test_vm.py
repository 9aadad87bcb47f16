"""One test per boot configuration: boot it once, run all matching guest tests inside it.

The guest runs ``pytest vm-tests/guest`` against its own /sys and /proc; this test passes
when that pytest passes, and shows the guest's failures and console tail when it does not.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import BOOT_REPORTS, need
from harness import BOOTS, GuestResult, HarnessError, run_in_guest

# Boot plus the guest's pytest start over 9p is 10-20 s under TCG; the tests themselves are
# small. A guest that needs longer than this is stuck.
TIMEOUT_S = float(os.environ.get("ZONED_VM_TIMEOUT", "600"))

GUEST_PYTEST = [
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
    "vm-tests/guest",
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


def findings(result: GuestResult) -> list[dict[str, object]]:
    path = result.run_dir / "findings.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.vm
@pytest.mark.parametrize("boot_name", list(BOOTS))
def test_guest_suite(boot_name: str, vm_prerequisites: None) -> None:
    boot = BOOTS[boot_name]
    try:
        result = run_in_guest(boot, GUEST_PYTEST, timeout_s=TIMEOUT_S, name=boot_name)
    except HarnessError as exc:
        need(False, f"boot {boot_name} cannot be prepared: {exc}")
        raise  # need() skipped or failed; this is not reached
    cases, failures = junit_summary(result.run_dir / "junit.xml")
    BOOT_REPORTS.append(
        {
            "boot": boot_name,
            "kernel": result.kernel_release,
            "rc": result.rc,
            "timings": dict(result.timings),
            "tests": len(cases),
            "findings": findings(result),
            "log": str(result.console_log_path),
        }
    )
    if result.rc == 5:
        pytest.skip(f"no guest test matches boot {boot_name}")
    if result.rc != 0:
        pytest.fail(
            "\n".join(
                [
                    result.describe(),
                    "guest tests:",
                    *cases,
                    *failures,
                    "--- console tail:",
                    result.tail(80),
                ]
            ),
            pytrace=False,
        )
