"""systemd/install.sh, staged with --destdir: where it puts the unit, the man page and the
completion; a second run changes nothing; the operator's files are never overwritten."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "systemd" / "install.sh"


def install(dest: Path) -> str:
    p = subprocess.run(
        ["sh", str(SCRIPT), "--destdir", str(dest), "--no-pip", "--python", sys.executable],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"},
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def test_the_script_parses() -> None:
    assert subprocess.run(["sh", "-n", str(SCRIPT)], check=False).returncode == 0


def test_installs_unit_man_page_and_completion_then_changes_nothing(tmp_path: Path) -> None:
    first = install(tmp_path)
    unit = tmp_path / "usr/local/lib/systemd/system/zoned.service"
    assert unit.read_text() == (ROOT / "systemd/zoned.service").read_text()
    assert not (tmp_path / "etc/systemd/system/zoned.service").exists()
    man = (tmp_path / "usr/local/share/man/man1/zoned.1").read_text()
    assert man.startswith('.TH ZONED "1" "2023\\-11\\-14"')
    bash = tmp_path / "usr/local/share/bash-completion/completions/zoned"
    assert "reload" in bash.read_text()
    assert (tmp_path / "usr/local/share/zsh/site-functions/_zoned").is_file()
    assert (tmp_path / "etc/zoned/zoned.yaml").is_file()
    assert "installed" in first
    before = tree(tmp_path)
    second = install(tmp_path)
    assert tree(tmp_path) == before
    assert second.splitlines() == ["install.sh: nothing to change"]


def test_never_overwrites_what_the_operator_edited(tmp_path: Path) -> None:
    mine = tmp_path / "etc/systemd/system/zoned.service"
    mine.parent.mkdir(parents=True)
    mine.write_text("[Service]\nExecStart=/bin/true\n")
    drop = tmp_path / "etc/systemd/system/zoned.service.d/metrics.conf"
    drop.parent.mkdir()
    drop.write_text("[Service]\nIPAddressAllow=localhost\n")
    conf = tmp_path / "etc/zoned/zoned.yaml"
    conf.parent.mkdir(parents=True)
    conf.write_text("containers: {}\n")
    out = install(tmp_path)
    assert mine.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert drop.read_text() == "[Service]\nIPAddressAllow=localhost\n"
    assert conf.read_text() == "containers: {}\n"
    assert "/etc/systemd/system/zoned.service exists and hides the installed unit" in out


def test_without_a_python_that_has_zoned_it_says_so(tmp_path: Path) -> None:
    p = subprocess.run(
        ["sh", str(SCRIPT), "--destdir", str(tmp_path), "--no-pip", "--python", "/nonexistent"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert "warning: no man page nor completion" in p.stdout
    assert (tmp_path / "usr/local/lib/systemd/system/zoned.service").is_file()


def test_lists_what_systemd_python_needs_to_build(tmp_path: Path) -> None:
    """Debian's names of what is missing: here gcc is installed, the rest not, and the
    Python has no headers."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    fake_dpkg = bin_ / "dpkg-query"
    fake_dpkg.write_text(
        '#!/bin/sh\nfor a; do last=$a; done\n[ "$last" = gcc ] && echo "install ok installed"\n'
        "exit 0\n"
    )
    fake_python = bin_ / "python-noheaders"
    fake_python.write_text(f"#!/bin/sh\necho {tmp_path / 'include'}\n")
    for f in (fake_dpkg, fake_python):
        f.chmod(0o755)
    p = subprocess.run(
        ["sh", str(SCRIPT), "--build-deps", "--python", str(fake_python)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"},
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["pkg-config", "libsystemd-dev", "python3-dev"]
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "Python.h").write_text("")
    p = subprocess.run(
        ["sh", str(SCRIPT), "--build-deps", "--python", str(fake_python)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"},
    )
    assert p.stdout.split() == ["pkg-config", "libsystemd-dev"]
