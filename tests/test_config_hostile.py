"""Hostile configuration (issue 14): huge numbers, deep nesting, bad bytes, names the kernel
refuses and cgroups that collide. Each gives located one-line problems, never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zoned.config.load import load, loads
from zoned.errors import ConfigError

LOCATED = re.compile(r"^f\.yaml:(\d+):(\d+): ")


def problems(text: str) -> list[str]:
    """The problems ``text`` gives: each must be one bounded line with a location."""
    with pytest.raises(ConfigError) as info:
        loads(text, "f.yaml")
    out = [str(p) for p in info.value.problems]
    for line in out:
        assert LOCATED.match(line), line
        assert "\n" not in line and len(line) < 600, line
    return out


def where(line: str) -> tuple[int, int]:
    m = LOCATED.match(line)
    assert m
    return int(m.group(1)), int(m.group(2))


def container(body: str, name: str = "web") -> str:
    return f"containers:\n  {name}:\n    min: 1G\n{body}"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (container("    priority: " + "9" * 5000 + "\n"), "containers.web.priority"),
        ("containers:\n  web:\n    min: " + "9" * 400 + "\n", "containers.web.min"),
        ("containers:\n  web:\n    min: " + "9" * 400 + "G\n", "containers.web.min"),
        ("containers:\n  web:\n    min: 9" + "0" * 30 + "\n", "containers.web.min"),
        ("host:\n  shared_tmpfs: [{path: /s, size: " + "9" * 400 + "}]\n", "host.shared_tmpfs"),
        ("policy:\n  cooldown_s: 1" + "0" * 400 + "\n", "policy.cooldown_s"),
        ("policy:\n  cooldown_s: 1" + "0" * 400 + ".0\n", "policy.cooldown_s"),
        ("policy:\n  cooldown_s: .inf\n", "policy.cooldown_s"),
        ("policy:\n  migrate_timeout_s: 1.0e+300\n", "policy.migrate_timeout_s"),
        ("host:\n  reserved_nodes: [" + "9" * 5000 + "]\n", "host.reserved_nodes[0]"),
        ("host:\n  shared: " + "9" * 5000 + "\n", "host.shared"),
    ],
)
def test_huge_numbers_are_located_problems(text: str, key: str) -> None:
    (line,) = problems(text)
    assert f": {key}" in line
    assert "9" * 100 not in line and "0" * 100 not in line  # the value is shortened


@pytest.mark.parametrize("opener", ["[", "{a: "])
def test_deep_nesting_is_a_located_problem(opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    text = container("    match: " + opener * 500 + "1" + closer * 500 + "\n")
    (line,) = problems(text)
    assert "nest" in line
    assert where(line)[0] == 4


def test_alias_expansion_is_bounded() -> None:
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    (line,) = problems("\n".join(lines) + "\n")
    assert "nodes" in line


def test_reader_error_is_at_its_real_place_in_one_line() -> None:
    (line,) = problems("containers:\n  web:\n    min: 1G\x07\n")
    assert where(line) == (3, 12)
    assert "#x0007" in line


def test_scanner_error_is_one_line() -> None:
    (line,) = problems("host:\n  parent: 'abc\n")
    assert "\n" not in line


def test_non_utf8_file_gets_a_location(tmp_path: Path) -> None:
    path = tmp_path / "zoned.yaml"
    path.write_bytes(b"containers:\n  web:\n    min: 1G\xff\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    (problem,) = info.value.problems
    assert problem.where is not None
    assert (problem.where.line, problem.where.column) == (3, 12)
    assert "UTF-8" in str(problem)


def test_huge_file_is_refused_with_a_location(tmp_path: Path) -> None:
    path = tmp_path / "zoned.yaml"
    path.write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    (problem,) = info.value.problems
    assert problem.where is not None


@pytest.mark.parametrize(
    "name",
    [
        '"web\\n"',
        "tasks",
        "cgroup.procs",
        "cpuset.mems",
        "memory.high",
        "notify_on_release",
        "release_agent",
        "a" * 256,
        '"web\\t"',
    ],
)
def test_names_the_kernel_would_refuse_or_clash_with(name: str) -> None:
    text = f"containers:\n  ? {name}\n  : min: 1G\n"
    (line,) = problems(text)
    assert "container name" in line


@pytest.mark.parametrize("name", ["web.v2", "a" * 255, "my.cpuset"])
def test_names_with_dots_that_clash_with_nothing_are_fine(name: str) -> None:
    decls = loads(f"containers:\n  ? {name}\n  : min: 1G\n", "f.yaml")
    assert decls.containers[0].name == name


@pytest.mark.parametrize(
    "value",
    ['"x/y\\n"', '"x/\\0y"', "x/" + "a" * 256],
)
def test_cgroup_paths_the_kernel_would_refuse(value: str) -> None:
    (line,) = problems(container(f"    cgroup: {value}\n"))
    assert ": containers.web.cgroup: " in line


def test_two_containers_on_one_cgroup() -> None:
    text = container("    cgroup: x/y\n") + "  db:\n    min: 1G\n    cgroup: /x/y\n"
    (line,) = problems(text)
    assert line.startswith("f.yaml:7:13: containers.db.cgroup: found x/y")
    assert "f.yaml:4:13" in line


def test_cgroup_nested_in_another_containers() -> None:
    text = container("    cgroup: x/y\n") + "  db:\n    min: 1G\n    cgroup: x/y/z\n"
    (line,) = problems(text)
    assert line.startswith("f.yaml:7:13: containers.db.cgroup: found x/y/z")


def test_cgroup_nested_in_a_created_container() -> None:
    text = container("") + "  db:\n    min: 1G\n    cgroup: zoned/web/inner\n"
    (line,) = problems(text)
    assert "containers.db.cgroup" in line


@pytest.mark.parametrize("value", ["zoned", "/zoned", "zoned/zoned.shared"])
def test_cgroup_equal_to_the_parent_or_zoneds_own(value: str) -> None:
    (line,) = problems(container(f"    cgroup: {value}\n"))
    assert "containers.web.cgroup" in line


def test_cgroup_above_the_parent() -> None:
    text = "host:\n  parent: a/zoned\n" + container("    cgroup: a\n")
    (line,) = problems(text)
    assert "containers.web.cgroup" in line


@pytest.mark.parametrize("value", ['"x/\\ud800"', '"\\udcff"'])
def test_a_lone_surrogate_is_a_located_problem(value: str) -> None:
    (line,) = problems(container(f"    cgroup: {value}\n"))
    assert where(line) == (4, 13) and "surrogate" in line
