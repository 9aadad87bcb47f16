"""The Backend contract (tests/contract/suite.py) on real kernels with numa=fake=8.

Cgroup2Backend runs in the v2 boots (6.1, 6.12), Cgroup1Backend in the 6.1 v1 boot (its
hierarchies under /run, from ZONED_VM_CGROUP_V1_*). Each harness works under its own
parent cgroup and removes it afterwards, children killed first. Allocations are small
(TCG is slow) except the OOM case, which fills one ~250 MiB node.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.realv1 import RealV1Harness
from tests.contract.suite import BackendContract, Plan, RealHarness, Watch, closing
from tests.support.cgroups import remove_cgroup_tree
from zoned.backends.base import Backend
from zoned.backends.cgroup2 import Cgroup2Backend
from zoned.errors import Unsupported
from zoned.model.sizes import MIB

from .conftest import node_mem_total, online_nodes

ROOT = Path("/sys/fs/cgroup")
V1_CPUSET = Path(os.environ.get("ZONED_VM_CGROUP_V1_CPUSET", "/run/cgroup-v1/cpuset"))
V1_MEMORY = Path(os.environ.get("ZONED_VM_CGROUP_V1_MEMORY", "/run/cgroup-v1/memory"))
PARENT = "zoned-vmtest-contract"
DEADLINE_S = 120.0  # TCG: a python start and 64 MiB touched take seconds


def oom_mib(node: int) -> int:
    """More than the node holds: its MemTotal plus 150 MiB (about 400 MiB)."""
    return node_mem_total(node) // MIB + 150


class RealV2Harness(RealHarness):
    """Cgroup2Backend on the guest's unified hierarchy; prepare() moves this process into
    ``<PARENT>/zoned.daemon`` and :meth:`close` moves it back to the root."""

    name = "real-v2 (VM)"

    def __init__(self) -> None:
        super().__init__({})
        self.online = online_nodes()
        assert len(self.online) >= 2, "the contract's VM runs expect numa=fake=8"
        self.alloc_mib = 64
        self.oom_mib = oom_mib(self.online[-1])
        self.deadline_s = DEADLINE_S

    def backend(self, plan: Plan | None = None) -> Backend:
        b = Cgroup2Backend(ROOT, PARENT, fs=self.counting(ROOT))
        self.made.append(b)
        return b

    def nodes(self) -> list[int]:
        return self.online[1:]

    def missing_node(self) -> int:
        return max(self.online) + 1

    def move(self, b: Backend, name: str, pid: int) -> None:
        try:
            b.attach(name, pid)
        except Unsupported:
            assert isinstance(b, Cgroup2Backend)
            b.fs.move_pid(f"{PARENT}/{name}", pid)

    def remove(self, watch: Watch, name: str) -> None:
        (ROOT / PARENT / name).rmdir()

    def close(self) -> None:
        self.close_processes_and_backends()
        (ROOT / "cgroup.procs").write_text(str(os.getpid()))
        remove_cgroup_tree(ROOT, PARENT)


@pytest.mark.boot(cgroup="v2", numa="8")
class TestV2Contract(BackendContract):
    """Every contract item on cgroup v2 (6.1 and 6.12)."""

    @pytest.fixture
    def harness(self) -> Iterator[RealV2Harness]:
        remove_cgroup_tree(ROOT, PARENT)  # a crashed earlier run's leftovers
        with closing(RealV2Harness()) as h:
            yield h
        assert not (ROOT / PARENT).exists()


@pytest.mark.boot(kernel="6.1", cgroup="v1", numa="8")
class TestV1Contract(BackendContract):
    """Every contract item on cgroup v1 cpuset + memory (6.1)."""

    @pytest.fixture
    def harness(self) -> Iterator[RealV1Harness]:
        for root in (V1_CPUSET, V1_MEMORY):
            remove_cgroup_tree(root, PARENT)
        h = RealV1Harness(V1_CPUSET, V1_MEMORY, PARENT)
        h.name = "real-v1 (VM)"
        h.alloc_mib = 64
        h.oom_mib = oom_mib(h.online[-1])
        h.deadline_s = DEADLINE_S
        with closing(h):
            yield h
        assert not (V1_CPUSET / PARENT).exists() and not (V1_MEMORY / PARENT).exists()
