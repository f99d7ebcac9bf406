"""``spikec validate`` with Lava: ``--against lava`` end to end, and the hardware-in-the-loop path
on a real trace written by the bundle's runner script (CPU config here, ``--hw`` on a chip),
including a deliberately corrupted trace that must be caught."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from clirun import run_cli

from spikec.backends.lava import samples, write_bundle
from spikec.backends.lava.runtime.npzio import load_npz, save_npz
from spikec.errors import InputFileError
from spikec.ir import dumps
from spikec.backends.lava.validate import validate_trace

pytestmark = pytest.mark.lava


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """OUT with compiled.spkc and its bundle, a data file, and a real trace from run_lava.py."""
    tmp = tmp_path_factory.mktemp("validate")
    g = samples.spikformer_like(residual="add", T=2)
    out = tmp / "out"
    out.mkdir()
    (out / "compiled.spkc").write_bytes(dumps(g))
    write_bundle(g, out, ssa="host")
    x = samples.images(3)
    data = tmp / "data.npz"
    np.savez(data, images=x, labels=np.zeros(len(x), np.int64))
    save_npz(tmp / "inputs.npz", {"images": x})
    trace = tmp / "trace.npz"
    r = subprocess.run([sys.executable, str(out / "lava" / "run_lava.py"), "--inputs",
                        str(tmp / "inputs.npz"), "--trace", str(trace)],
                       capture_output=True, text=True, cwd=tmp)
    assert r.returncode == 0, r.stderr[-2000:]
    return out, data, trace, g


_cli = run_cli


def test_runner_trace_format(compiled):
    out, _, trace, g = compiled
    arrays = load_npz(trace)
    meta = json.loads(str(arrays["meta"]))
    assert meta["format"] == "spikec-trace" and meta["format_version"] == 1
    assert meta["run_config"] == "Loihi2SimCfg(select_tag='fixed_pt')" and meta["samples"] == 3
    manifest = json.loads((out / "lava" / "manifest.json").read_text())
    assert meta["bundle_hash"] == manifest["bundle_hash"]
    names = [l["name"] for l in meta["layers"]]
    assert "q" in names and "readout" in names
    assert arrays["spikes/q"].shape == (3, 2, 4, 16) and arrays["spikes/q"].dtype == np.uint8
    assert arrays["spikes/kv"].dtype == np.int32 and arrays["readout/readout"].shape == (3, 3)
    assert np.array_equal(arrays["inputs/x"], samples.images(3))


def test_validate_real_trace_and_corrupted_copy(compiled, tmp_path, capsys):
    out, data, trace, _ = compiled
    res = validate_trace(out, trace, str(data))
    assert res["mismatches"] == 0 and res["spikes_compared"] > 0 and res["first_divergence"] is None
    arrays = load_npz(trace)
    arrays["spikes/attn"][2, 1, 3, 7] ^= 1           # one spike of the 'chip' flipped
    bad = tmp_path / "bad.npz"
    save_npz(bad, arrays)
    code, stdout, _ = _cli(["validate", str(out), "--against", "trace", str(bad), "--json"], capsys)
    res = json.loads(stdout)
    assert code == 1 and res["mismatches"] == 1
    fd = res["first_divergence"]
    assert (fd["layer"], fd["sample"], fd["time_step"], fd["neuron"]) == ("attn", 2, 1, [3, 7])
    arrays = load_npz(trace)
    arrays.pop("spikes/proj")
    wrong = tmp_path / "wrong.npz"
    save_npz(wrong, arrays)
    with pytest.raises(InputFileError, match="no array 'spikes/proj'"):
        validate_trace(out, wrong)


def test_validate_against_lava_cli(compiled, capsys):
    out, data, _, _ = compiled
    code, stdout, err = _cli(["validate", str(out), "--against", "lava", "--data", str(data),
                              "--limit", "2", "--json"], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    for key in ("against", "samples", "spikes_compared", "mismatches", "first_divergence",
                "lava_seconds", "spikec_seconds"):
        assert key in res
    assert res["against"] == "lava" and res["samples"] == 2 and res["mismatches"] == 0
    assert res["first_divergence"] is None and res["lava_seconds"] > res["spikec_seconds"]


def test_sharded_validate_equals_one_lava_run(compiled):
    """--workers 2: three one-sample Lava runs on two local processes, traces joined in sample
    order; the comparison equals one run's, layer by layer."""
    from spikec.backends.lava.validate import validate_lava

    out, data, _, _ = compiled
    one = validate_lava(out, str(data), batch=0)
    two = validate_lava(out, str(data), batch=1, workers=2)
    assert two["samples"] == one["samples"] == 3 and two["mismatches"] == one["mismatches"] == 0
    for key in ("spikes_compared", "nonzero_compared", "readout_compared", "layers"):
        assert two[key] == one[key], key


def test_runner_refuses_hw_without_lava_loihi(compiled, tmp_path):
    out, _, trace, _ = compiled
    save_npz(tmp_path / "in.npz", {"images": samples.images(1)})
    r = subprocess.run([sys.executable, str(out / "lava" / "run_lava.py"), "--inputs",
                        str(tmp_path / "in.npz"), "--trace", str(tmp_path / "t.npz"), "--hw"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0 and "needs Intel's lava-loihi" in r.stderr
    assert not (tmp_path / "t.npz").exists()


def _rehash(out) -> None:
    """Make the manifest agree with the bundle's files again, as an attacker would."""
    import hashlib

    mpath = out / "lava" / "manifest.json"
    manifest = json.loads(mpath.read_text())
    for rel in manifest["files"]:
        manifest["files"][rel] = hashlib.sha256((out / "lava" / rel).read_bytes()).hexdigest()
    mpath.write_text(json.dumps(manifest))


def test_validate_never_executes_code_from_out(compiled, tmp_path, capsys):
    """A tampered run_lava.py and spikec_lava/ with a re-hashed manifest: validate still runs the
    installed runner on the data files and the tampered code never runs."""
    import shutil

    src, data, _, _ = compiled
    out = tmp_path / "out"
    shutil.copytree(src, out)
    sentinel = tmp_path / "executed"
    evil = f"open({str(sentinel)!r}, 'w').write('pwned')\nraise SystemExit(0)\n"
    (out / "lava" / "run_lava.py").write_text(evil)
    for name in ("runner.py", "network.py", "__init__.py"):
        (out / "lava" / "spikec_lava" / name).write_text(evil)
    _rehash(out)
    code, stdout, err = _cli(["validate", str(out), "--against", "lava", "--data", str(data),
                              "--limit", "1", "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["mismatches"] == 0
    assert not sentinel.exists()


def test_python_api_validates_against_lava(tmp_path):
    """``spikec.compile(...).validate(against='lava')`` (core only: runs without torch here)."""
    import spikec
    from spikec.ir import save
    from test_outputs import small_graph

    r = np.random.default_rng(0)
    save(small_graph(), tmp_path / "small.spkc")
    data = tmp_path / "d.npz"
    np.savez(data, images=r.integers(0, 256, (2, 1, 8, 8), dtype=np.uint8),
             labels=np.zeros(2, np.int64))
    c = spikec.compile(tmp_path / "small.spkc", data=str(data))
    res = c.validate(against="lava", data=str(data))
    assert res["samples"] == 2 and res["mismatches"] == 0 and res["spikes_compared"] > 0


@pytest.mark.parametrize("kind", ["sdsa", "qk", "qk_channel"])
def test_validate_spiking_attention_bundle_against_lava(kind, tmp_path, capsys):
    """The Spike-driven Transformer's SDSA and QKFormer's Q-K attention, compiled from a float
    graph and bundled: ``spikec validate --against lava`` finds no mismatch."""
    from spikec.pipeline import compile_graph

    x = samples.images(4)
    fixed = compile_graph(samples.attention_float(kind, T=2), "loihi2", calib=x).fixed
    out = tmp_path / "out"
    out.mkdir()
    (out / "compiled.spkc").write_bytes(dumps(fixed))
    write_bundle(fixed, out, ssa="host")
    data = tmp_path / "data.npz"
    np.savez(data, images=x, labels=np.zeros(len(x), np.int64))
    code, stdout, err = _cli(["validate", str(out), "--against", "lava", "--data", str(data),
                              "--limit", "4", "--json"], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    assert res["samples"] == 4 and res["spikes_compared"] > 0 and res["mismatches"] == 0
