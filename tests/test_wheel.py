"""The installable wheel.

Built from a copy of the checkout with no network (``pip wheel --no-deps --no-build-isolation
--no-index``: the running environment's setuptools, which scripts/setup.sh installs through the
``test`` extra), the wheel holds every module of ``spikec/``, ``frontends/`` and ``backends/``
(compared file by file with the source tree, so a forgotten package fails), the hardware profiles,
``py.typed`` and the ``spikec`` entry point. Installed into a fresh virtual environment (its
dependencies read from the running one through a ``.pth`` line), it is the spikec that runs:
``spikec profiles``, ``compile`` and ``simulate`` on a shipped checkpoint from outside the checkout.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: wheel folder -> source folder of the checkout (setup.py's package_dir)
FOLDERS = {"spikec": "spikec", "spikec/frontends": "frontends", "spikec/backends": "backends",
           "spikec/hardware_profiles": "hardware_profiles"}
SOURCES = ["pyproject.toml", "setup.py", "README.md", *FOLDERS.values()]
CHECKPOINT = ROOT / "examples" / "checkpoints" / "spikformer_v2_fmnist.pt"
SAMPLES = 16

pytestmark = pytest.mark.slow


def _run(cmd, *, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def _source_files() -> set[str]:
    """Every file the wheel must hold, as its path inside the wheel."""
    want = {"spikec/py.typed"}
    for inside, folder in FOLDERS.items():
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".toml"):
                want.add(f"{inside}/{path.relative_to(ROOT / folder).as_posix()}")
    return want


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    setuptools = importlib.metadata.version("setuptools")
    assert int(setuptools.split(".")[0]) >= 77, \
        f"setuptools {setuptools} cannot build spikec offline (needs >= 77: bash scripts/setup.sh)"
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:   # a copy: an in-tree build would write build/ and egg-info here
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(p, src / name)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--no-cache-dir", "-q", "-w", dist, src], cwd=dist)
    (whl,) = dist.glob("spikec-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; numpy, torch, ... come from the running one."""
    env_dir = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", env_dir], cwd=env_dir)
    py = env_dir / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index",
          "--no-cache-dir", "-q", wheel], cwd=env_dir)
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=env_dir).stdout.strip())
    # a path line adds the folder only: the .pth files in it (spikec's editable finder) stay off
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (site / "running_env_deps.pth").write_text("".join(f"{p}\n" for p in deps))
    return env_dir


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPIKEC_PROFILES_DIR")}


def test_wheel_holds_every_package_the_profiles_and_py_typed(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
    files = {n for n in names if ".dist-info/" not in n}
    want = _source_files()
    assert want - files == set(), "missing from the wheel"
    assert files - want == set(), "in the wheel but not in the source tree"
    profiles = {n for n in files if n.startswith("spikec/hardware_profiles/") and n.endswith(".toml")}
    assert len(profiles) == 6
    assert {"spikec/quantize/__init__.py", "spikec/backends/lava/runtime/run_lava.py",
            "spikec/frontends/torch/__init__.py"} <= files
    assert "spikec = spikec.cli:main" in entry_points.decode()


def test_installed_wheel_runs_outside_the_checkout(venv, tmp_path):
    work = tmp_path / "work"     # outside the checkout: nothing of it on sys.path
    work.mkdir()
    env = _clean_env()
    py, cli = venv / "bin" / "python", venv / "bin" / "spikec"
    where = json.loads(_run([py, "-c", "import json, spikec, spikec.pipeline, spikec.target as t; "
                             "print(json.dumps([spikec.__file__, str(t.profiles_dir())]))"],
                            cwd=work, env=env).stdout)
    for path in where:
        assert Path(path).resolve().is_relative_to(venv.resolve()), path
    out = _run([cli, "profiles"], cwd=work, env=env).stdout
    names = sorted(p.stem for p in (ROOT / "hardware_profiles").glob("*.toml"))
    assert len(names) == 6 and all(n in out for n in names), out
    model = work / CHECKPOINT.name
    shutil.copy2(CHECKPOINT, model)
    r = _run([cli, "compile", model.name, "--target", "loihi2", "--data", "fashion-mnist:test",
              "--limit", SAMPLES, "--calib", "fashion-mnist:train", "-o", "out"], cwd=work, env=env)
    assert f"top-1 on {SAMPLES} samples" in r.stdout
    assert (work / "out" / "compiled.spkc").is_file() and (work / "out" / "lava" / "manifest.json").is_file()
    r = _run([cli, "simulate", "out", "--data", "fashion-mnist:test", "--limit", SAMPLES, "--json"],
             cwd=work, env=env)
    res = json.loads(r.stdout)
    assert res["accuracy"]["samples"] == SAMPLES and len(res["predictions"]) == SAMPLES
    report = json.loads((work / "out" / "report.json").read_text())
    assert res["accuracy"]["quantized"] == report["accuracy"]["quantized"]
