"""The jeepney client of systemd's D-Bus API against a fake peer on a unix socket.

The peer speaks D-Bus as PID 1's private socket does (SASL EXTERNAL, then messages, no
bus: no ``Hello``) and answers from a table; it is not systemd. What is checked: the
messages zoned sends (method, signature, body), and every failure as one line.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jeepney.low_level import HeaderFields, Message, Parser
from jeepney.wrappers import new_error, new_method_return

from zoned.errors import BackendError
from zoned.service.sdbus import JeepneyBus

Answer = Callable[[Message], Message | None]


class Peer:
    """A one-connection D-Bus peer; ``answer`` maps each call to its reply (None: silent)."""

    def __init__(self, path: Path, answer: Answer) -> None:
        self.path = path
        self.answer = answer
        self.seen: list[tuple[str, str, Any]] = []  # (member, signature, body)
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        PEERS.append(self)

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            buf = b""
            while b"BEGIN\r\n" not in buf:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buf += chunk
                if b"AUTH" in buf and b"OK" not in buf:
                    conn.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
                    buf += b"OK"  # answered once
            parser = Parser()
            parser.add_data(buf.split(b"BEGIN\r\n", 1)[1])
            serial = 1000
            while True:
                msg = parser.get_next_message()
                if msg is None:
                    data = conn.recv(65536)
                    if not data:
                        return
                    parser.add_data(data)
                    continue
                f = msg.header.fields
                self.seen.append(
                    (f[HeaderFields.member], f.get(HeaderFields.signature, ""), msg.body)
                )
                reply = self.answer(msg)
                if reply is not None:
                    serial += 1
                    conn.sendall(reply.serialise(serial=serial))

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=30)


PEERS: list[Peer] = []


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "private"
    while PEERS:
        PEERS.pop().close()


def _member(msg: Message) -> str:
    return str(msg.header.fields[HeaderFields.member])


def systemd_like(msg: Message) -> Message | None:
    member = _member(msg)
    if member == "StartTransientUnit":
        return new_method_return(msg, "o", ("/org/freedesktop/systemd1/job/7",))
    if member == "GetUnit" and msg.body[0] == "zoned-containers.scope":
        return new_method_return(msg, "o", ("/org/freedesktop/systemd1/unit/zoned_2dc",))
    if member == "GetUnit":
        return new_error(
            msg, "org.freedesktop.systemd1.NoSuchUnit", "s", (f"Unit {msg.body[0]} not loaded.",)
        )
    if member == "Get":
        return new_method_return(msg, "v", (("s", "active"),))
    if member in ("AttachProcessesToUnit", "ResetFailedUnit"):
        return new_method_return(msg)
    return new_error(msg, "org.freedesktop.DBus.Error.AccessDenied", "s", ("no\nway " * 200,))


def test_the_calls_zoned_makes_no_hello(sock_path: Path) -> None:
    peer = Peer(sock_path, systemd_like)
    bus = JeepneyBus(sock_path, timeout_s=30)
    try:
        bus.start_scope("zoned-containers.scope", "zoned.slice", [42], "zoned's containers")
        assert bus.active_state("zoned-containers.scope") == "active"
        assert bus.active_state("other.scope") is None
        bus.attach("zoned-containers.scope", "/zoned.anchor", [43])
        bus.reset_failed("zoned-containers.scope")
    finally:
        bus.close()
    members = [m for m, _s, _b in peer.seen]
    assert members == [
        "StartTransientUnit", "GetUnit", "Get", "GetUnit", "AttachProcessesToUnit",
        "ResetFailedUnit",
    ]  # fmt: skip
    _m, sig, body = peer.seen[0]
    assert sig == "ssa(sv)a(sa(sv))"
    name, mode, props, aux = body
    assert (name, mode, aux) == ("zoned-containers.scope", "fail", [])
    assert dict(props) == {
        "Description": ("s", "zoned's containers"),
        "Slice": ("s", "zoned.slice"),
        "Delegate": ("b", True),
        "PIDs": ("au", [42]),
    }
    assert peer.seen[4][1:] == ("ssau", ("zoned-containers.scope", "/zoned.anchor", [43]))


def test_an_error_reply_is_one_bounded_line(sock_path: Path) -> None:
    def refuse(msg: Message) -> Message:
        return new_error(msg, "org.freedesktop.DBus.Error.AccessDenied", "s", ("no\nway " * 200,))

    Peer(sock_path, refuse)
    bus = JeepneyBus(sock_path, timeout_s=30)
    with pytest.raises(BackendError) as info:
        bus.start_scope("zoned-containers.scope", "zoned.slice", [42], "x")
    bus.close()
    text = str(info.value)
    assert text.startswith(
        "systemd: StartTransientUnit zoned-containers.scope:"
        " org.freedesktop.DBus.Error.AccessDenied: "
    )
    assert "\n" not in text
    assert len(text) < 500


def test_no_answer_is_a_timeout_in_one_line(sock_path: Path) -> None:
    Peer(sock_path, lambda msg: None)
    bus = JeepneyBus(sock_path, timeout_s=0.2)
    with pytest.raises(BackendError) as info:
        bus.active_state("zoned-containers.scope")
    assert str(info.value) == "systemd: GetUnit zoned-containers.scope: no answer within 0.2 s"


def test_no_systemd_is_one_line_with_the_errno(sock_path: Path) -> None:
    bus = JeepneyBus(sock_path)
    with pytest.raises(BackendError) as info:
        bus.active_state("zoned-containers.scope")
    assert str(info.value).startswith(f"systemd: cannot connect to {sock_path}: ")
    assert info.value.errno_name == "ENOENT"
