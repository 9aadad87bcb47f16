"""The kernel-capabilities section of ``zoned topology``: what the probe found and the path
zoned takes for each job (``zoned.kernel.capabilities``)."""

from __future__ import annotations

from pathlib import Path

from zoned.kernel.capabilities import Capabilities, jobs


def _where(path: Path | None, extra: str = "") -> str:
    if path is None:
        return "no"
    return f"yes ({path}{', ' + extra if extra else ''})"


def render_capabilities(caps: Capabilities) -> str:
    """The section's text: one line per interface, then one per job."""
    args = {None: "arguments not probed", "ok": "takes swappiness="}.get(
        caps.reclaim_args, f"no arguments ({caps.reclaim_args})"
    )
    trigger = {None: "triggers not probed", "ok": "triggers armable"}.get(
        caps.psi_trigger, f"triggers refused ({caps.psi_trigger})"
    )
    # 27 items on 6.1, 43 on 7.3: the count, and whether those zoned reads are there.
    n = len(caps.numa_stat_fields)
    missing = [f for f in ("anon", "file") if f not in caps.numa_stat_fields]
    fields = f"{n} items" + (f", no {' '.join(missing)}" if missing else ", with anon and file")
    ro = caps.node_reclaim is None or caps.node_reclaim_writable
    lines = [
        f"kernel: {caps.release or 'unknown'} (cgroup hierarchy zoned can use: "
        f"{caps.hierarchy or 'none'})",
        f"  nodeN/reclaim: {_where(caps.node_reclaim, '' if ro else 'read-only here')}",
        f"  memory.reclaim: {_where(caps.memory_reclaim, args)}",
        f"  PSI: {_where(caps.psi, trigger)}",
        f"  cgroup2: {_where(caps.cgroup2, ' '.join(sorted(caps.cgroup2_controllers)))}",
        f"  cgroup v1 cpuset: {_where(caps.v1_cpuset)}",
        f"  cgroup v1 memory: {_where(caps.v1_memory)}",
        f"  memory.numa_stat: {_where(caps.numa_stat, fields if n else '')}",
        f"  DAMON sysfs: {_where(caps.damon_sysfs)}",
        "paths zoned uses:",
    ]
    for j in jobs(caps):
        lines.append(f"  {j.job}: {j.path}" + (f" ({j.note})" if j.note else ""))
    return "\n".join(lines) + "\n"
