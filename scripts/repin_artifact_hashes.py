"""Re-pin tests/test_artifact_hashes.py after a change that alters artifacts on purpose: run every
pinned compile (the test's own arguments) and rewrite its PINNED dict in place; review the diff.

Usage (repository root): .venv/bin/python scripts/repin_artifact_hashes.py
"""
from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = ROOT / "tests" / "test_artifact_hashes.py"
HEAD = "PINNED: dict[str, dict[str, str]] = {"


def compile_hashes(run: str, args: list[str]) -> dict[str, str]:
    from spikec.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        try:
            main(["compile", *args, "-o", str(out)])
        except SystemExit as e:
            if e.code:
                raise SystemExit(f"{run}: compile failed (exit {e.code})") from None
        return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(out.rglob("*")) if p.is_file()}


def main() -> None:
    import os

    os.chdir(ROOT)   # the graphs record the checkpoint path as given
    sys.path.insert(0, str(ROOT / "tests"))
    import test_artifact_hashes as pinned_test

    lines = [HEAD]
    for run in sorted(pinned_test.PINNED):
        lines.append(f'    "{run}": {{')
        for name, digest in compile_hashes(run, pinned_test._args(run)).items():
            lines += [f'        "{name}":', f'            "{digest}",']
        lines.append("    },")
    lines.append("}")
    text = TEST.read_text()
    start = text.index(HEAD)
    end = text.index("\n}\n", start) + 3
    TEST.write_text(text[:start] + "\n".join(lines) + "\n" + text[end:])
    print(f"re-pinned {len(pinned_test.PINNED)} compiles in {TEST}")


if __name__ == "__main__":
    main()
