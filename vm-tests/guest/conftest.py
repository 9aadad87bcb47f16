"""Inside the guest: select the tests that match this boot, and record findings.

``@pytest.mark.boot(kernel=..., numa=..., cgroup=...)`` limits a test to boots whose
configuration matches (each value a string or a tuple of strings; an omitted key matches
any boot). Tests that do not match are deselected, not skipped. Outside a guest
(``ZONED_VM_GUEST`` unset) every test here is skipped: they write to the real cgroup tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

IN_GUEST = os.environ.get("ZONED_VM_GUEST") == "1"
BOOT = {
    "kernel": os.environ.get("ZONED_VM_KERNEL", ""),
    "numa": os.environ.get("ZONED_VM_NUMA", ""),
    "cgroup": os.environ.get("ZONED_VM_CGROUP", ""),
}
RUN_DIR = Path(os.environ.get("ZONED_VM_RUN_DIR", "/nonexistent"))
PROJECT = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "boot(kernel=, numa=, cgroup=): run only in boots with this configuration"
    )


def _matches(item: pytest.Item) -> bool:
    for mark in item.iter_markers("boot"):
        for key, want in mark.kwargs.items():
            if key not in BOOT:
                raise pytest.UsageError(f"{item.nodeid}: unknown boot key {key!r}")
            wanted = (want,) if isinstance(want, str) else tuple(want)
            if BOOT[key] not in wanted:
                return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not IN_GUEST:
        skip = pytest.mark.skip(reason="guest tests run only inside a vm-tests guest")
        for item in items:
            item.add_marker(skip)
        return
    keep = [item for item in items if _matches(item)]
    dropped = [item for item in items if not _matches(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _progress(line: str) -> None:
    """One line to ``<run>/progress.log``: the host reads it when a boot times out, to say
    which test was running (the guest's pytest never writes its JUnit file then)."""
    if IN_GUEST and RUN_DIR.is_dir():
        with (RUN_DIR / "progress.log").open("a") as out:
            out.write(f"{time.monotonic():.1f} {line}\n")


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    _progress(f"start {nodeid}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        _progress(f"{report.when} {report.outcome} {report.duration:.1f}s {report.nodeid}")


Finding = Callable[[str, Any], None]


@pytest.fixture
def finding(request: pytest.FixtureRequest) -> Finding:
    """Record a measured fact (a KERNEL-NOTES [check]); the host prints them after the run."""

    def record(name: str, value: Any) -> None:
        entry = {
            "test": request.node.nodeid,
            "kernel": os.uname().release,
            "cgroup": BOOT["cgroup"],
            "name": name,
            "value": value,
        }
        # One file per finding, written once: appends to one file over the 9p share
        # (cache=loose) can land at a stale end and overwrite the line before (seen in CI).
        folder = RUN_DIR / "findings"
        folder.mkdir(exist_ok=True)
        name_ = f"{time.monotonic_ns():020d}-{os.getpid()}.json"
        fd = os.open(folder / name_, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, json.dumps(entry).encode())
        finally:
            os.close(fd)

    return record


def zoned(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the zoned command line in the project directory; fail on a non-zero status."""
    proc = subprocess.run(
        [sys.executable, "-m", "zoned", *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"zoned {' '.join(args)} exited with {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def has_command(name: str) -> bool:
    """Whether ``zoned <name>`` exists yet (commands land one by one)."""
    return (PROJECT / "zoned" / "commands" / f"{name}.py").exists()


def node_mem_total(node: int) -> int:
    """MemTotal of a node in bytes, read straight from sysfs."""
    text = Path(f"/sys/devices/system/node/node{node}/meminfo").read_text()
    for line in text.splitlines():
        fields = line.split()
        if fields[2] == "MemTotal:":
            assert fields[4] == "kB", line
            return int(fields[3]) * 1024
    raise AssertionError(f"node{node}/meminfo has no MemTotal:\n{text}")


def online_nodes() -> list[int]:
    return parse_list(Path("/sys/devices/system/node/online").read_text())


def parse_list(text: str) -> list[int]:
    """A kernel list like ``0-2,5`` → [0, 1, 2, 5]."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out
