"""The man page and shell completion are generated from the full parser: every command is
in them, with its own options, and the scripts parse."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest

from zoned.cli import generate
from zoned.cli.main import COMMANDS, build_parser


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_the_full_parser_registers_every_command() -> None:
    full = commands(generate.full_parser())
    assert list(full) == list(COMMANDS)
    assert all(len(p._actions) > 1 for p in full.values())  # more than -h: registered
    # the lazy one (zoned --help) registers none of them fully
    assert all(len(p._actions) == 1 for p in commands(build_parser()).values())


def test_the_man_page_names_every_command_and_the_exit_statuses() -> None:
    text = generate.manpage()
    assert text.startswith('.TH ZONED "1" ')
    for name in COMMANDS:
        roff = name.replace("-", "\\-")  # groff escapes a hyphen
        assert f".SH COMMAND \\fI\\,'zoned {roff}'\\/\\fR" in text, name
    assert r"\-\-allow\-empty" in text  # a command's own option, not only its name
    assert "78 (EX_CONFIG)" in text


def test_the_man_page_renders(tmp_path: Path) -> None:
    if shutil.which("groff") is None:
        pytest.skip("no groff")
    page = tmp_path / "zoned.1"
    page.write_text(generate.manpage())
    p = subprocess.run(
        ["groff", "-k", "-man", "-Tutf8", "-ww", str(page)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert "zoned reload" in p.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_the_completion_parses(tmp_path: Path, shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"no {shell}")
    script = tmp_path / f"zoned.{shell}"
    text = generate.completion(shell)
    script.write_text(text)
    p = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    for name in COMMANDS:
        assert name in text
    assert "--allow-empty" in text


def test_bash_completes_the_commands(tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    script = tmp_path / "zoned.bash"
    script.write_text(generate.completion("bash"))
    probe = (
        f"source {script}; COMP_WORDS=(zoned rel); COMP_CWORD=1; COMP_LINE='zoned rel'; "
        "COMP_POINT=${#COMP_LINE}; _shtab_zoned zoned rel zoned; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    p = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=False)
    assert p.stdout.split() == ["reload"], (p.stdout, p.stderr)
