"""What a reload changes: two configurations compared, in words.

Some keys cannot change on a running daemon (they fix the hierarchy or the shared zone);
those come back as refusals, the rest as changes to log.
"""

from __future__ import annotations

import dataclasses

from zoned.config.decl import Declarations

_RESTART_HOST = (
    "cgroup_root",
    "hierarchy",
    "parent",
    "delegation",
    "reserved_nodes",
    "shared_nodes",
    "shared_count",
)


def config_diff(old: Declarations, new: Declarations) -> tuple[list[str], list[str]]:
    """(refusals, changes) between two configurations, in words."""
    refusals: list[str] = []
    changes: list[str] = []
    for key in _RESTART_HOST:
        a, b = getattr(old.host, key), getattr(new.host, key)
        if a != b:
            refusals.append(f"host.{key} changed ({a!r} → {b!r}): that needs a restart")
    if old.host.shared_paths != new.host.shared_paths:
        changes.append("host.shared_paths changed")
    if old.host.shared_tmpfs != new.host.shared_tmpfs:
        changes.append("host.shared_tmpfs changed")
    if old.host.headroom_pct != new.host.headroom_pct:
        changes.append(f"host.headroom_pct {old.host.headroom_pct:g} → {new.host.headroom_pct:g}")
    for f in dataclasses.fields(old.policy):
        a, b = getattr(old.policy, f.name), getattr(new.policy, f.name)
        if a != b:
            changes.append(f"policy.{f.name} {a} → {b}")
    before = {c.name: c for c in old.containers}
    after = {c.name: c for c in new.containers}
    for name in after.keys() - before.keys():
        c = after[name]
        changes.append(f"added {name} (min {c.min}, max {c.max}, priority {c.priority})")
    for name in before.keys() - after.keys():
        changes.append(f"removed {name}")
    for name in sorted(before.keys() & after.keys()):
        a, b = before[name], after[name]
        for key in ("cgroup", "shared"):
            if getattr(a, key) != getattr(b, key):
                refusals.append(
                    f"{name}.{key} changed ({getattr(a, key)!r} → {getattr(b, key)!r}): remove the "
                    "container, reload, then declare it again (or restart)"
                )
        diffs = [
            f"{f} {getattr(a, f)} → {getattr(b, f)}"
            for f in ("min", "max", "priority")
            if getattr(a, f) != getattr(b, f)
        ]
        diffs += [
            f"{f} changed" for f in ("match", "shared_paths") if getattr(a, f) != getattr(b, f)
        ]
        if diffs:
            changes.append(f"{name}: " + ", ".join(diffs))
    return refusals, sorted(changes)
