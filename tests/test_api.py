"""The Python API (``spikec.compile`` / ``spikec.load``): a model class defined in the test is
compiled in memory; the API and the CLI give byte-identical outputs and the same numbers."""
from __future__ import annotations

import json

import numpy as np
import pytest

import spikec
from spikec.errors import OutputError

from test_outputs import cli, small_graph, tree

torch = pytest.importorskip("torch")
nn = torch.nn


class TinyNet(nn.Module):
    """Defined here, as a user would in a script: conv-BN-LIF, max-pool, linear head."""

    def __init__(self, T: int = 2):
        super().__init__()
        from spikec.models.lif import MultiStepLIF

        self.T = T
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.lif = MultiStepLIF(tau=2.0)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        T, B = x.shape[:2]
        y = self.bn(self.conv(x.flatten(0, 1))).reshape(T, B, 4, 8, 8)
        s = self.pool(self.lif(y).flatten(0, 1))
        return self.head(s.flatten(1)).reshape(T, B, 3).mean(0)


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, 1, 8, 8), dtype=np.uint8), rng.integers(0, 3, 6)


def test_a_model_class_from_the_script_compiles_simulates_estimates_saves_and_loads(
        samples, tmp_path):
    torch.manual_seed(0)
    c = spikec.compile(TinyNet(), target="loihi2", input_shape=(1, 8, 8), timesteps=2,
                       data=samples, calib=samples)
    rep = c.report()
    assert rep["model"] == "TinyNet (in memory)" and rep["timesteps"] == 2
    assert rep["accuracy"]["samples"] == 6 and rep["data"] == {"spec": "in-memory", "samples": 6}
    assert c.fixed.domain == "fixed" and c.folded.domain == "float"
    for stage in ("float", "folded", "quantized"):       # the same computation as the report's
        res = c.simulate(samples, stage=stage)
        assert res["accuracy"][stage] == rep["accuracy"][stage]
    est = c.estimate("loihi2")
    assert est["fits"] and est["cores"] >= 1 and est["events"]["source"].startswith("report.json")
    out = c.save(tmp_path / "out")
    assert (out / "compiled.spkc").is_file() and (out / "lava" / "manifest.json").is_file()
    back = spikec.load(out)
    assert back.report() == json.loads((out / "report.json").read_text())
    assert back.simulate(samples)["predictions"] == c.simulate(samples)["predictions"]
    back.save(tmp_path / "again")                        # a loaded output saves the same bytes
    assert tree(tmp_path / "again") == tree(out)


def test_api_and_cli_write_byte_identical_outputs(tmp_path, capsys):
    from spikec.data import Dataset, save_npz
    from spikec.ir import save

    model = tmp_path / "small.spkc"
    save(small_graph(), model)
    rng = np.random.default_rng(1)
    data = save_npz(Dataset(rng.integers(0, 256, (4, 1, 8, 8), dtype=np.uint8),
                            rng.integers(0, 3, 4), "d", 3), tmp_path / "d.npz")
    spikec.compile(model, data=str(data), calib=str(data)).save(tmp_path / "api")
    code, _, err = cli(["compile", model, "-o", tmp_path / "cli", "--data", data, "--calib", data],
                       capsys)
    assert code == 0, err
    assert tree(tmp_path / "api") == tree(tmp_path / "cli")


def test_save_follows_the_output_rules(samples, tmp_path):
    torch.manual_seed(0)
    c = spikec.compile(TinyNet(), input_shape=(1, 8, 8), timesteps=2)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="notes.txt"):
        c.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    c.save(tmp_path / "mine", force=True)
    assert not (tmp_path / "mine" / "notes.txt").exists()


def test_bad_model_and_data_are_one_line_errors(samples):
    from spikec.errors import DataError, InputFileError, ShapeError

    with pytest.raises(InputFileError, match="not a model"):
        spikec.compile(object())
    with pytest.raises(ShapeError, match="input shape"):
        spikec.compile(TinyNet())                        # no input_shape and no spikec_config
    images, labels = samples
    with pytest.raises(DataError, match="uint8"):
        spikec.compile(TinyNet(), input_shape=(1, 8, 8), data=(images.astype(np.float32), labels))


def test_the_readme_example_runs(tmp_path, monkeypatch):
    """The README's Python block, as written (it needs the Fashion-MNIST package of
    scripts/install_data.sh, like the README's main command)."""
    import re
    from pathlib import Path

    from spikec import data

    try:
        data.load("fashion-mnist:test", 1)
    except Exception as e:  # pragma: no cover - the data package is part of the test setup
        pytest.fail(f"Fashion-MNIST is not installed (bash scripts/install_data.sh): {e}")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = tmp_path / "out" / "conv_snn"
    report = json.loads((out / "report.json").read_text())
    assert report["accuracy"]["samples"] == 500 and (out / "lava" / "manifest.json").is_file()
    assert spikec.load(out).report() == report


def test_api_passes_input_encoding_workers_and_timing_through(tmp_path):
    """The library verbs take the CLI's newer options: --input-encoding (a real-valued input on
    Loihi 1 as bit planes), --workers (the same result) and --timing cycle."""
    from spikec.ir import save
    from test_input_encoding import conv_snn

    path = tmp_path / "conv.spkc"
    save(conv_snn(T=2), path)
    rng = np.random.default_rng(0)
    data = (rng.integers(0, 256, (6, 1, 12, 12), dtype=np.uint8), rng.integers(0, 3, 6))
    bits = spikec.compile(path, target="loihi", input_encoding="bitplane")
    assert bits.fixed.meta.get("input_encoding") == "bitplane"
    plain = spikec.compile(path)
    assert plain.simulate(data, batch_size=2, workers=2) == plain.simulate(data, batch_size=2)
    est = plain.estimate("loihi2", data=data, timing="cycle")
    assert est["timing"]["latency_per_sample_s"]["max"] > 0
