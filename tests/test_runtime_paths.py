"""Runtime paths and addresses (issue 14): the control and metrics sockets never replace
a file that is not a socket, and a metrics address that cannot be served is one line."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest

from tests.support.daemon import running
from zoned.cli.commands.run import check_address
from zoned.errors import ControlError, ZonedError
from zoned.service.control import ControlServer
from zoned.service.metrics import Metrics, serve


class NoLoop:
    def add_fd(self, fd: int, mask: int, callback: object) -> None:
        return None

    def remove_fd(self, fd: int) -> None:
        return None


def test_the_control_socket_never_replaces_a_regular_file(tmp_path: Path) -> None:
    precious = tmp_path / "data.txt"
    precious.write_text("keep me\n")
    with pytest.raises(ControlError, match="not a socket"):
        ControlServer(precious, NoLoop(), lambda c, r: None)
    assert precious.read_text() == "keep me\n"


def test_the_control_socket_never_follows_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "target.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(target))  # a stale socket, but reached through a link
    link = tmp_path / "control.sock"
    link.symlink_to(target)
    with pytest.raises(ControlError, match="not a socket"):
        ControlServer(link, NoLoop(), lambda c, r: None)
    assert link.is_symlink() and target.exists()


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # nobody listens: left by a daemon that died
    server = ControlServer(path, NoLoop(), lambda c, r: None)
    server.shutdown()


def test_the_metrics_socket_never_replaces_a_regular_file(tmp_path: Path) -> None:
    precious = tmp_path / "data.txt"
    precious.write_text("keep me\n")
    with pytest.raises(ZonedError, match="not a socket"):
        serve(Metrics(), f"unix:{precious}")
    assert precious.read_text() == "keep me\n"


def test_metrics_on_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ZonedError) as info:
            serve(Metrics(), f"127.0.0.1:{port}")
    assert "\n" not in str(info.value) and f"127.0.0.1:{port}" in str(info.value)


def test_metrics_on_ipv6_brackets() -> None:
    assert check_address("[::1]:9799") is None
    assert check_address("::1:9799") is not None  # ambiguous: write [::1]:9799
    srv = serve(Metrics(), "[::1]:0")
    try:
        assert isinstance(srv.address, tuple)
        port = srv.address[1]
        with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=10) as resp:
            assert resp.status == 200
    finally:
        srv.close()


def test_the_daemon_refuses_to_start_on_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            pytest.raises(ZonedError, match="cannot serve metrics"),
            running(tmp_path, metrics=f"127.0.0.1:{port}"),
        ):
            pass
