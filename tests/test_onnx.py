"""ONNX export and import.

Export: the single-step model runs in onnxruntime, stepped T times with its state fed back, and
reproduces the reference interpreter spike for spike on real MNIST digits (conv SNN, Spikformer
V2 tiny). Import: spikec's own files, and ``torch.onnx.export`` of a reference model stepped once
(its LIF membranes as inputs and outputs; a model with exact float32 arithmetic, since the exporter
folds BN in torch's rounding), become IR with identical spikes and compile; unknown ops and non-LIF
state steps name themselves.
"""
from __future__ import annotations

import io

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from spikec import data, interp, models  # noqa: E402
from spikec.backends import onnx as bonnx  # noqa: E402
from spikec.errors import UnsupportedOpError  # noqa: E402
from spikec.frontends import LoadOptions, load_model  # noqa: E402
from spikec.frontends.onnx import from_onnx  # noqa: E402
from spikec.ir import ops as O  # noqa: E402
from spikec.models.lif import MultiStepLIF  # noqa: E402

from floatcheck import check_spikes  # noqa: E402
from test_nir import _calibrate, _check_logits, _compile, conv_snn, dyadic  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return data.load("mnist5k:test", limit=8).images


@pytest.fixture(scope="module")
def v2_model(digits):
    torch.manual_seed(0)
    model = models.create("spikformer_v2_tiny")
    _calibrate(model, torch.from_numpy(digits.astype(np.float32) / 255))
    return model


@pytest.fixture(scope="module")
def v2_graph(v2_model):
    from spikec.frontends.torch import input_op, trace

    return trace(v2_model, input_op((1, 28, 28), {}))


def lif_names(graph):
    return [op.name for op in graph.ops if isinstance(op, O.LIF)]


def run_onnxruntime(graph, raw):
    """Export, add every LIF's spikes as an extra output, step T times in onnxruntime."""
    model, facts = bonnx.to_onnx(graph, prepared=True)
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)   # standard ops only
    for name in lif_names(graph):
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return bonnx.run_steps(model.SerializeToString(), raw), facts


@pytest.mark.parametrize("weights", ["dyadic", "float"])
@pytest.mark.parametrize("which", ["conv_snn", "spikformer_v2_tiny"])
def test_onnxruntime_steps_match_the_interpreter(which, weights, digits, v2_graph):
    graph = bonnx.prepare(conv_snn() if which == "conv_snn" else v2_graph)
    graph = dyadic(graph) if weights == "dyadic" else graph
    res, facts = run_onnxruntime(graph, digits)
    ref = interp.run(graph, digits, record="all")
    got = {name: np.stack([step[name] for step in res["steps"]]) for name in lif_names(graph)}
    flips = check_spikes(graph, ref, got)   # real-valued weights: near-threshold flips only
    print(f"{which}, {weights} weights: {flips} over {facts['neurons']} LIF layers, "
          f"T = {facts['timesteps']}, {len(digits)} digits")
    assert facts["states"] == facts["neurons"] + 1     # + the time mean's running sum
    if weights == "dyadic":     # exact sums in any order: every spike
        assert flips.total == 0, str(flips)
    _check_logits(res["last"]["output"], ref.logits, weights, flips)


def test_export_writes_a_checked_file(tmp_path):
    facts = bonnx.export(conv_snn(), tmp_path)
    path = tmp_path / bonnx.FILE_NAME
    assert facts["path"] == str(path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    names = [i.name for i in model.graph.input]
    assert names[0] == "input.raw" and "state.lif1" in names
    assert "state.lif1.next" in [o.name for o in model.graph.output]


@pytest.mark.parametrize("which", ["conv_snn", "spikformer_v2_tiny"])
def test_round_trip_gives_identical_spikes(tmp_path, which, digits, v2_graph):
    """Dyadic weights: the imported graph's layout differs (other reshapes, other GEMM shapes), so
    only exact sums make identical spikes a valid assertion on every BLAS."""
    graph = dyadic(bonnx.prepare(conv_snn() if which == "conv_snn" else v2_graph))
    bonnx.export(graph, tmp_path)
    back = load_model(tmp_path / bonnx.FILE_NAME, LoadOptions())
    a = interp.run(graph, digits, record="all")
    b = interp.run(back, digits, record="all")
    for name in lif_names(graph):
        assert np.array_equal(a.values[name], b.values[name]), name
    assert np.array_equal(a.logits, b.logits) and back.timesteps == graph.timesteps
    _compile(back)


class OneStep(torch.nn.Module):
    """A reference model stepped once, for ``torch.onnx.export``: every MultiStepLIF's membrane
    is an input (``state.<module>``) and an output (``state.<module>.next``); the raw pixels are
    the input (scaled by ``pixel_scale`` inside)."""

    def __init__(self, model, sample_shape, batch: int, pixel_scale: float = 1 / 255):
        super().__init__()
        self.model = model
        self.pixel_scale = pixel_scale
        self.lifs = [(n, m) for n, m in model.named_modules() if isinstance(m, MultiStepLIF)]
        self.shapes = {}
        hooks = [m.register_forward_hook(
            lambda mod, a, out, n=n: self.shapes.setdefault(n, tuple(out.shape[1:])) and None)
            for n, m in self.lifs]
        model.T = 1
        with torch.no_grad():
            model(torch.zeros((batch,) + tuple(sample_shape)))
        for h in hooks:
            h.remove()
        for _, m in self.lifs:
            m.forward = self._step(m)

    @staticmethod
    def _step(m):
        def forward(x_seq):
            h = m.charge(m.v_in, x_seq[0])
            s = (h >= m.v_threshold).to(h.dtype)
            m.v_out = m.reset(h, s)
            return s.unsqueeze(0)
        return forward

    def forward(self, raw, *states):
        for (_, m), v in zip(self.lifs, states):
            m.v_in = v
        y = self.model(raw * self.pixel_scale)
        return (y, *[m.v_out for _, m in self.lifs])


#: grid of the exact model's weights, biases and BN shifts
GRID = 2.0 ** -10


def exact_model(model):
    """A copy of ``model`` whose float32 arithmetic is exact, so that every summation order and
    torch's own folding of each BN into the conv before it (at export) give the same spikes:
    weights, biases and BN shifts on a 2**-10 grid, each BN's scale gamma / sqrt(var + eps)
    rounded to a power of two (var = 1, eps = 0, gamma = that power), pixels scaled by 1/256.
    Every partial sum then fits float32's 24-bit significand."""
    import copy

    exact = copy.deepcopy(model)
    dyadic = lambda t: torch.round(t / GRID) * GRID  # noqa: E731
    with torch.no_grad():
        for m in exact.modules():
            if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.copy_(dyadic(m.weight))
                if m.bias is not None:
                    m.bias.copy_(dyadic(m.bias))
            elif isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                scale = m.weight / torch.sqrt(m.running_var + m.eps)
                m.weight.copy_(torch.sign(scale) * 2.0 ** torch.round(torch.log2(scale.abs())))
                m.running_var.fill_(1.0)
                m.eps = 0.0
                m.running_mean.copy_(dyadic(m.running_mean))
                m.bias.copy_(dyadic(m.bias))
    return exact


def test_torch_onnx_export_of_a_reference_model_imports(digits, v2_model):
    """torch.onnx.export (TorchScript exporter, dynamo=False: no onnxscript needed) of V2 tiny.
    The exporter folds every BN into its conv in torch's rounding, so the imported graph sums in
    another order than the traced one: the model's arithmetic is made exact (``exact_model``),
    and then every spike is equal."""
    from spikec.frontends.torch import input_op, trace

    model = exact_model(v2_model)
    traced = trace(model, input_op((1, 28, 28), {"pixel_scale": 1 / 256}))
    step = OneStep(model, (1, 28, 28), batch=2, pixel_scale=1 / 256)
    names = [n for n, _ in step.lifs]
    states = [torch.zeros(step.shapes[n]) for n in names]
    buf = io.BytesIO()
    torch.onnx.export(step, (torch.zeros(2, 1, 28, 28), *states), buf, dynamo=False, opset_version=17,
                      input_names=["input.raw"] + [f"state.{n}" for n in names],
                      output_names=["logits"] + [f"state.{n}.next" for n in names])
    graph = from_onnx(onnx.load_from_string(buf.getvalue()), LoadOptions(timesteps=4))
    assert not any(isinstance(op, O.BatchNorm) for op in graph.ops)          # folded by torch
    assert sorted(lif_names(graph)) == sorted(lif_names(traced))
    a = interp.run(traced, digits, record="all")
    b = interp.run(graph, digits, record="all")
    bad = sum(int(np.count_nonzero(a.values[n] != b.values[n].reshape(a.values[n].shape)))
              for n in lif_names(traced))
    rates = [float(a.values[n].mean()) for n in lif_names(traced)]
    print(f"torch.onnx.export V2 tiny (exact arithmetic) -> IR: {bad} spikes differ from the "
          f"traced model; mean firing rate {np.mean(rates):.3f}")
    assert bad == 0 and 0.01 < np.mean(rates) < 0.6       # and the network is not silent
    # exact indeed: float64 gives the same input at every LIF, so no sum order can change it
    pre = [op.inputs[0] for op in traced.ops if isinstance(op, O.LIF)]
    wide = interp.run(traced, digits, dtype=np.float64, record=pre)
    assert all(np.array_equal(wide.values[k], a.values[k]) for k in pre)
    assert np.allclose(a.logits, b.logits, rtol=1e-5, atol=1e-6)
    _compile(graph)


def _tiny_model(nodes, inputs, outputs, inits=()):
    h = onnx.helper
    g = h.make_graph(nodes, "t", inputs, outputs, initializer=list(inits))
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def test_unknown_op_names_itself():
    h, f = onnx.helper, onnx.TensorProto.FLOAT
    m = _tiny_model([h.make_node("Sin", ["input.raw"], ["y"], name="my_sine")],
                    [h.make_tensor_value_info("input.raw", f, ["B", 4])],
                    [h.make_tensor_value_info("y", f, ["B", 4])])
    with pytest.raises(UnsupportedOpError, match="'my_sine' \\(Sin\\)"):
        from_onnx(m)


def test_a_state_that_is_no_lif_names_itself():
    """v' = 0.9 v + x, spikes v' > 1 with no reset: not a spikingjelly LIF."""
    h, f = onnx.helper, onnx.TensorProto.FLOAT
    c = lambda n, v: onnx.numpy_helper.from_array(np.array(v, np.float32), n)  # noqa: E731
    nodes = [h.make_node("Mul", ["state.n", "k"], ["dv"], name="decay"),
             h.make_node("Add", ["dv", "input.raw"], ["state.n.next"], name="charge"),
             h.make_node("Greater", ["state.n.next", "one"], ["fired"], name="cmp"),
             h.make_node("Cast", ["fired"], ["s"], name="spike", to=f)]
    m = _tiny_model(nodes, [h.make_tensor_value_info("input.raw", f, ["B", 4]),
                            h.make_tensor_value_info("state.n", f, ["B", 4])],
                    [h.make_tensor_value_info("s", f, ["B", 4]),
                     h.make_tensor_value_info("state.n.next", f, ["B", 4])],
                    [c("k", 0.9), c("one", 1.0)])
    with pytest.raises(UnsupportedOpError, match="'state.n'"):
        from_onnx(m)


def test_every_op_type_is_exported_or_refused_in_onnx(digits):
    from spikec.ir import OP_TYPES
    from spikec.pipeline import compile_graph

    from test_nir import op_snippet

    assert set(bonnx.COVERAGE) == set(OP_TYPES)
    raw = np.random.default_rng(0).integers(0, 256, size=(3, 2, 4, 4)).astype(np.uint8)
    for opcode, (how, _) in bonnx.COVERAGE.items():
        if how == "export":
            g = op_snippet(opcode)
            model, _ = bonnx.to_onnx(g, prepared=True)
            ref = interp.run(g, raw).outputs["out"]
            ref = ref[-1] if g.spec("out").rate.value == "step" else ref   # the last step's value
            got = bonnx.run_steps(model.SerializeToString(), raw)["last"]["out"]
            if g.spec("out").kind.is_integer:   # spikes and counts: exact
                assert np.array_equal(got, ref), opcode
            else:                               # real values: the runtime's sum order
                assert np.allclose(got, ref, rtol=1e-5, atol=1e-6), opcode
    fixed = compile_graph(conv_snn(), "loihi2", calib=digits).fixed
    with pytest.raises(UnsupportedOpError, match="float graph"):
        bonnx.to_onnx(fixed)
    refused = {k for k, (how, _) in bonnx.COVERAGE.items() if how == "refuse"}
    assert refused <= {op.OPCODE for op in fixed.ops}
