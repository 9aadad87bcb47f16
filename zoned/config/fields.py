"""The one table of configuration fields: how each is read from YAML and shown in JSON Schema.

Every key zoned accepts is a ``Field`` with a ``Kind`` (``zoned.config.kinds``). A kind both
parses a composed YAML node and renders its JSON Schema fragment, so ``zoned.config`` and
``zoned.config.schema`` read the same table and cannot drift. Defaults shown in the schema come
from the dataclasses in ``zoned.config.decl``.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, fields
from typing import Any

from zoned.config.decl import ContainerDecl, HostDecl, PolicyDecl, TmpfsDecl
from zoned.config.enginekind import EngineKind
from zoned.config.kinds import (
    JSON,
    SIZE_PATTERN,
    AmountKind,
    BoolKind,
    EnumKind,
    Field,
    IntKind,
    Kind,
    MatchListKind,
    NodeListKind,
    NumberKind,
    PathListKind,
    PatternKind,
    SharedKind,
    StrKind,
    UserKind,
    key_text,
    parse_distinct,
    parse_mapping,
    section_schema,
    size_value,
)
from zoned.config.yamlpos import (
    TAG_INT,
    TAG_NULL,
    TAG_STR,
    MappingNode,
    Node,
    ScalarNode,
    SequenceNode,
    Sink,
    describe,
    quoted,
)

# A container name becomes a cgroup directory name.
# "zoned." is kept for zoned's own cgroups beside the containers (zoned.backends.base).
NAME_PATTERN = r"^(?!zoned\.)[A-Za-z0-9_-][A-Za-z0-9_.-]*$"
NAME_EXPECTED = (
    "a name of letters, digits, '_', '.' and '-', not starting with '.' nor 'zoned.'"
    " (it becomes a cgroup directory name; zoned.* are zoned's own)"
)
#: The kernel's NAME_MAX: the longest directory name, in bytes.
NAME_MAX = 255
#: The kernel's PATH_MAX less the final NUL: the longest path, in bytes.
PATH_MAX = 4095
# Files the kernel puts in every cgroup directory (v1 and v2): a container named like one
# would clash with it. The rule is systemd's (cg_needs_escape): the three v1 files without a
# dot, and any name whose part before the first '.' is "cgroup" or a controller's name.
CONTROL_FILES = frozenset({"tasks", "notify_on_release", "release_agent"})
CONTROL_PREFIXES = frozenset(
    {
        "cgroup", "cpuset", "cpu", "cpuacct", "io", "blkio", "memory", "devices", "freezer",
        "net_cls", "net_prio", "perf_event", "hugetlb", "pids", "rdma", "misc", "dmem", "debug",
    }
)  # fmt: skip
NAME_CLASH_EXPECTED = (
    "a name that is not a cgroup control file (not tasks, notify_on_release, release_agent,"
    " nor cgroup.* or CONTROLLER.* like cpuset.mems or memory.high)"
)


def name_problem(name: str) -> str | None:
    """What the kernel would make of container name ``name``, as an expected text; None: fine."""
    if not re.fullmatch(NAME_PATTERN, name):
        return NAME_EXPECTED
    if len(name.encode()) > NAME_MAX:
        return f"a name of at most {NAME_MAX} bytes (the kernel's limit on a directory name)"
    if name in CONTROL_FILES or (name.split(".", 1)[0] in CONTROL_PREFIXES and "." in name):
        return NAME_CLASH_EXPECTED
    return None


# A cgroup path relative to the cgroup root: no empty, '.' or '..' parts, no control characters.
CGROUP_PATTERN = r"^(?!.*(^|/)\.\.?(/|$))/?[^/\x00-\x1f\x7f]+(/[^/\x00-\x1f\x7f]+)*$"


@dataclass
class CgroupPathKind(StrKind):
    """A cgroup path (``CGROUP_PATTERN``) the kernel can open: each part at most
    ``NAME_MAX`` bytes, the whole at most ``PATH_MAX``."""

    pattern: str = CGROUP_PATTERN
    expected: str = "a cgroup path under cgroup_root"

    def parse(self, node: Node, path: str, sink: Sink) -> str | None:
        value = super().parse(node, path, sink)
        if value is None:
            return None
        if len(value.encode()) > PATH_MAX or any(
            len(part.encode()) > NAME_MAX for part in value.split("/")
        ):
            self.bad(node, path, sink, f" (each part at most {NAME_MAX} bytes)")
            return None
        return value


ABS_PATH_PATTERN = r"^/[^\x00-\x1f\x7f]*$"
# A mount point: absolute and normalised (no empty, '.' or '..' parts, no trailing /), not /.
MOUNT_POINT_PATTERN = r"^(?!.*/\.\.?(/|$))(/[^/]+)+$"
MOUNT_POINT_EXPECTED = (
    "an absolute path to a directory other than /, like /srv/shared"
    " (no '.', '..' or empty parts, no trailing /)"
)


def _defaults(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.default is not MISSING:
            value = f.default
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


@dataclass
class SizeKind(Kind):
    """A size above zero: ``256M``, ``1.5GiB`` or a number of bytes."""

    expected: str = "a size above zero like 256M, 2G or 1.5GiB, or a number of bytes"

    def parse(self, node: Node, path: str, sink: Sink) -> int | None:
        if isinstance(node, ScalarNode) and node.tag == TAG_INT:
            value = size_value(str(node.value)) if node.value.lstrip("+").isdigit() else 0
            if value:
                return value
        elif (
            isinstance(node, ScalarNode)
            and node.tag == TAG_STR
            and re.search(SIZE_PATTERN, node.value)
            and (value := size_value(node.value))
        ):
            return value
        self.bad(node, path, sink)
        return None

    def schema(self) -> JSON:
        return {
            "oneOf": [
                {"type": "integer", "minimum": 1, "description": "bytes"},
                {"type": "string", "pattern": SIZE_PATTERN, "description": "256M, 2G, 1.5GiB"},
            ]
        }


MODE_KIND = StrKind(
    r"^[0-7]{3,4}$", "an octal mode as a quoted string, like '1777' (YAML reads 0750 as 488)"
)

# One item of ``host.shared_tmpfs`` written as a mapping (zoned.config.decl.TmpfsDecl).
TMPFS_FIELDS: tuple[Field, ...] = (
    Field(
        "path",
        StrKind(MOUNT_POINT_PATTERN, MOUNT_POINT_EXPECTED),
        "The mount point; created (mode 0755, with its parents) when missing.",
        required=True,
    ),
    Field(
        "size",
        SizeKind(),
        "The tmpfs size limit; when omitted, the kernel's default (half of RAM).",
    ),
    Field(
        "mode",
        MODE_KIND,
        "Mode of the tmpfs's root directory, set when zoned mounts it.",
        default="1777",
    ),
)


@dataclass
class TmpfsListKind(Kind):
    """``host.shared_tmpfs``: mount points, each a path or ``{path, size, mode}``; each
    path once. Items are located as ``path[i]``; a mapping's keys as ``path[i].key``."""

    expected: str = (
        "a list of mount points, each an absolute path or {path: ..., size: ..., mode: ...}"
    )

    def parse(self, node: Node, path: str, sink: Sink) -> tuple[TmpfsDecl, ...] | None:
        if isinstance(node, ScalarNode) and node.tag == TAG_NULL:
            return ()
        if not isinstance(node, SequenceNode):
            self.bad(node, path, sink)
            return None
        return parse_distinct(
            node, path, sink, self._item, key=lambda d: d.path, name=lambda d: d.path,
            once="each mount point once",
        )  # fmt: skip

    def _item(self, item: Node, path: str, sink: Sink) -> TmpfsDecl | None:
        if isinstance(item, ScalarNode):
            where = TMPFS_FIELDS[0].kind.parse(item, path, sink)
            return None if where is None else TmpfsDecl(path=where)
        if not isinstance(item, MappingNode):
            sink.found(item, path, describe(item), "a path or {path: ..., size: ..., mode: ...}")
            return None
        before = len(sink.problems)
        values = parse_mapping(item, path, TMPFS_FIELDS, sink)
        if values is None or len(sink.problems) > before:
            return None
        if "mode" in values:
            values["mode"] = int(values["mode"], 8)
        return TmpfsDecl(**values)

    def schema(self) -> JSON:
        item = section_schema(TMPFS_FIELDS)
        return {
            "type": ["array", "null"],
            "items": {"oneOf": [TMPFS_FIELDS[0].kind.schema(), item]},
        }


_HOST = _defaults(HostDecl)
_POLICY = _defaults(PolicyDecl)
_CONTAINER = _defaults(ContainerDecl)
_PCT = "a percentage"

HOST_FIELDS: tuple[Field, ...] = (
    Field(
        "cgroup_root",
        StrKind(ABS_PATH_PATTERN, "an absolute path, like /sys/fs/cgroup"),
        "Where the cgroup tree is mounted.",
        default=_HOST["cgroup_root"],
    ),
    Field(
        "hierarchy",
        EnumKind(("auto", "v1", "v2")),
        "Which cgroup hierarchy to drive; auto detects it.",
        default=_HOST["hierarchy"],
    ),
    Field(
        "parent",
        CgroupPathKind(expected="a cgroup path under cgroup_root, like zoned"),
        "The cgroup (relative to cgroup_root) that zoned owns; containers it creates go under it.",
        default=_HOST["parent"],
    ),
    Field(
        "delegation",
        EnumKind(("auto", "systemd", "cgroupfs")),
        "Who creates the parent: systemd (a delegated scope unit; cgroup v2 with systemd as"
        " PID 1) or zoned on cgroupfs; auto picks systemd where it can.",
        default=_HOST["delegation"],
    ),
    Field(
        "reserved_nodes",
        NodeListKind(),
        "Nodes left to the host and kernel, never lent.",
        default=_HOST["reserved_nodes"],
    ),
    Field(
        "shared",
        SharedKind(),
        "The shared zone: a count of pool nodes to set aside, or a list of node ids.",
        default=0,
    ),
    Field(
        "headroom_pct",
        NumberKind(0, 100, high_open=True, what=_PCT),
        "Share of its zones' capacity each container keeps free.",
        default=_HOST["headroom_pct"],
    ),
    Field(
        "shared_paths",
        PathListKind(),
        "Files or directories zoned warms into the shared zone's page cache (zoned shared warm).",
        default=_HOST["shared_paths"],
    ),
    Field(
        "shared_tmpfs",
        TmpfsListKind(),
        "tmpfs mounts zoned makes with mpol=bind:<shared nodes> (zoned shared mount, and the"
        " daemon at start): only containers with shared: true place pages of files they create"
        " there on the shared zone; others allocate on their own nodes.",
        default=_HOST["shared_tmpfs"],
    ),
)

POLICY_FIELDS: tuple[Field, ...] = (
    Field(
        "cooldown_s",
        NumberKind(0, what="seconds"),
        "After a container gains or loses a node, leave it be this long.",
        default=_POLICY["cooldown_s"],
    ),
    Field(
        "idle_return_s",
        NumberKind(0, what="seconds"),
        "An idle container above its min returns a node after this long.",
        default=_POLICY["idle_return_s"],
    ),
    Field(
        "tripwire_pct",
        NumberKind(0, 100, low_open=True, what=_PCT),
        "The headroom tripwire fires at this share of a container's zones' capacity "
        "(MemTotal less the kernel's min watermarks).",
        default=_POLICY["tripwire_pct"],
    ),
    Field(
        "shrink_below_pct",
        NumberKind(0, 100, low_open=True, high_open=True, what=_PCT),
        "A container using less than this share of one node fewer may shrink.",
        default=_POLICY["shrink_below_pct"],
    ),
    Field(
        "psi_some_ms",
        IntKind(1, what="milliseconds, an integer"),
        "PSI 'some' stall within a window that counts as pressure.",
        default=_POLICY["psi_some_ms"],
    ),
    Field(
        "psi_window_ms",
        IntKind(500, 10000, what="milliseconds, an integer"),
        "PSI trigger window (the kernel accepts 500 to 10000 ms).",
        default=_POLICY["psi_window_ms"],
    ),
    Field(
        "migrate_timeout_s",
        NumberKind(0, low_open=True, what="seconds"),
        "Deadline for a cpuset.mems write (page migration).",
        default=_POLICY["migrate_timeout_s"],
    ),
    Field(
        "reclaim_before_evacuate",
        BoolKind(),
        "Use directed reclaim when a donor's pages do not fit its other nodes.",
        default=_POLICY["reclaim_before_evacuate"],
    ),
    Field(
        "node_reclaim",
        BoolKind(),
        "Reclaim the page cache a donor leaves on a node taken from it, on that node only,"
        " where the kernel has nodeN/reclaim (Linux 6.16+); false: never.",
        default=_POLICY["node_reclaim"],
    ),
    Field(
        "rewarm_interval_s",
        NumberKind(0, low_open=True, what="seconds"),
        "Re-warm the shared zone (re-read shared_paths no longer cached) this long after the"
        " previous re-warm ended; only when shared_paths and a shared zone are declared.",
        default=_POLICY["rewarm_interval_s"],
    ),
    Field(
        "rewarm_mib_s",
        NumberKind(0, low_open=True, what="MiB per second"),
        "Read budget of a shared-zone re-warm.",
        default=_POLICY["rewarm_mib_s"],
    ),
    Field(
        "rewarm_drop_pct",
        NumberKind(0, 100, high_open=True, what=_PCT),
        "Re-warm the shared zone early when its nodes' page cache (FilePages) falls this many"
        " percent below the most seen since the last re-warm (not within 10 s of it); 0: only"
        " at rewarm_interval_s.",
        default=_POLICY["rewarm_drop_pct"],
    ),
)

# One rule of a container's ``match:`` (zoned.policy.rules.MatchRule): every key given must hold.
MATCH_FIELDS: tuple[Field, ...] = (
    Field(
        "exe",
        PatternKind(),
        "The executable as /proc/PID/exe names it (symlinks resolved): exact path,"
        " glob:PATTERN or re:REGEX.",
    ),
    Field(
        "cmdline",
        PatternKind(),
        "The arguments joined by single spaces: exact text, glob:PATTERN or re:REGEX"
        " (searched; anchor with ^ and $).",
    ),
    Field("user", UserKind(), "The process's real user: a name, or a uid."),
    Field(
        "parent_cgroup",
        CgroupPathKind(expected="a cgroup path under cgroup_root, like system.slice/foo.service"),
        "The process starts inside this cgroup or below it (it inherited its parent's).",
    ),
)

CONTAINER_FIELDS: tuple[Field, ...] = (
    Field("min", AmountKind(), "Guaranteed memory, always held.", required=True),
    Field("max", AmountKind(), "Memory it may grow to; defaults to min."),
    Field(
        "priority",
        IntKind(0),
        "Higher is more important; the lowest gives nodes back first.",
        default=_CONTAINER["priority"],
    ),
    Field(
        "shared",
        BoolKind(),
        "May use the shared zone.",
        default=_CONTAINER["shared"],
    ),
    Field(
        "cgroup",
        CgroupPathKind(expected="a cgroup path under cgroup_root, like system.slice/web.service"),
        "An existing cgroup to adopt; when omitted zoned creates parent/NAME.",
    ),
    Field(
        "match",
        MatchListKind(MATCH_FIELDS),
        "Processes moved into this container when they exec: a list of rules; a process"
        " matches when all keys of any one rule hold. Processes already in a declared"
        " container are left alone.",
    ),
    Field(
        "shared_paths",
        PathListKind(),
        "More files or directories to warm into the shared zone for this container.",
        default=_CONTAINER["shared_paths"],
    ),
    Field(
        "engine",
        EngineKind(),
        "Engine containers (podman, docker) this declaration is for, by name or label: each"
        " one that starts gets its own zones in its engine's cgroup, through zoned's OCI hook"
        " or the watcher (docs/containers.md); none holds nodes before then. Not with cgroup"
        " nor match.",
    ),
)


@dataclass
class SectionKind(Kind):
    """A fixed mapping (``host:``, ``policy:``) read against a table; may be empty or null."""

    table: tuple[Field, ...]

    def __post_init__(self) -> None:
        self.expected = "a mapping with keys " + ", ".join(f.name for f in self.table)

    def parse(self, node: Node, path: str, sink: Sink) -> dict[str, Any] | None:
        """The keys that parsed (the caller refuses the whole file if any problem was added)."""
        return parse_mapping(node, path, self.table, sink)

    def schema(self) -> JSON:
        return section_schema(self.table)


@dataclass
class ContainersKind(Kind):
    """``containers:``: name → container. Names are unique across the main file and drop-ins.

    Returns the containers that parsed; callers refuse everything if a problem was added.
    """

    expected: str = "a mapping of container names to {min, max, ...}"

    def parse(self, node: Node, path: str, sink: Sink) -> list[ContainerDecl] | None:
        if isinstance(node, ScalarNode) and node.tag == TAG_NULL:
            return []
        if not isinstance(node, MappingNode):
            self.bad(node, path, sink)
            return None
        out: list[ContainerDecl] = []
        for key_node, body in node.value:
            name = key_text(key_node)
            sub = f"{path}.{name}"
            wrong = name_problem(name) if isinstance(key_node, ScalarNode) else NAME_EXPECTED
            if wrong:
                sink.found(key_node, sub, f"container name {quoted(name)}", wrong)
            elif name in sink.defined:
                first = sink.defined[name]
                sink.found(
                    key_node,
                    sub,
                    f"container {quoted(name)} again (first defined at {first})",
                    "each container defined once, in the main file or in one drop-in",
                )
            else:
                sink.defined[name] = sink.at(key_node)
                sink.locate(sub, key_node)
            values = parse_mapping(body, sub, CONTAINER_FIELDS, sink, anchor=key_node)
            if values is None or "min" not in values:
                continue
            clash = [k for k in ("cgroup", "match") if k in values]
            if "engine" in values and clash:
                sink.found(
                    _key_node(body, clash[0]),
                    f"{sub}.{clash[0]}",
                    f"{clash[0]} beside engine",
                    "engine alone: the engine's own cgroup is the container's",
                )
                continue
            low = values["min"]
            high = values.setdefault("max", low)
            if low.unit is high.unit and low.value > high.value:
                # Mixed units (bytes vs nodes) are compared by placement, once node sizes are known.
                where = _value_node(body, "min")
                sink.found(
                    where,
                    f"{sub}.min",
                    f"min {low} above max {high} (at {sink.at(_value_node(body, 'max'))})",
                    "min <= max",
                )
                continue
            out.append(ContainerDecl(name=name, **values))
        return out

    def schema(self) -> JSON:
        return {
            "type": ["object", "null"],
            "propertyNames": {"pattern": NAME_PATTERN},
            "additionalProperties": section_schema(CONTAINER_FIELDS),
        }


def _key_node(mapping: Node, key: str) -> Node:
    """The key node ``key`` in a mapping already known to hold it."""
    assert isinstance(mapping, MappingNode)
    found: Node = next(k for k, _ in mapping.value if key_text(k) == key)
    return found


def _value_node(mapping: Node, key: str) -> Node:
    """The value node under ``key`` in a mapping already known to hold it."""
    assert isinstance(mapping, MappingNode)
    found: Node = next(v for k, v in mapping.value if key_text(k) == key)
    return found


TOP_FIELDS: tuple[Field, ...] = (
    Field(
        "host",
        SectionKind(HOST_FIELDS),
        "Where the cgroup tree is and which nodes are not lent.",
    ),
    Field("policy", SectionKind(POLICY_FIELDS), "Engine knobs; every name carries its unit."),
    Field(
        "containers",
        ContainersKind(),
        "Declared containers by name; the name becomes a cgroup directory. Drop-ins in"
        " containers.d/ beside the main file may hold only this section.",
    ),
)
DROPIN_KEYS = ("containers",)
