"""Engine containers: matching (pure), their cgroups' paths, the watcher, inspect output."""

from __future__ import annotations

import dataclasses
import logging
import os
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.waiting import wait_until
from zoned.backends.fdloop import FdLoop
from zoned.config.decl import ContainerDecl
from zoned.config.load import loads
from zoned.errors import BackendError, EngineError
from zoned.kernel.enginecg import CgroupDirWatch, cgroup_of, conmon_name, parse_engine_cgroup
from zoned.model.engines import EngineContainer
from zoned.policy.engines import instance_name, template_for, template_of
from zoned.service import enginewatch
from zoned.service.enginewatch import parse_inspect

DECLS = loads(
    "containers:\n"
    "  db: {min: {nodes: 1}}\n"
    "  web: {min: {nodes: 1}, max: {nodes: 3}, engine: {podman: {name: 'web-*'}}}\n"
    "  dweb: {min: {nodes: 1}, engine: {docker: {name: 'web-*', label: tier=front}}}\n"
    "  batch: {min: 256M, engine: {label: zoned.container=batch, on_refusal: unzoned}}\n"
    "  any: {min: 256M, engine: {name: 'job-?'}}\n"
)
ID = "0123456789abcdef" * 4


def pick(c: EngineContainer) -> str | None:
    t: ContainerDecl | None = template_for(DECLS.templates, c)
    return None if t is None else t.name


def test_templates_are_not_containers() -> None:
    assert [c.name for c in DECLS.containers] == ["db"]
    assert [t.name for t in DECLS.templates] == ["web", "dweb", "batch", "any"]
    batch = DECLS.templates[2]
    assert batch.engine is not None and batch.engine.on_refusal == "unzoned"


@pytest.mark.parametrize(
    ("c", "want"),
    [
        (EngineContainer("podman", ID, "web-1"), "web"),
        (EngineContainer("podman", ID, "webby"), None),
        # docker's selector needs both the name and the label
        (EngineContainer("docker", ID, "web-1"), None),
        (EngineContainer("docker", ID, "web-1", labels={"tier": "front"}), "dweb"),
        # a label may come as an annotation (the OCI hook sees annotations only)
        (EngineContainer("docker", ID, "web-1", annotations={"tier": "front"}), "dweb"),
        (EngineContainer("podman", ID, "x", labels={"zoned.container": "batch"}), "batch"),
        (EngineContainer("docker", ID, "job-7"), "any"),
        (EngineContainer("docker", ID, "job-17"), None),
        # the OCI hook of an unknown runtime: any engine's selector may match
        (EngineContainer("oci", ID, "web-2"), "web"),
        # a container whose name is not known matches no name selector
        (EngineContainer("podman", ID, ""), None),
        # the zoned annotation names the declaration outright
        (EngineContainer("podman", ID, "web-1", annotations={"io.zoned.container": "any"}), "any"),
        (EngineContainer("podman", ID, "web-1", annotations={"io.zoned.container": "db"}), None),
    ],
)
def test_template_for(c: EngineContainer, want: str | None) -> None:
    assert pick(c) == want


def test_instance_names_carry_the_engine_name_or_short_id() -> None:
    web = DECLS.templates[0]
    assert instance_name(web, EngineContainer("podman", ID, "web-1")) == "web@web-1"
    assert instance_name(web, EngineContainer("podman", ID, "")) == f"web@{ID[:12]}"
    assert template_of("web@web-1") == "web" and template_of("web") is None


@pytest.mark.parametrize(
    ("path", "want"),
    [
        (f"libpod_parent/libpod-{ID}", ("podman", ID)),
        (f"/machine.slice/libpod-{ID}.scope", ("podman", ID)),
        (f"machine.slice/libpod-{ID}.scope/container", ("podman", ID)),
        (f"system.slice/docker-{ID}.scope", ("docker", ID)),
        (f"docker/{ID}", ("docker", ID)),
        (f"libpod_parent/conmon-{ID}", None),  # podman's conmon cgroup, not the container
        (f"machine.slice/libpod-conmon-{ID}.scope", None),
        ("libpod_parent/libpod-XYZ", None),
        (f"zoned/libpod-{ID}", None),
    ],
)
def test_parse_engine_cgroup(path: str, want: tuple[str, str] | None) -> None:
    assert parse_engine_cgroup(path) == want


def _proc(tmp: Path, pid: int, ppid: int, argv: list[str], cgroup: str = "/") -> None:
    d = tmp / str(pid)
    d.mkdir(parents=True)
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (d / "stat").write_text(f"{pid} ({Path(argv[0]).name} x) S {ppid} 1 1 0\n")
    (d / "cgroup").write_text(f"0::{cgroup}\n")


def test_cgroup_and_conmon_name_from_a_fake_proc(tmp_path: Path) -> None:
    _proc(tmp_path, 10, 1, ["/usr/bin/conmon", "--api-version", "1", "-c", ID, "-n", "web-1"])
    _proc(tmp_path, 20, 10, ["/usr/bin/crun", "create"])
    _proc(tmp_path, 30, 20, ["zoned", "oci-hook"])
    _proc(tmp_path, 40, 20, ["/bin/sh"], cgroup=f"/libpod_parent/libpod-{ID}")
    assert cgroup_of(tmp_path, 40) == f"libpod_parent/libpod-{ID}"
    assert conmon_name(tmp_path, 20) == "web-1"
    assert conmon_name(tmp_path, 30) == "web-1"
    assert conmon_name(tmp_path, 40, depth=1) is None  # conmon is 2 up
    with pytest.raises(EngineError, match="99/cgroup: cannot be read"):
        cgroup_of(tmp_path, 99)
    (tmp_path / "50").mkdir()
    (tmp_path / "50" / "cgroup").write_text("4:cpuset:/x\n")
    with pytest.raises(EngineError, match="no cgroup v2 line"):
        cgroup_of(tmp_path, 50)


def test_watcher_sees_engine_cgroups_come_and_go(tmp_path: Path) -> None:
    (tmp_path / "machine.slice").mkdir()
    (tmp_path / "machine.slice" / f"libpod-{ID}.scope").mkdir()
    w = CgroupDirWatch(tmp_path)
    try:
        assert w.existing() == [f"machine.slice/libpod-{ID}.scope"]
        assert w.drain() == ([], [])
        # a parent that appears later is watched from then on
        (tmp_path / "libpod_parent").mkdir()
        assert w.drain() == ([], [])
        leaf = tmp_path / "libpod_parent" / f"libpod-{ID}"
        leaf.mkdir()
        (tmp_path / "libpod_parent" / f"conmon-{ID}").mkdir()  # not a container
        (tmp_path / "unrelated").mkdir()
        assert w.drain() == ([f"libpod_parent/libpod-{ID}"], [])
        leaf.rmdir()
        assert w.drain() == ([], [f"libpod_parent/libpod-{ID}"])
    finally:
        w.close()
    assert w.fd == -1


def test_watcher_sees_a_container_made_with_its_parent(tmp_path: Path) -> None:
    """docker makes docker/ and docker/<id> back to back: the child exists before the
    parent's watch does, so no event of its own names it (seen in the VM: the container
    was never admitted). Reported once, not again when later events come."""
    w = CgroupDirWatch(tmp_path)
    try:
        (tmp_path / "docker").mkdir()
        (tmp_path / "docker" / ID).mkdir()
        assert w.drain() == ([f"docker/{ID}"], [])
        (tmp_path / "docker" / "other").mkdir()  # not a container id
        assert w.drain() == ([], [])
    finally:
        w.close()


def test_parse_inspect_podman_and_docker() -> None:
    pod = (
        b'[{"Id": "' + ID.encode() + b'", "Name": "web-1", "Config": {"Labels": {"a": "1"},'
        b' "Annotations": {"io.zoned.container": "web", "n": 3}}}]'
    )
    c = parse_inspect("podman", pod)
    assert (c.engine, c.id, c.name) == ("podman", ID, "web-1")
    assert dict(c.labels) == {"a": "1"}
    assert dict(c.annotations) == {"io.zoned.container": "web"}  # non-strings dropped
    dock = b'[{"Id": "abc", "Name": "/job-1", "Config": {"Labels": null}, "HostConfig": {}}]'
    d = parse_inspect("docker", dock)
    assert (d.name, dict(d.labels)) == ("job-1", {})


@pytest.mark.parametrize(
    ("raw", "msg"),
    [
        (b"", "not JSON"),
        (b"\xff", "not JSON"),
        (b"[]", "a list of one object with Id"),
        (b'[{"Name": "x"}]', "a list of one object with Id"),
        (b'[{"Id": 5}]', "a list of one object with Id"),
    ],
)
def test_parse_inspect_refuses_malformed_output(raw: bytes, msg: str) -> None:
    with pytest.raises(EngineError, match=msg):
        parse_inspect("podman", raw)


def test_watcher_on_a_missing_root_is_a_backend_error() -> None:
    with pytest.raises(BackendError, match=r"inotify_add_watch .*missing: No such file"):
        CgroupDirWatch(Path("/nonexistent/missing"))


@pytest.fixture
def loop() -> Iterator[FdLoop]:
    with FdLoop(workers=1) as fl:
        yield fl


def _fake_daemon(root: Path, loop: FdLoop, containers: tuple[ContainerDecl, ...] = ()) -> Any:
    decls = dataclasses.replace(DECLS, containers=containers)
    engine = types.SimpleNamespace(decls=decls)
    d: Any = types.SimpleNamespace(
        engine=engine, engine_watch=types.SimpleNamespace(root=root), _host=loop, backend=None
    )
    d.inspections = enginewatch.inspector(d)
    return d


def _inspect_prints(monkeypatch: pytest.MonkeyPatch, text: str, rc: int = 0) -> None:
    # The engine's argv gets the id appended: sh -c SCRIPT ID (the id becomes $0).
    script = f"printf '%s' '{text}'; exit {rc}"
    monkeypatch.setitem(enginewatch.INSPECT, "podman", ("sh", "-c", script))


def _run_all(d: Any) -> None:
    """Turn the loop until no inspection runs or waits (bounded: 30 s)."""
    wait_until(lambda: (d._host.poll_once(0.5), not d.inspections.running)[1], 30, "inspects")


def test_watcher_inspects_without_waiting_and_admits_the_match(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, loop: FdLoop
) -> None:
    admitted: list[tuple[str, str]] = []

    def admit(d: Any, c: EngineContainer, cg: str) -> dict[str, Any]:
        admitted.append((c.name, cg))
        return {"ok": True}

    monkeypatch.setattr("zoned.service.engines.admit", admit)
    _inspect_prints(monkeypatch, f'[{{"Id": "{ID}", "Name": "web-1"}}]')
    path = f"machine.slice/libpod-{ID}.scope"
    (tmp_path / path / "container").mkdir(parents=True)
    d = _fake_daemon(tmp_path, loop)
    enginewatch.watch_new(d, [path, "machine.slice/other"])
    assert list(d.inspections.running) == [path]  # started, not waited for
    _run_all(d)
    assert admitted == [("web-1", f"{path}/container")]  # systemd's leaf
    assert path not in d.inspections


def test_watcher_leaves_what_the_hook_admitted_and_reports_failures(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture, loop: FdLoop
) -> None:
    calls: list[str] = []
    monkeypatch.setattr("zoned.service.engines.admit", lambda d, c, cg: calls.append(cg))
    path = f"libpod_parent/libpod-{ID}"
    (tmp_path / path).mkdir(parents=True)
    hooked = dataclasses.replace(DECLS.templates[0], name="web@web-1", cgroup=path, engine=None)
    d = _fake_daemon(tmp_path, loop, (hooked,))
    _inspect_prints(monkeypatch, "[]")
    enginewatch.watch_new(d, [path])
    assert path not in d.inspections  # admitted already: not even inspected
    d = _fake_daemon(tmp_path, loop)
    _inspect_prints(monkeypatch, "Error: no such container", rc=125)
    with caplog.at_level(logging.WARNING):
        enginewatch.watch_new(d, [path])
        _run_all(d)
    assert calls == []
    assert "exit 125: Error: no such container, ignoring" in caplog.text


def test_an_inspect_that_closes_stdout_then_lingers_never_blocks_the_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, loop: FdLoop
) -> None:
    admitted: list[str] = []

    def admit(d: Any, c: EngineContainer, cg: str) -> dict[str, Any]:
        admitted.append(cg)
        return {"ok": True}

    monkeypatch.setattr("zoned.service.engines.admit", admit)
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    answer = f'[{{"Id": "{ID}", "Name": "web-1"}}]'
    # Answers, closes its stdout (stderr is the same pipe), then lingers until told.
    script = f"printf '%s' '{answer}'; exec >&- 2>&-; read x < {gate}"
    monkeypatch.setitem(enginewatch.INSPECT, "podman", ("sh", "-c", script))
    path = f"libpod_parent/libpod-{ID}"
    (tmp_path / "cg" / path).mkdir(parents=True)
    d = _fake_daemon(tmp_path / "cg", loop)
    enginewatch.watch_new(d, [path])
    child = d.inspections.running[path]
    wait_until(lambda: (loop.poll_once(0.5), child.eof)[1], 30, "the end of its output")
    # The step that read the end came back while the child still runs: no wait(), and
    # nothing admitted on an answer whose process has not ended.
    assert child.proc.poll() is None and admitted == [] and path in d.inspections
    gate.write_text("go\n")
    _run_all(d)
    assert admitted == [path]


def test_a_burst_of_container_starts_runs_a_few_inspects_at_once(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    loop: FdLoop,
    caplog: pytest.LogCaptureFixture,
) -> None:
    admitted: list[str] = []

    def admit(d: Any, c: EngineContainer, cg: str) -> dict[str, Any]:
        admitted.append(c.id)
        return {"ok": True}

    monkeypatch.setattr("zoned.service.engines.admit", admit)
    monkeypatch.setattr(enginewatch, "MAX_INSPECTS", 3)
    monkeypatch.setattr(enginewatch, "INSPECT_QUEUE", 10)
    script = """printf '[{"Id": "%s", "Name": "web-1"}]' "$0\""""
    monkeypatch.setitem(enginewatch.INSPECT, "podman", ("sh", "-c", script))
    ids = [f"{i:064x}" for i in range(20)]
    paths = [f"libpod_parent/libpod-{i}" for i in ids]
    for p in paths:
        (tmp_path / p).mkdir(parents=True)
    d = _fake_daemon(tmp_path, loop)
    with caplog.at_level(logging.WARNING):
        enginewatch.watch_new(d, paths)
    assert len(d.inspections.running) == 3 and len(d.inspections.queued) == 10
    assert f"libpod-{ids[13]} dropped (and any more until one is taken)" in caplog.text

    most = 0

    def turn() -> bool:
        nonlocal most
        loop.poll_once(0.5)
        most = max(most, len(d.inspections.running))
        return not d.inspections.running

    wait_until(turn, 60, "every inspect")
    assert most == 3
    assert sorted(admitted) == ids[:13]  # the first 13; the other 7 were dropped
    assert d.inspections.dropped == 7
