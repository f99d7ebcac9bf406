"""The torch frontend: tracing spikec's and other people's Spikformers, neuron recognition,
unsupported modules/functions, every way of loading a model file, the errors, serialization."""
from __future__ import annotations

import argparse
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import spikec.models as models  # noqa: E402
from spikec import interp  # noqa: E402
from spikec.errors import (CheckpointError, InputFileError, ShapeError, UnsafePickleError,  # noqa: E402
                           UnsupportedOpError)
from spikec.frontends import LoadOptions, load_model  # noqa: E402
from spikec.frontends.torch import input_op, register_neuron, trace  # noqa: E402
from spikec.ir import dumps, loads, ops as O, ops_equal  # noqa: E402
from spikec.models.checkpoint import save_checkpoint  # noqa: E402
from spikec.models.spikformer import count_parameters  # noqa: E402

from conftest import torch_spikes  # noqa: E402
from floatcheck import assert_close_where_unflipped, check_spikes  # noqa: E402


# ----------------------------------------------------------------------------- a third-party model
class MultiStepLIFNode(nn.Module):
    """spikingjelly 0.0.0.0.12's ``MultiStepLIFNode`` interface, re-implemented: the membrane ``v``
    persists between calls until ``reset()``, and the default backend is 'cupy' (GPU only)."""

    def __init__(self, tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True, detach_reset=True,
                 backend="cupy"):
        super().__init__()
        self.tau, self.v_threshold, self.v_reset = tau, v_threshold, v_reset
        self.decay_input, self.detach_reset, self.backend = decay_input, detach_reset, backend
        self.reset()

    def reset(self):
        self.v = 0.0 if self.v_reset is None else self.v_reset

    def forward(self, x_seq):
        if self.backend != "torch":
            raise NotImplementedError("the cupy backend needs a CUDA device")
        spikes = []
        for t in range(x_seq.shape[0]):
            x = x_seq[t]
            if self.v_reset is None or self.v_reset == 0.0:
                self.v = self.v + (x - self.v) / self.tau
            else:
                self.v = self.v + (x - (self.v - self.v_reset)) / self.tau
            spike = (self.v - self.v_threshold >= 0).to(x.dtype)
            self.v = (1.0 - spike) * self.v + spike * (self.v_reset or 0.0)
            spikes.append(spike)
        return torch.stack(spikes)


class SeqToANN(nn.Module):
    """spikingjelly's ``SeqToANNContainer``: run stateless layers on ``[T*B, ...]``."""

    def __init__(self, *layers):
        super().__init__()
        self.module = nn.Sequential(*layers)

    def forward(self, x_seq):
        y = self.module(x_seq.flatten(0, 1))
        return y.view(x_seq.shape[:2] + y.shape[1:])


class Tokenizer(nn.Module):
    def __init__(self, in_ch, dim):
        super().__init__()
        self.stem = nn.Sequential(
            SeqToANN(nn.Conv2d(in_ch, dim // 2, 3, 1, 1, bias=False), nn.BatchNorm2d(dim // 2)),
            MultiStepLIFNode(),
            SeqToANN(nn.AvgPool2d(2), nn.Conv2d(dim // 2, dim, 3, 1, 1, bias=False),
                     nn.BatchNorm2d(dim)),
            MultiStepLIFNode(),
            SeqToANN(nn.MaxPool2d(2, 2)))

    def forward(self, x):
        return self.stem(x).flatten(3)  # [T, B, C, N]


class SelfAttn(nn.Module):
    """Heads split channel-major; ``(q @ k^T * 0.125) @ v`` (the scale before the second product)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.proj = nn.ModuleDict({k: SeqToANN(nn.Conv1d(dim, dim, 1, bias=False), nn.BatchNorm1d(dim))
                                   for k in "qkv"})
        self.lifs = nn.ModuleDict({k: MultiStepLIFNode() for k in "qkv"})
        self.attn_lif = MultiStepLIFNode(v_threshold=0.5)
        self.out = nn.Sequential(SeqToANN(nn.Conv1d(dim, dim, 1), nn.BatchNorm1d(dim)),
                                 MultiStepLIFNode())

    def forward(self, x):
        T, B, C, N = x.shape
        q, k, v = (self.lifs[n](self.proj[n](x)).reshape(T, B, self.heads, C // self.heads, N)
                   .transpose(-1, -2) for n in "qkv")
        attn = torch.matmul(q, k.transpose(-2, -1)) * 0.125
        y = (attn @ v).transpose(-1, -2).reshape(T, B, C, N).contiguous()
        return self.out(self.attn_lif(y))


class FeedForward(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.net = nn.Sequential(SeqToANN(nn.Conv1d(dim, hidden, 1), nn.BatchNorm1d(hidden)),
                                 MultiStepLIFNode(), nn.Dropout(0.0),
                                 SeqToANN(nn.Conv1d(hidden, dim, 1), nn.BatchNorm1d(dim)),
                                 MultiStepLIFNode(), nn.Identity())

    def forward(self, x):
        return self.net(x)


class EncoderLayer(nn.Module):
    def __init__(self, dim, heads, join):
        super().__init__()
        self.attn, self.ff, self.join = SelfAttn(dim, heads), FeedForward(dim, 2 * dim), join

    def forward(self, x):
        if self.join == "iand":
            x = self.attn(x) * (1.0 - x)  # IAND, written branch-first
            return (1 - x) * self.ff(x)
        if self.join == "and":
            x = x * self.attn(x)  # AND of spikes
            return x * self.ff(x)
        x = x + self.attn(x)
        return x + self.ff(x)


class ThirdPartySpikformer(nn.Module):
    """Not spikec's classes: per-step logits [T, B, classes] (spikingjelly's convention)."""

    def __init__(self, in_ch=3, dim=32, heads=2, depth=2, classes=5, T=4, join="add"):
        super().__init__()
        self.T = T
        self.tokenizer = Tokenizer(in_ch, dim)
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, join) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)  # never used, like Spikformer's norm1/norm2
        self.classifier = nn.Linear(dim, classes)

    def forward(self, img):
        x = img.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        x = self.tokenizer(x)
        for layer in self.layers:
            x = layer(x)
        return self.classifier(x.mean(-1))


def _set_backend(model, backend):
    for m in model.modules():
        if isinstance(m, MultiStepLIFNode):
            m.backend = backend


def _third_party(T, join="add", calibrate=None, raw=None):
    """The model with its neurons on the (GPU-only) 'cupy' backend, as trained."""
    torch.manual_seed(0)
    model = ThirdPartySpikformer(T=T, join=join)
    if calibrate is not None:
        _set_backend(model, "torch")
        calibrate(model, torch.from_numpy(raw.astype(np.float32) / 255))
        _set_backend(model, "cupy")
    return model, input_op((3, 16, 16), {})


@pytest.mark.parametrize("T, join", [(1, "add"), (4, "add"), (4, "iand"), (4, "and")])
def test_third_party_spikformer_matches_torch(T, join, calibrate, agreement, images):
    raw = images((3, 16, 16))
    model, inp = _third_party(T, join, calibrate, raw)
    graph = trace(model, inp, timesteps=T)
    kinds = {type(op) for op in graph.ops}
    assert {O.SpikeMatmul, O.Scale, O.AvgPool2d, O.MaxPool2d, O.TimeMean} <= kinds
    assert (O.IAND in kinds) == (join == "iand") and (O.Add in kinds) == (join == "add")
    # (attn * 0.125) @ v was rewritten to 0.125 * (attn @ v): every product reads spikes/counts
    assert all(isinstance(graph.op(i), (O.LIF, O.Transpose, O.Reshape, O.SpikeMatmul))
               for op in graph.ops if isinstance(op, O.SpikeMatmul) for i in op.inputs)
    assert graph.op("tokenizer.stem.1").v_threshold == 1.0
    assert graph.op("layers.0.attn.attn_lif").v_threshold == 0.5
    assert [op.OPCODE for op in graph.ops[-3:]] == ["linear", "time_mean", "output"]
    # the tracer ran the neurons on the torch backend and put 'cupy' back
    assert all(m.backend == "cupy" for m in model.modules() if isinstance(m, MultiStepLIFNode))
    _set_backend(model, "torch")
    a = agreement(graph, model, raw, max_roots=2)   # flips near threshold only: tests/floatcheck.py
    print(f"third-party {join} T={T}: {a.flips}, logit rel. error {a.logit_rel_error:.1e}")
    assert a.neurons == 2 + 7 * 2  # stem 2; per layer q, k, v, attn, proj, 2 in the MLP
    a.assert_same_logits(1e-4)


class _TokenSum(nn.Module):
    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, img):
        s = self.body(img.unsqueeze(0).repeat(2, 1, 1, 1, 1))     # [T, B, 4, 6, 6]
        return s.flatten(3).sum(-1).mean(0)                        # a count per channel


def test_every_float_op_is_produced_by_the_frontend():
    """The third-party model (ADD, IAND and AND joins) and a token sum exercise every op of the
    float IR."""
    from spikec.ir.fixed import FIXED_ONLY_OPS

    produced = set()
    for join in ("add", "iand", "and"):
        model, inp = _third_party(T=1, join=join)
        produced |= {type(op) for op in trace(model, inp).ops}
    summed = nn.Sequential(SeqToANN(nn.Conv2d(3, 4, 3)), MultiStepLIFNode())
    produced |= {type(op) for op in trace(_TokenSum(summed), input_op((3, 8, 8), {})).ops}
    float_ops = {cls for cls in O.OP_TYPES.values() if cls not in FIXED_ONLY_OPS}
    assert float_ops - produced == set()


def test_registered_neuron_class_and_misbehaving_lookalike():
    class Spiker(nn.Module):  # no spikingjelly attribute names: needs register_neuron
        def __init__(self):
            super().__init__()
            self.threshold = 1.0

        def forward(self, x_seq):
            v, out = 0.0, []
            for x in x_seq:
                v = v + (x - v) / 2.0
                s = (v >= self.threshold).to(x.dtype)
                v = v * (1.0 - s)
                out.append(s)
            return torch.stack(out)

    class Net(nn.Module):
        def __init__(self, neuron):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.neuron = neuron

        def forward(self, x):
            return self.neuron(self.fc(x.unsqueeze(0).repeat(2, 1, 1))).mean(0)

    inp = O.Input("input", (), shape=(4,), pixel_scale=1.0)
    with pytest.raises(UnsupportedOpError, match=r"^neuron \(.*Spiker\): tensor function "
                                                 r"torch\.Tensor\.(__iter__|unbind|__getitem__|sub)"):
        trace(Net(Spiker()), inp)
    register_neuron(Spiker, lambda m: dict(tau=2.0, v_threshold=m.threshold, v_reset=0.0,
                                           decay_input=True))
    g = trace(Net(Spiker()), inp)
    assert [op.OPCODE for op in g.ops] == ["input", "linear", "lif", "time_mean", "output"]
    assert [op.name for op in g.ops][1:3] == ["fc", "neuron"]

    class MultiStepLeakyIF(MultiStepLIFNode):  # looks like a LIF, integrates without decay
        def forward(self, x_seq):
            v, out = torch.zeros_like(x_seq[0]), []
            for x in x_seq:
                v = v + x
                s = (v >= self.v_threshold).to(x.dtype)
                v = v * (1 - s)
                out.append(s)
            return torch.stack(out)

    with pytest.raises(UnsupportedOpError, match=r"neuron \(.*MultiStepLeakyIF\).*differs"):
        trace(Net(MultiStepLeakyIF()), inp)


def test_neurons_of_other_packages_by_name():
    """spikingjelly classes are matched by qualified name (spikingjelly is not installed here);
    snnTorch's Leaky is refused with the reason."""
    def step_mode_forward(self, x):  # one step [B, ...] per call in step_mode 's'
        if self.step_mode == "s":
            return MultiStepLIFNode.forward(self, x.unsqueeze(0))[0]
        return MultiStepLIFNode.forward(self, x)

    fake_sj = type("LIFNode", (MultiStepLIFNode,), {"__module__": "spikingjelly.activation_based.neuron",
                                                   "forward": step_mode_forward})
    fake_sj.__qualname__ = "LIFNode"
    node = fake_sj(backend="torch")
    node.step_mode = "s"

    def net(neuron):
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 2, 3)
                self.lif = neuron

            def forward(self, x):
                x = self.conv(x.repeat(2, 1, 1, 1))  # [T*B] directly
                return self.lif(x.reshape(2, -1, 2, 2, 2)).flatten(2).mean(0)
        return Net()

    inp = O.Input("input", (), shape=(1, 4, 4), pixel_scale=1.0)
    with pytest.raises(UnsupportedOpError, match="single-step mode"):
        trace(net(node), inp)
    node.step_mode = "m"
    g = trace(net(node), inp)
    assert g.timesteps == 2 and any(isinstance(op, O.LIF) for op in g.ops)

    leaky = type("Leaky", (nn.Module,), {"__module__": "snntorch._neurons.leaky"})()
    leaky.beta = 0.9
    leaky.reset_mechanism = "subtract"
    with pytest.raises(UnsupportedOpError, match=r"snntorch.*Leaky.*single-step.*beta=0.9"):
        trace(net(leaky), inp)


# ----------------------------------------------------------------------------- unsupported
class _Block(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(2, 2, 1)
        self.act = nn.GELU()
        self.lif = MultiStepLIFNode(backend="torch")
        self.pos = nn.Parameter(torch.zeros(2, 4, 4))

    def forward(self, x):  # x [T, B, 2, 4, 4]
        T, B = x.shape[:2]
        if self.kind == "gelu":
            return self.act(x)
        if self.kind == "sigmoid":
            return torch.sigmoid(x)
        if self.kind == "bias":
            return x + self.pos
        y = self.conv(x.flatten(0, 1)).reshape(T, B, 2, 4, 4)
        if self.kind == "real_matmul":
            return y @ y
        if self.kind == "spike_product":     # spikes times a count (s * s is an AND)
            s = self.lif(y)
            return s * (s + s)
        if self.kind == "final_lif":        # a multi-step neuron on a value without time
            return self.lif(y.mean(0)).unsqueeze(0)
        raise AssertionError


class _Net(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.blocks = nn.Sequential(_Block(kind))

    def forward(self, x):
        return self.blocks(x.unsqueeze(0).repeat(2, 1, 1, 1, 1)).mean(0)


@pytest.mark.parametrize("kind, message", [
    ("gelu", r"^blocks\.0\.act \(torch\.nn\.GELU\): this torch module is not supported"),
    ("sigmoid", r"^blocks\.0 \(.*_Block\): tensor function torch\.sigmoid is not supported"),
    ("bias", r"^blocks\.0 \(.*_Block\): adding a constant"),
    ("real_matmul", r"^blocks\.0 \(.*_Block\): matmul of real .*only spike/count"),
    ("spike_product", r"^blocks\.0 \(.*_Block\): an elementwise product of a spike and a count"),
    ("final_lif", r"^blocks\.0\.lif \(.*MultiStepLIFNode\): a multi-step neuron needs a \[T, B"),
])
def test_unsupported_names_path_and_type(kind, message):
    inp = O.Input("input", (), shape=(2, 4, 4), pixel_scale=1.0)
    with pytest.raises(UnsupportedOpError, match=message) as e:
        trace(_Net(kind), inp)
    assert "\n" not in str(e.value)


def test_module_with_own_parameters():
    """A user module is transparent: a one-element parameter is a Scale, a tensor one fails in
    the function that uses it, naming the module."""
    class Scaler(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.gain = nn.Parameter(torch.full((n,), 0.5))

        def forward(self, x):
            return x * self.gain

    class Net(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.scaler = Scaler(n)

        def forward(self, x):
            return self.scaler(x)

    g = trace(Net(1), O.Input("input", (), shape=(3,)))
    assert g.op("scaler.scale").factor == 0.5
    with pytest.raises(UnsupportedOpError, match=r"^scaler \(.*Scaler\): multiplying a traced "
                                                 r"tensor by a constant tensor"):
        trace(Net(3), O.Input("input", (), shape=(3,)))


# ----------------------------------------------------------------------------- spikec's models
def test_trace_of_registry_model_structure():
    model = models.create("spikformer_cifar_tiny", T=2)
    graph = trace(model, input_op((1, 28, 28), {}), timesteps=2)
    assert graph.timesteps == 2
    assert graph.param_count() == count_parameters(model)  # traced: unused LayerNorms excluded
    lifs = [op for op in graph.ops if isinstance(op, O.LIF)]
    assert len(lifs) == sum(1 for m in model.modules() if type(m).__name__ == "MultiStepLIF")
    # the CIFAR transpose -> BatchNorm1d -> transpose pattern became one BatchNorm on the C axis
    bn = graph.op("block.0.mlp.fc1_bn")
    assert bn.axis == 1 and graph.op(bn.inputs[0]).OPCODE == "linear"
    assert not any(isinstance(op, O.Transpose) and graph.consumers(op.name)
                   and isinstance(graph.consumers(op.name)[0], O.BatchNorm) for op in graph.ops)
    assert [type(op).__name__ for op in graph.ops[-4:]] == ["Mean", "TimeMean", "Linear", "Output"]
    assert graph.spec("block.0.attn.matmul").kind.value == "count"


def test_serialization_round_trip_and_networkx(tmp_path):
    torch.manual_seed(0)
    graph = trace(models.create("spikformer_v2_tiny_iand", T=1), input_op((1, 28, 28), {}),
                  meta={"arch": "spikformer_v2_tiny_iand"})
    data = dumps(graph)
    back = loads(data)
    assert back == graph and dumps(back) == data
    nxg = graph.to_networkx()
    assert set(nxg.nodes) == {op.name for op in graph.ops}
    assert nxg.number_of_edges() == len({(i, op.name) for op in graph.ops for i in op.inputs})
    assert nxg.nodes["block.0.attn.attn_lif"]["spec"].kind.value == "spike"


def test_core_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import spikec.ir, spikec.interp, spikec.frontends\n"
            "from spikec.frontends import LoadOptions, load_model\n"
            "try:\n    import torch\nexcept ImportError:\n    print('blocked')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "blocked"


# ----------------------------------------------------------------------------- loading files
@pytest.fixture(scope="module")
def tiny():
    """A tiny CIFAR-style spikec model: 1x16x16 input, T = 2."""
    torch.manual_seed(0)
    return models.create("spikformer_cifar_tiny", T=2, img_size=16)


def _load(path, **kw):
    return load_model(path, LoadOptions(**kw))


def _same_ops(a, b) -> bool:
    return len(a.ops) == len(b.ops) and all(ops_equal(x, y) for x, y in zip(a.ops, b.ops))


def _weights(graph, name="head"):
    return graph.op(name).weight


def test_spikec_checkpoint(tmp_path, tiny):
    path = tmp_path / "ck.pt"
    save_checkpoint(tiny, path, preprocess={"mean": [0.5], "std": [0.25], "pad": 2})
    g = _load(path)
    inp = g.inputs[0]
    assert (inp.shape, inp.mean, inp.std, inp.pad) == ((1, 12, 12), (0.5,), (0.25,), 2)
    assert inp.pixel_scale == pytest.approx(1 / 255)
    assert g.meta["arch"] == "spikformer_cifar_tiny" and g.meta["config"]["T"] == 2
    assert g.meta["preprocess"]["pad"] == 2 and g.meta["source"] == str(path)
    assert g.meta["format"] == "checkpoint" and g.timesteps == 2
    np.testing.assert_array_equal(_weights(g), tiny.head.weight.detach().numpy())
    # the interpreter preprocesses raw 12x12 pixels as the torch model expects its 16x16 input
    raw = np.random.default_rng(0).integers(0, 256, (2, 1, 12, 12), dtype=np.uint8)
    x = np.pad(raw.astype(np.float32), ((0, 0), (0, 0), (2, 2), (2, 2))) / np.float32(255)
    x = torch.from_numpy((x - np.float32(0.5)) / np.float32(0.25))
    tiny.eval()
    ref, spikes = torch_spikes(g, tiny, x)
    ours = interp.run(g, raw, record="all")
    flips = check_spikes(g, ours, spikes)   # torch sums in another order: tests/floatcheck.py
    assert_close_where_unflipped(ours.logits, ref, flips, rtol=1e-4, atol=1e-5)
    # overrides: T and input shape
    g4 = _load(path, timesteps=4, input_shape=(1, 20, 20))
    assert g4.timesteps == 4 and g4.inputs[0].shape == (1, 16, 16)
    assert g4.meta["config"]["T"] == 4 and g4.meta["config"]["img_size"] == 20


def test_checkpoint_dict_variants(tmp_path, tiny):
    sd = tiny.state_dict()
    ema = {k: v + 1.0 if v.is_floating_point() else v for k, v in sd.items()}
    timm_style = {"epoch": 3, "arch": "spikformer", "state_dict": sd, "state_dict_ema": ema,
                  "args": argparse.Namespace(lr=0.1)}  # timm's train.py stores its args
    torch.save(timm_style, tmp_path / "timm.pt")
    g = _load(tmp_path / "timm.pt", arch="spikformer_cifar_tiny", timesteps=2, input_shape=(1, 16, 16))
    assert g.meta["weights"] == "state_dict_ema"
    np.testing.assert_array_equal(_weights(g), ema["head.weight"].numpy())
    g = _load(tmp_path / "timm.pt", arch="spikformer_cifar_tiny", input_shape=(1, 16, 16),
              overrides={"weights": "state_dict"})
    np.testing.assert_array_equal(_weights(g), sd["head.weight"].numpy())
    with pytest.raises(CheckpointError, match=r"unknown architecture 'spikformer' \(recorded in "
                                              r"the file; pass --arch NAME\); known: spikformer_8"):
        _load(tmp_path / "timm.pt")

    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "dp.pt")
    g = _load(tmp_path / "dp.pt", arch="spikformer_cifar_tiny", timesteps=2, input_shape=(1, 16, 16))
    assert g.meta["format"] == "checkpoint" and g.meta["weights"] == "state_dict"
    torch.save(sd, tmp_path / "bare.pt")
    g2 = _load(tmp_path / "bare.pt", arch="spikformer_cifar_tiny", timesteps=2, input_shape=(1, 16, 16))
    assert g2.meta["format"] == "state_dict" and _same_ops(g, g2)
    with pytest.raises(CheckpointError, match="does not record its architecture; pass --arch"):
        _load(tmp_path / "bare.pt")


def test_wrong_arch_names_keys_and_shapes(tmp_path, tiny):
    torch.save(tiny.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError) as e:
        _load(tmp_path / "bare.pt", arch="spikformer_v2_tiny")
    msg = str(e.value)
    assert "missing: patch_embed.stages.0.down_conv.weight" in msg
    assert "unexpected: patch_embed.proj_conv.weight" in msg and "\n" not in msg
    with pytest.raises(CheckpointError, match=r"shape mismatch \(file vs arch\): "
                                              r"head\.weight \[10, 64\] vs \[7, 64\]"):
        _load(tmp_path / "bare.pt", arch="spikformer_cifar_tiny", overrides={"num_classes": 7})


def test_full_pickle_needs_trust(tmp_path, tiny):
    torch.save(tiny, tmp_path / "full.pt")
    with pytest.raises(UnsafePickleError, match=r"full\.pt: the file holds pickled Python objects "
                                                r"\(spikec\.models\.spikformer\.Spikformer\).*"
                                                r"pass --trust-pickle"):
        _load(tmp_path / "full.pt")
    g = _load(tmp_path / "full.pt", trust_pickle=True)
    assert g.meta["format"] == "pickle" and g.meta["arch"] == "spikformer_cifar_tiny"
    assert g.timesteps == 2 and g.inputs[0].shape == (1, 16, 16)
    np.testing.assert_array_equal(_weights(g), tiny.head.weight.detach().numpy())
    g3 = _load(tmp_path / "full.pt", trust_pickle=True, timesteps=3)
    assert g3.timesteps == 3 and g3.meta["config"]["T"] == 3


def test_pickled_third_party_model(tmp_path):
    model, _ = _third_party(T=2)
    torch.save(model, tmp_path / "tp.pt")
    with pytest.raises(ShapeError, match="pass --input-shape C,H,W"):
        _load(tmp_path / "tp.pt", trust_pickle=True)
    g = _load(tmp_path / "tp.pt", trust_pickle=True, input_shape=(3, 16, 16))
    assert g.meta["arch"] == "ThirdPartySpikformer" and g.timesteps == 2


def test_torchscript(tmp_path, tiny, monkeypatch):
    import spikec.models.lif as lif

    # spikec's LIF calls an autograd.Function, which TorchScript cannot save: export with a
    # plain Heaviside (same forward values)
    monkeypatch.setattr(lif, "sigmoid_spike", lambda x, alpha=4.0: (x >= 0).to(x.dtype))
    tiny.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated, and warns about T loops
        scripted = torch.jit.trace(tiny, torch.rand(1, 1, 16, 16), check_trace=False)
    path = tmp_path / "ts.pt"
    scripted.save(str(path))
    with pytest.raises(UnsafePickleError, match="TorchScript.*runs code.*--trust-pickle"):
        _load(path)                                  # loading runs the archive's own code
    with pytest.raises(UnsafePickleError, match="--trust-pickle"):
        _load(path, arch="spikformer_cifar_tiny")
    with pytest.raises(UnsupportedOpError, match="TorchScript.*pass --arch NAME"):
        _load(path, trust_pickle=True)
    with pytest.raises(UnsupportedOpError, match="compiled code that runs outside Python"):
        _load(path, trust_pickle=True, input_shape=(1, 16, 16))
    g = _load(path, arch="spikformer_cifar_tiny", timesteps=2, input_shape=(1, 16, 16),
              trust_pickle=True)
    assert g.meta["format"] == "torchscript"
    save_checkpoint(tiny, tmp_path / "ck.pt")
    ref = _load(tmp_path / "ck.pt")
    assert _same_ops(g, ref)


def test_bad_files(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        _load(tmp_path / "missing.pt")
    (tmp_path / "noise.pt").write_bytes(np.random.default_rng(0).bytes(2048))
    (tmp_path / "pickle.pt").write_bytes(b"\x80\x02garbage" * 50)
    with zipfile.ZipFile(tmp_path / "other.pt", "w") as z:
        z.writestr("readme.txt", "not a model")
    for name in ("noise.pt", "pickle.pt", "other.pt"):
        with pytest.raises(InputFileError, match="not a PyTorch checkpoint"):
            _load(tmp_path / name)
    torch.save({"epoch": 1, "lr": 0.1}, tmp_path / "nosd.pt")
    with pytest.raises(InputFileError, match="a dict without a state_dict"):
        _load(tmp_path / "nosd.pt")


def test_impossible_input_shape(tmp_path):
    save_checkpoint(models.create("spikformer_v2_tiny", T=1), tmp_path / "v2.pt")
    with pytest.raises(ShapeError, match="too small"):  # the registry refuses the config
        _load(tmp_path / "v2.pt", input_shape=(1, 3, 3))
    with pytest.raises(ShapeError, match="square"):
        _load(tmp_path / "v2.pt", input_shape=(1, 28, 32))
    with pytest.raises(CheckpointError, match=r"down_conv\.weight \[32, 1, 2, 2\] vs \[32, 3, 2, 2\]"):
        _load(tmp_path / "v2.pt", input_shape=(3, 28, 28))
    model, _ = _third_party(T=1)
    _set_backend(model, "torch")
    torch.save(model, tmp_path / "tp.pt")
    with pytest.raises(ShapeError, match=r"ThirdPartySpikformer does not run on inputs of shape "
                                         r"\(3, 2, 2\): "):
        _load(tmp_path / "tp.pt", trust_pickle=True, input_shape=(3, 2, 2))
    with pytest.raises(ShapeError, match="too small for pad 2"):
        _load(tmp_path / "tp.pt", trust_pickle=True, input_shape=(3, 4, 4),
              preprocess={"pad": 2})
