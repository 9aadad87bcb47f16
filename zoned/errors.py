"""The one exception hierarchy of zoned.

Every error zoned raises on purpose is a ``ZonedError``; the CLI catches it and prints
its lines. OS errors are translated at the backend boundary (``raise BackendError(...)
from exc``) and keep their errno, so callers can tell an ordinary outcome (a vanished
cgroup) from a real failure::

    ZonedError
    ├── ConfigError         a configuration is invalid (every Problem, with file:line:col;
    │                       exit status 78, EX_CONFIG; every other ZonedError exits 1)
    ├── TopologyError       the NUMA topology cannot be read or does not suit
    ├── PlacementError      the declared containers do not fit the machine
    ├── ControlError        the control socket is unreachable or refused a request
    ├── SharedZoneError     the shared zone cannot be warmed
    ├── NumaMapsError       a numa_maps line the kernel would not print   (also ValueError)
    ├── PagemapError        pagemap gives no PFNs                          (also OSError)
    ├── EngineError         an engine's container data (OCI state, inspect) is unusable
    └── BackendError        a host operation failed (.errno kept)
        ├── CgroupGone          the cgroup or process vanished: an ordinary outcome
        ├── WriteRefused        the kernel refused a write
        ├── EffectiveMismatch   cpuset.mems granted differs from what was asked
        └── Unsupported         the kernel or hierarchy lacks something zoned needs
"""

from __future__ import annotations

import errno as _errno
from dataclasses import dataclass

from zoned.model.nodelist import format_nodelist as fmt_nodes


class ZonedError(Exception):
    """Base of every error zoned raises deliberately; ``zoned`` exits with ``exit_status``."""

    exit_status = 1


EX_CONFIG = 78  # sysexits.h: the unit's RestartPreventExitStatus= does not restart on it


@dataclass(frozen=True)
class Location:
    """Where something was written: ``file:line:column`` (1-based), for error messages."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One problem found in a configuration, with where it is."""

    where: Location | None
    message: str

    def __str__(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        return f"{prefix}{self.message}"


class ConfigError(ZonedError):
    """A configuration is invalid; ``problems`` lists every problem found, in file order.
    Exit status 78 (EX_CONFIG): retrying will not help until the file changes."""

    exit_status = EX_CONFIG

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class TopologyError(ZonedError):
    """The machine's NUMA topology could not be read or does not suit the request."""


class PlacementError(ZonedError):
    """The declared containers do not fit the machine; the message names who and by how much."""


class BackendError(ZonedError):
    """A host operation failed. ``errno`` is kept when an OS error caused it."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        self.errno = errno
        super().__init__(message)

    @property
    def errno_name(self) -> str | None:
        return _errno.errorcode.get(self.errno, str(self.errno)) if self.errno else None


class CgroupGone(BackendError):
    """The cgroup (or process) vanished: an ordinary outcome, to be logged, not a crash."""


class WriteRefused(BackendError):
    """The kernel refused a write (EINVAL, ENOSPC, EBUSY, EACCES, ...)."""


class EffectiveMismatch(BackendError):
    """A ``cpuset.mems`` write was accepted but the kernel granted a different set."""

    def __init__(self, requested: frozenset[int], effective: frozenset[int]) -> None:
        self.requested = requested
        self.effective = effective
        super().__init__(
            f"asked for nodes {fmt_nodes(requested)}, kernel granted {fmt_nodes(effective)}"
        )


class Unsupported(BackendError):
    """The kernel or hierarchy lacks something zoned needs (a controller, PSI, nodes)."""


class ControlError(ZonedError):
    """The control socket could not be reached or refused a request."""


class SharedZoneError(ZonedError):
    """The shared zone cannot be warmed (no shared nodes, helper failed, ...)."""


class EngineError(ZonedError):
    """An engine's data about a container (OCI state on stdin, ``podman inspect``
    output) is malformed or cannot be had; the text says which and where."""


class NumaMapsError(ZonedError, ValueError):
    """A ``numa_maps`` line the kernel would not print (a ValueError, as parsers raise)."""


class PagemapError(ZonedError, OSError):
    """Pagemap gives no PFNs (not CAP_SYS_ADMIN, or no CONFIG_PROC_PAGE_MONITOR)."""
