"""``zoned adopt`` and adopting existing cgroups, on the real v1 hierarchies (root only)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support.cgroups import RecordingFs
from tests.support.jsondocs import parse as parse_json
from tests.support.realhost import V1_CPUSET, V1_MEMORY
from tests.support.sandbox import Box, box_fixture
from tests.support.waiting import wait_until
from zoned.backends.cgroup1 import Cgroup1Backend
from zoned.cli import main as cli
from zoned.config.decl import Amount, ContainerDecl
from zoned.kernel.cgroupfs import CgroupFs

pytestmark = pytest.mark.root
__all__ = ["box_fixture"]

THREADS = "import threading, time\n" + (
    "[threading.Thread(target=time.sleep, args=(60,), daemon=True).start() for _ in range(3)]\n"
    "print(flush=True); time.sleep(60)\n"
)


def threaded(box: Box) -> int:
    p = box.spawn([sys.executable, "-c", THREADS])
    wait_until(lambda: len(list(Path(f"/proc/{p.pid}/task").iterdir())) == 4, 10, "4 threads up")
    return p.pid


def adopt(box: Box, *args: str) -> tuple[int, dict[str, object]]:
    r = box.zoned("adopt", "--json", "--config", str(box.config), *args)
    doc: dict[str, object] = parse_json(r.stdout)
    return r.returncode, doc


def outcomes(doc: dict[str, object]) -> dict[int, str]:
    results = doc["results"]
    assert isinstance(results, list)
    return {r["pid"]: r["outcome"] for r in results}


def test_adopt_moves_every_thread_and_reports_the_gone(box: Box) -> None:
    box.create()
    pid = threaded(box)
    tids = {int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()}
    gone = box.spawn(["true"])
    gone.wait()
    status, doc = adopt(box, "web", str(pid), str(gone.pid))
    assert status == 0, doc
    assert outcomes(doc) == {pid: "moved", gone.pid: "gone"}
    for root in (V1_CPUSET, V1_MEMORY):
        assert box.pids(box.path("web"), root) == {pid}
        assert box.pids(box.path("web"), root, "tasks") == tids  # the whole thread group
    status, doc = adopt(box, "web", str(pid))
    assert (status, outcomes(doc)) == (0, {pid: "already"})


def test_adopt_refuses_kernel_threads_and_moves_nothing_then(box: Box) -> None:
    box.create()
    pid = threaded(box)
    status, doc = adopt(box, "web", str(pid), "2")
    assert status == 1
    assert outcomes(doc) == {pid: "not_moved", 2: "refused"}
    results = doc["results"]
    assert isinstance(results, list)
    assert "kernel thread" in results[1]["reason"]
    assert pid not in box.pids(box.path("web"))


def test_adopt_refuses_itself(box: Box, capsys: pytest.CaptureFixture[str]) -> None:
    box.create()
    me = os.getpid()  # in-process, this test is "zoned itself"
    assert cli.main(["adopt", "--config", str(box.config), "web", str(me)]) == 1
    assert f"refused {me}" in capsys.readouterr().err
    assert me not in box.pids(box.path("web"))


def test_adopt_takes_from_another_container_only_with_force(box: Box) -> None:
    box.create()
    pid = threaded(box)
    box.backend.attach("other", pid)
    status, doc = adopt(box, "web", str(pid))
    assert (status, outcomes(doc)) == (1, {pid: "refused"})
    status, doc = adopt(box, "web", "--force", str(pid))
    assert (status, outcomes(doc)) == (0, {pid: "moved"})
    assert pid in box.pids(box.path("web"))


def test_an_existing_cgroup_is_managed_in_place(box: Box) -> None:
    """Declared by path: its mems are zoned's, its processes stay where they are."""
    box.create()
    existing = box.path("existing")
    cs, mem = CgroupFs(V1_CPUSET), CgroupFs(V1_MEMORY)
    cs.mkdir(existing)
    mem.mkdir(existing)
    cs.write(existing, "cpuset.cpus", cs.read("", "cpuset.effective_cpus"))
    cs.write(existing, "cpuset.mems", "0")
    pid = threaded(box)
    cs.move_pid(existing, pid)
    mem.move_pid(existing, pid)
    before = Path(f"/proc/{pid}/cgroup").read_text()

    fss: list[RecordingFs] = []

    def factory(root: Path) -> RecordingFs:
        fss.append(RecordingFs(root))
        return fss[-1]

    b = Cgroup1Backend(
        parent=box.name,
        cpuset_root=V1_CPUSET,
        memory_root=V1_MEMORY,
        enable_memory_pressure=False,
        pressure_level=None,
        watch_oom=False,
        fs_factory=factory,
    )
    try:
        st = b.ensure(
            ContainerDecl("svc", Amount.nodes(1), Amount.nodes(1), cgroup=existing), frozenset({0})
        )
    finally:
        b.close()
    assert st.nodes == frozenset({0}) and st.pids == (pid,)
    assert cs.read(existing, "cpuset.mems") == "0"
    assert cs.read(existing, "cpuset.memory_migrate") == "1"
    writes = [w for fs in fss for w in fs.writes]
    print(f"\nadopting {existing} wrote: {writes}")
    assert all(f not in {"cgroup.procs", "tasks"} for _, f, _ in writes)  # nobody moved
    assert Path(f"/proc/{pid}/cgroup").read_text() == before
