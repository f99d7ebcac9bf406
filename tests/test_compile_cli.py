"""``spikec compile`` and ``spikec simulate`` end to end on a tiny Spikformer V2 (random weights)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spikec import report as rep  # noqa: E402
from spikec.cli import main  # noqa: E402

N_SAMPLES = 6


def run_cli(args, capsys) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A checkpoint of spikformer_v2_tiny (1x28x28, T=4) and a matching .npz data set."""
    from spikec import models
    from spikec.data import Dataset, save_npz
    from spikec.models.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    model = models.create("spikformer_v2_tiny")
    ckpt = d / "tiny.pt"
    save_checkpoint(model, ckpt)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N_SAMPLES, 1, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, N_SAMPLES)
    data = save_npz(Dataset(images, labels, "tiny", 10), d / "data.npz")
    wrong = save_npz(Dataset(rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8),
                             np.zeros(4, dtype=np.int64), "wrong", 10), d / "wrong.npz")
    return {"ckpt": ckpt, "data": Path(data), "wrong": Path(wrong), "dir": d}


@pytest.fixture(scope="module")
def compiled(tiny, tmp_path_factory):
    """Compile the tiny model twice (for determinism) with --data and -T 2."""
    import subprocess
    import sys

    outs = []
    for i in range(2):
        out = tmp_path_factory.mktemp(f"out{i}") / "OUT"
        r = subprocess.run([sys.executable, "-m", "spikec.cli", "compile", str(tiny["ckpt"]),
                            "--target", "loihi2", "-o", str(out), "--data", str(tiny["data"]),
                            "--calib", str(tiny["data"]), "-T", "2", "--limit", "5"],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        outs.append((out, r.stdout))
    return outs


def test_compile_writes_the_output_directory(compiled):
    out, stdout = compiled[0]
    assert sorted(p.name for p in out.iterdir()) == [".spikec-output.json", "compiled.spkc",
                                                     "float.spkc", "folded.spkc", "lava",
                                                     "report.json"]
    assert (out / "lava" / "manifest.json").is_file() and (out / "lava" / "run_lava.py").is_file()
    assert "Lava bundle:" in stdout
    assert "top-1 on 5 samples" in stdout
    from spikec.ir import load

    fixed = load(out / "compiled.spkc")
    assert fixed.domain == "fixed" and fixed.timesteps == 2
    assert load(out / "folded.spkc").domain == "float"


def test_report_has_the_contract_keys(compiled):
    r = json.loads((compiled[0][0] / "report.json").read_text())
    for k in rep.REQUIRED_KEYS + ("schema_version", "notes"):
        assert k in r, k
    assert r["target"] == "loihi2" and r["timesteps"] == 2 and r["model"] == "tiny.pt"
    acc = r["accuracy"]
    assert acc["samples"] == 5
    for k in ("float", "folded", "quantized"):
        assert 0.0 <= acc[k] <= 1.0
    assert r["layers"]
    for e in r["layers"]:
        for k in ("name", "op", "neurons", "spikes", "synaptic_events", "spike_agreement"):
            assert k in e
        if e["spike_agreement"] is not None:
            assert 0.0 <= e["spike_agreement"] <= 1.0
    lif = [e for e in r["layers"] if e["op"] == "cuba_lif"]
    assert lif and all(e["spike_agreement"] is not None for e in lif)
    assert set(r["totals"]) >= {"spikes", "synaptic_events", "neuron_updates"}
    assert r["totals"]["neuron_updates"] > 0
    div = r["first_divergent_layer"]
    assert div is None or div in {e["name"] for e in lif}


def test_compile_is_deterministic(compiled):
    (a, _), (b, _) = compiled
    for name in ("compiled.spkc", "folded.spkc", "float.spkc", "report.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_simulate_matches_the_report(compiled, tiny, capsys):
    out = compiled[0][0]
    r = json.loads((out / "report.json").read_text())
    for stage in ("quantized", "float", "folded"):
        code, stdout, err = run_cli(["simulate", out, "--data", tiny["data"], "--limit", 5,
                                     "--stage", stage, "--json"], capsys)
        assert code == 0, err
        res = json.loads(stdout)
        assert set(res) >= {"accuracy", "layers", "totals", "predictions"}
        assert len(res["predictions"]) == 5
        assert res["accuracy"][stage] == r["accuracy"][stage]
        assert res["accuracy"]["samples"] == 5
    code, stdout, err = run_cli(["simulate", out, "--data", tiny["data"], "--limit", 5], capsys)
    assert code == 0 and "quantized" in stdout


def test_simulate_counts_equal_the_report(compiled, tiny, capsys):
    out = compiled[0][0]
    r = json.loads((out / "report.json").read_text())
    code, stdout, _ = run_cli(["simulate", out, "--data", tiny["data"], "--limit", 5, "--json"],
                              capsys)
    res = json.loads(stdout)
    assert res["totals"] == r["totals"]
    assert [(e["name"], e["spikes"]) for e in res["layers"]] == \
        [(e["name"], e["spikes"]) for e in r["layers"]]


# ----------------------------------------------------------------------------- bad input
def _no_partial(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def _one_line_error(code, err):
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("spikec: error:"), err
    return lines[0]


def test_unknown_target(tiny, tmp_path, capsys):
    out = tmp_path / "OUT"
    code, _, err = run_cli(["compile", tiny["ckpt"], "--target", "loihi7", "-o", out], capsys)
    assert "loihi7" in _one_line_error(code, err)
    _no_partial(out)


def test_profile_with_missing_fields(tiny, tmp_path, capsys):
    prof = tmp_path / "broken.toml"
    prof.write_text('[profile]\nname = "broken"\ndescription = "no formats"\nkind = "chip"\n')
    out = tmp_path / "OUT"
    code, _, err = run_cli(["compile", tiny["ckpt"], "--profile", prof, "-o", out], capsys)
    _one_line_error(code, err)
    _no_partial(out)


def test_data_shape_mismatch_names_both_shapes(tiny, tmp_path, capsys):
    out = tmp_path / "OUT"
    code, _, err = run_cli(["compile", tiny["ckpt"], "-o", out, "--data", tiny["wrong"]], capsys)
    line = _one_line_error(code, err)
    assert "(3, 32, 32)" in line and "(1, 28, 28)" in line
    _no_partial(out)


def test_failed_compile_keeps_an_existing_out(tiny, tmp_path, capsys):
    out = tmp_path / "OUT"
    out.mkdir()
    (out / "marker").write_text("old")
    code, _, err = run_cli(["compile", tiny["ckpt"], "-o", out, "--data", tiny["wrong"]], capsys)
    _one_line_error(code, err)
    assert (out / "marker").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".OUT")) == []


def test_weights_that_cannot_fit(tiny, tmp_path, capsys):
    """A layer whose weights span more than the widest exponent range can encode."""
    from spikec import models
    from spikec.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = models.create("spikformer_v2_tiny")
    with torch.no_grad():
        w = next(p for n, p in model.named_parameters() if n.endswith("weight") and p.ndim == 4)
        w.mul_(1e30)
    bad = tmp_path / "huge.pt"
    save_checkpoint(model, bad)
    out = tmp_path / "OUT"
    code, _, err = run_cli(["compile", bad, "-o", out], capsys)
    _one_line_error(code, err)
    _no_partial(out)


def test_preprocess_for_a_model_that_records_none(tiny, tmp_path, capsys):
    """A bare state_dict records no preprocessing: --preprocess gives it (default pixel / 255)."""
    from spikec import models
    from spikec.ir import load

    torch.manual_seed(0)
    bare = tmp_path / "bare.pt"
    torch.save(models.create("spikformer_v2_tiny").state_dict(), bare)
    out = tmp_path / "OUT"
    code, _, err = run_cli(["compile", bare, "--arch", "spikformer_v2_tiny", "-o", out,
                            "--preprocess", "pixel_scale=1/255,mean=0.5,std=0.25"], capsys)
    assert code == 0, err
    inp = load(out / "float.spkc").inputs[0]
    assert (inp.pixel_scale, inp.mean, inp.std) == (pytest.approx(1 / 255), (0.5,), (0.25,))
    code, _, err = run_cli(["compile", bare, "--arch", "spikformer_v2_tiny", "-o", out], capsys)
    assert code == 0, err
    inp = load(out / "float.spkc").inputs[0]
    assert inp.pixel_scale == pytest.approx(1 / 255) and inp.mean == ()
    code, _, err = run_cli(["compile", bare, "--arch", "spikformer_v2_tiny", "-o", out,
                            "--preprocess", "mean=0.5"], capsys)
    _one_line_error(code, err)      # mean without std


def test_simulate_bad_out(tmp_path, tiny, capsys):
    code, _, err = run_cli(["simulate", tmp_path / "nothing", "--data", tiny["data"]], capsys)
    _one_line_error(code, err)


def test_write_dir_is_atomic(tmp_path):
    from spikec.outputs import write_dir

    out = tmp_path / "OUT"
    write_dir(out, {"a": b"1"})
    write_dir(out, {"b": b"2"})
    assert sorted(os.listdir(out)) == [".spikec-output.json", "b"]
    assert [p.name for p in tmp_path.iterdir()] == ["OUT"]


def test_simulate_strict_stops_at_a_wrapping_state(compiled, tiny, tmp_path, capsys):
    import dataclasses
    import shutil

    from spikec.ir import load, save
    from spikec.ir.fixed import ConvSynapse
    from spikec.ir.graph import Graph

    out = tmp_path / "OUT"
    shutil.copytree(compiled[0][0], out)
    code, _, err = run_cli(["simulate", out, "--data", tiny["data"], "--limit", 2, "--strict"],
                           capsys)
    assert code == 0, err                    # the real compile never wraps on these images
    g = load(out / "compiled.spkc")
    first = next(op for op in g.ops if isinstance(op, ConvSynapse))
    loud = dataclasses.replace(first, weight_exp=np.full_like(first.weight_exp, 7))
    save(Graph([loud if op is first else op for op in g.ops], g.timesteps, g.meta, g.domain),
         out / "compiled.spkc")
    code, _, err = run_cli(["simulate", out, "--data", tiny["data"], "--limit", 2], capsys)
    assert code == 0, err                    # wraps silently, like the chip
    code, _, err = run_cli(["simulate", out, "--data", tiny["data"], "--limit", 2, "--strict",
                            "--json"], capsys)
    line = _one_line_error(code, err)
    assert first.name in line and "out of range at time step" in line, line
    code, _, err = run_cli(["simulate", out, "--data", tiny["data"], "--stage", "float",
                            "--strict"], capsys)
    _one_line_error(code, err)
