"""Host side of the VM tests: prerequisites, and a summary of what the boots measured.

``vm-tests/guest/`` holds the tests that run *inside* the guests; the host never collects
them (inside a guest, ``ZONED_VM_GUEST`` is set and they are collected normally).

A missing prerequisite (root, QEMU, busybox, apt) skips with the stated reason, except in CI
(``CI=true``), where it fails: the VM tests must run there.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

IN_GUEST = os.environ.get("ZONED_VM_GUEST") == "1"
IN_CI = os.environ.get("CI", "").lower() == "true"

collect_ignore = [] if IN_GUEST else ["guest"]

# test_vm.py puts each boot's report in its test report's user_properties under this key;
# the hook below collects them (from xdist workers too) and the summary prints them.
BOOT_REPORT = "zoned_boot_report"
BOOT_REPORTS: list[dict[str, Any]] = []


def need(condition: bool, reason: str) -> None:
    """Skip unless ``condition``; in CI, fail instead of skipping."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def missing_prerequisites() -> list[str]:
    """What this machine lacks for booting test guests (empty when nothing)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (QEMU's 9p export of / and the initramfs device node need it)")
    tools = {
        "qemu-system-x86_64": "qemu-system-x86",
        "dpkg-deb": "dpkg",
        "apt-get": "apt",
        "apt-cache": "apt",
        "gzip": "gzip",
        "tar": "tar",
    }
    for tool, package in tools.items():
        if shutil.which(tool) is None:
            missing.append(f"{tool} (Debian package {package})")
    if not any(Path(p).is_file() for p in ("/bin/busybox", "/usr/bin/busybox")):
        missing.append("busybox (Debian package busybox-static)")
    return missing


@pytest.fixture(scope="session")
def vm_prerequisites() -> None:
    missing = missing_prerequisites()
    need(not missing, "VM tests need " + ", ".join(missing))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for key, value in report.user_properties:
        if key == BOOT_REPORT and isinstance(value, dict):
            BOOT_REPORTS.append(value)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not BOOT_REPORTS:
        return
    terminalreporter.section("vm-tests boots")
    for report in BOOT_REPORTS:
        terminalreporter.write_line(json.dumps(report, sort_keys=True))
