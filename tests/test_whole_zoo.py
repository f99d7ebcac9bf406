"""Whole registry models of the newer families, tiny configurations, random weights and randomised
batch-norm statistics: QKFormer (its SSA's ``proj_lif`` runs on ``[T*B]``) and Meta-SpikeFormer
(``BNAndPadLayer``'s in-place border writes, SepConv and RepConv conv chains, ``q @ (k^T @ v)``).

Each is traced, its float stage compared with its own float64 PyTorch forward, compiled for loihi2
and its bit-exact stage compared with the float stage. ``python tests/test_whole_zoo.py`` writes
the compiled graphs and images that ``tests/lava/test_whole_zoo_lava.py`` runs on Lava.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from spikec import interp  # noqa: E402
from spikec.errors import UnsupportedOpError  # noqa: E402
from spikec.frontends.torch import input_op, trace  # noqa: E402
from spikec.ir import ops as O  # noqa: E402
from spikec.ir.graph import Graph  # noqa: E402
from spikec.models.activity import batchnorm_from_batch  # noqa: E402
from spikec.models.meta_spikeformer import MetaSpikeFormer  # noqa: E402
from spikec.models.qkformer import QKFormer  # noqa: E402
from spikec.models.zoo import lif, repeat_over_time  # noqa: E402
from spikec.passes import compose_convs  # noqa: E402
from spikec.pipeline import compile_graph  # noqa: E402
from spikec.sim import Simulator  # noqa: E402

CLASSES = 5
FIXTURES = Path(__file__).resolve().parent / "data" / "whole_zoo"


def images(shape, n: int = 16, seed: int = 0) -> np.ndarray:
    """A colour and a coarse pattern per image (tests/test_attention_models.py's recipe)."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    colour = rng.random((n, c, 1, 1))
    coarse = rng.random((n, c, h // 4, w // 4)).repeat(4, 2).repeat(4, 3)
    fine = rng.random((n,) + shape)
    return np.clip(255 * (0.5 * colour + 0.4 * coarse + 0.1 * fine), 0, 255).astype(np.uint8)


def randomised(model: nn.Module, raw: np.ndarray, batch: int = 1, *, more=None) -> nn.Module:
    """Batch-norm statistics of one pass on ``raw`` with random affine parameters (variances
    floored at 0.1: a channel that never spikes has variance 0, and chained batch norms of such
    channels give gains no trained model has), ``more(model)`` if given, and a random head
    centred on ``raw``."""
    x = torch.from_numpy(raw.astype(np.float32) / 255)
    batchnorm_from_batch(model, x, affine_seed=1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_var.clamp_(min=0.1)
        if more is not None:
            more(model)
        model.head.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(3))
        model.head.bias -= torch.from_numpy(per_sample_logits(model, raw, batch).mean(0)).float()
    return model


def per_sample_logits(model: nn.Module, raw: np.ndarray, batch: int = 1) -> np.ndarray:
    """The model's float64 forward on ``batch`` images at a time (1: QKFormer's semantics)."""
    model.double()
    try:
        with torch.no_grad():
            return np.concatenate([model(torch.from_numpy(raw[i:i + batch].astype(np.float64) / 255))
                                   .numpy() for i in range(0, len(raw), batch)])
    finally:
        model.float()


def bit_exact_report(result, raw) -> dict:
    lifs = [op.name for op in result.folded.ops if op.OPCODE == "lif"]
    fl = interp.run(result.folded, raw, dtype=np.float64, record=lifs)
    sim = Simulator(result.fixed).run(raw, record=lifs)
    agree = [float(np.mean(fl.values[n] == sim.values[n])) for n in lifs]
    bits = sim.outputs["output"]
    return dict(states=dict(zip(lifs, agree)), min_state=min(agree), mean_state=float(np.mean(agree)),
                rates={n: (float(fl.values[n].mean()), float(sim.values[n].mean())) for n in lifs},
                predictions=float(np.mean(bits.argmax(1) == fl.logits.argmax(1))),
                corr=float(np.corrcoef(bits.ravel(), fl.logits.ravel())[0, 1]), folded=fl.logits)


# ----------------------------------------------------------------------------- QKFormer
QKF_SHAPE = (3, 16, 16)


def qkformer(T: int) -> tuple[nn.Module, np.ndarray]:
    torch.manual_seed(0)
    raw = images(QKF_SHAPE)
    model = QKFormer(img_size=16, num_classes=CLASSES, embed_dim=32, depth=3, num_heads=2, T=T,
                     variant="cifar").eval()
    return randomised(model, raw), raw


@pytest.fixture(scope="module")
def qkf():
    model, raw = qkformer(T=1)
    graph = trace(model, input_op(QKF_SHAPE, {}), timesteps=1)
    return dict(model=model, raw=raw, graph=graph, ref=per_sample_logits(model, raw),
                result=compile_graph(graph, "loihi2", calib=raw))


def test_qkformer_traces_with_the_per_sample_proj_lif(qkf):
    assert qkf["graph"].meta["batch1_neurons"] == ["stage3.0.ssa.proj_lif"]
    assert {"and", "reduce_sum", "spike_matmul"} <= {op.OPCODE for op in qkf["graph"].ops}


def test_qkformer_float_stage_is_its_batch_1_forward(qkf):
    raw, ref = qkf["raw"], qkf["ref"]
    np.testing.assert_allclose(interp.run(qkf["graph"], raw, dtype=np.float64).logits, ref,
                               rtol=1e-9, atol=1e-9)
    assert len(set(ref.argmax(1))) >= 3
    # the official forward at batch > 1 carries proj_lif's membrane from sample to sample
    model = qkf["model"].double()
    with torch.no_grad():
        batched = model(torch.from_numpy(raw[:4].astype(np.float64) / 255)).numpy()
    model.float()
    assert not np.allclose(batched, ref[:4], atol=1e-6)


def test_qkformer_bit_exact_stage_close_to_float(qkf):
    rep = bit_exact_report(qkf["result"], qkf["raw"])
    print(f"QKFormer T=1: {rep}")
    assert np.array_equal(rep["folded"].argmax(1), qkf["ref"].argmax(1))
    assert rep["min_state"] >= 0.95 and rep["predictions"] >= 0.6 and rep["corr"] >= 0.9
    pools = [op for op in qkf["result"].folded.ops if isinstance(op, O.MaxPool2d)]
    graph = qkf["result"].folded
    assert pools and all(graph.specs[p.inputs[0]].kind.is_integer for p in pools)


def test_qkformer_over_two_steps_refuses_the_pool_of_currents():
    model, raw = qkformer(T=2)
    raw = raw[:6]
    graph = trace(model, input_op(QKF_SHAPE, {}), timesteps=2)
    np.testing.assert_allclose(interp.run(graph, raw, dtype=np.float64).logits,
                               per_sample_logits(model, raw), rtol=1e-9, atol=1e-9)
    with pytest.raises(UnsupportedOpError, match=r"proj4_lif' is driven by maxpool2d"):
        compile_graph(graph, "loihi2", calib=raw)


# ----------------------------------------------------------------------------- Meta-SpikeFormer
META_SHAPE = (3, 32, 32)


class MetaBody(MetaSpikeFormer):
    """The registry model with a per-token spiking head (``head(lif(tokens))``, then the means):
    every block as the official code, only the head's mean moved after the neuron."""

    def forward(self, x):
        x = self.forward_features(repeat_over_time(x, self.T)).flatten(3)
        return self.head(self.lif(x).transpose(2, 3)).mean(2).mean(0)


class MetaMini(nn.Module):
    """The registry's Meta-SpikeFormer blocks, few of them (for Lava, whose CPU run of the whole
    body takes hundreds of processes): ``downsample1_1``, one ``MS_ConvBlock`` (SepConv + conv
    MLP), ``downsample3``, one ``MS_Block`` (RepConv q/k/v, ``q @ (k^T @ v)``, RepConv projection,
    MLP), the spiking per-token head."""

    def __init__(self, T: int = 1, **_):
        super().__init__()
        full = MetaSpikeFormer(img_size=16, num_classes=CLASSES, embed_dim=(8, 8, 16, 16),
                               num_heads=2, T=T, stage3_depth=1, stage4_depth=1)
        self.T = T
        self.downsample1_1, self.ConvBlock1_1 = full.downsample1_1, full.ConvBlock1_1
        self.downsample3 = type(full.downsample3)(4, 16, 3, 2, 1, first_layer=False)
        self.block3, self.lif, self.head = full.block3, full.lif, full.head

    def forward(self, x):
        x = self.ConvBlock1_1[0](self.downsample1_1(repeat_over_time(x, self.T)))
        x = self.block3[0](self.downsample3(x)).flatten(3)
        return self.head(self.lif(x).transpose(2, 3)).mean(2).mean(0)


def meta(cls=MetaSpikeFormer, T: int = 1):
    torch.manual_seed(0)
    raw = images(META_SHAPE)
    model = cls(img_size=32, num_classes=CLASSES, embed_dim=(8, 16, 32, 32), num_heads=2, T=T,
                stage3_depth=1, stage4_depth=1).eval()
    if cls is MetaMini:
        raw = images((3, 16, 16))
    return randomised(model, raw, batch=len(raw), more=_attention_fires), raw   # batched: no
    # neuron couples samples


def _attention_fires(model: nn.Module) -> None:
    """q, k and v batch-norm biases + 1, so that the tiny model's attention neurons fire (the
    count ``q @ (k^T @ v)`` must reach 8 for ``attn_lif``)."""
    for blk in [*model.block3, *getattr(model, "block4", [])]:
        for n in "qkv":
            getattr(blk.attn, f"{n}_conv")[1].bias += 1.0


@pytest.fixture(scope="module")
def metabody():
    model, raw = meta(MetaBody)
    graph = trace(model, input_op(META_SHAPE, {}), timesteps=1)
    return dict(raw=raw, graph=graph, ref=per_sample_logits(model, raw, len(raw)),
                result=compile_graph(graph, "loihi2", calib=raw))


def test_meta_spikeformer_whole_model_compiles():
    """The official head ``head(lif(mean_tokens(x)))``, a LIF of the token mean of the
    membrane-shortcut stream: fold_mean_of_currents feeds it one synapse per term, seen through
    the MLP's reshape of its 1x1 conv; the float stage equals the model's forward, the folded
    stage predicts as it does, and the bit-exact stage keeps the early layers."""
    model, raw = meta()
    graph = trace(model, input_op(META_SHAPE, {}), timesteps=1)
    ref = per_sample_logits(model, raw, len(raw))
    np.testing.assert_allclose(interp.run(graph, raw, dtype=np.float64).logits, ref,
                               rtol=1e-9, atol=1e-9)
    result = compile_graph(graph, "loihi2", calib=raw)
    head = next(op for op in result.folded.ops if op.name == "lif")
    assert not any(isinstance(p, O.Mean) for p in result.folded.ops
                   if p.name in head.inputs)
    rep = bit_exact_report(result, raw)
    print(f"Meta-SpikeFormer whole T=1: min state {rep['min_state']:.4f}, mean "
          f"{rep['mean_state']:.4f}, predictions {rep['predictions']:.2%}, corr {rep['corr']:.3f}")
    np.testing.assert_allclose(rep["folded"], ref, rtol=1e-6, atol=1e-6)
    states = rep["states"]
    assert min(v for k, v in states.items() if k.startswith("ConvBlock1_1")) >= 0.99
    assert rep["mean_state"] >= 0.8


def test_meta_mini_float_stage_equals_torch():
    """The few-block model whose compiled graph the Lava test runs."""
    model, raw = meta(MetaMini)
    graph = trace(model, input_op((3, 16, 16), {}), timesteps=1)
    np.testing.assert_allclose(interp.run(graph, raw, dtype=np.float64).logits,
                               per_sample_logits(model, raw, len(raw)), rtol=1e-9, atol=1e-9)


def test_meta_body_float_stage_equals_torch(metabody):
    raw, ref = metabody["raw"], metabody["ref"]
    np.testing.assert_allclose(interp.run(metabody["graph"], raw, dtype=np.float64).logits, ref,
                               rtol=1e-9, atol=1e-9)
    assert len(set(ref.argmax(1))) >= 3
    # BNAndPadLayer became a padded identity conv under the batch norm, no shift (BN(0) seen)
    pads = [op for op in metabody["graph"].ops if op.name.endswith("body.1.pad")]
    assert pads and all(isinstance(p, O.Conv2d) and p.padding == (1, 1) for p in pads)
    assert not any("pad_shift" in op.name for op in metabody["graph"].ops)


def test_meta_body_conv_chains_compose(metabody):
    folded = metabody["result"].folded
    prod = {op.name: op for op in folded.ops}
    for op in folded.ops:
        if isinstance(op, O.Conv2d):
            assert not isinstance(prod.get(op.inputs[0]), O.Conv2d), op.name
    rep = {op.name: op for op in folded.ops}
    q = rep["block3.0.attn.q_conv.0.body.2.1"]          # RepConv: one 3x3 conv, padding 1
    assert q.weight.shape[2:] == (3, 3) and q.padding == (1, 1) and q.groups == 1
    sep = rep["ConvBlock1_1.0.Conv.pwconv2"]            # SepConv: dw 7x7 + pw = one 7x7 conv
    assert sep.weight.shape[2:] == (7, 7) and sep.padding == (3, 3)


def test_meta_body_bit_exact_stage_close_to_float(metabody):
    """Quantization error accumulates along 17 membrane-shortcut layers of a random tiny model
    (the first stage agrees on >= 99% of the spikes, the last layers on ~60-90%), and the centred
    logits sit close together, so predictions are not compared; every layer's rate is."""
    rep = bit_exact_report(metabody["result"], metabody["raw"])
    print(f"Meta-SpikeFormer body T=1: min state {rep['min_state']:.4f}, mean "
          f"{rep['mean_state']:.4f}, predictions {rep['predictions']:.2%}, corr {rep['corr']:.3f}")
    assert np.array_equal(rep["folded"].argmax(1), metabody["ref"].argmax(1))
    states = rep["states"]
    assert min(v for k, v in states.items() if k.startswith("ConvBlock1_1")) >= 0.99
    assert min(states[f"block3.0.attn.{n}_lif"] for n in "qkv") >= 0.7
    assert rep["min_state"] >= 0.55 and rep["mean_state"] >= 0.8
    assert all(abs(a - b) <= 0.06 for a, b in rep["rates"].values()), rep["rates"]
    attn = [rep["rates"][f"block{k}.0.attn.attn_lif"][0] for k in (3, 4)]
    assert all(0.01 < r < 0.5 for r in attn), attn


# ----------------------------------------------------------------------------- border writes
class BorderFill(nn.Module):
    """A third-party pad-then-fill, in other words than BNAndPadLayer: conv, zero pad, the border
    set to a learned per-channel constant (not the BN's zero response), depthwise 3x3, LIF."""

    def __init__(self, how: str = "ok", C: int = 4):
        super().__init__()
        self.how = how
        self.conv = nn.Conv2d(3, C, 1, bias=False)
        self.fill = nn.Parameter(torch.linspace(-0.5, 0.5, C))
        self.dw = nn.Conv2d(C, C, 3, groups=C, bias=False)
        self.lif = lif()

    def forward(self, img):
        x = repeat_over_time(img, 2).flatten(0, 1)
        y = F.pad(self.conv(x), (1, 1, 1, 1), mode="constant", value=0.0)
        c = self.fill.detach()[None, :, None, None]
        h = y.shape[2]
        y[..., :1, :] = c
        y[..., h - 1:, :] = c
        if self.how != "partial":
            y[:, :, :, :1] = c
        y[:, :, :, -1:] = c if self.how != "two" else 2 * c
        if self.how == "interior":
            y[:, :, 2:3, 2:3] = c
        if self.how == "traced":
            y[:, :, 1:h - 1, 1:h - 1] = self.conv(x)
        z = self.dw(y)
        s = self.lif(z.reshape(2, -1, *z.shape[1:]))
        return s.flatten(2).mean(2).mean(0)


def test_border_fill_of_a_constant_is_exact():
    raw = images((3, 8, 8), n=4)
    model = BorderFill().eval()
    graph = trace(model, input_op((3, 8, 8), {}), timesteps=2)
    assert any("pad_shift" in op.name for op in graph.ops)     # the generic pad(z - c) + c
    model.double()
    with torch.no_grad():
        want = model(torch.from_numpy(raw.astype(np.float64) / 255)).numpy()
    got = interp.run(graph, raw, dtype=np.float64).logits
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)   # c is the float32 parameter


@pytest.mark.parametrize("how, message", [
    ("partial", r"^dw \(torch.nn.Conv2d\): reads the tensor padded in the forward with its border "
                r"only partly"),
    ("two", r"two different constants"),
    ("interior", r"into the interior of a padded tensor"),
    ("traced", r"an in-place write of a traced tensor"),
])
def test_border_writes_that_are_not_a_constant_border_are_refused(how, message):
    with pytest.raises(UnsupportedOpError, match=message) as e:
        trace(BorderFill(how).eval(), input_op((3, 8, 8), {}), timesteps=2)
    assert "\n" not in str(e.value)


def test_in_place_write_into_a_traced_tensor_is_refused():
    class Net(nn.Module):
        def forward(self, img):
            x = repeat_over_time(img, 2)
            x[:, :, 0] = 0.0
            return x.mean(0).flatten(1)

    with pytest.raises(UnsupportedOpError, match=r"in-place write \(t\[\.\.\.\] = c\)"):
        trace(Net(), input_op((3, 4, 4), {}), timesteps=2)


# ----------------------------------------------------------------------------- the compose pass
@pytest.mark.parametrize("first, second", [
    (dict(k=7, pad=3, groups=8, bias=False), dict(k=1, pad=0, groups=1, bias=True)),   # SepConv
    (dict(k=1, pad=0, groups=1, bias=False), dict(k=3, pad=1, groups=8, bias=False)),
    (dict(k=1, pad=1, groups=8, bias=True), dict(k=3, pad=0, groups=8, bias=True)),    # pad+dw
])
def test_compose_convs_is_the_sequential_computation(first, second):
    rng = np.random.default_rng(1)

    def conv(name, src, cfg):
        w = rng.normal(size=(8, 8 // cfg["groups"], cfg["k"], cfg["k"]))
        return O.Conv2d(name, (src,), weight=w, bias=rng.normal(size=8) if cfg["bias"] else None,
                        padding=(cfg["pad"],) * 2, groups=cfg["groups"])

    ops = [O.Input("x", (), shape=(8, 6, 6)), conv("a", "x", first), conv("b", "a", second),
           O.LIF("s", ("b",))]
    ops.append(O.Output("out", ("s",)))
    graph = Graph(ops, timesteps=1)
    composed = compose_convs(graph)
    assert [op.OPCODE for op in composed.ops].count("conv2d") == 1
    x = rng.random((3, 8, 6, 6))
    a = interp.run(graph, x, dtype=np.float64, record=["b"]).values["b"]
    b = interp.run(composed, x, dtype=np.float64, record=["b"]).values["b"]
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


def test_compose_leaves_a_biased_1x1_before_a_padded_conv():
    """Padding after a biased 1x1 conv puts zeros where the 1x1 conv of a padded input puts its
    bias: not one conv."""
    w1, w3 = np.ones((2, 2, 1, 1)), np.ones((2, 2, 3, 3))
    ops = [O.Input("x", (), shape=(2, 4, 4)), O.Conv2d("a", ("x",), weight=w1, bias=np.ones(2)),
           O.Conv2d("b", ("a",), weight=w3, padding=(1, 1)), O.Output("out", ("b",))]
    graph = Graph(ops, timesteps=1)
    assert compose_convs(graph) is graph


# ----------------------------------------------------------------------------- Lava fixtures
def write_lava_fixtures(out: Path = FIXTURES) -> None:
    """Compile both models and write ``NAME.spkc.gz`` (the fixed graph) and ``NAME.npy`` (4
    images)."""
    import gzip

    from spikec.ir import dumps

    out.mkdir(parents=True, exist_ok=True)
    for name, (model, raw), shape in (("qkformer", qkformer(T=1), QKF_SHAPE),
                                      ("meta_mini", meta(MetaMini), (3, 16, 16))):
        graph = trace(model, input_op(shape, {}), timesteps=1)
        fixed = compile_graph(graph, "loihi2", calib=raw).fixed
        (out / f"{name}.spkc.gz").write_bytes(gzip.compress(dumps(fixed), 9, mtime=0))
        np.save(out / f"{name}.npy", raw[:4])


if __name__ == "__main__":
    write_lava_fixtures(Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURES)
