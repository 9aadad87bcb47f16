"""Scenario files: a simulated host, its containers' workloads and faults, in one YAML file.

Format (every key but ``config`` is optional; sizes are binary: ``256M`` = 256 MiB)::

    duration_s: 1800               # how long ``zoned simulate`` runs it (default 600)
    topology:
      nodes: [288M, 256M, 256M, 256M]    # node sizes in id order; or count + size:
      # count: 8
      # size: 256M
      # a node may be {size: 256M, base: 40M}
      base: {0: 96M}               # bytes the host and kernel use per node (mapping or
                                   # list); default: 64M on node 0, nothing elsewhere
    config:                        # zoned's configuration, exactly as in a config file
                                   # (read by zoned.config.loads)
      host: {reserved_nodes: [0]}
      policy: {psi_some_ms: 100}
      containers:
        web:   {min: 256M, max: 768M, priority: 10}
        batch: {min: {nodes: 1}, max: {nodes: 3}}
    sim:                           # model knobs (zoned.backends.sim.state.SimKnobs), all optional
      step_ms: 10                  # clock resolution (default 10)
      sample_ms: 1000              # history period (default 1000)
      alloc_rate: 1G               # bytes/s a workload faults in (default 1G)
      throttle_rate: 16M           # above memory.high (default 16M; null: no throttle)
      reclaim_rate: 1G             # page-cache reclaim (default 1G)
      migrate_bandwidth: 125M      # cpuset.mems migration (default 125M: measured, TCG)
      leave_behind: 3M             # left on removed nodes per migration (default 3M)
      oom_after_ms: 10             # blocked allocation before the OOM kill (default 10)
      migrate_overflow: leave      # pages that don't fit: leave (default) or oom_kill
      node_reclaim: false          # the kernel has nodeN/reclaim (6.16+; default false)
      reaction_p50_ms: 41.7        # the engine's reaction time: each step's writes land
      reaction_p99_ms: 72.5        # after a seeded log-normal delay of this p50 / p99
      reaction_seed: 1             # (default 0: at once; measured under TCG: 41.7 / 72.5)
    workloads:                     # per declared container; see zoned.backends.sim.workload
      web:
        restart: true
        phases:
          - {ramp: {anon: 600M, over_s: 30}}
          - {hold_s: 20}
          - {free: {anon: 300M}}
      batch:
        - {file: 200M}
        - {walk: {anon_mean: 300M, sd: 50M, seed: 3, for_s: 60}}
        - {idle_s: 100}
    faults:                        # see zoned.backends.sim.faults
      - {kind: set_nodes_error, container: web, errno: EBUSY, after_s: 10}

PSI thresholds come from ``config.policy`` (``psi_some_ms``, ``psi_window_ms``) unless
``sim:`` sets them. Problems raise ConfigError with ``file:line:column`` and the field's
dotted path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from zoned.backends.sim.faults import Fault, parse_faults
from zoned.backends.sim.host import SimBackend
from zoned.backends.sim.state import Isolation, SimKnobs, SimNode
from zoned.backends.sim.workload import WorkloadSpec, parse_workload
from zoned.config import load as zconfig
from zoned.config.decl import Declarations, PolicyDecl
from zoned.config.plain import (
    Doc,
    as_int,
    as_list,
    as_mapping,
    as_number,
    as_rate,
    as_seconds,
    as_size,
    as_str,
    check_keys,
    load_yaml,
)
from zoned.errors import ConfigError, Problem
from zoned.model.sizes import MIB

DEFAULT_NODE0_BASE = 64 * MIB
DEFAULT_DURATION_S = 600.0


@dataclass(frozen=True)
class Scenario:
    """A whole simulated run: host, declarations, workloads, faults, knobs."""

    nodes: tuple[SimNode, ...]
    decls: Declarations
    workloads: Mapping[str, WorkloadSpec] = field(default_factory=dict)
    faults: tuple[Fault, ...] = ()
    knobs: SimKnobs = field(default_factory=SimKnobs)
    duration_s: float = DEFAULT_DURATION_S
    name: str = "scenario"

    def backend(
        self,
        isolation: Isolation = Isolation.ZONES,
        memcg_limits: Mapping[str, int] | None = None,
    ) -> SimBackend:
        """A fresh simulated host for this scenario (each call starts from zero)."""
        return SimBackend(
            self.nodes,
            workloads=self.workloads,
            faults=self.faults,
            knobs=self.knobs,
            isolation=isolation,
            reserved=self.decls.host.reserved_nodes,
            memcg_limits=memcg_limits,
            parent=self.decls.host.parent,
        )


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file. Raises ConfigError (with file:line) on any problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(None, f"{p}: cannot read scenario: {exc.strerror}")]) from exc
    return loads_scenario(text, str(p))


def loads_scenario(text: str, filename: str = "<scenario>") -> Scenario:
    """A Scenario from YAML text; ``filename`` is used in error messages."""
    doc = load_yaml(text, filename)
    top = as_mapping(doc, doc.value if doc.value is not None else {}, "")
    check_keys(
        doc,
        top,
        "",
        ("duration_s", "topology", "config", "sim", "workloads", "faults", "name"),
        ("config",),
    )
    nodes = _topology(doc, top.get("topology", {"count": 4, "size": "256M"}))
    as_mapping(doc, top["config"], "config")
    decls = _config(doc, text)
    knobs = _knobs(doc, top.get("sim", {}), decls.policy)
    workloads: dict[str, WorkloadSpec] = {}
    names = {c.name for c in decls.containers}
    for name, spec in as_mapping(doc, top.get("workloads", {}), "workloads").items():
        path = f"workloads.{name}"
        if name not in names:
            known = ", ".join(sorted(names)) or "none"
            raise doc.fail(path, f"no declared container {name!r} (declared: {known})")
        workloads[name] = parse_workload(spec, path, doc)
    faults = parse_faults(top.get("faults", []), "faults", doc)
    for i, f in enumerate(faults):
        ctr = getattr(f, "container", None)
        if ctr is not None and ctr not in names:
            raise doc.fail(f"faults[{i}].container", f"no declared container {ctr!r}")
    ids = {n.id for n in nodes}
    for i, r in enumerate(decls.host.reserved_nodes):
        if r not in ids:
            raise doc.fail(f"config.host.reserved_nodes[{i}]", f"no node {r} in the topology")
    return Scenario(
        nodes=nodes,
        decls=decls,
        workloads=workloads,
        faults=faults,
        knobs=knobs,
        duration_s=as_seconds(doc, top.get("duration_s", DEFAULT_DURATION_S), "duration_s"),
        name=as_str(doc, top.get("name", Path(filename).stem), "name"),
    )


def _topology(doc: Doc, value: object) -> tuple[SimNode, ...]:
    m = as_mapping(doc, value, "topology")
    check_keys(doc, m, "topology", ("nodes", "count", "size", "base"))
    sizes: list[tuple[int, int | None]] = []
    if "nodes" in m:
        if "count" in m or "size" in m:
            raise doc.fail("topology", "give either nodes or count + size, not both")
        for i, item in enumerate(as_list(doc, m["nodes"], "topology.nodes")):
            p = f"topology.nodes[{i}]"
            if isinstance(item, dict):
                check_keys(doc, item, p, ("size", "base"), ("size",))
                base = as_size(doc, item["base"], f"{p}.base") if "base" in item else None
                sizes.append((as_size(doc, item["size"], f"{p}.size"), base))
            else:
                sizes.append((as_size(doc, item, p), None))
    else:
        count = as_int(doc, m.get("count", 4), "topology.count")
        if not 1 <= count <= 1024:
            raise doc.fail("topology.count", f"found {count}; expected 1 to 1024 nodes")
        size = as_size(doc, m.get("size", "256M"), "topology.size")
        sizes = [(size, None)] * count
    if not sizes:
        raise doc.fail("topology.nodes", "a host needs at least one node")
    bases: dict[int, int] = {0: DEFAULT_NODE0_BASE}
    if "base" in m:
        bases = {}
        raw = m["base"]
        if isinstance(raw, list):
            for i, b in enumerate(raw):
                bases[i] = as_size(doc, b, f"topology.base[{i}]")
        else:
            for k, b in as_mapping(doc, raw, "topology.base").items():
                try:
                    bases[int(k)] = as_size(doc, b, f"topology.base.{k}")
                except ValueError:
                    raise doc.fail(f"topology.base.{k}", "keys are node ids") from None
    out = []
    for i, (size, base) in enumerate(sizes):
        b = base if base is not None else bases.get(i, 0)
        if b > size:
            raise doc.fail(f"topology.nodes[{i}]", f"base use {b} exceeds the node's size")
        out.append(SimNode(i, size, b))
    for node_id in bases:
        if node_id >= len(sizes):
            raise doc.fail(
                f"topology.base.{node_id}", f"no node {node_id} (there are {len(sizes)})"
            )
    return tuple(out)


def _knobs(doc: Doc, value: object, policy: PolicyDecl) -> SimKnobs:
    m = as_mapping(doc, value, "sim")
    names = tuple(f.name for f in dataclasses.fields(SimKnobs))
    check_keys(doc, m, "sim", names)
    kw: dict[str, object] = {
        "psi_some_ms": policy.psi_some_ms,
        "psi_window_ms": policy.psi_window_ms,
    }
    for k, v in m.items():
        p = f"sim.{k}"
        if k in ("step_ms", "sample_ms", "oom_after_ms", "psi_some_ms", "psi_window_ms"):
            n = as_int(doc, v, p)
            if n <= 0:
                raise doc.fail(p, "must be above zero")
            kw[k] = n
        elif k == "throttle_rate" and v is None:
            kw[k] = None
        elif k in ("alloc_rate", "throttle_rate", "reclaim_rate", "migrate_bandwidth"):
            r = as_rate(doc, v, p)
            if r <= 0:
                raise doc.fail(p, "must be above zero")
            kw[k] = r
        elif k in ("reaction_p50_ms", "reaction_p99_ms"):
            x = as_number(doc, v, p)
            if x < 0:
                raise doc.fail(p, "must be 0 or above")
            kw[k] = x
        elif k == "reaction_seed":
            kw[k] = as_int(doc, v, p)
        elif k == "leave_behind":
            kw[k] = as_size(doc, v, p)
        elif k == "node_reclaim":
            if not isinstance(v, bool):
                raise doc.fail(p, f"found {v!r}; expected true or false")
            kw[k] = v
        elif k == "migrate_overflow":
            if v not in ("leave", "oom_kill"):
                raise doc.fail(p, f"found {v!r}; expected leave or oom_kill")
            kw[k] = v
    try:
        return SimKnobs(**kw)  # type: ignore[arg-type]
    except ValueError as exc:
        raise doc.fail("sim", str(exc)) from None


def _config(doc: Doc, text: str) -> Declarations:
    """Declarations from the ``config:`` block, read by zoned.config itself.

    zoned.config gets the block's original text, padded with blank lines and spaces so its
    ``file:line:column`` are those of the scenario file (its dotted keys start below
    ``config.``).
    """
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    assert isinstance(root, yaml.MappingNode)
    for k, v in root.value:
        if k.value == "config":
            start, end = v.start_mark, v.end_mark
            body = " " * start.column + text[start.index : end.index]
            return zconfig.loads("\n" * start.line + body, doc.filename)
    raise doc.fail("config", "missing")
