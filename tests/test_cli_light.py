"""``zoned --help`` and the client commands import no engine, backend, numpy or YAML.

A structural check, not a timing one: each case runs in a fresh interpreter and lists the
heavy modules it imported (bench/cli_startup.py measures the CPU time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from zoned.cli.commands._index import HELP
from zoned.cli.main import build_parser

HEAVY = (
    "zoned.engine",
    "zoned.policy",
    "zoned.backends",
    "zoned.config",
    "zoned.service.control",
    "zoned.service.daemon",
    "numpy",
    "yaml",
    "matplotlib",
)

_PROBE = """
import contextlib, io, json, sys
from zoned.cli.main import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"numpy", "yaml", "matplotlib"}
               or any(m == h or m.startswith(h + ".") for h in HEAVY))
print(json.dumps({"code": code, "heavy": heavy}))
"""


def _imports(argv: list[str]) -> dict[str, object]:
    code = f"HEAVY = {HEAVY!r}\n{_PROBE}"
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["status"],
        ["events", "--history", "1"],
        ["lend", "3", "web"],
        ["reclaim", "3"],
        ["reload"],
    ],
)
def test_light_commands_import_nothing_heavy(argv: list[str], tmp_path: Path) -> None:
    if argv[0] != "--help":
        argv = [*argv, "--socket", str(tmp_path / "none.sock")]  # no daemon: one-line error
    got = _imports(argv)
    assert got["heavy"] == []
    assert got["code"] == (0 if argv == ["--help"] else 1)


def test_help_lists_every_command_with_its_modules_help_line() -> None:
    light = build_parser()
    sub = next(a for a in light._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(HELP)
    for name, line in HELP.items():  # each module registers the same line the index shows
        full = build_parser(name)
        (action,) = (a for a in full._actions if isinstance(a, argparse._SubParsersAction))
        (choice,) = action._choices_actions
        assert (choice.dest, choice.help) == (name, line)
