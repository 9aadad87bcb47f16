"""cgroup v1 memory notifications: an eventfd registered through ``cgroup.event_control``.

The kernel protocol (Documentation/admin-guide/cgroup-v1/memory.rst, section 9-11): open
an eventfd and the file to watch, then write ``"<eventfd> <fd of file> <args>"`` to the
same cgroup's ``cgroup.event_control``. The eventfd's counter goes up on each event:

- ``memory.usage_in_bytes`` with ``<bytes>``: usage crossed the threshold, *either way*
  (checked every ~128 page charges, so it is late by up to that much);
- ``memory.pressure_level`` with ``low|medium|critical[,default|hierarchy|local]``;
- ``memory.oom_control`` with no args: the memcg entered OOM (a cpuset-constrained OOM kill
  does not signal it; only the ``oom_kill`` counter shows those).

The kernel holds the registration until the eventfd is closed. When the cgroup is removed,
the kernel signals every registered eventfd once more (measured: ~20 ms after rmdir):
a signal is an event only if the cgroup still exists.

The watched file's fd is only needed during the write; it is closed at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum

from zoned.kernel.cgroupfs import CgroupFs, translated

PRESSURE_LEVELS = ("low", "medium", "critical")
PRESSURE_MODES = ("default", "hierarchy", "local")


class Watch(Enum):
    """What a registration watches, by the file it names."""

    THRESHOLD = "memory.usage_in_bytes"
    PRESSURE = "memory.pressure_level"
    OOM = "memory.oom_control"


@dataclass
class Registration:
    """One registered eventfd. ``fd`` is non-blocking and close-on-exec; poll it for
    readability, then call ``consume()``."""

    fd: int
    cgroup: str
    watch: Watch
    args: str

    def consume(self) -> int:
        """How many events arrived since the last call (0 when none; never blocks)."""
        if self.fd < 0:
            return 0
        try:
            return os.eventfd_read(self.fd)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        """Unregister (the kernel drops the registration when the eventfd closes)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @property
    def closed(self) -> bool:
        return self.fd < 0


def register(fs: CgroupFs, cgroup: str, watch: Watch, args: str = "") -> Registration:
    """Register an eventfd for ``watch`` on ``cgroup`` of the memory hierarchy ``fs``.

    Raises CgroupGone if the cgroup vanished, WriteRefused (EINVAL) for arguments the
    kernel rejects.
    """
    efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    try:
        target = fs.path(cgroup, watch.value)
        with translated(f"open {target}"):
            tfd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fs.write(cgroup, "cgroup.event_control", f"{efd} {tfd} {args}".rstrip())
        finally:
            os.close(tfd)
    except BaseException:
        os.close(efd)
        raise
    return Registration(efd, cgroup, watch, args)


def usage_threshold(fs: CgroupFs, cgroup: str, nbytes: int) -> Registration:
    """Signal when ``memory.usage_in_bytes`` crosses ``nbytes`` (up or down)."""
    if nbytes < 0:
        raise ValueError(f"threshold must be >= 0, not {nbytes}")
    return register(fs, cgroup, Watch.THRESHOLD, str(nbytes))


def pressure_level(
    fs: CgroupFs, cgroup: str, level: str = "low", mode: str = "default"
) -> Registration:
    """Signal at vmpressure ``level`` (``default`` mode also passes events up from
    children; ``local`` only this cgroup's own reclaim)."""
    if level not in PRESSURE_LEVELS or mode not in PRESSURE_MODES:
        raise ValueError(f"bad pressure level {level!r} or mode {mode!r}")
    return register(fs, cgroup, Watch.PRESSURE, f"{level},{mode}")


def oom(fs: CgroupFs, cgroup: str) -> Registration:
    """Signal when the memcg enters OOM (``under_oom``)."""
    return register(fs, cgroup, Watch.OOM)
