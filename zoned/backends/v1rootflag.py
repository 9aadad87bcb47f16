"""The one write outside zoned's subtree on v1: the root's ``cpuset.memory_pressure_enabled``.

The flag is host-wide (it turns on ``cpuset.memory_pressure`` accounting in every cpuset),
so zoned sets it only when asked (``zoned run --v1-memory-pressure``), never in a dry run,
and puts the old value back at stop. The old value is written to ``note`` (under the state
directory) before the flag is touched, so a daemon restarted after a crash still restores
what the host had, not the ``1`` its predecessor left. zoned's decisions never read
``cpuset.memory_pressure``: they use the memcg pressure-level eventfds.
"""

from __future__ import annotations

import logging
from pathlib import Path

from zoned.errors import BackendError, Unsupported
from zoned.kernel.cgroupfs import CgroupFs
from zoned.kernel.hierarchy import v1_roots

log = logging.getLogger("zoned.backends.cgroup1")

FLAG = "cpuset.memory_pressure_enabled"
NOTE_NAME = "v1-memory-pressure-enabled.orig"


class RootFlag:
    """Set the flag for the daemon's lifetime; ``restore`` puts the old value back."""

    def __init__(self, fs: CgroupFs, note: Path | None) -> None:
        self.fs = fs
        self.note = note
        self.restore_to: str | None = None  # what to write back; None: zoned changed nothing

    def _saved(self) -> str | None:
        if self.note is None:
            return None
        try:
            text = self.note.read_text().strip()
        except FileNotFoundError:
            return None
        return text if text in ("0", "1") else None

    def enable(self) -> None:
        """Write ``1`` unless it is on already (and not left on by a crashed zoned)."""
        saved = self._saved()
        current = self.fs.read("", FLAG).strip()
        if saved is None and current == "1":
            return  # the host's own setting: not zoned's to change or restore
        if saved is None and self.note is not None:
            self.note.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.note.with_suffix(".tmp")
            tmp.write_text(current + "\n")
            tmp.replace(self.note)
        self.restore_to = saved if saved is not None else current
        if self.fs.write_if_changed("", FLAG, "1"):
            log.info("enabled %s at %s (was %s)", FLAG, self.fs.root, self.restore_to)

    def recover(self) -> None:
        """Not opted in: put back the value a crashed predecessor that had opted in noted
        (nothing when there is no note)."""
        self.restore_to = self._saved()
        self.restore()

    def restore(self) -> None:
        """Write back the value the host had; forget the note. Safe to call twice."""
        if self.restore_to is None:
            return
        if self.fs.write_if_changed("", FLAG, self.restore_to):
            log.info("restored %s at %s to %s", FLAG, self.fs.root, self.restore_to)
        self.restore_to = None
        if self.note is not None:
            self.note.unlink(missing_ok=True)


def check_note(proc_root: Path) -> str | None:
    """What ``zoned check`` says about the flag on a v1 host; None when cpuset is not a v1
    hierarchy here. Reads, never writes."""
    try:
        cpuset, _ = v1_roots(proc_root)
    except Unsupported:
        return None
    fs = CgroupFs(cpuset)
    try:
        value = "on (1)" if fs.read("", FLAG).strip() == "1" else "off (0)"
    except BackendError as exc:
        value = f"unreadable ({exc})"
    return (
        f"cgroup v1: {fs.path('', FLAG)} is {value}. zoned never writes it unless run with "
        "--v1-memory-pressure, which sets it to 1 while the daemon runs (the kernel then "
        "computes cpuset.memory_pressure in every cpuset of the host) and restores the old "
        "value at stop; zoned's decisions do not need it."
    )
