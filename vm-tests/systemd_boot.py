"""Boot a guest with systemd 252 as PID 1 and zoned.service installed (VM-NOTES, "systemd
as PID 1 in the guest"), run a command there, power off.

Built on ``harness`` (kernel, modules, QEMU line, console capture, logs), with an init of
its own: the host's ``/`` (9p, read-only) is the lower layer of an overlay with a tmpfs
upper, the project is mounted read-write at its own path, then ``switch_root`` into
``/lib/systemd/systemd``. Before that the init writes into the overlay:

* masks for what would be slow or pointless here (``systemd-tmpfiles-setup`` walks the
  host over 9p for ~39 s; gettys, timers, the host's own services),
* ``/etc/systemd/system/zoned.service``: the project's unit, with ExecStart pointing at
  the project's venv and a drop-in for what only this environment needs (see
  ``DROPIN``),
* ``/etc/zoned/zoned.yaml`` (``ZONED_CONFIG`` below: node 7 shared, a shared tmpfs at
  ``/srv/zoned-shared`` that the unit's ExecStartPre mounts),
* ``zoned-vmtest.service``: runs ``run.sh`` (the command) after zoned.service, writes
  its exit status and the journal to the run directory, and powers off.

Only cgroup v2 (systemd 252 mounts the unified hierarchy itself).

    r = run_under_systemd(["python", "-m", "pytest", "vm-tests/guest/test_under_systemd.py"])
    assert r.rc == 0, r.tail()
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness import (
    PROJECT,
    Boot,
    GuestResult,
    HarnessError,
    Kernel,
    boot_guest,
    build_initramfs,
    cache_lock,
    init_script,
    module_load_order,
    prepare_kernel,
)

BOOT = Boot(kernel="6.1", numa="8", mem="2G", cgroup="v2", extra_cmdline=("zoned_systemd=1",))

# The shipped layout: the daemon stays in its unit; under systemd (this boot) the
# containers live in the delegated zoned.slice/zoned-containers.scope (host.delegation: auto).
ZONED_CONFIG = """\
host:
  cgroup_root: /sys/fs/cgroup
  hierarchy: v2
  parent: zoned
  reserved_nodes: [0]
  # the shared zone and a tmpfs bound to it, mounted by the unit's ExecStartPre
  shared: [7]
  shared_tmpfs:
    - {path: /srv/zoned-shared, size: 64M}
policy:
  cooldown_s: 2
containers:
  web:   {min: {nodes: 1}, max: {nodes: 3}, priority: 10}
  batch: {min: {nodes: 1}, max: {nodes: 2}, shared: true}
"""

# What differs from the shipped unit here, and why: the project's Python lives under
# /root (pyenv), which ProtectHome=yes hides, and the project itself may be a CI clone under
# /tmp, which PrivateTmp=yes hides; a shorter watchdog keeps the hang test quick.
DROPIN = """\
[Service]
ProtectHome=no
PrivateTmp=no
WatchdogSec=10s
RestartSec=1s
"""

MASK = (
    "systemd-tmpfiles-setup.service",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-tmpfiles-clean.timer",
    "getty@tty1.service",
    "serial-getty@ttyS0.service",
    "getty.target",
    "console-getty.service",
    "systemd-logind.service",
    "systemd-networkd.service",
    "systemd-resolved.service",
    "systemd-timesyncd.service",
    "networking.service",
    "ssh.service",
    "cron.service",
    "postgresql.service",
    "redis-server.service",
    "docker.service",
    "containerd.service",
    # podman (installed for test_podman.py): its boot-time units would start in this guest
    "podman.socket",
    "podman.service",
    "podman-restart.service",
    "podman-auto-update.timer",
    "docker.socket",  # docker.io, for test_docker.py (its .service is masked above)
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "logrotate.timer",
    "dpkg-db-backup.timer",
    "systemd-random-seed.service",
    "systemd-update-utmp.service",
    "systemd-remount-fs.service",
    "systemd-fsck-root.service",
    "dev-hugepages.mount",
    "dev-mqueue.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-machine-id-commit.service",
    "systemd-firstboot.service",
)

# After the harness's prelude: an overlay root, the units and config, then systemd as PID 1.
INIT_SCRIPT = init_script(
    "vm-tests/systemd_boot.py",
    r"""mkdir -p /lower /rw /newroot
mount -t 9p -o ro,$opts hostroot /lower || die "mount host root"
mount -t tmpfs -o mode=0755 tmpfs /rw || die "tmpfs for the overlay"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
  || die "overlay"
R=/newroot
mkdir -p $R$project
mount -t 9p -o rw,$opts work $R$project || die "mount project at $project"
S=$R/etc/systemd/system
mkdir -p $S $S/multi-user.target.wants $S/zoned.service.d $R/etc/zoned
for u in $(cat /systemd/mask); do ln -sf /dev/null $S/$u; done
cp /systemd/zoned.service $S/zoned.service
cp /systemd/dropin.conf $S/zoned.service.d/vmtest.conf
cp /systemd/zoned.yaml $R/etc/zoned/zoned.yaml
sed "s#@RUN@#$run#g" /systemd/vmtest.service > $S/zoned-vmtest.service
ln -sf ../zoned.service $S/multi-user.target.wants/zoned.service
ln -sf ../zoned-vmtest.service $S/multi-user.target.wants/zoned-vmtest.service
rm -f $R/etc/machine-id && : > $R/etc/machine-id
say "userspace ready"
umount /proc /sys 2>/dev/null
exec switch_root $R /lib/systemd/systemd --unit=multi-user.target
""",
)

VMTEST_UNIT = """\
[Unit]
Description=zoned VM test driver
After=zoned.service
Wants=zoned.service

[Service]
Type=oneshot
StandardOutput=journal+console
StandardError=journal+console
ExecStart=/bin/sh -c 'echo "zoned-vm: command started"; /bin/sh @RUN@/run.sh; rc=$?; \
echo "zoned-vm: command finished"; echo $rc > @RUN@/rc; \
journalctl -b --no-pager -o short-monotonic > @RUN@/journal.log 2>&1; \
journalctl -b --no-pager -o json -u zoned > @RUN@/zoned-journal.json 2>&1; \
echo "zoned-vm: exit status $rc"; sync; systemctl poweroff --force --force'
"""


def zoned_unit() -> str:
    """The shipped unit, started from the project's venv."""
    text = (PROJECT / "systemd" / "zoned.service").read_text()
    return text.replace("/usr/local/bin/zoned", str(PROJECT / ".venv" / "bin" / "zoned"))


def prepare_initramfs(kernel: Kernel) -> Path:
    """The harness's initramfs with this boot's init, units and config, and overlay."""
    files = {
        "systemd/mask": "\n".join(MASK) + "\n",
        "systemd/zoned.service": zoned_unit(),
        "systemd/dropin.conf": DROPIN,
        "systemd/zoned.yaml": ZONED_CONFIG,
        "systemd/vmtest.service": VMTEST_UNIT,
        "init": INIT_SCRIPT,
    }
    modules = module_load_order(kernel, extra=("overlay",))
    return build_initramfs(kernel, files, name="initramfs-systemd", modules=modules)


def run_under_systemd(
    argv: Sequence[str], *, timeout_s: float = 900.0, name: str = "systemd"
) -> GuestResult:
    """Boot with systemd as PID 1 and zoned.service enabled, run ``argv`` after it."""
    if not Path("/lib/systemd/systemd").exists():
        raise HarnessError("the host has no /lib/systemd/systemd to boot the guest with")
    timings: dict[str, float] = {}
    with cache_lock():
        kernel = prepare_kernel(BOOT.kernel, timings)
        initramfs = prepare_initramfs(kernel)
    env = {"ZONED_VM_SYSTEMD": "1"}
    return boot_guest(
        BOOT, kernel, initramfs, argv, timeout_s=timeout_s, env=env, name=name, timings=timings
    )


__all__ = ["BOOT", "ZONED_CONFIG", "run_under_systemd"]
