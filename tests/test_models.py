"""The reference models: LIF semantics, architectures, parameter counts, registry, checkpoints."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import spikec.models as models  # noqa: E402
from spikec.errors import CheckpointError, ShapeError  # noqa: E402
from spikec.models.checkpoint import (DEFAULT_PREPROCESS, load_model, read_checkpoint,  # noqa: E402
                                      save_checkpoint)
from spikec.models.lif import MultiStepLIF, sigmoid_spike  # noqa: E402
from spikec.models.spikformer import IAND, Block  # noqa: E402


# ----------------------------------------------------------------------------- LIF
def lif_brute_force(x: np.ndarray, tau: float, v_th: float, v_reset: float | None,
                    decay_input: bool) -> np.ndarray:
    """spikingjelly's LIF, one element at a time in numpy float32."""
    x = x.astype(np.float32)
    out = np.zeros_like(x)
    flat_x = x.reshape(x.shape[0], -1)
    flat_out = out.reshape(x.shape[0], -1)
    tau32 = np.float32(tau)
    for i in range(flat_x.shape[1]):
        v = np.float32(0.0)
        for t in range(flat_x.shape[0]):
            xt = flat_x[t, i]
            vr = np.float32(0.0 if v_reset is None else v_reset)
            if decay_input:
                h = v + (xt - v) / tau32 if v_reset is None else v + (xt - (v - vr)) / tau32
            else:
                h = v - (v - vr) / tau32 + xt
            s = np.float32(1.0) if h >= np.float32(v_th) else np.float32(0.0)
            flat_out[t, i] = s
            if v_reset is None:
                v = np.float32(h - s * np.float32(v_th))
            else:
                v = vr if s else h
    return out


@pytest.mark.parametrize("v_th, v_reset, decay_input", [
    (1.0, 0.0, True), (0.5, 0.0, True), (1.0, None, True), (1.0, 0.0, False), (0.7, -0.2, True)])
def test_lif_matches_brute_force(v_th, v_reset, decay_input):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, 11, generator=gen) * 1.5
    x[0, 0, :4] = torch.tensor([2.0, 1.0, 2.0 * v_th, 2.0 * v_th - 1e-6])  # at and near threshold
    lif = MultiStepLIF(tau=2.0, v_threshold=v_th, v_reset=v_reset, decay_input=decay_input)
    got = lif(x).numpy()
    want = lif_brute_force(x.numpy(), 2.0, v_th, v_reset, decay_input)
    assert np.array_equal(got, want)
    assert set(np.unique(got)) <= {0.0, 1.0}


def test_lif_fires_on_equality_and_keeps_no_state():
    lif = MultiStepLIF()
    x = torch.full((1, 4), 2.0)  # H = 0 + (2 - 0) / 2 = 1.0 == v_th
    assert torch.equal(lif(x), torch.ones(1, 4))
    seq = torch.tensor([[1.2], [1.2], [1.2], [1.2]])  # H: 0.6, 0.9, 1.05 -> fire, 0.6
    assert lif(seq).flatten().tolist() == [0.0, 0.0, 1.0, 0.0]
    assert lif(seq).flatten().tolist() == [0.0, 0.0, 1.0, 0.0]  # V restarts at 0 every call
    assert (lif.tau, lif.v_threshold, lif.v_reset, lif.decay_input, lif.detach_reset) == \
        (2.0, 1.0, 0.0, True, False)
    assert list(lif.parameters()) == [] and list(lif.buffers()) == []


def test_surrogate_gradient_is_sigmoid_derivative_alpha_4():
    x = torch.tensor([-1.0, -0.25, 0.0, 0.3, 2.0], requires_grad=True)
    y = sigmoid_spike(x)
    assert y.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    y.sum().backward()
    sig = torch.sigmoid(4.0 * x.detach())
    assert torch.allclose(x.grad, 4.0 * sig * (1 - sig))
    assert x.grad[2].item() == pytest.approx(1.0)  # alpha / 4 at the threshold

    xin = torch.tensor([[1.5]], requires_grad=True)  # one step: H = x / 2, spike = step(H - 1)
    MultiStepLIF()(xin).sum().backward()
    s = torch.sigmoid(torch.tensor(4.0 * (0.75 - 1.0)))
    assert xin.grad.item() == pytest.approx(0.5 * 4.0 * (s * (1 - s)).item())


# ----------------------------------------------------------------------------- parameter counts
PAPER = {
    "spikformer_8_384": (16.81, 16_816_024), "spikformer_6_512": (23.37, 23_373_352),
    "spikformer_8_512": (29.68, 29_689_384), "spikformer_10_512": (36.01, 36_005_416),
    "spikformer_8_768": (66.34, 66_338_632), "spikformer_cifar_4_384": (9.32, 9_324_730),
    "spikformer_cifar_2_384": (5.76, 5_765_050), "spikformer_cifar_4_256": (4.15, 4_155_178),
    "spikformer_v2_8_384": (29.11, 29_111_272), "spikformer_v2_8_512": (51.55, 51_545_064),
    "spikformer_v2_12_512": (64.18, 64_177_128), "spikformer_v2_12_768": (143.89, 143_893_480),
    "spikformer_v2_16_768": (172.28, 172_278_760),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_parameter_counts_against_the_papers(name):
    paper, exact = PAPER[name]
    assert models.paper_params(name) == paper
    n = models.count_parameters(name)
    assert n == exact
    millions = n / 1e6
    if name.startswith("spikformer_v2"):
        assert round(millions, 2) == paper  # the V2 stem is fixed by these counts
    else:
        # the V1 table mixes rounding and truncation (see count_parameters' docstring)
        assert paper in (round(millions, 2), math.floor(millions * 100) / 100)


def test_parameter_count_convention():
    # unused LayerNorms are excluded; BatchNorm running stats are buffers, not parameters
    with torch.device("meta"):
        model = models.create("spikformer_8_384")
    from spikec.models.spikformer import count_parameters
    every = sum(p.numel() for p in model.parameters())
    assert every - count_parameters(model) == 8 * 2 * 2 * 384
    assert count_parameters(model, include_unused_norms=True) == every
    # the IAND variant has exactly the same parameters
    assert models.count_parameters("spikformer_v2_8_512_iand") == PAPER["spikformer_v2_8_512"][1]


# ----------------------------------------------------------------------------- state_dict keys
def _bn(prefix):
    return [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var",
                                      "num_batches_tracked")]


def _official_v1_keys(depth, linear):
    """The state_dict keys of the official ZK-Zhou/spikformer models, written out by hand."""
    stem = []
    for i in ("", "1", "2", "3"):
        stem += [f"patch_embed.proj_conv{i}.weight"] + _bn(f"patch_embed.proj_bn{i}")
    stem += ["patch_embed.rpe_conv.weight"] + _bn("patch_embed.rpe_bn")
    keys = list(stem)
    layer = "linear" if linear else "conv"
    for b in range(depth):
        p = f"block.{b}"
        keys += [f"{p}.norm1.weight", f"{p}.norm1.bias", f"{p}.norm2.weight", f"{p}.norm2.bias"]
        for qkv in ("q", "k", "v"):
            keys += [f"{p}.attn.{qkv}_{layer}.weight"] + _bn(f"{p}.attn.{qkv}_bn")
            if linear:
                keys.append(f"{p}.attn.{qkv}_{layer}.bias")
        keys += [f"{p}.attn.proj_{layer}.weight", f"{p}.attn.proj_{layer}.bias"] + _bn(f"{p}.attn.proj_bn")
        for fc in ("fc1", "fc2"):
            keys += [f"{p}.mlp.{fc}_{layer}.weight", f"{p}.mlp.{fc}_{layer}.bias"] + _bn(f"{p}.mlp.{fc}_bn")
    return set(keys + ["head.weight", "head.bias"])


@pytest.mark.parametrize("name, linear", [("spikformer_8_384", False), ("spikformer_cifar_4_384", True)])
def test_v1_state_dict_keys_are_the_official_ones(name, linear):
    with torch.device("meta"):
        model = models.create(name, depth=2)
    sd = model.state_dict()
    assert set(sd) == _official_v1_keys(2, linear)
    D = 384
    if linear:
        assert sd["block.0.attn.q_linear.weight"].shape == (D, D)
        assert sd["block.1.mlp.fc1_linear.weight"].shape == (4 * D, D)
        assert sd["block.1.mlp.fc2_linear.bias"].shape == (D,)
        assert sd["head.weight"].shape == (10, D)
    else:
        assert sd["block.0.attn.q_conv.weight"].shape == (D, D, 1)
        assert sd["block.1.attn.proj_conv.bias"].shape == (D,)
        assert sd["block.0.mlp.fc1_conv.weight"].shape == (4 * D, D, 1, 1)
        assert sd["head.weight"].shape == (1000, D)
    assert sd["patch_embed.proj_conv.weight"].shape == (D // 8, 3, 3, 3)
    assert sd["patch_embed.rpe_conv.weight"].shape == (D, D, 3, 3)


def test_strict_load_of_a_fresh_state_dict():
    a = models.create("spikformer_cifar_tiny")
    b = models.create("spikformer_cifar_tiny", residual="iand")  # same keys, other joins
    b.load_state_dict(a.state_dict(), strict=True)
    a2 = models.create("spikformer_8_384", img_size=32, embed_dim=64, depth=1, num_heads=4)
    models.create("spikformer_8_384", img_size=32, embed_dim=64, depth=1, num_heads=4) \
        .load_state_dict(a2.state_dict(), strict=True)
    with pytest.raises(RuntimeError):
        models.create("spikformer_v2_tiny").load_state_dict(a.state_dict(), strict=True)


# ----------------------------------------------------------------------------- forward
SMALL = [
    ("spikformer_v2_tiny", {}, (1, 28), 10),
    ("spikformer_cifar_tiny", {}, (1, 28), 10),
    ("spikformer_8_384", dict(img_size=32, embed_dim=64, depth=1, num_heads=4, num_classes=7), (3, 32), 7),
    ("spikformer_cifar_4_384", dict(embed_dim=64, depth=1, num_heads=4), (3, 32), 10),
    ("spikformer_v2_8_384", dict(img_size=32, embed_dim=64, depth=1, num_heads=4, num_classes=5), (3, 32), 5),
]


@pytest.mark.parametrize("T", [1, 4])
@pytest.mark.parametrize("name, overrides, inp, classes", SMALL)
def test_forward_shapes(name, overrides, inp, classes, T):
    torch.manual_seed(0)
    model = models.create(name, T=T, **overrides)
    c, side = inp
    with torch.no_grad():
        out = model(torch.rand(2, c, side, side))
    assert out.shape == (2, classes) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_token_grids():
    assert models.create("spikformer_v2_tiny").tokens_hw == 7
    assert models.create("spikformer_cifar_tiny").tokens_hw == 7
    with torch.device("meta"):
        assert models.create("spikformer_8_512").tokens_hw == 14
        assert models.create("spikformer_v2_8_512").tokens_hw == 14
        assert models.create("spikformer_cifar_4_384").tokens_hw == 8
    with pytest.raises(ShapeError):
        models.create("spikformer_v2_tiny", embed_dim=60, num_heads=8)


def _stream_values(model, x):
    """Every value that leaves the stem, a stem stage or an encoder block."""
    seen = []
    hooks = [m.register_forward_hook(lambda mod, i, o: seen.append(o.detach()))
             for m in model.modules() if isinstance(m, (Block, IAND)) or m is model.patch_embed]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return torch.unique(torch.cat([s.flatten() for s in seen]))


@pytest.mark.parametrize("name", ["spikformer_v2_tiny", "spikformer_cifar_tiny"])
def test_iand_residual_stream_is_binary(name):
    torch.manual_seed(1)
    x = torch.rand(2, 1, 28, 28)
    values = _stream_values(models.create(name, residual="iand"), x)
    assert set(values.tolist()) == {0.0, 1.0}
    # with ADD the same stream counts spikes
    assert _stream_values(models.create(name, residual="add"), x).max() > 1


def test_iand_join_semantics():
    a = torch.tensor([0.0, 0.0, 1.0, 1.0])
    s = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert IAND()(a, s).tolist() == [0.0, 1.0, 0.0, 0.0]  # (NOT a) AND s


# ----------------------------------------------------------------------------- registry
REQUIRED = ["spikformer_8_384", "spikformer_6_512", "spikformer_8_512", "spikformer_10_512",
            "spikformer_8_768", "spikformer_cifar_4_384", "spikformer_cifar_2_384",
            "spikformer_cifar_4_256", "spikformer_v2_8_384", "spikformer_v2_8_512",
            "spikformer_v2_12_512", "spikformer_v2_12_768", "spikformer_v2_16_768",
            "spikformer_v2_tiny", "spikformer_cifar_tiny"]


def test_registry_names_config_create():
    assert set(REQUIRED) <= set(models.names())
    cfg = models.config("spikformer_v2_tiny")
    assert cfg["img_size"] == 28 and cfg["in_channels"] == 1 and cfg["stem_stages"] == 2
    cfg["depth"] = 99
    assert models.config("spikformer_v2_tiny")["depth"] != 99  # a fresh copy every time
    model = models.create("spikformer_cifar_tiny", T=2)
    assert model.spikec_arch == "spikformer_cifar_tiny"
    assert model.spikec_config == dict(models.config("spikformer_cifar_tiny"), T=2)
    text = models.describe(params=False)
    assert len(text.splitlines()) == len(models.names())


def test_registry_errors():
    with pytest.raises(CheckpointError, match="spikformer_v2_tiny"):
        models.create("spikformer_99_999")
    with pytest.raises(CheckpointError, match="no config key"):
        models.create("spikformer_v2_tiny", pool_stages=[2, 3])
    with pytest.raises(CheckpointError, match="residual"):
        models.create("spikformer_v2_tiny", residual="or")
    with pytest.raises(CheckpointError, match="family"):
        models.create("spikformer_v2_tiny", family="v1_cifar")


def test_registry_and_core_import_without_torch():
    code = ("import sys, spikec, spikec.models as m; m.names(); m.config('spikformer_v2_tiny'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = models.create("spikformer_v2_tiny", T=2)
    path = tmp_path / "tiny.pt"
    save_checkpoint(model, path, preprocess={"mean": [0.5], "std": [0.25]},
                    extra={"dataset": "fashion-mnist", "accuracy": 0.9})
    assert os.listdir(tmp_path) == ["tiny.pt"]  # no temporary file left behind
    raw = torch.load(path, weights_only=True)
    assert raw["arch"] == "spikformer_v2_tiny" and raw["config"]["T"] == 2
    assert raw["preprocess"] == dict(DEFAULT_PREPROCESS, mean=[0.5], std=[0.25])
    assert raw["dataset"] == "fashion-mnist" and isinstance(raw["spikec_version"], str)
    assert read_checkpoint(path)["accuracy"] == 0.9

    loaded, ckpt = load_model(path)
    assert not loaded.training and loaded.T == 2
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    model.eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_checkpoint_errors(tmp_path):
    model = models.create("spikformer_cifar_tiny")
    with pytest.raises(CheckpointError, match="reserved"):
        save_checkpoint(model, tmp_path / "a.pt", extra={"arch": "x"})
    with pytest.raises(CheckpointError, match="weights-only"):
        save_checkpoint(model, tmp_path / "a.pt", extra={"obj": object()})
    bare = torch.nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match="spikec.models.create"):
        save_checkpoint(bare, tmp_path / "a.pt")
    assert os.listdir(tmp_path) == []

    save_checkpoint(model, tmp_path / "b.pt")
    ckpt = torch.load(tmp_path / "b.pt", weights_only=True)
    ckpt["state_dict"].pop("head.bias")
    torch.save(ckpt, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="head.bias"):
        load_model(tmp_path / "c.pt")
