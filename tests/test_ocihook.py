"""``zoned oci-hook``: the OCI state on stdin (untrusted), the request, the policies."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from zoned.cli.commands.ocihook import bundle_annotations, parse_state, request_of
from zoned.cli.main import main
from zoned.errors import EngineError

ID = "ab" * 32


def state(**over: Any) -> bytes:
    doc: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "id": ID,
        "status": "created",
        "pid": 40,
        "bundle": "/b",
        "annotations": {"io.zoned.container": "web"},
    }
    doc.update(over)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def test_a_runtime_state_parses() -> None:
    s = parse_state(state())
    assert (s.id, s.pid, s.bundle) == (ID, 40, "/b")
    assert s.annotations == {"io.zoned.container": "web"}
    assert parse_state(state(annotations=...)).annotations == {}


@pytest.mark.parametrize(
    ("raw", "msg"),
    [
        (b"", "stdin: not a JSON OCI state"),
        (b"\xff\xfe", "stdin: not a JSON OCI state"),
        (b"[1]", "stdin: expected a JSON object"),
        (state(id=...), "key 'id': expected the container id"),
        (state(id=""), "key 'id'"),
        (state(pid=...), "key 'pid': expected the container's process id"),
        (state(pid=0), "key 'pid'"),
        (state(pid=True), "key 'pid'"),
        (state(pid="40"), "key 'pid'"),
        (state(pid=1 << 40), "key 'pid'"),
        (state(bundle=3), "key 'bundle'"),
        (state(annotations=[1]), "key 'annotations': expected an object"),
        (state(annotations={"a": 1}), r"key 'annotations'.a: expected a string"),
        (b" " * (1 << 20) + b"{}", "longer than"),
    ],
)
def test_malformed_state_is_one_located_line(raw: bytes, msg: str) -> None:
    with pytest.raises(EngineError, match=msg) as info:
        parse_state(raw)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def _proc(tmp: Path, pid: int, ppid: int, argv: list[str], cgroup: str = "/") -> None:
    d = tmp / str(pid)
    d.mkdir(parents=True)
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (d / "stat").write_text(f"{pid} (x) S {ppid} 1 1 0\n")
    (d / "cgroup").write_text(f"0::{cgroup}\n")


def test_request_names_the_cgroup_and_the_conmon_name(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    _proc(proc, 10, 1, ["/usr/bin/conmon", "-c", ID, "-n", "web-1"])
    _proc(proc, 20, 10, ["/usr/bin/crun"])
    _proc(proc, 40, 20, ["/bin/sh"], cgroup=f"/libpod_parent/libpod-{ID}")
    req = request_of(parse_state(state()), proc, 20)
    assert req == {
        "cmd": "engine-admit",
        "cgroup": f"libpod_parent/libpod-{ID}",
        "engine": "podman",
        "id": ID,
        "name": "web-1",
        "annotations": {"io.zoned.container": "web"},
    }


def test_annotations_from_the_bundle_when_the_state_has_none(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    _proc(proc, 40, 1, ["/bin/sh"], cgroup="/docker/x")
    (tmp_path / "config.json").write_text(json.dumps({"annotations": {"k": "v"}}))
    req = request_of(parse_state(state(annotations=..., bundle=str(tmp_path))), proc, 40)
    assert req["annotations"] == {"k": "v"} and req["engine"] == "oci" and req["name"] == ""
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(EngineError, match=r"config\.json: not JSON"):
        bundle_annotations(str(tmp_path))
    assert bundle_annotations(str(tmp_path / "none")) == {}


def _run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str) -> int:
    proc = tmp_path / "proc"
    if not proc.exists():
        _proc(proc, 40, 1, ["/bin/sh"], cgroup="/libpod_parent/libpod-x")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(state())))
    return main(
        ["oci-hook", "--proc-root", str(proc), "--socket", str(tmp_path / "no.sock"), *args]
    )


def test_no_daemon_fails_the_start_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(monkeypatch, tmp_path) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"zoned oci-hook: {ID[:12]}: no zone (zoned is not answering")
    assert err.count("\n") == 1


def test_no_daemon_may_start_unzoned(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(monkeypatch, tmp_path, "--when-down", "unzoned") == 0
    assert f"{ID[:12]} starts unzoned" in capsys.readouterr().err


def test_malformed_stdin_through_the_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b'{"id": "x", "pid": -1}')))
    assert main(["oci-hook", "--socket", str(tmp_path / "no.sock")]) == 1
    assert capsys.readouterr().err == (
        "zoned oci-hook: stdin: key 'pid': expected the container's process id (> 0)\n"
    )


def test_shipped_hook_files_are_createruntime_hooks() -> None:
    root = Path(__file__).resolve().parent.parent / "config" / "oci-hooks.d"
    for name in ("zoned.json", "zoned-all.json"):
        doc = json.loads((root / name).read_text())
        assert doc["version"] == "1.0.0" and doc["stages"] == ["createRuntime"]
        assert doc["hook"]["args"][1] == "oci-hook"
    anno = json.loads((root / "zoned.json").read_text())["when"]["annotations"]
    assert anno == {"^io\\.zoned\\.container$": ".+"}


def test_busy_is_retried_and_a_refusal_follows_the_declarations_policy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = [
        {"ok": False, "busy": True, "error": "nodes are moving", "on_refusal": "fail"},
        {"ok": False, "error": "web@web-1: no room for its min (1 node)", "on_refusal": "fail"},
        {"ok": False, "error": "job@j: no room", "on_refusal": "unzoned"},
        {"ok": True, "matched": True, "container": "web@web-1", "nodes": [2]},
    ]
    asked: list[dict[str, Any]] = []

    def fake(path: Path, req: dict[str, Any], *, timeout_s: float = 10.0) -> dict[str, Any]:
        asked.append(req)
        return answers.pop(0)

    monkeypatch.setattr("zoned.service.client.request", fake)
    monkeypatch.setattr("zoned.cli.commands.ocihook.RETRY_S", 0.0)
    # busy, then refused with "fail": exit 1 and one line
    assert _run(monkeypatch, tmp_path) == 1
    assert len(asked) == 2 and asked[0]["cmd"] == "engine-admit"
    err = capsys.readouterr().err
    assert err == f"zoned oci-hook: {ID[:12]}: no zone: web@web-1: no room for its min (1 node)\n"
    # refused with "unzoned": starts, says so
    assert _run(monkeypatch, tmp_path) == 0
    assert "starts unzoned: job@j: no room" in capsys.readouterr().err
    # admitted: silent
    assert _run(monkeypatch, tmp_path) == 0
    assert capsys.readouterr().err == ""
