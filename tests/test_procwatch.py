"""The process connector's receive buffer: its size and the fallback without root."""

from __future__ import annotations

import logging
import socket

import pytest

from zoned.kernel import procwatch
from zoned.kernel.procwatch import (
    DATAGRAMS_PER_EXEC,
    DEFAULT_RCVBUF,
    EVENT_TRUESIZE,
    SO_RCVBUFFORCE,
    ProcWatch,
    set_rcvbuf,
)


class CappedSocket:
    """A socket without CAP_NET_ADMIN: SO_RCVBUFFORCE is refused, SO_RCVBUF is capped."""

    def __init__(self, rmem_max: int) -> None:
        self.rmem_max = rmem_max
        self.rcvbuf = 212992

    def setsockopt(self, level: int, opt: int, value: int) -> None:
        assert level == socket.SOL_SOCKET
        if opt == SO_RCVBUFFORCE:
            raise PermissionError(1, "Operation not permitted")
        assert opt == socket.SO_RCVBUF
        self.rcvbuf = 2 * min(value, self.rmem_max)  # as the kernel does

    def getsockopt(self, level: int, opt: int) -> int:
        return self.rcvbuf


def test_the_default_buffer_holds_a_burst_of_10000_execs_unread() -> None:
    assert 2 * DEFAULT_RCVBUF >= 10_000 * DATAGRAMS_PER_EXEC * EVENT_TRUESIZE


def test_without_the_capability_the_capped_buffer_is_used_and_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sock = CappedSocket(rmem_max=212992)
    assert set_rcvbuf(sock, 1 << 20) == 2 * 212992  # type: ignore[arg-type]
    w = ProcWatch.__new__(ProcWatch)
    w._sock = sock  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger=procwatch.__name__):
        w._set_rcvbuf(DEFAULT_RCVBUF)
    (rec,) = caplog.records
    assert "not the" in rec.getMessage() and "rmem_max" in rec.getMessage()
    assert "170 execs" in rec.getMessage()  # 425984 / (3 x 832)
