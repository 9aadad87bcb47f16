"""Undo after a crash: the memcg limit that v1's directed reclaim lowers for a moment,
and what the v1 tripwire's hold replaced (the limit and ``oom_kill_disable`` before zoned).

v1 has no ``memory.reclaim``; the backend lowers ``memory.limit_in_bytes`` in steps and
restores it in a ``finally``. A ``kill -9`` in between would leave the container capped
for good, so the original limit is written to a note under the state directory before the
first step and removed after the restore; ``ensure`` (at every start) puts back a limit
that a note says was left lowered. Without a state directory the notes are not kept.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

from zoned.errors import CgroupGone
from zoned.kernel.cgroupfs import CgroupFs

log = logging.getLogger("zoned.backends.cgroup1")

LIMIT = "memory.limit_in_bytes"


class LimitNotes:
    """One note file per cgroup path (``v1-limit.<quoted path>``) in ``state_dir``."""

    def __init__(self, memory: CgroupFs, state_dir: Path | None) -> None:
        self.memory = memory
        self.state_dir = state_dir

    def _note(self, path: str) -> Path | None:
        if self.state_dir is None:
            return None
        return self.state_dir / f"v1-limit.{quote(path, safe='')}"

    def keep(self, path: str, original: str) -> None:
        """Before lowering ``path``'s limit: note its ``original`` value."""
        note = self._note(path)
        if note is None:
            return
        note.parent.mkdir(parents=True, exist_ok=True)
        tmp = note.with_suffix(".tmp")
        tmp.write_text(original + "\n")
        tmp.replace(note)

    def done(self, path: str) -> None:
        """After the limit was restored."""
        note = self._note(path)
        if note is not None:
            note.unlink(missing_ok=True)

    def _hold_note(self, path: str) -> Path | None:
        if self.state_dir is None:
            return None
        return self.state_dir / f"v1-hold.{quote(path, safe='')}"

    def keep_hold(self, path: str, limit: str, oom_kill_disable: str) -> None:
        """Before holding ``path``'s tasks at a tripwire: what to put back when zoned lets
        go (read again by the next start if zoned dies meanwhile)."""
        note = self._hold_note(path)
        if note is None:
            return
        note.parent.mkdir(parents=True, exist_ok=True)
        tmp = note.with_suffix(".tmp")
        tmp.write_text(f"{limit} {oom_kill_disable}\n")
        tmp.replace(note)

    def hold_of(self, path: str) -> tuple[str, str] | None:
        """The values a hold (of an earlier run) replaced, if a note says so."""
        note = self._hold_note(path)
        if note is None:
            return None
        try:
            fields = note.read_text().split()
        except FileNotFoundError:
            return None
        if len(fields) == 2 and fields[1] in ("0", "1") and fields[0].lstrip("-").isdigit():
            return fields[0], fields[1]
        return None

    def drop_hold(self, path: str) -> None:
        """After the hold's limit and OOM killer were put back."""
        note = self._hold_note(path)
        if note is not None:
            note.unlink(missing_ok=True)

    def restore(self, path: str) -> bool:
        """Put back a limit an interrupted reclaim left lowered; True when one was."""
        note = self._note(path)
        if note is None:
            return False
        try:
            original = note.read_text().strip()
        except FileNotFoundError:
            return False
        if original and (original == "-1" or original.isdigit()):
            try:
                if self.memory.write_if_changed(path, LIMIT, original):
                    log.warning(
                        "%s: restored %s to %s (left lowered by an interrupted reclaim)",
                        path,
                        LIMIT,
                        original,
                    )
            except CgroupGone:
                pass  # the cgroup is gone: so is its limit
        note.unlink(missing_ok=True)
        return True
