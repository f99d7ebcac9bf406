"""Re-pin tests/test_artifact_hashes.py after a change that alters artifacts on purpose: run every
pinned compile (the test's own arguments) and rewrite its PINNED dict in place.

Usage (repository root): .venv/bin/python scripts/repin_artifact_hashes.py
"""
import hashlib, os, re, sys, tempfile
from pathlib import Path
ROOT = Path.cwd()
sys.path.insert(0, str(ROOT / "tests"))
import test_artifact_hashes as T
from spikec.cli import main
pinned = {}
for run in sorted(T.PINNED):
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        try:
            main(["compile", *T._args(run), "-o", str(out)])
        except SystemExit as e:
            assert not e.code, run
        pinned[run] = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                       for p in sorted(out.rglob("*")) if p.is_file()}
lines = ["PINNED: dict[str, dict[str, str]] = {"]
for run, files in pinned.items():
    lines.append(f'    "{run}": {{')
    for f, h in files.items():
        lines.append(f'        "{f}":')
        lines.append(f'            "{h}",')
    lines.append("    },")
lines.append("}")
p = ROOT / "tests" / "test_artifact_hashes.py"
s = p.read_text()
a = s.index("PINNED: dict[str, dict[str, str]] = {")
b = s.index("\n}\n", a) + 3
p.write_text(s[:a] + "\n".join(lines) + "\n" + s[b:])
print("repinned", len(pinned))
