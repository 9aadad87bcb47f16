"""``zoned shared``: fill the shared zone with the declared shared paths, and show it.

    zoned shared warm  [--config F] [--json] [--method read|mmap|fadvise] [--move]
                       [--rate BYTES_PER_S] [PATH ...]
    zoned shared where [--json] PATH ...
    zoned shared mount [--config F] [--json] [--dry-run] [--sysfs-root D] [--proc-root D]

``warm`` runs the helper in ``<parent>/zoned.shared`` (cpuset.mems = the shared nodes),
which reads the paths (default: host.shared_paths and every container's shared_paths)
into the page cache; then reports, per file, bytes read, bytes resident and where the
resident pages are (bytes by node, and how much is on the shared nodes). ``--move`` also
migrates pages already cached on other nodes into the shared zone. ``where`` only reports.
``mount`` mounts each ``host.shared_tmpfs`` as a tmpfs with ``mpol=bind:<shared nodes>``,
remounts one with another policy, keeps one that is right, refuses anything else there
(``zoned.shared.tmpfs``); it never unmounts. Exit status 1 when any mount point is refused
or fails.

JSON, schema ``zoned/shared-warm/v1`` (bytes; node keys are strings; ``where``: the
``files`` part only, ``zoned/shared-where/v1``)::

    {"schema": "zoned/shared-warm/v1", "shared_nodes": [5], "cgroup": "zoned/zoned.shared",
     "method": "read", "helper_mems": "5", "seconds": 0.8, "slept": 0.0,
     "files": [{"path": "/data/x", "size": 67108864, "read": 67108864,
                "resident": 67108864, "nodes": {"5": 67108864}, "on_shared": 67108864,
                "error": null}]}

``mount --json`` (``zoned/shared-mount/v1``)::

    {"schema": "zoned/shared-mount/v1", "config": "/etc/zoned/zoned.yaml", "shared_nodes": [7],
     "dry_run": false, "namespace": null, "ok": true,
     "mounts": [{"path": "/srv/shared", "target": "/srv/shared", "action": "mount",
                 "reason": "nothing is mounted there", "before": "an empty directory",
                 "options": "mpol=bind:7,mode=1777,size=268435456", "done": true,
                 "ok": true, "error": null, "errno": null,
                 "after": "a tmpfs (mpol=bind:7, size 256M)"}]}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoned.cli.commands._index import describe, epilog
from zoned.config.load import load
from zoned.config.paths import DEFAULT_PATH
from zoned.kernel.roots import PROC_ROOT, SYS_ROOT
from zoned.model.jsondoc import envelope
from zoned.model.sizes import format_size, parse_size
from zoned.shared.pages import where
from zoned.shared.zone import METHODS, declared_paths, expand

if TYPE_CHECKING:
    from zoned.config.decl import Declarations
    from zoned.shared.zone import WarmReport


DESCRIPTION = """\
The shared zone: nodes that belong to no container, filled by zoned with files every
container reads. warm reads the declared shared paths (or the PATHs given) into its
page cache; where shows on which nodes files' cached pages are; mount mounts the
declared shared tmpfs bound to the shared nodes. Reads the configuration and /sys.

examples:
  zoned shared warm --rate 64M
  zoned shared where /usr/lib/x86_64-linux-gnu/libc.so.6
  zoned shared mount --dry-run
"""

WARM = """\
Read the declared shared paths (or the PATHs given) into the shared zone's page cache,
from a helper bound to the shared nodes, so every container finds them cached there.
Reads the configuration and /sys; --move also migrates pages already cached elsewhere.

examples:
  zoned shared warm
  zoned shared warm /usr/lib --rate 64M
"""

WHERE = """\
On which nodes the cached pages of the given files are (from mincore and
/proc/self/numa_maps of a mapping). Reads only.

examples:
  zoned shared where /usr/lib/x86_64-linux-gnu/libc.so.6
"""

MOUNT = """\
Mount the tmpfs the configuration declares (host.shared_tmpfs) with
mpol=bind:<the shared nodes>, so files written there live on the shared zone. Reads the
configuration, /sys and /proc/self/mountinfo; --dry-run shows what it would do.

examples:
  zoned shared mount --dry-run
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("shared", **describe("shared", DESCRIPTION))
    ssub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    w = ssub.add_parser(
        "warm",
        help="read shared paths into the shared zone's page cache",
        description=WARM,
        epilog=epilog("shared"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    w.add_argument("paths", nargs="*", metavar="PATH", help="default: the declared paths")
    w.add_argument("--config", type=Path, default=DEFAULT_PATH, metavar="FILE")
    w.add_argument("--method", choices=METHODS, default="read")
    w.add_argument("--move", action="store_true", help="also migrate pages cached elsewhere")
    w.add_argument("--rate", type=parse_size, default=None, metavar="BYTES_PER_S",
                   help="read at most this much per second (like 64M)")  # fmt: skip
    w.add_argument("--cgroup-root", type=Path, metavar="DIR", help="default: host.cgroup_root")
    w.add_argument("--json", action="store_true", help="machine-readable output")
    w.set_defaults(func=run_warm)
    q = ssub.add_parser(
        "where",
        help="where the cached pages of files are, by node",
        description=WHERE,
        epilog=epilog("shared"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("paths", nargs="+", metavar="PATH")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=run_where)
    m = ssub.add_parser(
        "mount",
        help="mount the declared shared tmpfs with mpol=bind:<the shared nodes>",
        description=MOUNT,
        epilog=epilog("shared"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m.add_argument("--config", type=Path, default=DEFAULT_PATH, metavar="FILE")
    m.add_argument("--dry-run", action="store_true", help="decide and show; mount nothing")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.add_argument("--sysfs-root", type=Path, default=SYS_ROOT, metavar="DIR",
                   help="sysfs root, for a shared zone declared as a count")  # fmt: skip
    m.add_argument("--proc-root", type=Path, default=PROC_ROOT, metavar="DIR",
                   help="procfs root: mountinfo and mount namespaces")  # fmt: skip
    m.set_defaults(func=run_mount)


def run_warm(args: argparse.Namespace) -> int:
    from zoned.accounting.ownership import shared_nodes  # numpy: only when run
    from zoned.backends.select import readonly_backend  # numpy: only when run
    from zoned.service.sdscope import localize_here
    from zoned.shared.zone import warm

    decls = localize_here(load(args.config), PROC_ROOT, args.cgroup_root)
    paths = args.paths or declared_paths(decls)
    backend = readonly_backend(decls, cgroup_root=args.cgroup_root)
    try:
        nodes = shared_nodes(decls, backend.topology())
        report = warm(backend, nodes, paths, method=args.method, move=args.move, rate=args.rate)
    finally:
        backend.close()
    if args.json:
        print(json.dumps({**envelope("shared-warm"), **report.as_json()}, indent=2))
    else:
        print(render(report))
    return 1 if any(f.error for f in report.files) else 0


def _nodes(n: dict[int, int]) -> str:
    return " ".join(f"N{k}={format_size(v)}" for k, v in sorted(n.items())) or "-"


def render(r: WarmReport) -> str:
    lines = [
        f"shared zone: nodes {','.join(map(str, r.shared_nodes))} (cgroup {r.cgroup}, helper "
        f"mems {r.helper_mems}), method {r.method}, {r.seconds:.2f} s"
    ]
    for f in r.files:
        if f.error and not f.resident:
            lines.append(f"  {f.path}: {f.error}")
            continue
        lines.append(
            f"  {f.path}: {format_size(f.size)}, read {format_size(f.read)}, resident "
            f"{format_size(f.resident)}, on the shared zone {format_size(f.on_shared)} "
            f"[{_nodes(f.nodes)}]" + (f" ({f.error})" if f.error else "")
        )
    return "\n".join(lines)


def run_where(args: argparse.Namespace) -> int:
    out: list[dict[str, Any]] = []
    failed = 0
    for f in expand(args.paths):
        try:
            pl = where(f)
        except OSError as exc:
            print(f"zoned shared where: {f}: {exc.strerror or exc}", file=sys.stderr)
            failed += 1
            continue
        out.append(
            {"path": str(f), "size": pl.size, "resident": pl.resident,
             "nodes": {str(k): v for k, v in sorted(pl.nodes.items())}}
        )  # fmt: skip
    if args.json:
        print(json.dumps({**envelope("shared-where"), "files": out}, indent=2))
    else:
        for item in out:
            nodes = " ".join(f"N{k}={format_size(v)}" for k, v in item["nodes"].items()) or "-"
            print(
                f"{item['path']}: {format_size(item['size'])}, resident "
                f"{format_size(item['resident'])} [{nodes}]"
            )
    return 1 if failed else 0


def declared_shared_nodes(decls: Declarations, sys_root: Path, proc_root: Path) -> frozenset[int]:
    """The shared zone's nodes: the declared list, or a count taken from the topology as
    placement takes it (``zoned.accounting.ownership.shared_nodes``)."""
    if decls.host.shared_nodes or not decls.host.shared_count:
        return frozenset(decls.host.shared_nodes)
    from zoned.accounting.ownership import shared_nodes  # numpy: only for a count
    from zoned.kernel.topology import read_topology

    return shared_nodes(decls, read_topology(sys_root, proc_root))


def run_mount(args: argparse.Namespace) -> int:
    from zoned.shared.tmpfs import MountReport, ensure

    decls = load(args.config)
    tmpfs = decls.host.shared_tmpfs
    if tmpfs:
        nodes = declared_shared_nodes(decls, args.sysfs_root, args.proc_root)
        report = ensure(tmpfs, nodes, proc_root=args.proc_root, dry_run=args.dry_run)
    else:
        report = MountReport(frozenset(), args.dry_run)
    if args.json:
        doc = {**envelope("shared-mount"), "config": str(args.config), **report.as_json()}
        print(json.dumps(doc, indent=2))
    elif not tmpfs:
        print(f"{args.config}: no host.shared_tmpfs declared: nothing to mount")
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else 1
