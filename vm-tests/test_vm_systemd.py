"""zoned.service under systemd as PID 1 in a guest: one boot, ``guest/test_under_systemd.py``."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import need
from harness import HarnessError
from systemd_boot import run_under_systemd
from test_vm import GUEST_PYTEST, junit_summary

TIMEOUT_S = float(os.environ.get("ZONED_VM_TIMEOUT", "900"))


@pytest.mark.vm
def test_zoned_service_under_systemd() -> None:
    need(os.geteuid() == 0, "needs root (QEMU's 9p export of /)")
    need(shutil.which("qemu-system-x86_64") is not None, "needs qemu-system-x86")
    argv = [*GUEST_PYTEST[:-1], "vm-tests/guest/test_under_systemd.py"]
    try:
        r = run_under_systemd(argv, timeout_s=TIMEOUT_S)
    except HarnessError as exc:
        need(False, f"cannot prepare the boot: {exc}")
        raise
    lines, failures = junit_summary(r.run_dir / "junit.xml")
    assert r.rc == 0, (
        f"{r.describe()}\n" + "\n".join(lines) + "\n" + "\n".join(failures) + "\n" + r.tail(80)
    )
    assert any("passed" in line for line in lines), "\n".join(lines)
