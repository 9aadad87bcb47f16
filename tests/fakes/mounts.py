"""A fake mount(2) against a fake mountinfo: what the shared tmpfs code mounts and sees."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from zoned.shared.tmpfsplan import MS_REMOUNT


@dataclass
class FakeKernel:
    """mount(2) against a fake mountinfo under ``proc``: a mount appends a line, a remount
    rewrites the super options it is given. ``fail`` maps a target to an errno; ``ignore``
    accepts a call and changes nothing (to test the verification)."""

    proc: Path
    lines: list[str]
    calls: list[tuple[str, str, str | None, int, str]] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)
    ignore: bool = False
    next_id: int = 100

    def __post_init__(self) -> None:
        (self.proc / "self").mkdir(parents=True, exist_ok=True)
        self.save()

    def save(self) -> None:
        (self.proc / "self" / "mountinfo").write_text("".join(f"{x}\n" for x in self.lines))

    def __call__(self, source: str, target: str, fstype: str | None, flags: int, data: str) -> None:
        self.calls.append((source, target, fstype, flags, data))
        if target in self.fail:
            code = self.fail[target]
            raise OSError(code, os.strerror(code), target)
        if self.ignore:
            return
        opts = dict(o.partition("=")[::2] for o in data.split(","))
        if flags & MS_REMOUNT:
            for i, line in enumerate(self.lines):
                fields = line.split(" ")
                if fields[4] == target:
                    sup = dict(o.partition("=")[::2] for o in fields[-1].split(","))
                    sup.update({k: v for k, v in opts.items() if k in ("mpol", "size")})
                    fields[-1] = ",".join(f"{k}={v}" if v else k for k, v in sup.items())
                    self.lines[i] = " ".join(fields)
        else:
            size = f",size={int(opts['size']) // 1024}k" if "size" in opts else ""
            self.lines.append(
                f"{self.next_id} 1 0:99 / {target} rw,nosuid,nodev,relatime - tmpfs tmpfs"
                f" rw{size},inode64,mpol={opts['mpol']}"
            )
            self.next_id += 1
        self.save()
