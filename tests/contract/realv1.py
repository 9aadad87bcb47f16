"""The backend contract's harness on the build machine's real cgroup v1 hierarchies."""

from __future__ import annotations

from pathlib import Path

from tests.contract.suite import Cap, Plan, RealHarness, Watch
from tests.support.cgroups import remove_cgroup_tree
from zoned.backends.base import Backend
from zoned.backends.cgroup1 import Cgroup1Backend
from zoned.model.nodelist import parse_nodelist


class RealV1Harness(RealHarness):
    """Cgroup1Backend on ``cpuset_root`` and ``memory_root`` under a unique parent."""

    def __init__(self, cpuset_root: Path, memory_root: Path, parent: str) -> None:
        self.cpuset_root, self.memory_root, self.parent = cpuset_root, memory_root, parent
        self.online = sorted(parse_nodelist((cpuset_root / "cpuset.mems").read_text()))
        lacks: dict[Cap, str] = {}
        if len(self.online) < 2:
            lacks[Cap.MIGRATION] = "one memory node: there is nowhere to move pages to"
            lacks[Cap.OOM] = (
                "one memory node holding the whole machine: filling the zone would OOM the "
                "host, and the contract sets no memory limit"
            )
        super().__init__(lacks)
        self.name = f"real-v1 ({len(self.online)} node(s))"

    def backend(self, plan: Plan | None = None) -> Backend:
        b = Cgroup1Backend(
            parent=self.parent,
            cpuset_root=self.cpuset_root,
            memory_root=self.memory_root,
            enable_memory_pressure=False,  # a host-wide switch: never flipped by tests
            fs_factory=self.counting,
        )
        self.made.append(b)
        return b

    def nodes(self) -> list[int]:
        return self.online[1:] if len(self.online) > 1 else self.online

    def missing_node(self) -> int:
        return max(self.online) + 1

    def move(self, b: Backend, name: str, pid: int) -> None:
        b.attach(name, pid)

    def remove(self, watch: Watch, name: str) -> None:
        # memory first: the backend tells a vanished cgroup by its memory directory
        for root in (self.memory_root, self.cpuset_root):
            (root / self.parent / name).rmdir()

    def close(self) -> None:
        self.close_processes_and_backends()
        for root in (self.cpuset_root, self.memory_root):
            remove_cgroup_tree(root, self.parent)
