"""Output directories never lose a user's data (``spikec.outputs``): what may be replaced, the
input never deleted, early file-system checks, a swap safe against a kill at every step, leftovers
of killed runs cleaned, one run at a time, and the default OUT beside the model."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from clirun import run_cli

from spikec import outputs
from spikec.errors import OutputError
from spikec.ir import ops as O
from spikec.ir import save
from spikec.ir.graph import Graph
from spikec.outputs import MARKER, OutputDir, write_dir


def small_graph() -> Graph:
    """conv-LIF, token mean, time mean, linear head on 1x8x8 inputs, T = 2 (compiles in a blink)."""
    r = np.random.default_rng(0)
    f = np.float32
    return Graph([O.Input("input", (), shape=(1, 8, 8), pixel_scale=1 / 255),
                  O.Conv2d("conv", ("input",), weight=(r.normal(size=(4, 1, 3, 3))).astype(f),
                           bias=np.full(4, 0.2, f), padding=(1, 1)),
                  O.LIF("lif", ("conv",)),
                  O.Reshape("tokens", ("lif",), shape=(4, 64)),
                  O.Mean("mean", ("tokens",), axes=(1,)),
                  O.TimeMean("time_mean", ("mean",)),
                  O.Linear("head", ("time_mean",), weight=r.normal(size=(3, 4)).astype(f),
                           bias=np.zeros(3, f)),
                  O.Output("output", ("head",))], timesteps=2, meta={"arch": "small"})


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "model.spkc"
    save(small_graph(), path)
    return path


cli = run_cli


def one_line(code: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("spikec: error:"), (code, err)
    return lines[0]


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def tree(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


# ----------------------------------------------------------------------------- what is replaced
def test_marker_is_written_and_an_earlier_output_is_replaced(tmp_path):
    out = tmp_path / "OUT"
    write_dir(out, {"a": b"1"})
    marker = json.loads((out / MARKER).read_text())
    assert marker["format"] == "spikec-output" and marker["version"] == 1
    write_dir(out, {"b": b"2"})
    assert tree(out) == {MARKER: outputs.marker_bytes("compile", ["b"]), "b": b"2"}
    assert json.loads((out / MARKER).read_text())["files"] == ["b"]
    assert leftovers(out) == []
    empty = tmp_path / "EMPTY"
    empty.mkdir()
    write_dir(empty, {"c": b"3"})                     # an empty directory is replaced too
    assert (empty / "c").read_bytes() == b"3"


def test_foreign_directory_is_refused_before_compiling_and_force_replaces_it(model, tmp_path,
                                                                            capsys):
    out = tmp_path / "OUT"
    out.mkdir()
    for i in range(7):
        (out / f"user{i}.txt").write_text(str(i))
    # a model that does not exist: the refusal must come before the model is even read
    code, _, err = cli(["compile", tmp_path / "missing.pt", "-o", out], capsys)
    line = one_line(code, err)
    assert "not a spikec output" in line and "user0.txt" in line and "and 2 more" in line
    assert "--force" in line
    assert sorted(p.name for p in out.iterdir()) == [f"user{i}.txt" for i in range(7)]
    code, stdout, err = cli(["compile", model, "-o", out, "--force"], capsys)
    assert code == 0, err
    assert (out / "compiled.spkc").is_file() and not (out / "user0.txt").exists()
    assert leftovers(out) == []


def test_a_file_added_to_an_earlier_output_is_not_lost(model, tmp_path, capsys):
    out = tmp_path / "OUT"
    code, _, err = cli(["compile", model, "-o", out], capsys)
    assert code == 0, err
    code, _, err = cli(["report", out], capsys)            # derived by spikec: replaced freely
    assert code == 0, err
    code, _, err = cli(["compile", model, "-o", out], capsys)
    assert code == 0, err
    (out / "lava" / "my_notes.md").write_text("mine")
    code, _, err = cli(["compile", model, "-o", out], capsys)
    line = one_line(code, err)
    assert "holds files spikec did not write" in line and "lava/my_notes.md" in line
    assert (out / "lava" / "my_notes.md").read_text() == "mine"
    code, _, err = cli(["compile", model, "-o", out, "--force"], capsys)
    assert code == 0, err
    assert not (out / "lava" / "my_notes.md").exists()


def test_input_inside_out_is_never_deleted(model, tmp_path, capsys):
    out = tmp_path / "OUT"
    out.mkdir()
    inside = out / "model.spkc"
    inside.write_bytes(model.read_bytes())
    for extra in ([], ["--force"]):
        code, _, err = cli(["compile", inside, "-o", out] + extra, capsys)
        line = one_line(code, err)
        assert "model.spkc" in line and "inside" in line
        assert inside.read_bytes() == model.read_bytes()
    # also when OUT is an earlier spikec output that the user copied the model into
    write_dir(tmp_path / "PREV", {"x": b"1"})
    (tmp_path / "PREV" / "model.spkc").write_bytes(model.read_bytes())
    code, _, err = cli(["compile", tmp_path / "PREV" / "model.spkc", "-o", tmp_path / "PREV"],
                       capsys)
    one_line(code, err)
    assert (tmp_path / "PREV" / "model.spkc").is_file()
    # and the --data file
    data = out / "data.npz"
    np.savez(data, images=np.zeros((2, 1, 8, 8), np.uint8), labels=np.zeros(2, np.int64))
    code, _, err = cli(["compile", model, "-o", out, "--data", data, "--force"], capsys)
    assert "data.npz" in one_line(code, err) and data.is_file()


def test_current_directory_as_out_is_a_one_line_error(model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for out in (".", str(tmp_path), str(tmp_path.parent)):
        code, _, err = cli(["compile", "model.spkc", "-o", out, "--force"], capsys)
        assert "current directory" in one_line(code, err)
    assert model.is_file()


# ----------------------------------------------------------------------------- early checks
def test_file_system_problems_are_found_before_the_compile(tmp_path, capsys, monkeypatch):
    missing_model = tmp_path / "missing.pt"      # the checks must come first
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = cli(["compile", missing_model, "-o", afile], capsys)
    assert "is not a directory" in one_line(code, err)
    code, _, err = cli(["compile", missing_model, "-o", afile / "sub" / "OUT"], capsys)
    assert f"{afile} is a file" in one_line(code, err)
    assert afile.read_text() == "x"
    # an unwritable folder (root bypasses permissions, so the check is simulated as well)
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0:
        locked.chmod(0o555)
        code, _, err = cli(["compile", missing_model, "-o", locked / "OUT"], capsys)
        assert "permission denied" in one_line(code, err)
        locked.chmod(0o755)
    monkeypatch.setattr(outputs.os, "access", lambda path, mode: False)
    code, _, err = cli(["compile", missing_model, "-o", locked / "OUT"], capsys)
    assert f"cannot write into {locked} (permission denied)" in one_line(code, err)
    monkeypatch.setattr(outputs, "_read_only", lambda path: True)
    code, _, err = cli(["compile", missing_model, "-o", locked / "OUT"], capsys)
    assert "read-only file system" in one_line(code, err)
    assert not (locked / "OUT").exists() and list(locked.iterdir()) == []


def test_missing_parents_are_created_and_removed_again_on_failure(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "OUT"
    code, _, err = cli(["compile", tmp_path / "missing.pt", "-o", out], capsys)
    one_line(code, err)
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_writing_is_one_line_and_keeps_the_old_output(tmp_path, monkeypatch):
    out = tmp_path / "OUT"
    write_dir(out, {"old": b"1"})

    def full(step):
        if step == "written":
            raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(outputs, "_after", full)
    with pytest.raises(OutputError, match="No space left on device"):
        write_dir(out, {"new": b"2"})
    assert (out / "old").read_bytes() == b"1" and leftovers(out) == []


# ----------------------------------------------------------------------------- the swap
_KILLED_RUN = textwrap.dedent("""
    import os, sys
    from spikec import outputs
    step = sys.argv[2]
    def kill(at):
        if at == step:
            os._exit(9)                 # like SIGKILL: no cleanup runs
    outputs._after = kill
    outputs.write_dir(sys.argv[1], {"new": b"2"})
    """)


@pytest.mark.parametrize("step", ["written", "aside", "in_place"])
def test_a_kill_at_any_step_of_the_swap_never_loses_the_output(tmp_path, step):
    out = tmp_path / "OUT"
    write_dir(out, {"old": b"1"})
    r = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(out), step], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 9, r.stderr
    # right after the kill: OUT is old or new, or (killed between the renames) set aside whole
    if out.exists():
        assert set(tree(out)) in ({MARKER, "old"}, {MARKER, "new"})
    else:
        assert step == "aside"
        (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith(".OUT.old-")]
        assert (aside / "dir" / "old").read_bytes() == b"1"
    # the next run into OUT restores or cleans up before it does anything else
    with OutputDir(out):
        pass
    want = {"written": "old", "aside": "old", "in_place": "new"}[step]
    assert set(tree(out)) == {MARKER, want}
    assert leftovers(out) == []
    write_dir(out, {"third": b"3"})
    assert set(tree(out)) == {MARKER, "third"} and leftovers(out) == []


@pytest.mark.parametrize("step", ["written", "aside"])
def test_a_failure_inside_the_swap_restores_the_old_output(tmp_path, monkeypatch, step):
    out = tmp_path / "OUT"
    write_dir(out, {"old": b"1"})

    def fail(at):
        if at == step:
            raise KeyboardInterrupt
    monkeypatch.setattr(outputs, "_after", fail)
    with pytest.raises(KeyboardInterrupt):
        write_dir(out, {"new": b"2"})
    assert set(tree(out)) == {MARKER, "old"} and leftovers(out) == []


def test_leftovers_of_killed_runs_are_cleaned_by_the_next_run(model, tmp_path, capsys):
    out = tmp_path / "OUT"
    write_dir(out, {"old": b"1"})
    (tmp_path / ".OUT.tmp-dead1").mkdir()
    (tmp_path / ".OUT.tmp-dead1" / "half").write_bytes(b"x")
    (tmp_path / ".OUT.old-dead2" / "dir").mkdir(parents=True)
    (tmp_path / ".OUT.lock").write_text("")
    (tmp_path / ".OTHER.tmp-keep").mkdir()           # another OUT's: not ours to touch
    code, _, err = cli(["compile", model, "-o", out], capsys)
    assert code == 0, err
    assert leftovers(out) == [] and (tmp_path / ".OTHER.tmp-keep").is_dir()


def test_a_missing_out_is_restored_from_the_aside_copy_even_if_the_next_run_fails(tmp_path,
                                                                                   capsys):
    out = tmp_path / "OUT"
    write_dir(out, {"old": b"1"})
    aside = tmp_path / ".OUT.old-dead"
    aside.mkdir()
    os.replace(out, aside / "dir")                   # as a kill between the renames leaves it
    code, _, err = cli(["compile", tmp_path / "missing.pt", "-o", out], capsys)
    one_line(code, err)                              # this run fails (no model) ...
    assert set(tree(out)) == {MARKER, "old"}         # ... but the old output is back
    assert leftovers(out) == []


# ----------------------------------------------------------------------------- one run at a time
_HOLDER = textwrap.dedent("""
    import sys
    from spikec.outputs import OutputDir
    with OutputDir(sys.argv[1]) as target:
        print("locked", flush=True)
        sys.stdin.readline()            # the 'compile' of the first run, until told to finish
        target.write({"first": b"1"})
    """)


def test_concurrent_compiles_into_one_out(model, tmp_path, capsys):
    out = tmp_path / "OUT"
    first = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "locked"
        code, _, err = cli(["compile", model, "-o", out], capsys)
        assert "another spikec run is writing it" in one_line(code, err)
        first.stdin.write("go\n")
        first.stdin.flush()
        assert first.wait(timeout=120) == 0
    finally:
        if first.poll() is None:
            first.kill()
    assert set(tree(out)) == {MARKER, "first"}       # the first run's result is intact
    assert leftovers(out) == []
    code, _, err = cli(["compile", model, "-o", out], capsys)    # and then the second may run
    assert code == 0, err
    assert (out / "compiled.spkc").is_file()


# ----------------------------------------------------------------------------- default OUT
def test_compile_without_o_writes_beside_the_model(model, tmp_path, capsys):
    code, stdout, err = cli(["compile", model], capsys)
    assert code == 0, err
    out = tmp_path / "model.spikec"
    assert f"writing {out}/" in stdout and f"wrote {out}/" in stdout
    assert (out / "compiled.spkc").is_file() and (out / MARKER).is_file()
    code, _, err = cli(["compile", model], capsys)          # replaced: it is spikec's own
    assert code == 0, err
    foreign = tmp_path / "other.spikec"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    other = tmp_path / "other.spkc"
    other.write_bytes(model.read_bytes())
    code, _, err = cli(["compile", other], capsys)         # the same rules apply
    assert "notes.txt" in one_line(code, err)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_a_bundle_rewrite_respects_the_lock_and_cleans_its_leftovers(tmp_path):
    from spikec.backends.lava import samples, write_bundle
    from spikec.outputs import DirLock

    out = tmp_path / "OUT"
    write_dir(out, {"x": b"1"})
    with DirLock(out):
        with pytest.raises(OutputError, match="another spikec run is writing it"):
            write_bundle(samples.chain(), out)
    (out / ".lava.tmp-dead").mkdir()
    write_bundle(samples.chain(), out)
    assert (out / "lava" / "manifest.json").is_file()
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "lava", "x"]
    assert leftovers(out) == []
