"""The shared-zone helper: a separate process (``python -m zoned.shared.helper --helper``)
that zoned starts inside the ``zoned.shared`` cgroup, whose cpuset is the shared nodes, so
the files it reads are cached there. It takes one JSON request on stdin and answers with
one JSON line (``zoned.shared.zone.run_helper`` drives it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoned.kernel import mmcalls
from zoned.kernel.roots import PROC_ROOT
from zoned.shared.pages import _resident_offsets
from zoned.shared.zone import CHUNK

# How long the fadvise method waits without a new page before it takes readahead as done.
SETTLE_S = 2.0


def _wait_resident(addr: int, size: int, deadline: float, settle_s: float = SETTLE_S) -> None:
    """Wait until every page of the mapping is resident, or until no page came for
    ``settle_s``, or ``deadline``. WILLNEED reads at most the file system's readahead
    window per call (measured on 9p: ~2 MiB of an 8 MiB file in 1 MiB calls), so the rest
    never comes: without the settle, every such file cost the whole deadline (60 s)."""
    last, since = -1, time.monotonic()
    while True:
        now = time.monotonic()
        vec = mmcalls.resident(addr, size)
        got = sum(v & 1 for v in vec)
        if got == len(vec) or now >= deadline:
            return
        if got > last:
            last, since = got, now
        elif now - since >= settle_s:
            return
        time.sleep(0.01)


def warm_file(
    path: Path,
    method: str,
    *,
    move_to: Sequence[int] = (),
    pace: Pacer | None = None,
) -> dict[str, Any]:
    """Bring ``path`` into the page cache from this process (the helper). Returns
    ``{"path", "size", "read", "seconds", "moved_error"}``; reads only what is not resident."""
    t0 = time.monotonic()
    size = path.stat().st_size
    done = 0
    moved_error = None
    if size == 0:
        return {"path": str(path), "size": 0, "read": 0, "seconds": 0.0, "moved_error": None}
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        addr = mmcalls.map_file(fd, size)
        try:
            vec = mmcalls.resident(addr, size)
            missing = [i for i, v in enumerate(vec) if not v & 1]
            runs = _runs(missing, CHUNK // mmcalls.PAGE)
            if method == "fadvise":
                for first, count in runs:
                    os.posix_fadvise(
                        fd, first * mmcalls.PAGE, count * mmcalls.PAGE, os.POSIX_FADV_WILLNEED
                    )
                    done += count * mmcalls.PAGE
                    if pace:
                        pace.spend(count * mmcalls.PAGE)
                _wait_resident(addr, size, time.monotonic() + 60)
            elif method == "mmap":
                for first, count in runs:
                    mmcalls.touch(addr, (p * mmcalls.PAGE for p in range(first, first + count)))
                    done += count * mmcalls.PAGE
                    if pace:
                        pace.spend(count * mmcalls.PAGE)
            else:
                for first, count in runs:
                    got = os.pread(fd, count * mmcalls.PAGE, first * mmcalls.PAGE)
                    done += len(got)
                    if pace:
                        pace.spend(len(got))
            if move_to:
                vec = mmcalls.resident(addr, size)
                offs = _resident_offsets(vec)
                mmcalls.touch(addr, offs)
                try:
                    mmcalls.mbind(
                        addr, size, move_to, mmcalls.MPOL_MF_MOVE | mmcalls.MPOL_MF_MOVE_ALL
                    )
                except OSError as exc:
                    moved_error = f"mbind: {exc.strerror} (errno {exc.errno})"
        finally:
            mmcalls.unmap(addr, size)
    finally:
        os.close(fd)
    return {
        "path": str(path),
        "size": size,
        "read": min(done, size),
        "seconds": round(time.monotonic() - t0, 4),
        "moved_error": moved_error,
    }


def _runs(pages: list[int], limit: int) -> list[tuple[int, int]]:
    """Consecutive page numbers → [(first, count)], runs at most ``limit`` long."""
    out: list[tuple[int, int]] = []
    for p in pages:
        if out and out[-1][0] + out[-1][1] == p and out[-1][1] < limit:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((p, 1))
    return out


@dataclass
class Pacer:
    """Keeps bytes spent at or below ``rate`` bytes per second by sleeping."""

    rate: float | None
    t0: float = field(default_factory=time.monotonic)
    spent: int = 0
    slept: float = 0.0

    def spend(self, n: int) -> None:
        self.spent += n
        if not self.rate:
            return
        ahead = self.t0 + self.spent / self.rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
            self.slept += ahead


def helper_main() -> int:
    """Read one JSON request from stdin (after the parent placed us), warm, answer."""
    req = json.loads(sys.stdin.readline())
    pace = Pacer(req.get("rate"))
    out = []
    for p in req["paths"]:
        try:
            out.append(warm_file(Path(p), req["method"], move_to=req.get("move_to", ()), pace=pace))
        except OSError as exc:
            out.append({"path": p, "error": f"{exc.strerror or exc} (errno {exc.errno})"})
    status = (PROC_ROOT / "self" / "status").read_text().splitlines()
    key = "Mems_allowed_list:"
    allowed = next((ln[len(key) :].strip() for ln in status if ln.startswith(key)), "")
    print(json.dumps({"files": out, "mems_allowed": allowed, "slept": round(pace.slept, 3)}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--helper"]:
        return helper_main()
    print("usage: python -m zoned.shared.helper --helper (internal; use zoned shared warm)")
    return 2


if __name__ == "__main__":
    sys.exit(main())
