"""The man page and shell completion of ``zoned``, generated from its parser.

    python -m zoned.cli.generate man    > /usr/local/share/man/man1/zoned.1
    python -m zoned.cli.generate bash   > /usr/local/share/bash-completion/completions/zoned
    python -m zoned.cli.generate zsh    > /usr/local/share/zsh/site-functions/_zoned
    python -m zoned.cli.generate --out-dir DIR    all three: DIR/zoned.1, zoned.bash, _zoned

Needs the ``shell`` extra (argparse-manpage, shtab); ``systemd/install.sh`` runs it. What
each command says comes from its ``register()``: the text is the ``--help`` text.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from zoned import __version__
from zoned.cli.main import build_parser

SHELLS = ("bash", "zsh", "tcsh")

EXIT_STATUS = """\
0 success; 1 an error zoned reports (one line each on stderr: a refused request, no
daemon, a host operation that failed); 2 a usage error; 78 (EX_CONFIG) an invalid
configuration: zoned run at start, and every command that loads one (zoned check reports
the problems it finds with 1). zoned exec passes its command's status through (a signal:
128+N).
"""


def full_parser() -> argparse.ArgumentParser:
    """The ``zoned`` parser with every command's own arguments (imports every command)."""
    return build_parser(every=True)


def manpage() -> str:
    """``zoned(1)`` in roff: every command, its arguments, the exit statuses."""
    from argparse_manpage.manpage import Manpage  # type: ignore[import-untyped]

    parser = full_parser()
    parser.epilog = f"exit status:\n{EXIT_STATUS}"
    data = {
        "project_name": "zoned",
        "prog": "zoned",
        "version": __version__,
        "manual_section": "1",
        "manual_title": "zoned manual",
        "description": "memory zones for containers on fake-NUMA nodes",
    }
    return str(Manpage(parser, _data=data))


def completion(shell: str) -> str:
    """The completion script of ``zoned`` for ``shell`` (one of ``SHELLS``)."""
    import shtab

    text: str = shtab.complete(full_parser(), shell=shell)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m zoned.cli.generate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("what", nargs="?", choices=("man", *SHELLS))
    p.add_argument("--out-dir", type=Path, help="write zoned.1, zoned.bash and _zoned there")
    args = p.parse_args(argv)
    if (args.what is None) == (args.out_dir is None):
        p.error("give one of WHAT or --out-dir")
    # argparse wraps to the terminal's width: the same text wherever it is generated
    os.environ["COLUMNS"] = "80"
    if args.what is not None:
        sys.stdout.write(manpage() if args.what == "man" else completion(args.what))
        return 0
    out: Path = args.out_dir
    (out / "zoned.1").write_text(manpage())
    (out / "zoned.bash").write_text(completion("bash"))
    (out / "_zoned").write_text(completion("zsh"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
