"""The model zoo: Spike-driven Transformer V1/V2, QKFormer, Spikingformer, SEW-ResNet.

State-dict names and shapes are checked against ``tests/data/official_state_dicts.json``, dumped
from the official repositories' own model classes (their files executed with parameter-free
stand-ins for spikingjelly's neurons and timm's helpers, which add no parameters or buffers):
for every registered official configuration the sha256 of the sorted ``key shape`` lines, and for
one configuration per code base the full listing. See docs/models.md.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import spikec.models as models  # noqa: E402
from spikec.cli import main  # noqa: E402
from spikec.models.lif import MultiStepLIF  # noqa: E402
from spikec.models.meta_spikeformer import BNAndPadLayer  # noqa: E402
from spikec.models.sew_resnet import sew_join  # noqa: E402
from spikec.models.zoo import MultiStepIF, count_parameters  # noqa: E402

OFFICIAL = json.loads((Path(__file__).parent / "data" / "official_state_dicts.json").read_text())

# registry name -> (paper figure in millions, exact count, how the paper's figure is reached)
#   "round": the count rounded to the paper's decimals; "floor": truncated (the paper truncated);
#   "round100": the paper reports the CIFAR-100 build (100 classes) for its CIFAR row.
ZOO_PAPER = {
    "sdt_8_384": (16.81, 16_816_024, "floor"),
    "sdt_6_512": (23.37, 23_373_352, "round"),
    "sdt_8_512": (29.68, 29_689_384, "floor"),
    "sdt_10_512": (36.01, 36_005_416, "round"),
    "sdt_8_768": (66.34, 66_338_632, "round"),
    "sdt_cifar_2_512": (10.28, 10_233_418, "round100"),
    "metaspikformer_15m": (15.1, 15_112_208, "round"),
    "metaspikformer_8_384": (31.3, 31_333_864, "round"),
    "metaspikformer_8_512": (55.4, 55_350_248, "round"),
    "qkformer_10_384": (16.47, 16_473_688, "round"),
    "qkformer_10_512": (29.08, 29_079_336, "round"),
    "qkformer_10_768": (64.96, 64_962_760, "round"),
    "qkformer_cifar_4_384": (6.74, 6_706_234, "round100"),
    "spikingformer_8_384": (16.81, 16_816_024, "floor"),
    "spikingformer_8_512": (29.68, 29_689_384, "floor"),
    "spikingformer_8_768": (66.34, 66_338_632, "round"),
    "spikingformer_cifar_4_384": (9.32, 9_320_122, "round"),
    "sew_resnet18_add": (11.69, 11_689_512, "round"),
    "sew_resnet18_iand": (11.69, 11_689_512, "round"),
    "sew_resnet34_add": (21.79, 21_797_672, "floor"),
    "sew_resnet34_iand": (21.79, 21_797_672, "floor"),
}

# fixture name -> (registry name, config overrides)
OFFICIAL_BUILDS = {
    "sdt_8_384": ("sdt_8_384", {}), "sdt_6_512": ("sdt_6_512", {}),
    "sdt_8_512": ("sdt_8_512", {}), "sdt_10_512": ("sdt_10_512", {}),
    "sdt_8_768": ("sdt_8_768", {}), "sdt_cifar_2_512": ("sdt_cifar_2_512", {}),
    "metaspikformer_15m": ("metaspikformer_15m", {}),
    "metaspikformer_8_384": ("metaspikformer_8_384", {}),
    "metaspikformer_8_512": ("metaspikformer_8_512", {}),
    "metaspikformer_8_768": ("metaspikformer_8_768", {}),
    "metaspikformer_8_512_kd": ("metaspikformer_8_512", {"kd": True}),
    "qkformer_10_384": ("qkformer_10_384", {}), "qkformer_10_512": ("qkformer_10_512", {}),
    "qkformer_10_768": ("qkformer_10_768", {}),
    "qkformer_cifar_4_384": ("qkformer_cifar_4_384", {}),
    "spikingformer_8_384": ("spikingformer_8_384", {}),
    "spikingformer_8_512": ("spikingformer_8_512", {}),
    "spikingformer_8_768": ("spikingformer_8_768", {}),
    "spikingformer_cifar_4_384": ("spikingformer_cifar_4_384", {}),
    "sew_resnet18": ("sew_resnet18_add", {}), "sew_resnet34": ("sew_resnet34_add", {}),
}

FAMILIES = ("Spike-driven Transformer", "Meta-SpikeFormer", "QKFormer", "Spikingformer",
            "SEW-ResNet")

# family -> (registry name, overrides) of a tiny build that runs in milliseconds: 32 px, T = 2
TINY = {
    "sdt": ("sdt_cifar_2_512", dict(embed_dim=64, depth=1, num_heads=4, T=2)),
    "sdt_imagenet_stem": ("sdt_8_384", dict(img_size=32, num_classes=10, embed_dim=64, depth=1,
                                            num_heads=4, T=2)),
    "meta": ("metaspikformer_15m", dict(img_size=32, num_classes=10, embed_dims=[16, 32, 64, 80],
                                        num_heads=4, T=2)),
    "qkformer_cifar": ("qkformer_cifar_4_384", dict(embed_dim=64, depth=3, T=2)),
    "qkformer_imagenet": ("qkformer_10_384", dict(img_size=32, num_classes=10, embed_dim=64,
                                                  depth=4, num_heads=2, T=2)),
    "spikingformer_cifar": ("spikingformer_cifar_4_384", dict(embed_dim=64, depth=1, num_heads=4,
                                                              T=2)),
    "spikingformer_imagenet": ("spikingformer_8_384", dict(img_size=32, num_classes=10,
                                                           embed_dim=64, depth=1, num_heads=4,
                                                           T=2)),
    "sew_add": ("sew_resnet18_add", dict(img_size=32, num_classes=10, T=2)),
    "sew_iand": ("sew_resnet18_iand", dict(img_size=32, num_classes=10, T=2)),
}


def key_shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def digest(shapes: dict[str, list[int]]) -> str:
    lines = "\n".join(f"{k} {'x'.join(map(str, s))}" for k, s in sorted(shapes.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def meta_build(name: str, **overrides) -> torch.nn.Module:
    with torch.device("meta"):
        return models.create(name, **overrides)


def tiny(key: str) -> torch.nn.Module:
    name, overrides = TINY[key]
    torch.manual_seed(0)
    model = models.create(name, **overrides)
    _randomise_batchnorm(model)
    return model.eval()


def _randomise_batchnorm(model: torch.nn.Module) -> None:
    """Random BN statistics and affine terms, so that eval-mode neurons fire at all."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.5 + 0.8)


# ----------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("name", sorted(ZOO_PAPER))
def test_parameter_counts_against_the_papers(name):
    paper, exact, rule = ZOO_PAPER[name]
    assert models.paper_params(name) == paper
    n = models.count_parameters(name)
    assert n == exact
    decimals = len(str(paper).split(".")[1])
    scale = 10 ** decimals
    if rule == "round":
        assert round(n / 1e6, decimals) == paper
    elif rule == "floor":
        assert round(n / 1e6, decimals) != paper  # the paper truncated; rounding would not match
        assert math.floor(n / 1e6 * scale) / scale == paper
    else:  # the paper's CIFAR row counts a 100-class head
        assert round(n / 1e6, decimals) != paper
        assert round(models.count_parameters(name, num_classes=100) / 1e6, decimals) == paper


def test_every_zoo_model_with_a_paper_count_is_pinned():
    zoo = [n for n in models.names() if models.model_family(n) in FAMILIES]
    assert {n for n in zoo if models.paper_params(n) is not None} == set(ZOO_PAPER)
    assert {models.model_family(n) for n in zoo} == set(FAMILIES)


def test_unused_modules_are_in_the_state_dict_but_not_in_the_count():
    sdt = meta_build("sdt_8_384")  # talking_heads Conv1d(8, 8): created, never called
    assert count_parameters(sdt, include_unused=True) - count_parameters(sdt) == 8 * 8 * 8
    sf = meta_build("spikingformer_8_384")  # norm1/norm2 LayerNorms
    assert count_parameters(sf, include_unused=True) - count_parameters(sf) == 8 * 2 * 2 * 384
    assert count_parameters(sf, include_unused=True) == OFFICIAL["spikingformer_8_384"][
        "parameters_all"]


# ----------------------------------------------------------------------------- state dicts
@pytest.mark.parametrize("official", sorted(OFFICIAL_BUILDS))
def test_state_dict_matches_the_official_code(official):
    name, overrides = OFFICIAL_BUILDS[official]
    model = meta_build(name, **overrides)
    shapes = key_shapes(model)
    want = OFFICIAL[official]
    if "state_dict" in want:  # a readable diff where the full listing is stored
        assert shapes == want["state_dict"]
    assert len(shapes) == want["keys"]
    assert digest(shapes) == want["sha256"]
    assert sum(p.numel() for p in model.parameters()) == want["parameters_all"]


@pytest.mark.parametrize("official", ["sdt_cifar_2_512", "qkformer_cifar_4_384",
                                      "spikingformer_cifar_4_384", "sew_resnet18"])
def test_an_official_state_dict_loads_strictly(official):
    name, overrides = OFFICIAL_BUILDS[official]
    g = torch.Generator().manual_seed(0)
    sd = {k: (torch.zeros(s, dtype=torch.long) if k.endswith("num_batches_tracked")
              else torch.randn(s, generator=g)) for k, s in OFFICIAL[official]["state_dict"].items()}
    model = models.create(name, **overrides)
    model.load_state_dict(sd, strict=True)
    assert torch.equal(model.state_dict()[next(iter(sd))], next(iter(sd.values())))


# ----------------------------------------------------------------------------- forward
@pytest.mark.parametrize("key", sorted(TINY))
def test_tiny_forward_shapes_and_finite(key):
    model = tiny(key)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 10)
    assert torch.isfinite(y).all()
    assert y.std() > 0  # the neurons fired somewhere: not a constant output


def _conv_inputs(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    seen = {}

    def keep(name):
        def hook(module, inputs, output):
            seen.setdefault(name, inputs[0])  # returns None: the output is left alone
        return hook

    hooks = [m.register_forward_hook(keep(name)) for name, m in model.named_modules()
             if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("key,first", [
    ("sdt", "patch_embed.proj_conv"), ("meta", "downsample1_1.encode_conv"),
    ("spikingformer_cifar", "patch_embed.block0_conv"),
    ("spikingformer_imagenet", "patch_embed.proj_conv"), ("sew_iand", "conv1")])
def test_every_layer_but_the_first_reads_binary_spikes(key, first):
    """Membrane shortcuts (SDT, Meta-SpikeFormer, Spikingformer) and SEW IAND keep every
    conv/linear input binary; only the first conv reads the image, and the classifier of
    Spikingformer reads mean currents. Meta-SpikeFormer's linear chains (a depthwise conv straight
    into a pointwise conv in SepConv and RepConv, no neuron between) are one linear map: their
    second conv reads the first's real output."""
    model = tiny(key)
    seen = _conv_inputs(model, torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)))
    assert first in seen
    chained = [n for n in seen if n.endswith("pwconv2") or ".body.2." in n]
    assert (key == "meta") == bool(chained)
    for name, inp in seen.items():
        if name in [first, *chained] or (key.startswith("spikingformer") and name == "head"):
            continue
        assert set(inp.unique().tolist()) <= {0.0, 1.0}, name


def test_sew_add_and_qkformer_feed_counts():
    """SEW ADD and QKFormer's spike residuals make integer counts > 1 reach some layer."""
    for key in ("sew_add", "qkformer_cifar"):
        seen = _conv_inputs(tiny(key), torch.rand(1, 3, 32, 32,
                                                  generator=torch.Generator().manual_seed(3)))
        biggest = max(inp.max().item() for inp in seen.values() if inp.min() >= 0
                      and torch.equal(inp, inp.round()))
        assert biggest >= 2.0, key


# ----------------------------------------------------------------------------- neurons
def _neurons(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, MultiStepLIF)}


@pytest.mark.parametrize("name,attention", [
    ("sdt_cifar_2_512", {"attn.talking_heads_lif", "attn.attn_lif"}),
    ("metaspikformer_15m", {"attn.attn_lif"}),
    ("qkformer_cifar_4_384", {"tssa.attn_lif", "ssa.attn_lif"}),
    ("spikingformer_cifar_4_384", {"attn.attn_lif"})])
def test_official_neurons(name, attention):
    neurons = _neurons(meta_build(name))
    assert neurons
    for path, n in neurons.items():
        leaf = ".".join(path.split(".")[-2:])
        assert (n.tau, n.v_reset, n.decay_input, n.detach_reset) == (2.0, 0.0, True, True), path
        assert n.v_threshold == (0.5 if leaf in attention else 1.0), path
    assert {".".join(p.split(".")[-2:]) for p in neurons} >= attention


def test_if_neuron_is_spikingjelly_ifnode():
    x = torch.tensor([[0.6], [0.6], [0.3], [1.5], [-0.2], [0.9]])
    spikes = MultiStepIF()(x)
    # V: 0.6, 1.2 -> fire, reset 0; 0.3; 1.8 -> fire; -0.2; 0.7
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    n = MultiStepIF()
    assert math.isinf(n.tau) and n.decay_input is False
    # the LIF charge with these attributes is the same function
    v, xs = torch.randn(1000), torch.randn(1000)
    assert torch.equal(MultiStepLIF.charge(n, v, xs), n.charge(v, xs))
    for name in ("sew_resnet18_add", "sew_resnet34_iand"):
        assert all(isinstance(m, MultiStepIF) for m in _neurons(meta_build(name)).values())


# ----------------------------------------------------------------------------- pieces
def test_sew_joins():
    from spikec.errors import CheckpointError
    identity = torch.tensor([0.0, 0.0, 1.0, 1.0])
    out = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert sew_join(identity, out, "ADD").tolist() == [0.0, 1.0, 1.0, 2.0]
    assert sew_join(identity, out, "AND").tolist() == [0.0, 0.0, 0.0, 1.0]
    assert sew_join(identity, out, "IAND").tolist() == [0.0, 0.0, 1.0, 0.0]  # identity AND NOT out
    with pytest.raises(CheckpointError, match="cnf must be one of"):
        models.create("sew_resnet18_add", cnf="OR")


def test_bn_and_pad_border_is_the_bn_of_zero():
    layer = BNAndPadLayer(pad_pixels=1, num_features=3)
    _randomise_batchnorm(layer)
    layer.eval()
    x = torch.randn(2, 3, 4, 5)
    with torch.no_grad():
        out = layer(x)
        padded = layer.bn(torch.nn.functional.pad(x, [1, 1, 1, 1]))
    assert out.shape == (2, 3, 6, 7)
    assert torch.allclose(out, padded, atol=1e-6)
    assert torch.equal(out[:, :, 1:-1, 1:-1], layer.bn(x))


def test_meta_spikeformer_distillation_head():
    model = tiny("meta")
    model_kd = models.create("metaspikformer_15m", **dict(TINY["meta"][1], kd=True))
    assert set(key_shapes(model_kd)) - set(key_shapes(model)) == {"head_kd.weight", "head_kd.bias"}
    model_kd.load_state_dict({**model.state_dict(), "head_kd.weight": model.head.weight,
                              "head_kd.bias": model.head.bias})
    model_kd.eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model_kd(x), model(x))  # eval: the mean of two equal heads


def test_errors_name_the_problem():
    from spikec.errors import CheckpointError, ShapeError
    with pytest.raises(ShapeError, match="num_heads"):
        models.create("qkformer_10_384", num_heads=5)
    with pytest.raises(CheckpointError, match="pooling_stat"):
        models.create("sdt_8_384", pooling_stat="11")
    with pytest.raises(CheckpointError, match="no config key"):
        models.create("sew_resnet18_add", embed_dim=64)
    with pytest.raises(CheckpointError, match="variant"):
        models.create("qkformer_10_384", variant="tiny")
    with pytest.raises(CheckpointError, match="layers must be 4"):
        models.create("sew_resnet18_add", layers=[2, 2, 2])
    with pytest.raises(CheckpointError, match="embed_dims"):
        models.create("metaspikformer_15m", embed_dims=[64, 128, 256, 0])


# ----------------------------------------------------------------------------- registry / CLI
def test_models_command_lists_the_families(capsys):
    try:
        main(["models"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["name", "family"]
    for family in FAMILIES + ("Spikformer",):
        assert family in out
    for name in ZOO_PAPER:
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert models.model_family(name) in line and f"{ZOO_PAPER[name][0]}M" in line
    try:
        main(["models", "--json"])
    except SystemExit as e:
        assert e.code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == models.names()
    by_name = {r["name"]: r for r in rows}
    assert by_name["qkformer_10_768"]["model_family"] == "QKFormer"
    assert by_name["qkformer_10_768"]["paper_params_m"] == 64.96
    assert by_name["spikformer_8_512"]["model_family"] == "Spikformer"
    assert by_name["spikformer_v2_tiny"]["paper_params_m"] is None


@pytest.mark.parametrize("key", ["meta", "sew_iand", "qkformer_cifar"])
def test_spikec_checkpoint_round_trip(key, tmp_path):
    from spikec.models.checkpoint import load_model, save_checkpoint
    model = tiny(key)
    save_checkpoint(model, tmp_path / "m.pt")
    loaded, ckpt = load_model(tmp_path / "m.pt")
    assert ckpt["arch"] == TINY[key][0] and type(loaded) is type(model)
    assert loaded.spikec_config == model.spikec_config
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
