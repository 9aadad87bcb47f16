"""The shared zone: nodes that belong to no container, filled by zoned with shared files.

A cpuset is a hard wall for user allocations: a container's page faults and reads
allocate only on its own nodes, so nothing a container does ever puts a page on the
shared nodes. zoned populates them itself. A short-lived **helper process** is placed in
the cgroup ``<parent>/zoned.shared``, whose ``cpuset.mems`` are the shared nodes, and
reads the declared shared paths (``host.shared_paths`` and each container's
``shared_paths``). The page cache pages it allocates land on the shared nodes; containers
reading those files later find them cached and allocate nothing (and, under memcg, are
charged nothing: the pages are charged to ``zoned.shared``).

How the helper warms (``method``):

- ``read``: ``pread(2)`` of every page not yet resident (``mincore(2)`` first), in 1 MiB
  reads — synchronous, the pages are there when it returns (default);
- ``mmap``: map the file and touch one byte per page (faults allocate the same way);
- ``fadvise``: ``posix_fadvise(WILLNEED)`` — asynchronous readahead, issued from the
  helper so allocated in its context; the helper waits until mincore shows the pages,
  or until none came for ``SETTLE_S`` (readahead is capped per call: it may bring less).

Pages already cached elsewhere (say on the container that read the file first) are not
moved by reading. With ``move=True`` the helper then maps the file and calls
``mbind(MPOL_BIND, shared nodes, MPOL_MF_MOVE_ALL)`` on the mapping, which migrates the
file's resident pages to the shared nodes even when containers map them (CAP_SYS_NICE;
pages that are locked, under writeback or pinned stay).

Where pages landed is verified, not assumed: after the helper is done, this process maps
each file, touches only the pages ``mincore`` reports resident (a minor fault maps the
cached page; nothing is allocated), and reads ``N<node>=`` from its own
``/proc/self/numa_maps`` for that mapping.

Re-warm (:func:`rewarm`): page cache on the shared nodes is reclaimable, so shared pages
get evicted under pressure on those nodes (or by ``drop_caches``); a container then
faults them in again on its own nodes. ``rewarm(budget_bytes_per_s)`` re-reads only what
is no longer resident, paced so that the helper reads at most that many bytes per second
(the I/O and the allocation are the cost). The daemon calls it on a timer; see
docs/shared-zone.md for the pace.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zoned.backends.base import Backend
from zoned.config.decl import Amount, ContainerDecl, Declarations
from zoned.errors import Problem, SharedZoneError, Unsupported
from zoned.model.nodelist import format_nodelist
from zoned.shared.pages import where

SHARED_LEAF = "zoned.shared"
METHODS = ("read", "mmap", "fadvise")
CHUNK = 1 << 20
HELPER_TIMEOUT_S = 3600.0


def declared_paths(decls: Declarations) -> list[str]:
    """Host paths first, then each container's, each once, in declaration order."""
    out: dict[str, None] = dict.fromkeys(decls.host.shared_paths)
    for c in decls.containers:
        out.update(dict.fromkeys(c.shared_paths))
    return list(out)


def expand(paths: Iterable[str]) -> Iterator[Path]:
    """Regular files under ``paths`` (directories walked, symlinks not followed)."""
    for p in paths:
        path = Path(p)
        if path.is_dir() and not path.is_symlink():
            for root, _dirs, files in os.walk(path):
                for f in sorted(files):
                    fp = Path(root) / f
                    if fp.is_file() and not fp.is_symlink():
                        yield fp
        else:
            yield path


# ---------------------------------------------------------------------------------------
# Driving it


@dataclass
class FileReport:
    path: str
    size: int
    read: int = 0  # bytes the helper read (what was not resident before)
    resident: int = 0  # bytes in the page cache afterwards
    nodes: dict[int, int] = field(default_factory=dict)  # resident bytes by node
    on_shared: int = 0
    error: str | None = None


@dataclass
class WarmReport:
    shared_nodes: tuple[int, ...]
    cgroup: str
    method: str
    helper_mems: str
    files: list[FileReport]
    seconds: float
    slept: float = 0.0

    def as_json(self) -> dict[str, Any]:
        doc = asdict(self)
        for f in doc["files"]:
            f["nodes"] = {str(k): v for k, v in f["nodes"].items()}
        return doc


def shared_cgroup(backend: Backend, nodes: frozenset[int]) -> str:
    """Create or adopt ``<parent>/zoned.shared`` with ``nodes`` (writes only what differs)."""
    decl = ContainerDecl(name=SHARED_LEAF, min=Amount.nodes(1), max=Amount.nodes(1))
    return backend.ensure(decl, nodes).path


def place_pid(backend: Backend, pid: int) -> None:
    """Move ``pid`` into zoned.shared (the backend's attach, or cgroup.procs on v2)."""
    try:
        backend.attach(SHARED_LEAF, pid)
    except Unsupported:
        fs = getattr(backend, "fs", None)
        if fs is None:
            raise
        fs.move_pid(backend.state(SHARED_LEAF).path, pid)


def run_helper(
    backend: Backend,
    nodes: frozenset[int],
    files: Sequence[Path],
    *,
    method: str = "read",
    move: bool = False,
    rate: float | None = None,
    timeout_s: float = HELPER_TIMEOUT_S,
    ensure: bool = True,
) -> dict[str, Any]:
    """Start the helper, place it in zoned.shared, hand it the files, return its answer.

    ``ensure=False``: the caller made zoned.shared already (``shared_cgroup``), e.g. on the
    daemon's loop thread, so that this may run on a worker: a backend's ``ensure``
    registers notification fds and must run on the loop's thread.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    if ensure:
        shared_cgroup(backend, nodes)
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoned.shared.helper", "--helper"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        place_pid(backend, proc.pid)
        req = {
            "paths": [str(f) for f in files],
            "method": method,
            "move_to": sorted(nodes) if move else [],
            "rate": rate,
        }
        out, err = proc.communicate(json.dumps(req) + "\n", timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise SharedZoneError(f"shared-zone helper still running after {timeout_s:g} s") from exc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise SharedZoneError(f"shared-zone helper failed ({proc.returncode}): {err.strip()}")
    try:
        answer: dict[str, Any] = json.loads(out)
    except json.JSONDecodeError as exc:
        raise SharedZoneError(f"shared-zone helper answered {out[:200]!r}") from exc
    return answer


def warm(
    backend: Backend,
    nodes: frozenset[int],
    paths: Sequence[str],
    *,
    method: str = "read",
    move: bool = False,
    rate: float | None = None,
    ensure: bool = True,
) -> WarmReport:
    """Warm ``paths`` into the shared zone and report where their pages are afterwards.
    ``ensure``: as for :func:`run_helper`."""
    if not nodes:
        raise SharedZoneError("no shared zone: declare host.shared (a count or node list)")
    t0 = time.monotonic()
    reports: list[FileReport] = []
    files: list[Path] = []
    for f in expand(paths):
        try:
            st = f.stat()
        except OSError as exc:
            reports.append(FileReport(str(f), 0, error=f"{exc.strerror} (errno {exc.errno})"))
            continue
        if not stat.S_ISREG(st.st_mode):
            reports.append(FileReport(str(f), 0, error="not a regular file"))
            continue
        files.append(f)
    answer = run_helper(backend, nodes, files, method=method, move=move, rate=rate, ensure=ensure)
    for item in answer["files"]:
        r = FileReport(item["path"], item.get("size", 0), read=item.get("read", 0))
        r.error = item.get("error") or item.get("moved_error")
        if "error" not in item:
            try:
                pl = where(Path(item["path"]))
            except OSError as exc:
                r.error = f"locating its pages: {exc.strerror or exc} (errno {exc.errno})"
            else:
                r.resident, r.nodes, r.on_shared = pl.resident, pl.nodes, pl.on(nodes)
        reports.append(r)
    return WarmReport(
        shared_nodes=tuple(sorted(nodes)),
        cgroup=backend.state(SHARED_LEAF).path,
        method=method,
        helper_mems=answer.get("mems_allowed", ""),
        files=reports,
        seconds=round(time.monotonic() - t0, 3),
        slept=answer.get("slept", 0.0),
    )


def rewarm(
    backend: Backend,
    nodes: frozenset[int],
    paths: Sequence[str],
    budget_bytes_per_s: float,
    *,
    move: bool = False,
    ensure: bool = True,
) -> WarmReport:
    """Re-read what of ``paths`` is no longer resident, at most ``budget_bytes_per_s``.

    Resident pages are skipped (by mincore, in the helper), so a warm shared zone costs
    one mincore per file. Blocking: the daemon runs it off its event loop (a worker) and
    picks the budget (docs/shared-zone.md). ``move`` also promotes pages cached on
    containers' nodes into the shared zone. ``ensure=False``: zoned.shared exists (the
    daemon makes it on its loop thread before it hands this to a worker).
    """
    if budget_bytes_per_s <= 0:
        raise ValueError("the re-warm budget must be positive")
    return warm(
        backend, nodes, paths, method="read", move=move, rate=budget_bytes_per_s, ensure=ensure
    )


def shared_warnings(decls: Declarations) -> list[str]:
    """What ``zoned check`` should say about the shared zone's declarations."""
    return [w.message for w in located_shared_warnings(decls)]


def located_shared_warnings(decls: Declarations) -> list[Problem]:
    """``shared_warnings`` with where each was declared (file:line:col, when known)."""
    host = decls.host
    has_zone = bool(host.shared_nodes or host.shared_count)
    nodes = (
        format_nodelist(host.shared_nodes)
        if host.shared_nodes
        else (f"the {host.shared_count} shared node" + ("s" if host.shared_count != 1 else ""))
    )
    out: list[Problem] = []
    paths = declared_paths(decls)
    path_key = next(
        (f"containers.{c.name}.shared_paths" for c in decls.containers if c.shared_paths),
        "host.shared_paths",
    )
    if paths and not has_zone:
        out.append(
            Problem(
                decls.where("host.shared_paths" if host.shared_paths else path_key),
                f"shared_paths are declared ({len(paths)}) but there is no shared zone "
                "(host.shared is 0): nothing will be warmed",
            )
        )
    if has_zone and not paths and not any(c.shared for c in decls.containers):
        out.append(
            Problem(
                decls.where("host.shared"),
                f"the shared zone ({nodes}) has no shared_paths and no container with "
                "shared: true: it stays empty",
            )
        )
    tmpfs = ", ".join(t.path for t in host.shared_tmpfs)
    sharers = [c.name for c in decls.containers if c.shared]
    if tmpfs and has_zone and not sharers:
        out.append(
            Problem(
                decls.where("host.shared_tmpfs"),
                f"shared_tmpfs ({tmpfs}) is bound to the shared zone ({nodes}), but no "
                "container has shared: true: every container's cpuset cuts the mount's "
                "mpol=bind, so what they write there lands on their own nodes and nothing of "
                "it on the shared zone",
            )
        )
    if tmpfs and has_zone and sharers:
        out.append(
            Problem(
                decls.where("host.shared_tmpfs"),
                f"shared_tmpfs ({tmpfs}): only files created by a container with shared: true "
                f"({', '.join(sharers)}) get the mount's mpol=bind; a file another container "
                "creates there gets no policy (its pages go to its writers' own nodes, even "
                "when a shared: true container writes it)",
            )
        )
    for c in decls.containers:
        if c.shared and has_zone:
            out.append(
                Problem(
                    decls.where(f"containers.{c.name}.shared"),
                    f"{c.name}: shared: true puts the shared nodes ({nodes}) in its "
                    "cpuset.mems, so it can allocate its own memory there too, not only "
                    "shared tmpfs (mpol=bind) pages: the shared zone's capacity is no longer "
                    "reserved for shared pages, and its pages there are charged to no "
                    "container's zones",
                )
            )
    return out
