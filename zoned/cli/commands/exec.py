"""``zoned exec CONTAINER -- CMD…``: run CMD inside a container from its first instruction.

The child writes its own pid into the container's ``cgroup.procs`` (v1: cpuset, then
memory; v2: the one) *before* it execs CMD, so not one page of CMD is allocated outside
the container's nodes. The parent waits and exits with CMD's status; a CMD killed by
signal N gives 128+N, as a shell does.

Exit status when zoned itself fails, as env(1) and chroot(1) do: 125 (bad config, unknown
container, no cgroup — the daemon is not running —, the move was refused), 126 (CMD could
not be run), 127 (CMD not found). Nothing of CMD runs in those cases.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys

from zoned.cli.commands._index import describe
from zoned.cli.commands._locate import add_locate_args, locate
from zoned.errors import ZonedError

FAILED = 125
CANNOT_RUN = 126
NOT_FOUND = 127
_CHILD_DEFAULTS = (
    # Python ignores SIGPIPE and SIGXFSZ at start, and ignored signals survive exec:
    # restore them, as subprocess does. The parent's SIGINT/SIGQUIT/forwarders likewise.
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGHUP,
)
_FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


DESCRIPTION = """\
Run CMD inside CONTAINER's cgroup: the child enters the cgroup before it execs CMD, so
CMD's first instruction already runs on the container's nodes. Reads the configuration
to find the container's cgroup. The parent waits and exits with CMD's status.

examples:
  zoned exec web -- python3 server.py
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("exec", **describe("exec", DESCRIPTION))
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("cmd", nargs="+", metavar="CMD", help="the command (put it after --)")
    add_locate_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cmd: list[str] = args.cmd
    try:
        where = locate(
            args.config, args.container, cgroup_root=args.cgroup_root, proc_root=args.proc_root
        )
    except ZonedError as exc:
        for line in str(exc).splitlines():
            print(f"zoned exec: {line}", file=sys.stderr)
        return FAILED
    return spawn_into([str(f) for f in where.tree.procs_files(where.path)], cmd)


def spawn_into(procs_files: list[str], cmd: list[str]) -> int:
    """Fork; the child enters each ``cgroup.procs`` in order, then execs ``cmd``.

    Why an explicit fork and not ``subprocess(preexec_fn=…)`` or ``os.posix_spawn``:
    posix_spawn has no step that can write a file between fork and exec (clone3's
    CLONE_INTO_CGROUP would, but only on v2 and Python does not expose it), and
    preexec_fn is documented unsafe when threads exist and hides the failure's cause.
    This process runs no threads, so running Python in the forked child is safe here, and
    an explicit child reports exactly what failed through a close-on-exec pipe (EOF on
    that pipe means the exec happened), as subprocess does internally.
    """
    r, w = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = FAILED
        try:
            os.close(r)
            code = _child(procs_files, cmd, w)
        finally:
            os._exit(code)
    os.close(w)
    # Like a shell waiting for a foreground job: the terminal's ^C and ^\ reach the child
    # (same process group); signals sent to zoned exec alone are passed on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    for sig in _FORWARDED:
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    report = b""
    with os.fdopen(r, "rb") as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    if report:
        code_text, _, message = report.decode(errors="replace").partition("\0")
        print(f"zoned exec: {message}", file=sys.stderr)
        return int(code_text)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _child(procs_files: list[str], cmd: list[str], report: int) -> int:
    """Enter the cgroups, then exec; on failure say why on ``report`` and return the code."""
    me = str(os.getpid()).encode()
    for path in procs_files:
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, me)
            finally:
                os.close(fd)
        except OSError as exc:
            why = os.strerror(exc.errno or 0)
            name = errno.errorcode.get(exc.errno or 0, "?")
            os.write(report, f"{FAILED}\0cannot enter {path}: {why} ({name})".encode())
            return FAILED
    for sig in _CHILD_DEFAULTS:
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        code = NOT_FOUND if exc.errno == errno.ENOENT else CANNOT_RUN
        what = "command not found" if code == NOT_FOUND else os.strerror(exc.errno or 0)
        os.write(report, f"{code}\0{cmd[0]}: {what}".encode())
        return code
    return FAILED  # not reached: execvp returns only by raising
