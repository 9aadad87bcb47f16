"""Generated configuration documents for the config fuzz test (tests/test_config_fuzz.py) and
its bigger run (bench/config_fuzz.py): valid-ish structures with random values of random
kinds, huge numbers, deep nesting, random keys, and bytes that are not UTF-8 or not YAML."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from zoned.config.fields import CONTAINER_FIELDS, HOST_FIELDS, MATCH_FIELDS, POLICY_FIELDS
from zoned.config.load import load
from zoned.errors import ConfigError

KNOWN_KEYS = sorted(
    {
        f.name
        for table in (HOST_FIELDS, POLICY_FIELDS, CONTAINER_FIELDS, MATCH_FIELDS)
        for f in table
    }
    | {"host", "policy", "containers", "nodes"}
)
NAMES = ["web", "db", "tasks", "cgroup.procs", "cpuset.mems", "zoned.x", "a.b", "x" * 300, "-"]

# Scalars as YAML tokens, written as they would appear in a file.
_SCALAR = st.one_of(
    st.sampled_from(["~", "null", "true", "false", "yes", ".inf", "-.inf", ".nan", "0", "-1"]),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from([20, 31, 400, 4301, 5000]).map(lambda n: "9" * n),
    st.sampled_from([10, 308, 400]).map(lambda n: "1" + "0" * n + ".0"),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.tuples(st.integers(0, 10**6), st.sampled_from(["", "K", "M", "G", "T", "GiB", "nodes"])).map(
        lambda t: f"{t[0]}{t[1]}"
    ),
    st.sampled_from([10, 400]).map(lambda n: "9" * n + "G"),
    st.text(max_size=20).map(json.dumps),
    st.sampled_from(["zoned", "/zoned", "x/y", "x/y/z", "zoned/web", "/srv/a", "0750", "'1777'"]),
    st.sampled_from(["glob:*", "re:(", "re:^a$", "&a 1", "*a", "!!binary x", "{", "]", "- -"]),
)
_KEY = st.one_of(
    st.sampled_from(KNOWN_KEYS),
    st.sampled_from(NAMES),
    st.text(max_size=12).map(json.dumps),
    _SCALAR,
)


def _flow(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    lists = st.lists(children, max_size=5).map(lambda xs: "[" + ", ".join(xs) + "]")
    maps = st.lists(st.tuples(_KEY, children), max_size=5).map(
        lambda kvs: "{" + ", ".join(f"{k}: {v}" for k, v in kvs) + "}"
    )
    return st.one_of(lists, maps)


VALUE = st.recursive(_SCALAR, _flow, max_leaves=6)
DEEP = st.tuples(st.sampled_from([10, 63, 64, 65, 500, 2000]), st.sampled_from(["[", "{a: "])).map(
    lambda t: t[1] * t[0] + "1" + ("]" if t[1] == "[" else "}") * t[0]
)


_TOP = st.one_of(st.sampled_from(["host", "policy", "containers"]), _KEY)
_SECOND = st.one_of(st.sampled_from(KNOWN_KEYS + NAMES), _KEY)
_THIRD = st.one_of(st.sampled_from(KNOWN_KEYS), _KEY)
_JUNK = st.sampled_from([b"\xff", b"\x00", b"\x07", b"\t", b"\xc3", b"\r", b"'", b":"])


# Values each key accepts, so that near-valid documents reach the cross-field checks.
_GOOD: dict[str, list[str]] = {
    "min": ["1G", "512M", "{nodes: 1}", "{nodes: 2}", "1073741824"],
    "max": ["2G", "{nodes: 2}", "{nodes: 3}", "1.5GiB"],
    "priority": ["0", "10", "9223372036854775807"],
    "shared": ["true", "false"],
    "cgroup": ["x/y", "x/y/z", "/x", "zoned", "zoned/web", "zoned/zoned.s", "system.slice/a"],
    "match": ["[{exe: /bin/true}]", "[{cmdline: 're:^a'}, {user: 0}]", "[]"],
    "shared_paths": ["[/srv/a]", "[/srv/a, /srv/a]"],
    "reserved_nodes": ["[0]", "[0, 1]", "[]"],
    "parent": ["zoned", "a/zoned", "x"],
    "headroom_pct": ["15", "0", "99.9"],
    "cooldown_s": ["10", "0.5", "1000000000"],
    "psi_some_ms": ["100", "2000"],
    "psi_window_ms": ["1000", "500"],
}


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    """A document of the right shape whose values are mostly ones the key accepts."""

    def value(key: str) -> str:
        good = _GOOD.get(key)
        return draw(st.sampled_from(good)) if good and draw(st.integers(0, 5)) else draw(VALUE)

    lines = ["host:"]
    lines += [
        f"  {k}: {value(k)}"
        for k in draw(st.sets(st.sampled_from(["parent", "reserved_nodes", "headroom_pct"])))
    ]
    lines.append("policy:")
    lines += [
        f"  {k}: {value(k)}"
        for k in draw(st.sets(st.sampled_from(["cooldown_s", "psi_some_ms", "psi_window_ms"])))
    ]
    lines.append("containers:")
    for name in draw(
        st.lists(
            st.one_of(
                st.sampled_from(NAMES), st.from_regex(r"[a-z][a-z0-9.-]{0,8}", fullmatch=True)
            ),
            max_size=5,
        )
    ):
        lines.append(f"  {name}:")
        keys = [
            "min",
            *draw(
                st.sets(
                    st.sampled_from(
                        ["max", "priority", "shared", "cgroup", "match", "shared_paths"]
                    )
                )
            ),
        ]
        lines += [f"    {k}: {value(k)}" for k in keys]
    return ("\n".join(lines) + "\n").encode()


def documents() -> st.SearchStrategy[bytes]:
    """Configuration files' bytes: near-valid ones, and random ones (``random_documents``)."""
    return st.one_of(near_valid(), random_documents())


@st.composite
def random_documents(draw: st.DrawFn) -> bytes:
    """One configuration file's bytes: a block mapping of sections, containers and values."""
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        top = draw(_TOP)
        lines.append(f"{top}:")
        for _ in range(draw(st.integers(0, 3))):
            key = draw(_SECOND)
            if draw(st.booleans()):
                deep = draw(st.integers(0, 9)) == 0
                lines.append(f"  {key}: {draw(DEEP if deep else VALUE)}")
            else:
                lines.append(f"  {key}:")
                for _ in range(draw(st.integers(0, 3))):
                    sub = draw(_THIRD)
                    lines.append(f"    {sub}: {draw(VALUE)}")
    data = ("\n".join(lines) + "\n").encode()
    for _ in range(draw(st.integers(0, 2))):  # damage: bytes that are not UTF-8, not YAML
        at = draw(st.integers(0, len(data)))
        junk = draw(_JUNK)
        data = data[:at] + junk + data[at:]
    return data


@dataclass
class Outcome:
    """What loading one document gave."""

    accepted: bool
    problems: int = 0
    unlocated: tuple[str, ...] = ()  # problems without a location, or not on one line


def check(data: bytes, directory: Path | None = None) -> Outcome:
    """Load ``data`` as a main file; any exception but ConfigError propagates (a traceback)."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path = Path(tmp) / "zoned.yaml"
        path.write_bytes(data)
        try:
            load(path)
        except ConfigError as exc:
            lines = len(data.splitlines()) + 2  # YAML breaks lines at \r too
            bad = tuple(
                str(p)
                for p in exc.problems
                if p.where is None
                or not 1 <= p.where.line <= lines
                or p.where.column < 1
                or "\n" in str(p)
            )
            return Outcome(False, len(exc.problems), bad)
    return Outcome(True)
