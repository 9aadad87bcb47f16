"""zoned.service under systemd as PID 1 in a guest: one boot, ``guest/test_under_systemd.py``."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import need
from guestrun import GUEST, guest_pytest, junit_summary, progress_report
from harness import HarnessError
from systemd_boot import run_under_systemd

TIMEOUT_S = float(os.environ.get("ZONED_VM_TIMEOUT", "900"))


@pytest.mark.vm
def test_zoned_service_under_systemd() -> None:
    need(os.geteuid() == 0, "needs root (QEMU's 9p export of /)")
    need(shutil.which("qemu-system-x86_64") is not None, "needs qemu-system-x86")
    argv = guest_pytest([f"{GUEST}/test_under_systemd.py"])
    try:
        r = run_under_systemd(argv, timeout_s=TIMEOUT_S)
    except HarnessError as exc:
        need(False, f"cannot prepare the boot: {exc}")
        raise
    lines, failures = junit_summary(r.run_dir / "junit.xml")
    assert r.rc == 0, "\n".join(
        [r.describe(), progress_report(r.run_dir), *lines, *failures, r.tail(80)]
    )
    assert any("passed" in line for line in lines), "\n".join(lines)
