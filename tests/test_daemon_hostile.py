"""The daemon against hostile input (issue 14): a reload that cannot load its file, an empty
configuration, oversized and deeply nested control requests. It answers with an error and
keeps running."""

from __future__ import annotations

import errno
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import running
from zoned.cli.main import main
from zoned.config import load as zconfig
from zoned.service.control import json_depth


@pytest.mark.parametrize(
    "error",
    [OSError(errno.EIO, "Input/output error"), RecursionError("too deep"), ValueError("digits")],
)
def test_a_reload_whose_file_cannot_load_is_refused_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    with running(tmp_path) as r:
        before = r.status()["summary"]

        def broken(path: Path) -> None:
            raise error

        monkeypatch.setattr(zconfig, "load", broken)
        resp = r.call(cmd="reload")
        assert resp["ok"] is False
        assert "\n" not in resp["error"] and str(error) in resp["error"]
        monkeypatch.undo()
        assert r.status()["summary"] == before  # still running, nothing changed


def test_a_huge_number_reloaded_is_refused_with_its_place(tmp_path: Path) -> None:
    with running(tmp_path) as r:
        huge = r.config.read_text().replace("cooldown_s: 1", "cooldown_s: 1" + "0" * 400)
        r.config.write_text(huge)
        resp = r.call(cmd="reload")
        assert resp["ok"] is False and "policy.cooldown_s" in resp["error"]
        assert r.status()["summary"].startswith("4 nodes")


@pytest.mark.parametrize(
    "text", ["", "# nothing\n", "containers: {}\n", "policy: {cooldown_s: 1}\n"]
)
def test_an_empty_configuration_is_refused_on_reload(tmp_path: Path, text: str) -> None:
    with running(tmp_path) as r:
        owners = r.owners()
        r.config.write_text(text)
        resp = r.call(cmd="reload")
        assert resp["ok"] is False
        assert "no containers" in resp["error"] and "--allow-empty" in resp["error"]
        assert r.owners() == owners


def test_an_empty_configuration_is_applied_when_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running(tmp_path) as r:
        r.config.write_text("")
        assert main(["reload", "--socket", str(r.socket)]) == 1
        assert "--allow-empty" in capsys.readouterr().err
        assert main(["reload", "--allow-empty", "--socket", str(r.socket)]) == 0
        assert "removed web" in capsys.readouterr().out
        assert set(r.owners().values()) == {"reserved", "free"}
        # With no container running, nothing is released: a container-less file reloads
        # without being asked for (a daemon that keeps only a shared zone does this).
        r.config.write_text("policy: {cooldown_s: 2}\n")
        assert main(["reload", "--socket", str(r.socket)]) == 0, capsys.readouterr().err


def _raw(sock: Path, payload: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10.0)
        s.connect(str(sock))
        s.sendall(payload)
        answer = b""
        while b"\n" not in answer:
            data = s.recv(65536)
            if not data:
                break
            answer += data
    obj: dict[str, Any] = json.loads(answer)
    return obj


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 30_000 + b"\n",
        b'{"cmd": "status", "decisions": ' + b"[" * 5000 + b"]" * 5000 + b"}\n",
        b'{"a": ' * 10_000 + b"1" + b"}" * 10_000 + b"\n",
    ],
)
def test_a_deeply_nested_request_gets_an_error_and_the_daemon_lives(
    tmp_path: Path, payload: bytes
) -> None:
    with running(tmp_path) as r:
        resp = _raw(r.socket, payload)
        assert resp["ok"] is False and "nest" in resp["error"]
        assert r.status()["summary"].startswith("4 nodes")


def test_an_oversized_request_gets_an_error(tmp_path: Path) -> None:
    with running(tmp_path) as r:
        resp = _raw(r.socket, b'{"cmd": "status", "x": "' + b"a" * 200_000 + b'"}\n')
        assert resp["ok"] is False and "longer than" in resp["error"]
        assert r.status()["summary"].startswith("4 nodes")


def test_a_request_that_breaks_a_handler_gets_an_error_and_the_daemon_lives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running(tmp_path) as r:

        def broken(*args: object) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(r.daemon, "info", broken)
        resp = r.call(cmd="status")
        assert resp["ok"] is False and "a bug" in resp["error"]
        monkeypatch.undo()
        assert r.status()["summary"].startswith("4 nodes")


def test_brackets_inside_strings_are_not_nesting() -> None:
    assert json_depth(b'{"cmd": "status", "x": "' + b"[" * 100 + b'\\"[["}') == 1
    assert json_depth(b'{"a": [[1], {"b": []}]}') == 4
