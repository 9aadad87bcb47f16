"""The control socket server on a real FdLoop: protocol errors, authorization, slow clients."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import wait_for
from zoned.backends.fdloop import FdLoop
from zoned.errors import ControlError
from zoned.service import control
from zoned.service.client import request
from zoned.service.control import Client, ControlServer, PeerCred, authorize


class Served:
    def __init__(self, tmp: Path) -> None:
        self.loop = FdLoop(workers=1)
        self.path = tmp / "c.sock"
        self.seen: list[dict[str, Any]] = []
        self.server = ControlServer(self.path, self.loop, self.handle)
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def handle(self, c: Client, req: dict[str, Any]) -> dict[str, Any] | None:
        self.seen.append(req)
        if req["cmd"] == "events":
            c.following = True
            return {"ok": True}
        return {"ok": True, "result": req}

    def run(self) -> None:
        while not self.stop:
            self.loop.poll_once(0.05)

    def pause(self) -> None:
        """Stop the loop's thread, so the test thread may call the server alone."""
        self.stop = True
        self.thread.join(5)

    def resume(self) -> None:
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.pause()
        self.server.shutdown()
        self.loop.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


def test_socket_is_root_only_and_answers_in_order(served: Served) -> None:
    assert served.path.stat().st_mode & 0o777 == 0o600
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(served.path))
        s.sendall(b'{"cmd": "status"}\n{"cmd": "x", "n": 2}\n')
        f = s.makefile()
        assert json.loads(f.readline())["result"] == {"cmd": "status"}
        assert json.loads(f.readline())["result"] == {"cmd": "x", "n": 2}


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"nope\n", "not a JSON line"),
        (b"[1]\n", 'expected an object with "cmd"'),
        (b'{"cmd": 3}\n', 'expected an object with "cmd"'),
    ],
)
def test_bad_requests_answered_not_fatal(served: Served, line: bytes, error: str) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(served.path))
        s.sendall(line + b'{"cmd": "ping"}\n')
        f = s.makefile()
        first = json.loads(f.readline())
        assert first["ok"] is False and error in first["error"]
        assert json.loads(f.readline())["ok"] is True


def test_overlong_line_closes(served: Served) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(served.path))
        s.sendall(b"x" * (control.MAX_LINE + 10))
        f = s.makefile()
        assert "longer than" in json.loads(f.readline())["error"]
        assert f.readline() == ""  # closed


def test_stale_socket_replaced_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    old = socket.socket(socket.AF_UNIX)
    old.bind(str(path))
    old.close()  # a dead daemon's file
    loop = FdLoop(workers=1)
    try:
        srv = ControlServer(path, loop, lambda c, r: None)
        with pytest.raises(ControlError, match="another zoned is listening"):
            ControlServer(path, loop, lambda c, r: None)
        srv.shutdown()
        assert not path.exists()
    finally:
        loop.close()


def test_slow_follower_is_dropped_without_blocking(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "MAX_OUTPUT", 64 * 1024)
    with socket.socket(socket.AF_UNIX) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(str(served.path))
        s.sendall(b'{"cmd": "events"}\n')
        wait_for(lambda: any(c.following for c in served.server.clients.values()), "follower")
        served.pause()  # the server is single-threaded: broadcast from here only
        for _ in range(2000):  # never read: the server must give up on us, not block
            served.server.broadcast({"event": {"what": "x" * 200}})
            if not served.server.clients:
                break
        assert not served.server.clients
    served.resume()
    # and the server still serves others
    assert request(served.path, {"cmd": "ping"})["ok"]


def test_authorize_reads_open_changes_root_or_group() -> None:
    user = PeerCred(pid=4242, uid=1000, gid=1000, groups=frozenset({24, 27, 998}))
    assert authorize(user, "status") is None
    assert authorize(user, "events") is None
    assert authorize(PeerCred(1, 0, 0), "lend") is None
    assert authorize(user, "lend") == "lend changes the zone map: allowed to root, not to uid 1000"
    assert authorize(user, "reload", group=1000) is None  # primary gid
    assert authorize(user, "reclaim", group=998) is None  # supplementary
    assert "allowed to root or group 999" in str(authorize(user, "reclaim", group=999))
