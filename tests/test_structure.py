"""The shape of the tree (issue 11): the core reaches backends only through the registry
(``spikec.backend``), and command-line code lives only in ``spikec.cli``."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import spikec

SPIKEC = Path(spikec.__file__).resolve().parent
REPO = SPIKEC.parent

_IMPORT_ALL = """
import importlib, json, pkgutil, sys
import spikec
names = [m.name for m in pkgutil.walk_packages(spikec.__path__, "spikec.")
         if not m.name.startswith(("spikec.backends", "spikec.frontends"))
         and not m.name.endswith(".__main__")]
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except ImportError as e:       # an optional dependency (e.g. torch) missing
        failed[name] = str(e)
print(json.dumps({"modules": names, "failed": failed,
                  "backends": sorted(m for m in sys.modules if m.startswith("spikec.backends"))}))
"""


def test_no_core_module_imports_a_backend():
    r = subprocess.run([sys.executable, "-c", _IMPORT_ALL], capture_output=True, text=True,
                       timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"spikec.compiler", "spikec.validate", "spikec.cli", "spikec.cli.validate",
            "spikec.evaluate", "spikec.outputs", "spikec.backend"} <= set(res["modules"])
    assert res["failed"] == {}
    assert res["backends"] == [], res["backends"]


def test_no_core_source_has_a_backend_import_even_a_lazy_one():
    """Imports inside functions count too: the registry's table is the only way in."""
    import ast

    offenders = []
    for path in SPIKEC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "spikec.backends" or n.startswith("spikec.backends.") for n in names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def test_the_registry_finds_every_backend_package():
    from spikec import backend

    packages = {p.name for p in (REPO / "backends").iterdir() if (p / "__init__.py").is_file()}
    assert set(backend.BACKENDS) == packages
    for name in backend.BACKENDS:
        assert backend.get(name).name == name
    assert backend.get("lava").bundle_files and backend.get("lava").validate
    assert all(backend.get(n).export for n in backend.export_formats())


def test_click_only_in_the_cli_package():
    offenders = []
    for root in (SPIKEC, REPO / "backends", REPO / "frontends"):
        for path in root.rglob("*.py"):
            if SPIKEC / "cli" in path.parents:
                continue
            if re.search(r"(?m)^\s*(import click|from click)", path.read_text(encoding="utf-8")):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
