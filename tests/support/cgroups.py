"""Real cgroup trees in tests: taking a test's subtree down, and watching what is written."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import time
from pathlib import Path

from zoned.kernel.cgroupfs import CgroupFs


def remove_cgroup_tree(root: Path, rel: str, deadline_s: float = 10.0) -> None:
    """Remove ``root/rel`` and everything under it, leaves first. Any task still inside
    (only the test's own, already killed or about to be) is parked at ``root``. A killed
    task may still be exiting (EBUSY for a moment): retried to a deadline."""
    top = root / rel
    if not top.is_dir():
        return
    dirs = sorted((Path(d) for d, _, _ in os.walk(top)), key=lambda p: len(p.parts), reverse=True)
    end = time.monotonic() + deadline_s
    for d in dirs:
        while True:
            for pid in (d / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                    (root / "cgroup.procs").write_text(pid)
            try:
                d.rmdir()
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > end:
                    raise
                select.select([], [], [], 0.01)


class RecordingFs(CgroupFs):
    """The real CgroupFs, remembering every write (to show what a backend did and did not
    do)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.writes: list[tuple[str, str, str]] = []

    def write(self, cgroup: str, file: str, value: str) -> None:
        self.writes.append((cgroup, file, value))
        super().write(cgroup, file, value)


class CountingFs(RecordingFs):
    """A RecordingFs that also counts cgroups made (as ``(cgroup, "mkdir", "")``). Writes to
    ``cgroup.event_control`` are v1 eventfd registrations, not settings: not counted."""

    def write(self, cgroup: str, file: str, value: str) -> None:
        if file == "cgroup.event_control":
            CgroupFs.write(self, cgroup, file, value)
        else:
            super().write(cgroup, file, value)

    def mkdir(self, cgroup: str) -> bool:
        made = super().mkdir(cgroup)
        if made:
            self.writes.append((cgroup, "mkdir", ""))
        return made
