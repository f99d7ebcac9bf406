"""spikec.models.train: a few iterations on MNIST 5k with a tiny model."""
from __future__ import annotations

import math

import pytest
import torch

from spikec import data
from spikec.models import train

TINY = ["embed_dim=16", "depth=1", "num_heads=2", "T=2", "stem_mlp_ratio=1.0", "mlp_ratio=2.0"]


def _args(out, seed=0, extra=()):
    return ["--arch", "spikformer_v2_tiny", "--data", "mnist5k", "--epochs", "1", "--batch-size", "16",
            "--lr", "1e-3", "--seed", str(seed), "--limit-train", "96", "--limit-test", "40",
            "--max-steps", "4", "--eval-T", "1,2", "--threads", "1", "--no-progress", "-o", str(out),
            *[a for kv in TINY for a in ("--set", kv)], *extra]


def _config(argv):
    return train.config_from_args(train.build_parser().parse_args(argv))


def test_short_run_writes_a_weights_only_checkpoint_and_card(tmp_path):
    out = tmp_path / "tiny.pt"
    assert train.main(_args(out)) == 0
    ckpt = torch.load(out, map_location="cpu", weights_only=True)
    assert ckpt["arch"] == "spikformer_v2_tiny"
    assert ckpt["config"]["embed_dim"] == 16 and ckpt["config"]["T"] == 2
    pre = data.Preprocess.from_dict(ckpt["preprocess"])
    assert pre.pixel_scale == pytest.approx(1 / 255) and len(pre.mean) == 1 and pre.std[0] > 0
    assert set(ckpt["accuracies"]) == {"T1", "T2"}
    assert all(0.0 <= a <= 1.0 for a in ckpt["accuracies"].values())
    assert ckpt["seed"] == 0 and ckpt["data"]["test"] == "mnist5k:test"
    assert ckpt["train_command"].startswith("python -m spikec.models.train --arch spikformer_v2_tiny")
    card = (tmp_path / "tiny.md").read_text()
    assert "| 2 |" in card and ckpt["train_command"] in card

    from spikec.models.checkpoint import load_model
    model, _ = load_model(out)
    x = torch.from_numpy(pre.apply(data.load("mnist5k:test", limit=3).images))
    assert model(x).shape == (3, 10)


def test_same_seed_same_losses(tmp_path):
    cfg = _config(_args(tmp_path / "a.pt", extra=["--train-T", "1", "--finetune-epochs", "1"]))
    cfg.max_steps = 6  # 4 steps at T=1 would exhaust 96 images / 16; use both stages
    cfg.limit_train = 64
    a = train.train(cfg)
    b = train.train(cfg)
    assert len(a.losses) == 6 and all(math.isfinite(v) for v in a.losses)
    assert a.losses == b.losses
    assert a.accuracies == b.accuracies
    c = train.train(_config(_args(tmp_path / "c.pt", seed=1)))
    assert c.losses[:4] != a.losses[:4]


def test_helpers():
    assert train.parse_overrides(["embed_dim=64", "residual=iand", "mlp_ratio=2.5"]) == \
        {"embed_dim": 64, "residual": "iand", "mlp_ratio": 2.5}
    with pytest.raises(Exception, match="key=value"):
        train.parse_overrides(["embed_dim"])
    # warm-up is linear up to the base lr, then cosine to 0
    assert train.lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert train.lr_at(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert train.lr_at(100, 100, 10, 1.0) == pytest.approx(0.0, abs=1e-12)
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.uint8).reshape(2, 1, 5, 5)
    y = train.random_crop(x, 2, gen)
    assert y.shape == x.shape and y.dtype == torch.uint8


def test_unknown_data_is_an_error(tmp_path):
    assert train.main(["--arch", "spikformer_v2_tiny", "--data", "imagenet", "-o",
                       str(tmp_path / "x.pt"), "--no-progress"]) != 0
