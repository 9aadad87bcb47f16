"""Declarations: the typed, validated form of zoned's YAML configuration.

Plain frozen data. ``zoned.config`` builds it from files; placement and the engine read it.
Every field that came from a file has its location in ``Declarations.locations`` under a
dotted key (``containers.web.min``, ``host.reserved_nodes[1]``) so later checks (placement,
node existence) can point at the line that caused them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Literal

from zoned.config.match import MatchRule
from zoned.errors import Location
from zoned.model.sizes import format_size

Hierarchy = Literal["auto", "v1", "v2"]
Delegation = Literal["auto", "systemd", "cgroupfs"]


class AmountUnit(Enum):
    BYTES = "bytes"
    NODES = "nodes"


@dataclass(frozen=True)
class Amount:
    """A container's ``min`` or ``max``: a size in bytes, or a whole number of nodes."""

    value: int
    unit: AmountUnit

    @classmethod
    def bytes_(cls, n: int) -> Amount:
        return cls(n, AmountUnit.BYTES)

    @classmethod
    def nodes(cls, n: int) -> Amount:
        return cls(n, AmountUnit.NODES)

    def as_json(self) -> dict[str, int | str]:
        """``{"value": 2, "unit": "nodes"}`` or ``{"value": 536870912, "unit": "bytes"}``."""
        return {"value": self.value, "unit": self.unit.value}

    def __str__(self) -> str:
        if self.unit is AmountUnit.NODES:
            return f"{self.value} node" + ("" if self.value == 1 else "s")
        return format_size(self.value)


@dataclass(frozen=True)
class TmpfsDecl:
    """A shared tmpfs zoned mounts with ``mpol=bind:<shared nodes>`` (zoned.shared.tmpfs)."""

    path: str  # the mount point: absolute, normalised, not /
    size: int | None = None  # bytes; None: the kernel's default (half of RAM)
    mode: int = 0o1777  # of its root directory, applied when zoned mounts it


@dataclass(frozen=True)
class HostDecl:
    """Where and how zoned runs on this host."""

    cgroup_root: str = "/sys/fs/cgroup"
    hierarchy: Hierarchy = "auto"
    parent: str = "zoned"  # cgroup (relative to the root) that zoned owns
    # who creates the parent: systemd (a delegated scope, v2 under systemd) or zoned itself
    delegation: Delegation = "auto"
    reserved_nodes: tuple[int, ...] = (0,)  # host and kernel; node 0 holds ZONE_DMA
    shared_nodes: tuple[int, ...] = ()  # explicit shared zone nodes, or...
    shared_count: int = 0  # ...a count of pool nodes to set aside as shared
    shared_paths: tuple[str, ...] = ()  # files/directories warmed into the shared zone
    shared_tmpfs: tuple[TmpfsDecl, ...] = ()  # tmpfs mounts bound to the shared zone
    headroom_pct: float = 15.0  # each container keeps this much of its zones' capacity free


@dataclass(frozen=True)
class PolicyDecl:
    """Engine knobs; every name carries its unit."""

    cooldown_s: float = 10.0  # after a container gains or loses a node, leave it be
    idle_return_s: float = 60.0  # an idle container above min returns a node after this
    tripwire_pct: float = 85.0  # tripwire at this % of the zones' capacity
    shrink_below_pct: float = 50.0  # a container using less than this % of n-1 nodes may shrink
    psi_some_ms: int = 100  # PSI "some" stall per window that counts as pressure
    psi_window_ms: int = 1000
    migrate_timeout_s: float = 120.0  # a cpuset.mems write (page migration) deadline
    reclaim_before_evacuate: bool = True  # directed reclaim when a donor's pages don't fit
    node_reclaim: bool = True  # nodeN/reclaim what a donor leaves on a taken node (6.16+)
    rewarm_interval_s: float = 60.0  # re-warm the shared zone this long after the last one
    rewarm_mib_s: float = 32.0  # the re-warm's read budget, MiB per second
    rewarm_drop_pct: float = 5.0  # re-warm early when the zone's page cache falls this much; 0: off


EngineName = Literal["podman", "docker"]
OnRefusal = Literal["fail", "unzoned"]


@dataclass(frozen=True)
class EngineSelector:
    """Engine containers one rule picks: every field given must hold."""

    engine: EngineName | None = None  # None: any engine
    name: str | None = None  # a shell glob on the engine's container name
    label: tuple[str, str] | None = None  # KEY, VALUE of a label or annotation


@dataclass(frozen=True)
class EngineDecl:
    """A container declaration that engine containers instantiate (``engine:``)."""

    selectors: tuple[EngineSelector, ...]  # any may match
    on_refusal: OnRefusal = "fail"  # the OCI hook's answer when zoned cannot admit one


@dataclass(frozen=True)
class ContainerDecl:
    """One declared container."""

    name: str
    min: Amount
    max: Amount
    priority: int = 0  # higher is more important; the lowest gives nodes back first
    shared: bool = False  # may use the shared zone
    cgroup: str | None = None  # existing cgroup path to adopt; None: zoned creates parent/name
    # Processes that exec into this container: any rule may match (see zoned.policy.rules).
    match: tuple[MatchRule, ...] = ()
    shared_paths: tuple[str, ...] = ()  # more paths to warm into the shared zone for it
    # Engine containers this declaration gives zones to, each its own instance (a template
    # holds no nodes; see Declarations.templates).
    engine: EngineDecl | None = None


@dataclass(frozen=True)
class Declarations:
    """A whole, valid configuration: host, policy, containers in declaration order."""

    host: HostDecl = field(default_factory=HostDecl)
    policy: PolicyDecl = field(default_factory=PolicyDecl)
    containers: tuple[ContainerDecl, ...] = ()
    # Declarations with ``engine:``: not containers until an engine starts one that matches
    # (zoned.policy.engines); they hold no nodes and are not in ``containers``.
    templates: tuple[ContainerDecl, ...] = ()
    files: tuple[str, ...] = ()  # the files read, in order
    locations: Mapping[str, Location] = field(default_factory=lambda: MappingProxyType({}))

    def container(self, name: str) -> ContainerDecl:
        for c in self.containers:
            if c.name == name:
                return c
        raise KeyError(name)

    def where(self, key: str) -> Location | None:
        """Location of a dotted key, or of its nearest enclosing key that has one."""
        while key:
            if key in self.locations:
                return self.locations[key]
            key = key.rsplit(".", 1)[0] if "." in key else ""
        return None
