"""Prometheus metrics (off by default): ``--metrics 127.0.0.1:9799`` or ``unix:/path``.

Updated from the event loop after each step (``Metrics.update``), served by
``zoned.service.metricsserver`` on one thread of its own (reading the registry is
thread-safe), so a slow scraper never delays the loop, and with bounded connections, so
local users cannot take it (or the daemon's fds) down.

One metric per quantity, in bytes and seconds, so that ``sum()`` over any label means
something (https://prometheus.io/docs/practices/naming/)::

    zoned_build_info{version,python,backend}            1
    zoned_node_owner{node,owner,kind}                   1 for the current owner of each node
    zoned_node_memory_total_bytes{node}
    zoned_node_memory_free_bytes{node}
    zoned_container_memory_bytes{container}            all its memcg holds (current)
    zoned_container_anon_bytes{container}
    zoned_container_unreclaimable_bytes{container}     anon, shmem, kernel ("anon" in reasons)
    zoned_container_file_bytes{container}              page cache, shmem included
    zoned_container_capacity_bytes{container}          the size of its nodes
    zoned_container_tripwire_bytes{container}          0: none armed
    zoned_container_headroom_ratio{container}          capacity not taken by unreclaimable, 0..1
    zoned_container_nodes{container}
    zoned_decisions_total{kind,outcome,reason}          reason: a small fixed vocabulary
    zoned_tripwire_to_action_seconds                   tripwire event → hand-over started
    zoned_oom_kills_total{container}
    zoned_handovers_total{kind,outcome}                 lend|reclaim|return, done|failed|cancelled
    zoned_handovers_in_flight
    zoned_handover_duration_seconds{kind}              started → done (done ones only)
    zoned_handover_migrated_bytes_total{container}     moved off a node the container gave up
    zoned_handover_left_behind_bytes_total{container}  still on it when it was handed on
    zoned_reloads_total{result}                         applied|refused|unchanged
    zoned_config_last_reload_success                   0 after a refused reload, else 1
    zoned_config_last_reload_timestamp_seconds         Unix time of the last reload (or start)

plus prometheus_client's ``process_*`` (read under the injected /proc) and ``python_*``.
Counters exist at 0 for every label value known in advance (each declared container, each
kind and outcome) before their first event. Per-container gauges of a container that left
(released on reload, cgroup gone) are removed, so no series outlives its subject.
"""

from __future__ import annotations

import logging
import platform
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from zoned import __version__
from zoned.engine import Engine
from zoned.kernel.roots import PROC_ROOT
from zoned.model.actions import Action, Lend, Reclaim, movers
from zoned.model.decisions import LogRecord
from zoned.service.metricsserver import MetricsServer, serve

log = logging.getLogger(__name__)

# No ``*_created`` series: in the text format each is a gauge family of its own, one series
# per counter and histogram child, which doubles the page for nothing a query uses. The
# switch is process-wide; the daemon's registry is the only one it serves.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

# Words in a reason → the label value; the first match wins. Reasons themselves carry
# numbers and names, which would make a label of unbounded cardinality.
_REASONS = (
    ("operator", "operator"),
    ("reload", "reload"),
    ("declared", "reload"),
    ("tripwire", "tripwire"),
    ("stall", "pressure"),
    ("pressure", "pressure"),
    ("idle", "idle"),
    ("oom", "oom"),
    ("vanished", "gone"),
    ("placement", "placement"),
    ("capacity", "capacity"),
)

HANDOVER_KINDS = ("lend", "reclaim", "return")
HANDOVER_OUTCOMES = ("done", "failed", "cancelled")
RELOAD_RESULTS = ("applied", "refused", "unchanged")
# The code of a record that ends a hand-over → its outcome label (LogRecord.code: the
# structured outcome, so no wording of the text can be miscounted).
_ENDS = {"done": "done", "failed": "failed", "cancelled": "cancelled"}
# A hand-over takes from 10 ms (a lend on an idle host) to the migration deadline (60 s by
# default) and a little past it (a write the kernel still runs).
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)


def reason_class(rec: LogRecord) -> str:
    text = f"{rec.reason} {rec.what}".lower()
    return next((label for word, label in _REASONS if word in text), "other")


def outcome_class(outcome: str) -> str:
    """The word of ``outcome`` that classes it (``started``, ``done``, ``gave_up``, …):
    its first words, or a whole word before its first colon ("abandoned" is not "done")."""
    head = outcome.split(":", maxsplit=1)[0]
    for word in (
        "would have",
        "started",
        "done",
        "failed",
        "gave up",
        "abandoned",
        "armed",
        "recorded",
        "created",
        "adopted",
        "released",
        "noted",
    ):
        if outcome.startswith(word) or re.search(rf"\b{word}\b", head):
            return word.replace(" ", "_")
    return "other"


def reload_result(result: Mapping[str, object]) -> str | None:
    """The ``result`` label of a reload's answer (``Daemon.reload``); None while deferred
    (it is counted when it runs)."""
    if not result.get("ok"):
        return "refused"
    if result.get("deferred"):
        return None
    return "applied" if result.get("changes") else "unchanged"


class Metrics:
    """The metric families and how to fill them from the engine.

    ``backend``: its name for ``zoned_build_info``; ``proc_root``: where the process
    metrics read ``self/``; ``wall``: the clock of the reload timestamp (Unix time)."""

    def __init__(
        self,
        *,
        backend: str = "",
        proc_root: Path = PROC_ROOT,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._wall = wall
        ProcessCollector(proc=str(proc_root), registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Info("zoned_build", "the running zoned", registry=r).info(
            {"version": __version__, "python": platform.python_version(), "backend": backend}
        )
        self.node_owner = Gauge(
            "zoned_node_owner",
            "1 for the owner of each node",
            ["node", "owner", "kind"],
            registry=r,
        )
        self.node_total = Gauge(
            "zoned_node_memory_total_bytes", "node size", ["node"], unit="bytes", registry=r
        )
        self.node_free = Gauge(
            "zoned_node_memory_free_bytes",
            "free memory on the node",
            ["node"],
            unit="bytes",
            registry=r,
        )
        ctr = ["container"]
        self.ctr_gauges: dict[str, Gauge] = {
            "current": Gauge(
                "zoned_container_memory_bytes",
                "all its memcg holds (memory.current)",
                ctr,
                unit="bytes",
                registry=r,
            ),
            "anon": Gauge(
                "zoned_container_anon_bytes", "anonymous memory", ctr, unit="bytes", registry=r
            ),
            "unreclaimable": Gauge(
                "zoned_container_unreclaimable_bytes",
                "what the kernel cannot drop: anon, shmem, kernel memory",
                ctr,
                unit="bytes",
                registry=r,
            ),
            "file": Gauge(
                "zoned_container_file_bytes",
                "page cache, shmem included",
                ctr,
                unit="bytes",
                registry=r,
            ),
            "capacity": Gauge(
                "zoned_container_capacity_bytes",
                "the size of its nodes",
                ctr,
                unit="bytes",
                registry=r,
            ),
            "tripwire": Gauge(
                "zoned_container_tripwire_bytes",
                "its armed tripwire (0: none)",
                ctr,
                unit="bytes",
                registry=r,
            ),
            "headroom": Gauge(
                "zoned_container_headroom_ratio",
                "capacity not taken by unreclaimable memory",
                ctr,
                unit="ratio",
                registry=r,
            ),
            "nodes": Gauge("zoned_container_nodes", "nodes held", ctr, registry=r),
        }
        self.decisions = Counter(
            "zoned_decisions",
            "engine decisions and outcomes",
            ["kind", "outcome", "reason"],
            registry=r,
        )
        self.latency = Histogram(
            "zoned_tripwire_to_action_seconds",
            "from a tripwire event to the start of the hand-over it caused",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            unit="seconds",
            registry=r,
        )
        self.oom = Counter("zoned_oom_kills", "kernel OOM kills seen", ctr, registry=r)
        self.handovers = Counter(
            "zoned_handovers", "hand-overs ended, by outcome", ["kind", "outcome"], registry=r
        )
        self.in_flight = Gauge("zoned_handovers_in_flight", "hand-overs running", registry=r)
        self.duration = Histogram(
            "zoned_handover_duration_seconds",
            "from the start of a hand-over to its end (done ones only)",
            ["kind"],
            buckets=DURATION_BUCKETS,
            unit="seconds",
            registry=r,
        )
        self.migrated = Counter(
            "zoned_handover_migrated_bytes",
            "bytes moved off the nodes a container gave up",
            ctr,
            unit="bytes",
            registry=r,
        )
        self.left_behind = Counter(
            "zoned_handover_left_behind_bytes",
            "its bytes still on a node when the node was handed on",
            ctr,
            unit="bytes",
            registry=r,
        )
        self.reloads = Counter(
            "zoned_reloads", "configuration reloads, by result", ["result"], registry=r
        )
        self.reload_ok = Gauge(
            "zoned_config_last_reload_success",
            "0 when the last reload was refused, else 1 (the file loaded at start counts)",
            registry=r,
        )
        self.reload_at = Gauge(
            "zoned_config_last_reload_timestamp_seconds",
            "Unix time of the last reload, or of the start",
            unit="seconds",
            registry=r,
        )
        for kind in HANDOVER_KINDS:
            self.duration.labels(kind)
            for outcome in HANDOVER_OUTCOMES:
                self.handovers.labels(kind, outcome)
        for result in RELOAD_RESULTS:
            self.reloads.labels(result)
        self.reload_ok.set(1)  # a daemon runs only with a configuration that loaded
        self.reload_at.set(wall())
        self._seen = 0
        self._owners: dict[str, tuple[str, str]] = {}
        self._counted: dict[str, tuple[int, int, int]] = {}  # oom kills, migrated, left
        self._shown: set[str] = set()  # containers with gauge series
        self._tripped: dict[str, float] = {}
        # Hand-overs started and not yet ended: id(action) → kind, started at, action (held
        # here, so its id is not reused while it is a key).
        self._open: dict[int, tuple[str, float, Action]] = {}

    def tripwire(self, container: str, at: float) -> None:
        """A tripwire event (engine clock); the first one since the last action counts."""
        self._tripped.setdefault(container, at)

    def reloaded(self, result: Mapping[str, object]) -> None:
        """A reload's answer (``Daemon.reload``): count it, and say whether it applied."""
        res = reload_result(result)
        if res is None:
            return
        self.reloads.labels(res).inc()
        self.reload_ok.set(0 if res == "refused" else 1)
        self.reload_at.set(self._wall())

    def update(self, engine: Engine) -> None:
        """Bring every metric up to the engine's state (engine thread)."""
        new: Sequence[LogRecord] = engine.log[self._seen :]
        self._seen = len(engine.log)
        for rec in new:
            self.decisions.labels(rec.kind, outcome_class(rec.outcome), reason_class(rec)).inc()
            a = rec.action
            if isinstance(a, Lend | Reclaim) and rec.outcome == "started":
                t = self._tripped.pop(a.to, None)
                if t is not None:
                    self.latency.observe(max(0.0, rec.at - t))
            if rec.kind in HANDOVER_KINDS and a is not None:
                self._handover(rec, a)
        # A hand-over whose container vanished ends without a record of its own.
        for key, (kind, _, act) in list(self._open.items()):
            if any(name not in engine.managed for name in movers(act)):
                del self._open[key]
                self.handovers.labels(kind, "cancelled").inc()
        self.in_flight.set(len(engine.pending()))
        self._update_owners(engine)
        self._update_counters(engine)
        self._update_gauges(engine)

    def _handover(self, rec: LogRecord, action: Action) -> None:
        """Follow one hand-over from its ``started`` record to the record that ends it."""
        if rec.code == "started":
            self._open[id(action)] = (rec.kind, rec.at, action)
            return
        end = _ENDS.get(rec.code)
        if end is None:  # a retry, a write still in the kernel: not the end
            return
        opened = self._open.pop(id(action), None)
        if opened is None:  # ended already (counted as cancelled when its container went)
            return
        self.handovers.labels(rec.kind, end).inc()
        if end == "done":
            self.duration.labels(rec.kind).observe(max(0.0, rec.at - opened[1]))

    def _update_owners(self, engine: Engine) -> None:
        for asg in engine.zonemap:
            key = str(asg.node)
            label = (str(asg.owner), asg.owner.kind.value)
            old = self._owners.get(key)
            if old != label:
                if old is not None:
                    self.node_owner.remove(key, *old)
                self.node_owner.labels(key, *label).set(1)
                self._owners[key] = label

    def _update_counters(self, engine: Engine) -> None:
        """Per-container counters: at 0 from the moment a container is declared, then
        the engine's running totals (``ContainerStats``) as increments."""
        counters = (self.oom, self.migrated, self.left_behind)
        names = {c.name for c in engine.decls.containers} | engine.stats.keys()
        for name in sorted(names):
            st = engine.stats.get(name)
            now = (st.oom_kills, st.bytes_migrated, st.bytes_left_behind) if st else (0, 0, 0)
            before = self._counted.get(name, (0, 0, 0))
            for counter, was, value in zip(counters, before, now, strict=True):
                child = counter.labels(name)  # the series exists at 0 from now on
                if value > was:
                    child.inc(value - was)
            self._counted[name] = now

    def _update_gauges(self, engine: Engine) -> None:
        snap = engine.last_snapshot
        if snap is None:
            return
        for n, v in snap.nodes.items():
            self.node_total.labels(str(n)).set(v.total)
            self.node_free.labels(str(n)).set(v.free)
        g = self.ctr_gauges
        for name, c in snap.containers.items():
            cap = snap.capacity(c.nodes)
            g["current"].labels(name).set(c.current)
            g["anon"].labels(name).set(c.anon)
            g["unreclaimable"].labels(name).set(c.unreclaimable)
            g["file"].labels(name).set(c.file)
            g["capacity"].labels(name).set(cap)
            g["tripwire"].labels(name).set(c.tripwire or 0)
            g["headroom"].labels(name).set((cap - c.unreclaimable) / cap if cap else 0.0)
            g["nodes"].labels(name).set(len(c.nodes))
        for gone in self._shown - snap.containers.keys():
            for gauge in g.values():
                gauge.remove(gone)
        self._shown = set(snap.containers)


__all__ = ["Metrics", "MetricsServer", "serve"]
