"""Shared tmpfs mounts bound to the shared zone: decide from mountinfo, then mount.

``host.shared_tmpfs`` declares mount points. For each, :func:`plan` decides, from the
current mounts (``<proc root>/self/mountinfo``), what the path is on disk and the shared
zone's nodes, one action with its reason:

- **mount**: nothing is mounted there (a missing directory is created, mode 0755):
  ``mount -t tmpfs -o mpol=bind:<nodes>,mode=<mode>[,size=<bytes>]``, with ``nosuid`` and
  ``nodev`` as ``/dev/shm`` has them;
- **keep**: a tmpfs whose super options already show ``mpol=bind:<nodes>`` (and the
  declared size, when one is declared) is left alone;
- **remount**: a tmpfs with another policy (other nodes, ``interleave``, ``prefer``,
  ``bind=static``, none) or another size is remounted with ``mpol=bind:<nodes>`` (and the
  size). Its per-mount flags (``ro``, ``nosuid``, ``nodev``, ``noexec``, atime) are passed
  again, since a remount resets those not given (measured on 6.1: a remount without
  ``MS_NOSUID|MS_NODEV`` dropped them);
- **refuse**: something else is mounted there, the path is not a directory, or it is a
  directory with files in it that a mount would hide.

The decision is pure (mountinfo entries, path states, declaration, nodes in → actions
out); :func:`apply` performs it through ``mount(2)`` (ctypes, no ``mount`` binary) and
translates OS errors into ``BackendError``/``WriteRefused`` with their errno;
:func:`ensure` does both and then re-reads mountinfo to verify what the kernel shows.

What the kernel does, measured in the 6.1 guest (docs/shared-zone.md, "A shared tmpfs"):

- mountinfo shows the policy in the super options as ``mpol=bind:7`` (``bind:5-7``,
  ``bind=static:6``, ``interleave:1-2``, ``prefer:6``); the size as ``size=<KiB>k`` only
  when one was given; ``mode`` only when it is not 1777;
- tmpfs accepts ``mpol`` (and ``size``) on remount; it ignores ``mode`` there, and
  ``mpol=default`` on remount keeps the old policy. Nodes without memory: EINVAL;
- the mount's policy is copied into each file **when the file is created**, narrowed to
  the creating task's cpuset: a file created by a container without the shared nodes in
  its ``cpuset.mems`` gets no policy at all (its pages go where its writers' cpusets
  allow), and a remount changes the policy of new files only: existing files keep the
  nodes they were created with (their pages are not moved either);
- a writer's cpuset still cuts the file's policy: a container without the shared nodes
  writing into a file created under ``bind:7`` allocates on its own nodes.

zoned never unmounts: unmounting a tmpfs destroys its files. Stopping the daemon leaves
the mounts as they are.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoned.config.decl import TmpfsDecl
from zoned.errors import BackendError, WriteRefused
from zoned.kernel.mountinfo import read_mounts
from zoned.kernel.roots import PROC_ROOT
from zoned.model.nodelist import format_nodelist
from zoned.shared.tmpfsplan import (
    MS_REMOUNT,
    PathState,
    TmpfsAction,
    Verb,
    describe_mount,
    plan,
    probe_path,
    top_mount,
)

# The errnos that mean the kernel refused the request (rather than failed to do it).
_REFUSED = {errno.EINVAL, errno.EPERM, errno.EACCES, errno.EBUSY, errno.ENOSPC, errno.EROFS}


# ---------------------------------------------------------------------------------------
# The effect


MountFn = Callable[[str, str, str | None, int, str], None]
"""``mount(source, target, fstype, flags, data)``; raises OSError with the errno."""


def libc_mount(source: str, target: str, fstype: str | None, flags: int, data: str) -> None:
    """mount(2) through the C library."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
    ]
    rc = libc.mount(
        source.encode(),
        os.fsencode(target),
        fstype.encode() if fstype is not None else None,
        flags,
        data.encode(),
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def translate(exc: OSError, what: str) -> BackendError:
    """An OS error as zoned's own: WriteRefused when the kernel said no, with the errno."""
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    hint = ""
    if exc.errno == errno.EINVAL and "mpol" in what:
        hint = " (a node without memory in mpol, or a size below what the tmpfs holds now)"
    elif exc.errno == errno.EPERM:
        hint = " (mount(2) needs CAP_SYS_ADMIN in the host's mount namespace)"
    message = f"{what}: {name} ({exc.strerror}){hint}"
    if exc.errno in _REFUSED:
        return WriteRefused(message, exc.errno)
    return BackendError(message, exc.errno)


def perform(action: TmpfsAction, mount: MountFn = libc_mount) -> None:
    """Carry out one action. Raises BackendError (WriteRefused when the kernel refused);
    a refusal is raised as WriteRefused with its reason."""
    if action.verb is Verb.KEEP:
        return
    if action.verb is Verb.REFUSE:
        raise WriteRefused(action.reason)
    if action.create:
        try:
            Path(action.target).mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise translate(exc, f"mkdir {action.target}") from exc
    fstype: str | None = "tmpfs"
    flags = action.flags
    what = f"mount -t tmpfs -o {action.data} tmpfs {action.target}"
    if action.verb is Verb.REMOUNT:
        fstype, flags = None, flags | MS_REMOUNT
        what = f"mount -o remount,{action.data} {action.target}"
    try:
        mount("tmpfs", action.target, fstype, flags, action.data)
    except OSError as exc:
        raise translate(exc, what) from exc


@dataclass
class Outcome:
    """One declared mount point after :func:`ensure`: what was decided, whether it holds."""

    action: TmpfsAction
    done: bool  # the action was carried out (False in a dry run, or when it failed)
    error: str | None = None
    errno_name: str | None = None
    after: str | None = None  # what the kernel shows there afterwards

    @property
    def ok(self) -> bool:
        return self.error is None

    def line(self, dry_run: bool) -> str:
        a = self.action
        past = {Verb.MOUNT: "mounted", Verb.REMOUNT: "remounted", Verb.KEEP: "kept"}
        would = {Verb.MOUNT: "would mount", Verb.REMOUNT: "would remount", Verb.KEEP: "keep"}
        if a.verb is Verb.REFUSE:
            return f"{a.path}: refused: {a.reason}"
        verb = (would if dry_run else past)[a.verb]
        opts = f" with {a.data}" if a.data and a.verb is not Verb.KEEP else ""
        text = f"{a.path}: {verb}{opts}: {a.reason}"
        if self.error:
            text = f"{a.path}: failed to {a.verb.value}{opts}: {self.error} ({a.reason})"
        elif self.after and not dry_run and a.verb is not Verb.KEEP:
            text += f"; now {self.after}"
        return text

    def as_json(self) -> dict[str, Any]:
        a = self.action
        return {
            "path": a.path,
            "target": a.target,
            "action": a.verb.value,
            "reason": a.reason,
            "before": a.before,
            "options": a.data or None,
            "done": self.done,
            "ok": self.ok,
            "error": self.error,
            "errno": self.errno_name,
            "after": self.after,
        }


@dataclass
class MountReport:
    """What :func:`ensure` decided and did."""

    nodes: frozenset[int]
    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)
    namespace: str | None = None  # a note when this is not the host's mount namespace

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    def lines(self) -> list[str]:
        head = f"shared tmpfs: shared zone node {format_nodelist(self.nodes) or 'none'}"
        if self.dry_run:
            head += " (dry run: nothing mounted)"
        out = [head, *(f"  {o.line(self.dry_run)}" for o in self.outcomes)]
        if self.namespace:
            out.append(f"  note: {self.namespace}")
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "shared_nodes": sorted(self.nodes),
            "dry_run": self.dry_run,
            "namespace": self.namespace,
            "ok": self.ok,
            "mounts": [o.as_json() for o in self.outcomes],
        }


def namespace_note(proc_root: Path = PROC_ROOT) -> str | None:
    """Why mounts made here would not be seen by the host (None: they would, or unknown).

    A mount made in a private mount namespace (systemd's ProtectSystem=, PrivateTmp=, a
    container) stays there: containers outside never see the tmpfs.
    """
    try:
        mine = str((proc_root / "self" / "ns" / "mnt").readlink())
        init = str((proc_root / "1" / "ns" / "mnt").readlink())
    except OSError:
        return None
    if mine == init:
        return None
    return (
        f"this process's mount namespace ({mine}) is not PID 1's ({init}): a tmpfs mounted"
        " here is not seen outside it; run `zoned shared mount` in the host's namespace (the"
        " shipped unit does, before the daemon starts: ExecStartPre=-+nsenter --target 1"
        " --mount -- zoned shared mount; `systemctl restart zoned` applies a change)"
    )


def ensure(
    declared: Sequence[TmpfsDecl],
    nodes: frozenset[int],
    *,
    proc_root: Path = PROC_ROOT,
    dry_run: bool = False,
    mount: MountFn = libc_mount,
    probe: Callable[[str], PathState] = probe_path,
    refuse_private_namespace: bool = False,
) -> MountReport:
    """Decide, act (unless ``dry_run``) and verify every declared mount point.

    One mount point's failure does not stop the others; each outcome says what happened.
    ``refuse_private_namespace`` (the daemon): when this process's mount namespace is not
    PID 1's, decide but do nothing, each action failing with the reason. Raises
    Unsupported when mountinfo cannot be read.
    """
    mounts = read_mounts(proc_root)
    actions = plan(declared, nodes, mounts, {d.path: probe(d.path) for d in declared})
    note = namespace_note(proc_root)
    report = MountReport(nodes, dry_run, namespace=note)
    for a in actions:
        out = Outcome(a, done=False)
        report.outcomes.append(out)
        if a.verb is Verb.REFUSE:
            out.error = a.reason
            continue
        if dry_run or a.verb is Verb.KEEP:
            continue
        if refuse_private_namespace and note is not None:
            out.error = "not mounted: " + note
            continue
        try:
            perform(a, mount)
        except BackendError as exc:
            out.error = str(exc)
            out.errno_name = exc.errno_name
        else:
            out.done = True
    _verify(report, declared, proc_root, probe)
    return report


def _verify(
    report: MountReport,
    declared: Sequence[TmpfsDecl],
    proc_root: Path,
    probe: Callable[[str], PathState],
) -> None:
    """After the mounts: what the kernel shows at each target; an action carried out
    whose target would still not be kept is an error (the kernel did not take it)."""
    if not any(o.done for o in report.outcomes):
        for o in report.outcomes:
            if o.action.verb is Verb.KEEP:
                o.after = o.action.before
        return
    mounts = read_mounts(proc_root)
    by_path = {d.path: d for d in declared}
    for o in report.outcomes:
        current = top_mount(mounts, o.action.target)
        o.after = describe_mount(current) if current is not None else None
        if not o.done:
            continue
        path = o.action.path
        (again,) = plan([by_path[path]], report.nodes, mounts, {path: probe(path)})
        if again.verb is not Verb.KEEP:
            o.error = f"the kernel accepted it but shows {o.after or 'no mount'} there"
