"""Run spikec's CLI in-process for a test: exit code, stdout and stderr."""
from __future__ import annotations

from spikec.cli import main


def run_cli(args, capsys) -> tuple[int, str, str]:
    """``main(args)`` with pytest's ``capsys``: ``(exit code, stdout, stderr)``; a SystemExit
    whose code is not an int (a message) counts as 1."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err
