"""``spikec inspect`` and ``spikec models``: the table, --json (params = the model's trainable
parameters, unused LayerNorms excluded since forward never calls them), flags, exit codes."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import spikec.models as models  # noqa: E402
from spikec.cli import main  # noqa: E402
from spikec.models.checkpoint import save_checkpoint  # noqa: E402
from spikec.models.spikformer import count_parameters  # noqa: E402


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


class SoftmaxNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.act = torch.nn.Softmax(dim=-1)

    def forward(self, x):
        return self.act(x)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = models.create("spikformer_v2_tiny_iand", T=1, img_size=16)
    path = tmp_path_factory.mktemp("ck") / "v2.pt"
    save_checkpoint(model, path, preprocess={"mean": [0.5], "std": [0.5]})
    return path, model


def test_table(capsys, checkpoint):
    path, _ = checkpoint
    code, out, err = run(capsys, "inspect", str(path))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["name", "op", "shape", "kind", "params", "dense", "ops/step",
                                "attributes"]
    rows = {line.split()[0]: line.split() for line in lines[2:] if line.strip()}
    assert rows["input"][1:3] == ["input", "1x16x16"]
    assert rows["patch_embed.stages.0.down_lif"][1:4] == ["lif*", "32x8x8", "spike"]
    assert rows["block.0.attn.matmul"][1] == "spike_matmul"
    assert rows["block.0.join.iand"][1:4] == ["iand", "64x4x4", "spike"]
    assert rows["output"][2:4] == ["10", "(final)"]
    assert lines[-1].endswith("T = 1") and "stateful" in lines[-1]


def test_json_params_are_the_models(capsys, checkpoint):
    path, model = checkpoint
    code, out, _ = run(capsys, "inspect", str(path), "--json")
    assert code == 0
    doc = json.loads(out)
    # the IR holds the traced parameters: weights, biases, BN gamma/beta (running statistics are
    # buffers); the never-called norm1/norm2 LayerNorms are not traced
    assert doc["params"] == count_parameters(model) == sum(op["params"] for op in doc["ops"])
    assert doc["params"] < count_parameters(model, include_unused_norms=True)
    assert doc["timesteps"] == 1 and doc["meta"]["arch"] == "spikformer_v2_tiny_iand"
    assert doc["meta"]["preprocess"]["mean"] == [0.5]
    assert doc["dense_ops_per_step"] == sum(op["dense_ops"] for op in doc["ops"]) > 0
    by_name = {op["name"]: op for op in doc["ops"]}
    assert by_name["head"]["rate"] == "final" and by_name["time_mean"]["stateful"]


def test_flags(capsys, checkpoint):
    path, _ = checkpoint
    code, out, _ = run(capsys, "inspect", str(path), "--json", "-T", "3", "--input-shape", "1,8,8")
    doc = json.loads(out)
    assert code == 0 and doc["timesteps"] == 3
    assert doc["ops"][0]["shape"] == [1, 8, 8]
    code, out, _ = run(capsys, "inspect", str(path), "--dump")
    assert code == 0 and out.startswith("graph T=1 ") and "spike_matmul(" in out


def test_models_listing(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    for name in ("spikformer_8_512", "spikformer_v2_8_512", "spikformer_cifar_4_384"):
        assert name in out
    code, out, _ = run(capsys, "models", "--json")
    assert [row["name"] for row in json.loads(out)] == models.names()


def test_errors_are_one_line_exit_2(capsys, checkpoint, tmp_path):
    path, model = checkpoint
    torch.save(model, tmp_path / "full.pt")
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    (tmp_path / "junk.pt").write_bytes(np.random.default_rng(1).bytes(512))
    torch.save(SoftmaxNet(), tmp_path / "softmax.pt")
    cases = [
        ([str(tmp_path / "missing.pt")], "no such file"),
        ([str(tmp_path / "junk.pt")], "not a PyTorch checkpoint"),
        ([str(tmp_path / "full.pt")], "pass --trust-pickle"),
        ([str(tmp_path / "bare.pt")], "pass --arch NAME"),
        ([str(tmp_path / "bare.pt"), "--arch", "nope"], "unknown architecture 'nope'"),
        ([str(tmp_path / "bare.pt"), "--arch", "spikformer_cifar_tiny"], "missing: "),
        ([str(path), "--input-shape", "1,2,2"], "too small"),
        ([str(tmp_path / "softmax.pt"), "--trust-pickle", "--input-shape", "1,4,4"],
         r"act (torch.nn.Softmax): this torch module is not supported"),
    ]
    for argv, message in cases:
        code, out, err = run(capsys, "inspect", *argv)
        assert code == 2, argv
        assert out == "" and err.count("\n") == 1 and err.startswith("spikec: error: "), err
        assert message in err, (message, err)


def test_debug_shows_traceback(tmp_path):
    from spikec.errors import InputFileError

    with pytest.raises(InputFileError):
        main(["--debug", "inspect", str(tmp_path / "missing.pt")])
