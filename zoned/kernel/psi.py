"""PSI triggers (Documentation/accounting/psi.rst) on cgroup v2 ``<res>.pressure`` files.

Protocol: open the file read-write, write ``"some|full <stall_us> <window_us>"`` (with the
terminating NUL, as the kernel doc's example does: ``/proc/pressure/*`` cuts the last byte
of a write otherwise), then poll the fd for ``POLLPRI``. One trigger per fd (a second write
is EBUSY); closing the fd removes the trigger. At most one event per window. When the
cgroup is removed the fd reports ``POLLERR|POLLPRI`` for good: treat that as gone.

6.1 limits (kernel/sched/psi.c, psi_trigger_create): 500 ms <= window <= 10 s,
0 < stall <= window (EINVAL otherwise). Unprivileged windows must be multiples of 2 s only
from 6.4 on; zoned runs as root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from zoned.kernel.cgroupfs import CgroupFs, translated

WINDOW_MIN_US = 500_000
WINDOW_MAX_US = 10_000_000

Kind = Literal["some", "full"]


def trigger_spec(kind: Kind, stall_us: int, window_us: int) -> str:
    """The text to write; ValueError for what the kernel would refuse with EINVAL."""
    if kind not in ("some", "full"):
        raise ValueError(f"PSI trigger kind must be some or full, not {kind!r}")
    if not WINDOW_MIN_US <= window_us <= WINDOW_MAX_US:
        raise ValueError(f"PSI window must be 500000..10000000 us, not {window_us}")
    if not 0 < stall_us <= window_us:
        raise ValueError(f"PSI stall must be 1..window ({window_us}) us, not {stall_us}")
    return f"{kind} {stall_us} {window_us}"


def check_spec(spec: str) -> str:
    """``spec`` itself when it is a trigger the kernel accepts; ValueError otherwise."""
    parts = spec.split()
    if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
        raise ValueError(f"PSI trigger must read 'some|full <stall_us> <window_us>': {spec!r}")
    if parts[0] not in ("some", "full"):
        raise ValueError(f"PSI trigger kind must be some or full, not {parts[0]!r}")
    kind: Kind = "some" if parts[0] == "some" else "full"
    return trigger_spec(kind, int(parts[1]), int(parts[2]))


def describe(spec: str) -> str:
    """``some 100000 1000000`` → ``some 100ms/1000ms`` for event details."""
    kind, stall, window = spec.split()
    return f"{kind} {int(stall) // 1000}ms/{int(window) // 1000}ms"


@dataclass
class PsiTrigger:
    """An armed trigger; poll ``fd`` for ``POLLPRI``. The owner closes it."""

    fd: int
    cgroup: str
    spec: str

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_trigger(fs: CgroupFs, cgroup: str, spec: str, file: str = "memory.pressure") -> PsiTrigger:
    """Arm a trigger on ``cgroup``'s ``file``. CgroupGone if the cgroup vanished,
    WriteRefused for a spec the kernel refuses, Unsupported-like BackendError otherwise."""
    path = fs.path(cgroup, file)
    with translated(f"open {path}"):
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        with translated(f"write {spec!r} to {path}", writing=True):
            os.write(fd, spec.encode() + b"\0")
    except BaseException:
        os.close(fd)
        raise
    return PsiTrigger(fd, cgroup, spec)
