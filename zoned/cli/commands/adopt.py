"""``zoned adopt CONTAINER PID…``: move running processes, all their threads, into a container.

Every pid is checked before any is moved (all or nothing). Refused, with the reason:
kernel threads (PF_KTHREAD), pid 1, zoned itself, and processes in another declared
container unless ``--force``. A pid that does not exist or exits meanwhile is reported
as ``gone``: an ordinary outcome that does not stop the others. ``cgroup.procs`` moves a
whole thread group (v1 and v2). Exit 0 when nothing was refused or failed, else 1.

JSON (``--json``), schema ``zoned/adopt/v1``::

    {"schema": "zoned/adopt/v1", "ok": true, "container": "web", "cgroup": "zoned/web",
     "results": [{"pid": 123, "comm": "sleep", "outcome": "moved"|"already"|"gone"|
                  "refused"|"not_moved"|"failed", "reason": "..."}]}
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from zoned.cli.commands._index import describe
from zoned.cli.commands._locate import add_locate_args, locate
from zoned.errors import BackendError, CgroupGone
from zoned.kernel.proc import comm, is_kernel_thread, proc_cgroup
from zoned.model.jsondoc import envelope
from zoned.model.process import cgroup_within
from zoned.policy.rules import RuleSet


@dataclass
class Result:
    pid: int
    comm: str | None
    outcome: str
    reason: str = ""


DESCRIPTION = """\
Move running processes, with all their threads, into CONTAINER's cgroup. Every pid is
checked first (from /proc); if any is refused (kernel thread, pid 1, zoned itself, in
another declared container without --force) none is moved. Reads the configuration to
find the container's cgroup.

examples:
  zoned adopt web 1234 1240
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("adopt", **describe("adopt", DESCRIPTION))
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("pids", nargs="+", type=int, metavar="PID")
    p.add_argument("--force", action="store_true", help="take pids from other containers too")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    add_locate_args(p)
    p.set_defaults(func=run)


def check(
    pid: int, path: str, rules: RuleSet, container: str, *, proc_root: Path, force: bool
) -> Result:
    """What would happen to ``pid``: ``move`` (to do), already, gone or refused."""
    name = comm(proc_root, pid) if pid > 0 else None
    if pid <= 0:
        return Result(pid, None, "refused", "not a process id")
    kthread = is_kernel_thread(proc_root, pid)
    if kthread is None:
        return Result(pid, name, "gone", "no such process")
    if kthread:
        return Result(pid, name, "refused", "a kernel thread (PF_KTHREAD): it cannot be moved")
    if pid == os.getpid():
        return Result(pid, name, "refused", "zoned itself")
    if pid == 1:
        return Result(pid, name, "refused", "pid 1 (init) must stay where the system put it")
    here = proc_cgroup(proc_root, pid)
    if here is None:
        return Result(pid, name, "gone", "exited while being checked")
    if cgroup_within(here, path):
        return Result(pid, name, "already", f"already in {container} (/{here})")
    other = rules.container_at(here)
    if other is not None and other != container and not force:
        return Result(
            pid, name, "refused", f"in container {other} (/{here}); --force to move it anyway"
        )
    return Result(pid, name, "move", f"from /{here}")


def run(args: argparse.Namespace) -> int:
    where = locate(
        args.config, args.container, cgroup_root=args.cgroup_root, proc_root=args.proc_root
    )
    rules = RuleSet.from_declarations(where.decls)
    pids = list(dict.fromkeys(args.pids))
    results = [
        check(pid, where.path, rules, where.name, proc_root=args.proc_root, force=args.force)
        for pid in pids
    ]
    refused = any(r.outcome == "refused" for r in results)
    for r in results:
        if r.outcome != "move":
            continue
        if refused:
            r.outcome, r.reason = "not_moved", "another pid was refused (all or nothing)"
            continue
        try:
            where.tree.attach(where.path, r.pid)
        except CgroupGone as exc:
            if exc.errno == errno.ESRCH or not (args.proc_root / str(r.pid)).exists():
                r.outcome, r.reason = "gone", "exited before it was moved"
            else:
                r.outcome, r.reason = "failed", str(exc)
        except BackendError as exc:
            r.outcome, r.reason = "failed", str(exc)
        else:
            r.outcome = "moved"
    ok = not any(r.outcome in ("refused", "failed", "not_moved") for r in results)
    if args.json:
        doc = {
            **envelope("adopt"),
            "ok": ok,
            "container": where.name,
            "cgroup": where.path,
            "results": [asdict(r) for r in results],
        }
        print(json.dumps(doc, indent=2))
    else:
        for r in results:
            text = f"{r.outcome} {r.pid}" + (f" ({r.comm})" if r.comm else "")
            if r.outcome == "moved":
                text += f" into {where.name} (/{where.path}) {r.reason}"
            elif r.reason:
                text += f": {r.reason}"
            print(text, file=sys.stdout if r.outcome in ("moved", "already") else sys.stderr)
    return 0 if ok else 1
