"""The daemon and the shared zone after start: a reload that changes ``host.shared_tmpfs``
mounts or remounts, and a drop in the shared nodes' page cache brings the re-warm forward."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.fakes.mounts import FakeKernel
from tests.support.daemon import daemon, reload_via_socket, shared_config
from tests.support.waiting import wait_for
from zoned.backends.base import Backend
from zoned.config.diff import config_diff
from zoned.model.host import NodeMemory
from zoned.model.zonemap import SHARED
from zoned.service.daemon import Daemon
from zoned.service.sharedzone import REWARM_EARLY_GAP_S

MIB = 1 << 20

TMPFS = """\
host: {{reserved_nodes: [0], shared: 1, shared_tmpfs: [{paths}]}}
containers:
  web:   {{min: {{nodes: 1}}, max: {{nodes: 1}}, shared: true}}
  batch: {{min: {{nodes: 1}}, max: {{nodes: 1}}}}
"""


def reload(d: Daemon, config: str) -> dict[str, object]:
    assert d.opts.config is not None
    d.opts.config.write_text(config)
    resp = reload_via_socket(d)
    assert resp is not None and resp.get("ok"), resp
    return resp


def test_a_reload_mounts_new_mount_points_and_clears_mended_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kernel = FakeKernel(tmp_path / "proc", [])
    one, two, bad = tmp_path / "one", tmp_path / "two", tmp_path / "bad"
    kernel.fail[str(bad)] = 1  # EPERM
    caplog.set_level(logging.INFO, logger="zoned.service")
    with daemon(
        tmp_path, TMPFS.format(paths=f"{one}, {bad}"), tmpfs_mount=kernel, proc_root=kernel.proc
    ) as d:
        assert any(str(bad) in w for w in d.warnings)
        assert [c[1] for c in kernel.calls] == [str(one), str(bad)]
        resp = reload(d, TMPFS.format(paths=f"{one}, {two}"))
        assert "host.shared_tmpfs changed" in resp["changes"]  # type: ignore[operator]
        # one is kept (no call), two is mounted; bad is no longer declared: left alone
        assert [c[1] for c in kernel.calls] == [str(one), str(bad), str(two)]
        assert not any("shared tmpfs" in w for w in d.warnings)
        assert f"{bad} no longer declared; left mounted" in caplog.text
        reload(d, TMPFS.format(paths=f"{one}, {two}"))  # nothing changed: nothing called
        assert len(kernel.calls) == 3


def test_config_diff_names_a_shared_tmpfs_change() -> None:
    from zoned.config.load import loads

    a = loads(TMPFS.format(paths="/srv/a"))
    b = loads(TMPFS.format(paths="/srv/a, /srv/b"))
    refusals, changes = config_diff(a, b)
    assert refusals == [] and changes == ["host.shared_tmpfs changed"]


# -- re-warm brought forward ---------------------------------------------------------------


class ShrinkingCache:
    """The backend's ``node_memory`` with the shared node's FilePages set by the test."""

    def __init__(self, real: Backend) -> None:
        self.real = real.node_memory
        self.file: int | None = None
        self.shared: frozenset[int] = frozenset()

    def __call__(self) -> Mapping[int, NodeMemory]:
        out = dict(self.real())
        if self.file is not None:
            for n in self.shared:
                out[n] = dataclasses.replace(out[n], file=self.file)
        return out


def run_with_cache_drop(tmp_path: Path, drop_pct: float) -> tuple[Daemon, list[float]]:
    """A daemon whose timer re-warm is far away; the shared node's page cache goes 100 MiB
    → 90 MiB (a 10 % drop) after the first re-warm. Returns the daemon and the re-warm
    start times (simulated seconds)."""
    calls: list[float] = []

    def fake(backend: Backend, nodes: frozenset[int], paths: Sequence[str], budget: float) -> str:
        calls.append(backend.now())
        return "fake report"

    config = shared_config(tmp_path, 1000, 8).replace(
        "rewarm_mib_s: 8}", f"rewarm_mib_s: 8, rewarm_drop_pct: {drop_pct}}}"
    )
    assert f"rewarm_drop_pct: {drop_pct}" in config
    with daemon(tmp_path, config, speed=100, rewarm_fn=fake) as d:
        assert d.backend is not None and d.engine is not None
        cache = ShrinkingCache(d.backend)
        cache.shared = d.engine.zonemap.nodes_with(SHARED)
        d.backend.node_memory = cache  # type: ignore[method-assign]
        wait_for(lambda: d.rewarm.ended_at is not None, "the first re-warm", deadline_s=10)
        cache.file = 100 * MIB
        ended = d.rewarm.ended_at
        assert ended is not None
        wait_for(
            lambda: (
                d.backend is not None
                and d.backend.now() > ended + REWARM_EARLY_GAP_S
                and d.rewarm.peak_file_bytes == 100 * MIB
            ),
            "the gap to pass with the peak seen",
            deadline_s=10,
        )
        cache.file = 90 * MIB
        backend, t = d.backend, d.backend.now()
        # Ten fallback steps (0.5 simulated s apart) see the drop, unless it re-warms first.
        wait_for(lambda: len(calls) >= 2 or backend.now() > t + 5, "a re-warm or 5 s", 10)
    return d, calls


def test_a_page_cache_drop_brings_the_rewarm_forward(tmp_path: Path) -> None:
    d, calls = run_with_cache_drop(tmp_path, 5)
    assert len(calls) == 2, calls
    assert d.rewarm.brought_forward == 1
    assert calls[1] - calls[0] < 1000  # long before the interval


def test_with_drop_pct_zero_only_the_interval_counts(tmp_path: Path) -> None:
    d, calls = run_with_cache_drop(tmp_path, 0)
    assert len(calls) == 1, calls
    assert d.rewarm.brought_forward == 0


def test_an_eviction_before_the_first_step_after_the_end_is_seen(tmp_path: Path) -> None:
    """The shared node holds 100 MiB while a re-warm runs (the daemon reads it at the end)
    and 90 MiB from the moment it has ended, before any step: the early re-warm still
    comes (measured in the guest: vm-tests/guest/test_shared_rewarm.py)."""
    import threading

    calls: list[float] = []
    go = threading.Event()

    def fake(backend: Backend, nodes: frozenset[int], paths: Sequence[str], budget: float) -> str:
        assert go.wait(10), "the test did not release the first re-warm"
        calls.append(backend.now())
        return "fake report"

    config = shared_config(tmp_path, 1000, 8)
    with daemon(tmp_path, config, speed=100, rewarm_fn=fake) as d:
        assert d.backend is not None and d.engine is not None
        real = d.backend.node_memory
        shared = d.engine.zonemap.nodes_with(SHARED)

        def node_memory() -> Mapping[int, NodeMemory]:
            file = 100 * MIB if d.rewarm.running_op is not None else 90 * MIB
            return {n: dataclasses.replace(m, file=file) if n in shared else m
                    for n, m in real().items()}  # fmt: skip

        d.backend.node_memory = node_memory  # type: ignore[method-assign]
        go.set()
        wait_for(lambda: d.rewarm.ended_at is not None, "the first re-warm", deadline_s=10)
        ended, backend = d.rewarm.ended_at, d.backend
        assert ended is not None
        limit = ended + REWARM_EARLY_GAP_S + 5
        wait_for(lambda: len(calls) >= 2 or backend.now() > limit, "a re-warm or the gap", 10)
    assert len(calls) >= 2 and d.rewarm.brought_forward >= 1, calls
    assert calls[1] - calls[0] < 1000
