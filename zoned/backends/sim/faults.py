"""Injectable faults: the ways a real host misbehaves, on cue.

In a scenario's ``faults:`` list, each a mapping with a ``kind``::

    - {kind: set_nodes_error, container: web, errno: EBUSY, after_s: 10, times: 1}
        the next cpuset.mems write for web started at or after 10 s fails at once with
        EBUSY (any errno name: ENOSPC, EINVAL, ...); the nodes stay as they were
    - {kind: gone, container: batch, at_s: 300}
        batch's cgroup vanishes at 300 s: a GONE event, its memory is freed, and every
        later call about it raises CgroupGone
    - {kind: partial_migration, container: web, leave: 100M, after_s: 0, times: 1}
        the next migration ends ok but leaves ``leave`` bytes (or ``fraction: 0.5`` of
        what it had to move) on the removed nodes
    - {kind: slow_migration, container: web, bandwidth: 5M, after_s: 0, times: 1}
        the next migration runs at 5M/s (or ``factor: 10`` times slower); when it passes
        its deadline the op ends with ok=False, errno ETIMEDOUT, and the migration goes on
        in the background as the kernel's blocked write would

``container`` may be omitted: the fault then hits the first container it can. ``times``
(default 1) is how many operations a fault affects.
"""

from __future__ import annotations

import errno as errno_mod
from dataclasses import dataclass

from zoned.config.plain import (
    Doc,
    as_errno,
    as_int,
    as_list,
    as_mapping,
    as_number,
    as_rate,
    as_seconds,
    as_size,
    as_str,
    check_keys,
    empty_doc,
)


@dataclass(frozen=True)
class SetNodesError:
    errno: int = errno_mod.EBUSY
    container: str | None = None
    after_s: float = 0.0
    times: int = 1


@dataclass(frozen=True)
class Gone:
    container: str
    at_s: float


@dataclass(frozen=True)
class PartialMigration:
    container: str | None = None
    leave: int | None = None  # bytes left behind, or...
    fraction: float | None = None  # ...this fraction of what had to move
    after_s: float = 0.0
    times: int = 1


@dataclass(frozen=True)
class SlowMigration:
    container: str | None = None
    bandwidth: int | None = None  # bytes/s, or...
    factor: float | None = None  # ...the host's bandwidth divided by this
    after_s: float = 0.0
    times: int = 1


Fault = SetNodesError | Gone | PartialMigration | SlowMigration

KINDS = ("set_nodes_error", "gone", "partial_migration", "slow_migration")


def parse_faults(value: object, path: str = "faults", doc: Doc | None = None) -> tuple[Fault, ...]:
    """Faults from the YAML list above; ConfigError names the bad field."""
    d = doc or empty_doc()
    out: list[Fault] = []
    for i, item in enumerate(as_list(d, value, path)):
        p = f"{path}[{i}]"
        m = as_mapping(d, item, p)
        kind = as_str(d, m.get("kind"), f"{p}.kind")
        ctr = as_str(d, m["container"], f"{p}.container") if "container" in m else None
        after = as_seconds(d, m.get("after_s", 0.0), f"{p}.after_s")
        times = as_int(d, m.get("times", 1), f"{p}.times")
        if times < 1:
            raise d.fail(f"{p}.times", "must be at least 1")
        common = ("kind", "container", "after_s", "times")
        if kind == "set_nodes_error":
            check_keys(d, m, p, (*common, "errno"))
            code = as_errno(d, m.get("errno", "EBUSY"), f"{p}.errno")
            out.append(SetNodesError(errno=code, container=ctr, after_s=after, times=times))
        elif kind == "gone":
            check_keys(d, m, p, ("kind", "container", "at_s"), ("container", "at_s"))
            assert ctr is not None
            out.append(Gone(container=ctr, at_s=as_seconds(d, m["at_s"], f"{p}.at_s")))
        elif kind == "partial_migration":
            check_keys(d, m, p, (*common, "leave", "fraction"))
            leave = as_size(d, m["leave"], f"{p}.leave") if "leave" in m else None
            frac = as_number(d, m["fraction"], f"{p}.fraction") if "fraction" in m else None
            if (leave is None) == (frac is None):
                raise d.fail(p, "give exactly one of leave (bytes) or fraction")
            if frac is not None and not 0.0 <= frac <= 1.0:
                raise d.fail(f"{p}.fraction", "expected 0 <= fraction <= 1")
            out.append(PartialMigration(ctr, leave, frac, after, times))
        elif kind == "slow_migration":
            check_keys(d, m, p, (*common, "bandwidth", "factor"))
            bw = as_rate(d, m["bandwidth"], f"{p}.bandwidth") if "bandwidth" in m else None
            factor = as_number(d, m["factor"], f"{p}.factor") if "factor" in m else None
            if (bw is None) == (factor is None):
                raise d.fail(p, "give exactly one of bandwidth or factor")
            if (bw is not None and bw <= 0) or (factor is not None and factor <= 0):
                raise d.fail(p, "bandwidth and factor must be above zero")
            out.append(SlowMigration(ctr, bw, factor, after, times))
        else:
            raise d.fail(f"{p}.kind", f"found {kind!r}; expected one of {', '.join(KINDS)}")
    return tuple(out)
