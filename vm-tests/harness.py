"""Boot real Debian kernels with fake NUMA under QEMU and run a command inside them.

The guest sees the host's ``/`` read-only over 9p and the project directory read-write over a
second 9p share mounted at the same absolute path, so the project's virtual environment works
unchanged inside the guest. Everything downloaded or built is cached under
``vm-tests/.cache/``; console logs and per-run files go to ``vm-tests/logs/``.

    boot = Boot(kernel="6.1", numa="8", mem="2G", cgroup="v2")
    result = run_in_guest(boot, ["pytest", "-q", "vm-tests/guest"], timeout_s=600)
    assert result.rc == 0, result.tail()

Every wait is bounded: QEMU is killed when ``timeout_s`` runs out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Literal

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
CACHE = HERE / ".cache"
LOGS = HERE / "logs"

CgroupMode = Literal["v1", "v2"]

DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class HarnessError(Exception):
    """A prerequisite is missing or a step of preparing a boot failed."""


# --------------------------------------------------------------------------------------------
# Kernels: one table entry per kernel. ``sources`` is None for the system's own apt sources, or
# a one-line sources.list used through a private apt state directory (never touching the
# system's apt configuration).


@dataclasses.dataclass(frozen=True)
class KernelSpec:
    """``suites``: more than one Debian suite to choose from, each through its own private
    apt state; the one whose meta package has the highest version wins, at run time."""

    name: str
    meta_package: str
    sources: str | None = None
    cgroup_modes: tuple[CgroupMode, ...] = ("v1", "v2")
    suites: tuple[str, ...] = ()


def debian_sources(suite: str) -> str:
    """A one-line sources.list for ``suite`` of the Debian archive."""
    return f"deb [signed-by={DEBIAN_KEYRING}] http://deb.debian.org/debian {suite} main"


# The suites "newest" chooses among. Today (2026-12) trixie-backports serves 7.3 and unstable
# 7.2; next year it may be the other way round, so both are asked at every run.
NEWEST_SUITES = ("trixie-backports", "unstable")

KERNELS: dict[str, KernelSpec] = {
    spec.name: spec
    for spec in (
        KernelSpec("6.1", "linux-image-amd64"),
        KernelSpec(
            "6.12",
            "linux-image-amd64",
            sources=debian_sources("bookworm-backports"),
            cgroup_modes=("v2",),  # CPUSETS_V1 and MEMCG_V1 are off
        ),
        # The newest kernel Debian serves (7.x at the time of writing). Its version shows in
        # the run directory's name, the boot report and timings.jsonl.
        KernelSpec(
            "newest",
            "linux-image-amd64",
            cgroup_modes=("v2",),
            suites=NEWEST_SUITES,
        ),
    )
}

# What a 9p boot needs from the kernel package (about 10 MB of the 70 MB .deb). Debian's 7.x
# packages split the kernel: linux-image-<abi> is empty and depends on linux-binary-<abi>
# (``usr/lib/modules/<release>/vmlinuz``) and linux-modules-<abi> (``usr/lib/modules/…``).
_MODULE_DIRS = (
    "kernel/fs/9p/*",
    "kernel/net/9p/*",
    "kernel/fs/netfs/*",
    "kernel/fs/fscache/*",
    "kernel/drivers/virtio/*",
    "kernel/fs/overlayfs/*",
)
UNPACK_WILDCARDS = (
    "./boot/vmlinuz-*",
    "./usr/lib/modules/*/vmlinuz",
    *(f"./lib/modules/*/{d}" for d in _MODULE_DIRS),
    *(f"./usr/lib/modules/*/{d}" for d in _MODULE_DIRS),
)
# Packages a split linux-image-<abi> depends on that hold what the boot needs.
SPLIT_PARTS = ("linux-binary-", "linux-modules-")
# Modules the initramfs loads; their dependencies (read from each module's ``depends=``) are
# loaded first. Dependencies that are not in the unpacked tree are taken to be built in.
ROOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")


@dataclasses.dataclass(frozen=True)
class Kernel:
    """An unpacked kernel, ready to boot."""

    spec: KernelSpec
    package: str  # linux-image-6.1.0-NN-amd64
    version: str  # the Debian version of that package
    release: str  # uname -r
    vmlinuz: Path
    modules: Path  # .../lib/modules/<release>
    root: Path
    suite: str = ""  # the suite it came from, for a spec with ``suites``


def _run(
    argv: Sequence[str], *, timeout_s: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError as exc:
        raise HarnessError(f"{argv[0]}: not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"{shlex.join(argv)}: no answer within {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        raise HarnessError(
            f"{shlex.join(argv)} failed with status {proc.returncode}: "
            f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
        )
    return proc


@contextlib.contextmanager
def cache_lock(timeout_s: float = 900.0) -> Iterator[None]:
    """Serialise downloads and builds in the cache between concurrent test runs."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as fd:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise HarnessError(f"{CACHE / '.lock'}: held for {timeout_s:.0f} s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def _apt_options(spec: KernelSpec) -> list[str]:
    opts = ["-o", "DPkg::Lock::Timeout=600", "-o", "APT::Sandbox::User=root"]
    if spec.sources is None:
        return opts
    state = _apt_state(spec)
    return [
        *opts,
        "-o",
        f"Dir::Etc::SourceList={state / 'sources.list'}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::State::Lists={state / 'lists'}",
        "-o",
        f"Dir::Cache={state / 'cache'}",
    ]


def _apt_state(spec: KernelSpec) -> Path:
    # One private state per sources line: a "newest" suite shares nothing with another.
    if spec.suites:
        return CACHE / "apt" / f"{spec.name}-{spec.sources and spec.sources.split()[-2]}"
    return CACHE / "apt" / spec.name


def _private_apt_update(spec: KernelSpec) -> None:
    assert spec.sources is not None
    state = _apt_state(spec)
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text(spec.sources + "\n")
    _run(["apt-get", *_apt_options(spec), "-q", "update"], timeout_s=900)


def _newer(a: str, b: str) -> bool:
    """Whether Debian version ``a`` is higher than ``b`` (dpkg's own ordering)."""
    return subprocess.run(["dpkg", "--compare-versions", a, "gt", b], check=False).returncode == 0


def resolve_newest(spec: KernelSpec) -> tuple[KernelSpec, str, str]:
    """For a spec with ``suites``: the suite whose kernel is newest, as a single-suite spec,
    with (package name, version). Suites that cannot be asked are passed over."""
    best: tuple[KernelSpec, str, str] | None = None
    errors = []
    for suite in spec.suites:
        one = dataclasses.replace(spec, sources=debian_sources(suite))
        try:
            package, version = resolve_package(one)
        except HarnessError as exc:
            errors.append(f"{suite}: {exc}")
            continue
        if best is None or _newer(version, best[2]):
            best = (one, package, version)
    if best is None:
        raise HarnessError("no suite answered: " + "; ".join(errors))
    return best


def resolve_package(spec: KernelSpec) -> tuple[str, str]:
    """Return (package name, version) of the kernel the meta package currently points to."""
    if spec.sources is not None:
        _private_apt_update(spec)
    out = _run(
        ["apt-cache", *_apt_options(spec), "depends", spec.meta_package], timeout_s=120
    ).stdout
    names = re.findall(r"Depends:\s*(linux-image-\S+)", out)
    if not names:
        raise HarnessError(f"apt-cache depends {spec.meta_package}: no linux-image-* in {out!r}")
    package = names[0]
    policy = _run(["apt-cache", *_apt_options(spec), "policy", package], timeout_s=120).stdout
    match = re.search(r"Candidate:\s*(\S+)", policy)
    if match is None or match.group(1) == "(none)":
        raise HarnessError(f"apt-cache policy {package}: no candidate version")
    return package, match.group(1)


def _find_unpacked(spec: KernelSpec, root: Path, package: str, version: str) -> Kernel:
    vmlinuz = sorted((root / "boot").glob("vmlinuz-*"))
    if vmlinuz:
        release = vmlinuz[0].name.removeprefix("vmlinuz-")
    else:  # a split 7.x package: usr/lib/modules/<release>/vmlinuz
        vmlinuz = sorted((root / "usr" / "lib" / "modules").glob("*/vmlinuz"))
        if not vmlinuz:
            raise HarnessError(f"{root}: no boot/vmlinuz-* nor usr/lib/modules/*/vmlinuz")
        release = vmlinuz[0].parent.name
    modules = root / "lib" / "modules" / release
    if not modules.is_dir():
        modules = root / "usr" / "lib" / "modules" / release
    meta = root / "kernel.json"
    suite = json.loads(meta.read_text()).get("suite", "") if meta.exists() else ""
    return Kernel(
        spec=spec,
        package=package,
        version=version,
        release=release,
        vmlinuz=vmlinuz[0],
        modules=modules,
        root=root,
        suite=suite,
    )


def _cached_kernels(spec: KernelSpec) -> list[Kernel]:
    found = []
    # Oldest first, by when they were unpacked.
    for meta in sorted((CACHE / "kernels").glob("*/kernel.json"), key=lambda p: p.stat().st_mtime):
        info = json.loads(meta.read_text())
        if info.get("spec") == spec.name:
            found.append(_find_unpacked(spec, meta.parent, info["package"], info["version"]))
    return found


def prepare_kernel(name: str, timings: dict[str, float] | None = None) -> Kernel:
    """Resolve, download and unpack kernel ``name`` (a key of KERNELS); reuse the cache.

    When apt cannot be asked (no network), the newest cached kernel of that name is used.
    """
    if name in _PREPARED:
        return _PREPARED[name]
    kernel = _prepare_kernel(KERNELS[name], timings)
    _PREPARED[name] = kernel
    return kernel


# Kernels resolved by this process: apt is asked once per run, not once per boot.
_PREPARED: dict[str, Kernel] = {}


def _prepare_kernel(spec: KernelSpec, timings: dict[str, float] | None) -> Kernel:
    try:
        if spec.suites:
            one, package, version = resolve_newest(spec)
        else:
            one, package, version = spec, *resolve_package(spec)
    except HarnessError:
        cached = _cached_kernels(spec)
        if cached:
            return cached[-1]
        raise
    safe = re.sub(r"[^A-Za-z0-9.+-]", "_", f"{package}_{version}")
    root = CACHE / "kernels" / safe
    if (root / "kernel.json").exists():
        return _find_unpacked(spec, root, package, version)
    try:
        return _fetch_kernel(
            spec, one, package=package, version=version, root=root, timings=timings
        )
    except HarnessError:
        cached = _cached_kernels(spec)
        if cached:
            return cached[-1]  # the mirror is unreachable: an older kernel still tests
        raise


def _split_parts(spec: KernelSpec, package: str) -> list[str]:
    """The packages a split linux-image-<abi> (Debian's 7.x) depends on that hold the kernel
    and its modules; empty for a package that holds them itself."""
    out = _run(["apt-cache", *_apt_options(spec), "depends", package], timeout_s=120).stdout
    return [
        name
        for name in re.findall(r"Depends:\s*(\S+)", out)
        if name.startswith(SPLIT_PARTS) and not name.startswith("linux-modules-extra")
    ]


def _unpack(deb: Path, staging: Path) -> None:
    dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    try:
        tar = subprocess.run(
            ["tar", "-x", "--wildcards", *UNPACK_WILDCARDS],
            stdin=dpkg.stdout,
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        if dpkg.stdout is not None:
            dpkg.stdout.close()
        dpkg.wait(timeout=600)
    # Not every kernel has every directory (6.12 merged fscache into netfs; 7.x keeps all
    # under usr/): a wildcard that matches nothing is fine, any other complaint is not.
    complaints = [
        line
        for line in tar.stderr.splitlines()
        if "Not found in archive" not in line and "Exiting with failure status" not in line
    ]
    if dpkg.returncode != 0 or complaints:
        raise HarnessError(f"unpacking {deb.name} failed: {tar.stderr.strip()}")


def _fetch_kernel(
    spec: KernelSpec,
    source: KernelSpec,
    *,
    package: str,
    version: str,
    root: Path,
    timings: dict[str, float] | None,
) -> Kernel:
    """Download ``package`` (and, for a split package, its binary and modules parts) through
    ``source``'s apt state and unpack what a boot needs under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    download = CACHE / "downloads"
    download.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    packages = [package, *_split_parts(source, package)]
    _run(
        ["apt-get", *_apt_options(source), "-q", "download", *(f"{p}={version}" for p in packages)],
        cwd=download,
        timeout_s=900,
    )
    debs = []
    for name in packages:
        found = sorted(download.glob(f"{name}_*.deb"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise HarnessError(f"apt-get download {name}: no .deb in {download}")
        debs.append(found[-1])
    t1 = time.monotonic()
    staging = root / "unpack"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for deb in debs:
        _unpack(deb, staging)
    if not list(staging.glob("boot/vmlinuz-*")) + list(staging.glob("usr/lib/modules/*/vmlinuz")):
        raise HarnessError(f"{', '.join(d.name for d in debs)}: no kernel image unpacked")
    for sub in ("boot", "lib", "usr"):
        shutil.rmtree(root / sub, ignore_errors=True)
        if (staging / sub).exists():
            (staging / sub).rename(root / sub)
    shutil.rmtree(staging)
    for deb in debs:
        deb.unlink()  # 70-120 MB; the unpacked 10-15 MB are what is kept
    t2 = time.monotonic()
    suite = source.sources.split()[-2] if spec.suites and source.sources else ""
    (root / "kernel.json").write_text(
        json.dumps({"spec": spec.name, "package": package, "version": version, "suite": suite})
        + "\n"
    )
    if timings is not None:
        timings["download_s"] = round(t1 - t0, 2)
        timings["unpack_s"] = round(t2 - t1, 2)
    return _find_unpacked(spec, root, package, version)


# --------------------------------------------------------------------------------------------
# Initramfs: busybox, a generated /init, and the kernel's 9p and virtio modules.


def _module_files(kernel: Kernel) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in kernel.modules.rglob("*.ko*"):
        name = path.name.split(".ko")[0]
        files[name.replace("-", "_")] = path
    return files


def _module_bytes(path: Path) -> bytes:
    """The module uncompressed: busybox insmod hands the bytes to init_module(2), which
    takes an ELF file only."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko.zst"):  # no zstd in Python 3.11's standard library
        return _run_bytes(["zstd", "-d", "-c", "-q", str(path)])
    if not path.name.endswith(".ko"):
        raise HarnessError(f"{path}: compressed module format not supported")
    return data


def _run_bytes(argv: Sequence[str]) -> bytes:
    try:
        proc = subprocess.run(list(argv), capture_output=True, timeout=120, check=False)
    except FileNotFoundError as exc:
        raise HarnessError(f"{argv[0]}: not found (Debian package zstd)") from exc
    if proc.returncode != 0:
        raise HarnessError(f"{shlex.join(argv)}: {proc.stderr.decode(errors='replace')[-500:]}")
    return proc.stdout


def _module_depends(data: bytes) -> list[str]:
    match = re.search(rb"\x00depends=([A-Za-z0-9_,-]*)\x00", b"\x00" + data)
    if match is None or not match.group(1):
        return []
    return [d.decode().replace("-", "_") for d in match.group(1).split(b",")]


def module_load_order(kernel: Kernel, extra: Sequence[str] = ()) -> list[Path]:
    """The modules needed for 9p over virtio-pci, then those named in ``extra`` (e.g.
    ``overlay``), dependencies first."""
    files = _module_files(kernel)
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        path = files.get(name)
        if path is None:
            return  # built into the kernel
        for dep in _module_depends(_module_bytes(path)):
            visit(dep)
        order.append(path)

    for name in (*ROOT_MODULES, *extra):
        visit(name)
    return order


# What every guest's /init does first: busybox applets, /dev /proc /sys, the console,
# ``say``/``die`` (the timing markers), $project/$run/$cgroup from the kernel command line,
# the modules in /modules/order, and $opts for the 9p mounts.
INIT_PRELUDE = r"""/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

say() { echo "zoned-vm: $* (t=$(cut -d' ' -f1 /proc/uptime))"; }
die() { say "init failed: $*"; sync; poweroff -f; sleep 10; }

say "init started"
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    zoned_project=*) project=${arg#zoned_project=} ;;
    zoned_run=*) run=${arg#zoned_run=} ;;
    zoned_cgroup=*) cgroup=${arg#zoned_cgroup=} ;;
  esac
done
[ -n "$project" ] && [ -n "$run" ] || die "zoned_project= and zoned_run= are required"

for m in $(cat /modules/order); do
  insmod "/modules/$m" || die "insmod $m"
done

opts=trans=virtio,version=9p2000.L,msize=262144,cache=loose
"""


def init_script(origin: str, body: str) -> str:
    """A busybox ``/init`` generated by ``origin``: :data:`INIT_PRELUDE`, then ``body``."""
    return f"#!/bin/busybox sh\n# Generated by {origin}.\n{INIT_PRELUDE}{body}"


# PID 1 of the test guest: the host's / (read-only) as the root, the project read-write at
# its own path, the boot's cgroup hierarchies; runs run.sh in a chroot, then powers off.
INIT_SCRIPT = init_script(
    "vm-tests/harness.py",
    r"""R=/newroot
mkdir -p $R
mount -t 9p -o ro,$opts hostroot $R || die "mount host root"
mount -t proc proc $R/proc || die "mount proc"
mount -t sysfs sysfs $R/sys || die "mount sysfs"
mount -t devtmpfs devtmpfs $R/dev || die "mount devtmpfs"
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount -t tmpfs -o mode=1777 tmpfs $R/tmp || die "mount /tmp"
mount -t tmpfs -o mode=0755 tmpfs $R/run || die "mount /run"
# The project may live under /tmp or /run (a CI clone), which the tmpfs mounts above hide:
# make its mount point there. On the read-only host root it already exists.
mkdir -p $R$project 2>/dev/null
mount -t 9p -o rw,$opts work $R$project || die "mount project at $project"

case "$cgroup" in
  v2)
    mount -t cgroup2 -o nsdelegate cgroup2 $R/sys/fs/cgroup || die "mount cgroup2"
    # One cpuset that lives until power-off: the kernel turns its cpusets_enabled static
    # key on at the first cpuset and off after the last, patching the page allocator's
    # text each time, and the tests make and remove cpusets by the hundred. Under TCG a
    # vCPU twice ran a stale int3 from that patching (6.12.95, "Oops: int3" in
    # __alloc_pages_noprof, CI 2026-12-05): with the key left on, nothing is patched.
    echo +cpuset > $R/sys/fs/cgroup/cgroup.subtree_control &&
      mkdir $R/sys/fs/cgroup/zoned-vm.keep || die "keep a cpuset"
    ;;
  v1)
    for c in cpuset memory; do
      mkdir -p $R/run/cgroup-v1/$c
      mount -t cgroup -o $c $c $R/run/cgroup-v1/$c || die "mount v1 $c"
    done
    # Hybrid, as systemd does it: the other controllers stay on the unified hierarchy.
    mount -t cgroup2 cgroup2 $R/sys/fs/cgroup || die "mount cgroup2"
    ;;
  none) ;;
  *) die "unknown zoned_cgroup=$cgroup" ;;
esac

say "userspace ready"
chroot $R /bin/sh $run/run.sh
rc=$?
say "command finished"
echo "$rc" > $R$run/rc
dmesg > $R$run/dmesg.log
echo "zoned-vm: exit status $rc"
sync
umount $R$project
poweroff -f
sleep 10
""",
)


def busybox() -> Path:
    """The host's static busybox, which every initramfs carries as its userland."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(candidate).is_file():
            return Path(candidate)
    raise HarnessError("busybox not found (Debian package busybox-static)")


def build_initramfs(
    kernel: Kernel,
    files: Mapping[str, str],
    *,
    name: str = "initramfs",
    modules: Sequence[Path] | None = None,
    timings: dict[str, float] | None = None,
) -> Path:
    """Build (once per kernel, ``files`` and module list) an initramfs; return its path.

    It holds busybox (as ``/bin/busybox`` and ``/bin/sh``), ``/dev/console``, empty
    ``/proc``, ``/sys`` and ``/newroot``, the kernel ``modules`` (default: those 9p needs)
    under ``/modules`` with their load order in ``/modules/order``, and ``files`` (path in
    the initramfs → text; ``init`` is made executable). Cached as ``<name>-<key>.cpio.gz``
    in the kernel's directory.
    """
    bb = busybox()
    modules = module_load_order(kernel) if modules is None else list(modules)
    key = hashlib.sha256(
        json.dumps(files, sort_keys=True).encode()
        + bb.read_bytes()
        + "\n".join(str(m.relative_to(kernel.root)) for m in modules).encode()
    ).hexdigest()[:16]
    target = kernel.root / f"{name}-{key}.cpio.gz"
    if target.exists():
        return target
    t0 = time.monotonic()
    staging = kernel.root / f"{name}-staging"
    shutil.rmtree(staging, ignore_errors=True)
    for sub in ("bin", "dev", "proc", "sys", "newroot", "modules"):
        (staging / sub).mkdir(parents=True)
    shutil.copy2(bb, staging / "bin" / "busybox")
    (staging / "bin" / "sh").symlink_to("busybox")
    os.mknod(staging / "dev" / "console", 0o600 | 0o020000, os.makedev(5, 1))
    names = []
    for i, path in enumerate(modules):
        module = f"{i:02d}-{path.name.split('.ko')[0]}.ko"
        (staging / "modules" / module).write_bytes(_module_bytes(path))
        names.append(module)
    (staging / "modules" / "order").write_text("\n".join(names) + "\n")
    for rel, text in files.items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_text(text)
    if "init" in files:
        (staging / "init").chmod(0o755)
    members = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p != staging)
    cpio = subprocess.run(
        [str(bb), "cpio", "-o", "-H", "newc"],
        cwd=staging,
        input=("\n".join(members) + "\n").encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    if cpio.returncode != 0:
        raise HarnessError(f"busybox cpio failed: {cpio.stderr.decode(errors='replace')}")
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(cpio.stdout, compresslevel=1))
    tmp.rename(target)
    shutil.rmtree(staging)
    if timings is not None:
        timings["initramfs_s"] = round(time.monotonic() - t0, 2)
    return target


def prepare_initramfs(kernel: Kernel, timings: dict[str, float] | None = None) -> Path:
    """Build (once per kernel and init script) the test guest's initramfs; return its path."""
    return build_initramfs(kernel, {"init": INIT_SCRIPT}, timings=timings)


# --------------------------------------------------------------------------------------------
# Boots


@dataclasses.dataclass(frozen=True)
class Boot:
    """One boot configuration. ``numa`` is what follows ``numa=fake=``."""

    kernel: str = "6.1"
    numa: str = "8"
    mem: str = "2G"
    cgroup: CgroupMode = "v2"
    smp: int = 2
    extra_cmdline: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.kernel}-numa{self.numa}-{self.mem}-cgroup{self.cgroup}"

    def env(self) -> dict[str, str]:
        """What the guest's command finds in its environment about this boot."""
        env = {
            "ZONED_VM_GUEST": "1",
            "ZONED_VM_BOOT": self.id,
            "ZONED_VM_KERNEL": self.kernel,
            "ZONED_VM_NUMA": self.numa,
            "ZONED_VM_MEM": self.mem,
            "ZONED_VM_CGROUP": self.cgroup,
        }
        if self.cgroup == "v1":
            env["ZONED_VM_CGROUP_V1_CPUSET"] = "/run/cgroup-v1/cpuset"
            env["ZONED_VM_CGROUP_V1_MEMORY"] = "/run/cgroup-v1/memory"
        return env


# The boot matrix: each entry boots once and runs every guest test that matches it (guest
# tests narrow themselves with ``@pytest.mark.boot(kernel=..., cgroup=..., numa=...)``).
# Names are <kernel>-numa<numa=fake= argument>-<cgroup mode> (all 2 GiB).
BOOTS: dict[str, Boot] = {
    "6.1-numa8-v2": Boot(kernel="6.1", numa="8", cgroup="v2"),
    "6.1-numa8-v1": Boot(kernel="6.1", numa="8", cgroup="v1"),
    "6.12-numa8-v2": Boot(kernel="6.12", numa="8", cgroup="v2"),
    # The newest Debian kernel (KERNELS["newest"]: 7.3 from trixie-backports in 2026-12).
    "newest-numa8-v2": Boot(kernel="newest", numa="8", cgroup="v2"),
    # The size form on 2 GiB: 7 uneven nodes. Node 0 spans 288 MiB (256 MiB of RAM plus a
    # 32 MiB step over the hole below 1 MiB), nodes 1-5 256 MiB, and node 6 takes the
    # 224 MiB remainder (less than one more node) too: 479 MiB. MemTotal (6.1): 281, five
    # of ~252 (one of nodes 3-5 at 208-216, varying by boot), 472 MiB (vm-tests/README.md).
    "6.1-numa256M-v2": Boot(kernel="6.1", numa="256M", cgroup="v2"),
}


@dataclasses.dataclass(frozen=True)
class GuestResult:
    """What came back from a guest. ``rc`` is None when the guest never reported one."""

    rc: int | None
    console_log_path: Path
    run_dir: Path
    duration_s: float
    timed_out: bool
    qemu_rc: int | None
    timings: Mapping[str, float]
    kernel_release: str

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.console_log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no console log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> str:
        why = "timed out" if self.timed_out else f"exit status {self.rc}"
        return (
            f"guest {why} after {self.duration_s:.1f} s (qemu status {self.qemu_rc}); "
            f"console: {self.console_log_path}"
        )


# QEMU 7.2's TCG (Debian 12) faults on the masked-off lanes of VMASKMOVPS/PD and VPMASKMOVD/Q
# loads, which real CPUs never do: numpy 2's AVX2 sort reads an array's tail that way, so
# np.sort of an array ending just before an unmapped page segfaulted in the guest
# (pagemap.sorted_unique under `zoned usage`). With AVX off, AVX2, FMA and F16C (all
# VEX-encoded) go too: "-avx" alone left the guest's cpuinfo listing avx2. Checked by
# guest/test_cpu_model.py; measured in vm-tests/README.md ("The guest CPU"). ZONED_VM_CPU
# overrides it (ZONED_VM_CPU=max brings the fault back).
TCG_CPU = os.environ.get("ZONED_VM_CPU", "max,-avx,-avx2,-fma,-f16c")


def accel() -> str:
    """TCG unless ZONED_VM_ACCEL says otherwise (the KVM here cannot run stock kernels)."""
    return os.environ.get("ZONED_VM_ACCEL", "tcg")


def qemu_argv(boot: Boot, kernel: Kernel, initramfs: Path, run_dir: Path) -> list[str]:
    cmdline = [
        "console=ttyS0",
        "quiet",
        "panic=-1",
        f"numa=fake={boot.numa}",
        "numa_balancing=disable",
        "tsc=reliable",
        f"zoned_project={PROJECT}",
        f"zoned_run={run_dir}",
        f"zoned_cgroup={boot.cgroup}",
        *boot.extra_cmdline,
    ]
    return [
        "qemu-system-x86_64",
        "-accel",
        accel(),
        "-cpu",
        TCG_CPU if accel() == "tcg" else "host",
        "-m",
        boot.mem,
        "-smp",
        str(boot.smp),
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
        "-nodefaults",
        "-kernel",
        str(kernel.vmlinuz),
        "-initrd",
        str(initramfs),
        "-append",
        " ".join(cmdline),
        "-fsdev",
        "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device",
        "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
        "-fsdev",
        f"local,id=work,path={PROJECT},security_model=none,multidevs=remap",
        "-device",
        "virtio-9p-pci,fsdev=work,mount_tag=work",
    ]


_MARKERS = {
    "zoned-vm: init started": "init_s",
    "zoned-vm: userspace ready": "userspace_s",
    "zoned-vm: command finished": "command_end_s",
}


def _pump(stream: IO[bytes], log: IO[bytes], t0: float, timings: dict[str, float]) -> None:
    for line in iter(stream.readline, b""):
        log.write(line)
        log.flush()
        text = line.decode(errors="replace")
        for marker, key in _MARKERS.items():
            if marker in text and key not in timings:
                timings[key] = round(time.monotonic() - t0, 2)


KEEP_RUNS = 60


def _prune_logs() -> None:
    """Keep the newest KEEP_RUNS run directories under LOGS (and timings.jsonl)."""
    if not LOGS.is_dir():
        return
    runs = sorted(p for p in LOGS.iterdir() if p.is_dir())
    for old in runs[:-KEEP_RUNS]:
        shutil.rmtree(old, ignore_errors=True)


def _write_run_script(
    boot: Boot, argv: Sequence[str], run_dir: Path, env: Mapping[str, str]
) -> None:
    full_env = {
        "PATH": f"{PROJECT / '.venv' / 'bin'}:/usr/local/sbin:/usr/local/bin:"
        "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "ZONED_VM_RUN_DIR": str(run_dir),
        **boot.env(),
        **env,
    }
    script = ["#!/bin/sh", "# Generated by vm-tests/harness.py; run inside the guest."]
    script += [f"export {k}={shlex.quote(v)}" for k, v in full_env.items()]
    argv = [a.replace("{run_dir}", str(run_dir)) for a in argv]
    script += [f"cd {shlex.quote(str(PROJECT))}", f"exec {shlex.join(argv)}", ""]
    (run_dir / "run.sh").write_text("\n".join(script))


def _run_qemu(
    argv: list[str], console: Path, timeout_s: float, t0: float, timings: dict[str, float]
) -> tuple[int | None, bool]:
    """Run QEMU with its serial console copied to ``console``; kill it after ``timeout_s``.

    Returns (QEMU's exit status or None when it was killed, whether it timed out).
    """
    timed_out = False
    with console.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        pump = threading.Thread(target=_pump, args=(proc.stdout, log, t0, timings), daemon=True)
        pump.start()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        pump.join(timeout=10)
        proc.stdout.close()
    return (None if timed_out else proc.returncode), timed_out


def boot_guest(
    boot: Boot,
    kernel: Kernel,
    initramfs: Path,
    argv: Sequence[str],
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    name: str | None = None,
    timings: dict[str, float] | None = None,
) -> GuestResult:
    """Boot ``kernel`` with ``initramfs`` as ``boot`` says; its ``/init`` runs ``run.sh`` (the
    command ``argv``, see :func:`run_in_guest`) and reports through the run directory or
    the console (``zoned-vm: exit status N``). The run directory is new under LOGS; boot
    timings are added to ``timings``."""
    _prune_logs()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = LOGS / f"{stamp}-{name or boot.id}-{os.getpid()}"
    run_dir.mkdir(parents=True, exist_ok=False)
    _write_run_script(boot, argv, run_dir, env or {})

    argv_qemu = qemu_argv(boot, kernel, initramfs, run_dir)
    (run_dir / "qemu.argv").write_text(shlex.join(argv_qemu) + "\n")
    console = run_dir / "console.log"
    timings = {} if timings is None else timings
    t0 = time.monotonic()
    qemu_rc, timed_out = _run_qemu(argv_qemu, console, timeout_s, t0, timings)
    duration = time.monotonic() - t0
    timings["total_s"] = round(duration, 2)
    if "userspace_s" in timings and "command_end_s" in timings:
        timings["command_s"] = round(timings["command_end_s"] - timings["userspace_s"], 2)

    rc: int | None = None
    rc_file = run_dir / "rc"
    if rc_file.exists():
        rc = int(rc_file.read_text().strip())
    else:
        found = re.findall(rb"zoned-vm: exit status (\d+)", console.read_bytes())
        if found:
            rc = int(found[-1])
    return GuestResult(
        rc=rc,
        console_log_path=console,
        run_dir=run_dir,
        duration_s=round(duration, 2),
        timed_out=timed_out,
        qemu_rc=qemu_rc,
        timings=timings,
        kernel_release=kernel.release,
    )


def run_in_guest(
    boot: Boot,
    argv: Sequence[str],
    *,
    timeout_s: float = 600.0,
    env: Mapping[str, str] | None = None,
    name: str | None = None,
) -> GuestResult:
    """Boot ``boot``, run ``argv`` in the project directory inside it, power off.

    The command runs as root with the venv's bin first in PATH, HOME and TMPDIR on tmpfs, and
    ``boot.env()`` plus ``env`` in its environment; ``{run_dir}`` in ``argv`` is replaced by
    the run's directory (on the project share, so the host reads what the guest writes
    there). QEMU is killed after ``timeout_s``.
    """
    if " " in str(PROJECT):
        raise HarnessError(f"the project path must not contain spaces: {PROJECT}")
    spec = KERNELS.get(boot.kernel)
    if spec is None:
        raise HarnessError(f"unknown kernel {boot.kernel!r}; known: {sorted(KERNELS)}")
    if boot.cgroup not in spec.cgroup_modes:
        raise HarnessError(f"kernel {boot.kernel} cannot boot cgroup mode {boot.cgroup}")
    timings: dict[str, float] = {}
    t_prep = time.monotonic()
    with cache_lock():
        kernel = prepare_kernel(boot.kernel, timings)
        initramfs = prepare_initramfs(kernel, timings)
    timings["prepare_s"] = round(time.monotonic() - t_prep, 2)
    if kernel.suite:  # chosen at run time ("newest"): the run directory says which
        name = f"{name or boot.id}-{kernel.release}"

    result = boot_guest(
        boot, kernel, initramfs, argv, timeout_s=timeout_s, env=env, name=name, timings=timings
    )
    record = {
        "when": result.run_dir.name[: len("YYYYmmdd-HHMMSS")],  # the run directory's stamp
        "boot": boot.id,
        "kernel": f"{kernel.package} {kernel.version}",
        "suite": kernel.suite or None,
        "accel": accel(),
        "argv": list(argv),
        "rc": result.rc,
        "timed_out": result.timed_out,
        **timings,
    }
    with (LOGS / "timings.jsonl").open("a") as out:
        out.write(json.dumps(record) + "\n")
    return result
