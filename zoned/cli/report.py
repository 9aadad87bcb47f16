"""What a run did, for people and for programs: a timeline of decisions with their reasons,
a per-container summary, and the same as JSON. ``Sample`` is one instant of a run (node
owners, usage against capacity), what the plot is drawn from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from zoned.engine import Engine
from zoned.model.decisions import LogRecord, record_fields
from zoned.model.nodelist import format_nodelist
from zoned.model.sizes import format_size


@dataclass(frozen=True)
class Usage:
    """One container at one sample (bytes)."""

    current: int
    anon: int
    capacity: int


@dataclass(frozen=True)
class Sample:
    """The zone map and usage at time ``at`` (seconds)."""

    at: float
    owners: Mapping[int, str]  # node → owner label (a container name, "free", ...)
    usage: Mapping[str, Usage]


@dataclass(frozen=True)
class ContainerSummary:
    """One container over the whole run."""

    name: str
    peak_current: int
    peak_anon: int
    stall_s: float | None  # None when the backend cannot tell
    oom_kills: int
    nodes_gained: int
    nodes_lost: int
    bytes_migrated: int
    nodes_at_end: tuple[int, ...]


@dataclass(frozen=True)
class HostFacts:
    """What the host measured for one container over a run (the ground truth)."""

    peak_current: int
    peak_anon: int
    stall_s: float | None  # "some" stall; None when the host cannot tell
    oom_kills: int
    bytes_migrated: int


def summarize(
    names: Sequence[str],
    facts: Mapping[str, HostFacts],
    engine: Engine | None,
    nodes_at_end: Mapping[str, frozenset[int]],
) -> tuple[ContainerSummary, ...]:
    """One row per container in ``names`` order: the host's facts, plus the nodes the
    engine moved (none without an engine)."""
    out = []
    for name in names:
        f = facts.get(name, HostFacts(0, 0, None, 0, 0))
        st = engine.stats.get(name) if engine is not None else None
        out.append(
            ContainerSummary(
                name=name,
                peak_current=f.peak_current,
                peak_anon=f.peak_anon,
                stall_s=f.stall_s,
                oom_kills=f.oom_kills,
                nodes_gained=st.nodes_gained if st else 0,
                nodes_lost=st.nodes_lost if st else 0,
                bytes_migrated=f.bytes_migrated,
                nodes_at_end=tuple(sorted(nodes_at_end.get(name, frozenset()))),
            )
        )
    return tuple(out)


# ---------------------------------------------------------------------------------------
# text

# Tripwire re-arming follows every node change; it is noise in a timeline for people.
QUIET_KINDS = frozenset({"tripwire"})


def format_timeline(log: Sequence[LogRecord], *, verbose: bool = False) -> str:
    """One entry per decision: time, what, how it ended, then why; retries and failures
    under it. ``verbose`` adds the tripwire updates."""
    later: dict[int, list[LogRecord]] = {}
    firsts: list[LogRecord] = []
    for r in log:
        if r.action is not None and id(r.action) in later:
            later[id(r.action)].append(r)
            continue
        if r.action is not None:
            later[id(r.action)] = []
        firsts.append(r)
    lines = []
    for r in firsts:
        if r.kind in QUIET_KINDS and not verbose:
            continue
        ends = later.get(id(r.action), []) if r.action is not None else []
        status = r.outcome
        if ends:
            last = ends[-1]
            status = last.outcome + (f" (at {last.at:.1f}s)" if last.at - r.at >= 0.05 else "")
        what = r.what
        if r.outcome == "would have":
            what, status = "would have: " + r.what, ""
        if r.kind == "note":
            what, status = "", ""
        lines.append(f"{r.at:8.1f}s  {r.kind:<16} {what:<44} {status}".rstrip())
        if r.kind != "admit":
            lines.append(f"{'':11}{r.reason}")
        for e in ends[:-1]:
            lines.append(f"{'':11}at {e.at:.1f}s: {e.outcome}")
    return "\n".join(lines)


def _held(nodes: Sequence[int]) -> str:
    """``2 nodes (3-4)``: how many nodes, then which (the ids alone read like a count)."""
    n = len(nodes)
    ids = f" ({format_nodelist(nodes)})" if n else ""
    return f"{n} node{'s' if n != 1 else ''}{ids}"


def format_summary(rows: Sequence[ContainerSummary]) -> str:
    """A table: one row per container; "held at end" counts the nodes it held when the run
    ended, then names them."""
    head = (
        "container",
        "peak usage",
        "peak anon",
        "stall",
        "OOM kills",
        "gained",
        "lost",
        "migrated",
        "held at end",
    )
    body = [
        (
            r.name,
            format_size(r.peak_current),
            format_size(r.peak_anon),
            "-" if r.stall_s is None else f"{r.stall_s:.1f}s",
            str(r.oom_kills),
            str(r.nodes_gained),
            str(r.nodes_lost),
            format_size(r.bytes_migrated),
            _held(r.nodes_at_end),
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    out = []
    for row in (head, *body):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def to_json(
    log: Sequence[LogRecord],
    rows: Sequence[ContainerSummary],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run as plain JSON-able data: ``decisions`` (every log record) and ``summary``."""
    return {
        **(dict(extra) if extra else {}),
        "decisions": [{"at": round(r.at, 3), **record_fields(r)} for r in log],
        "summary": [{**asdict(r), "nodes_at_end": list(r.nodes_at_end)} for r in rows],
    }
