"""Soft reset (spikingjelly's ``v_reset=None``: ``v -= v_th`` on a spike) through the quantizer and
the bit-exact simulator: the ``cuba_lif`` op's ``v_subtract``, its serialization (absent for a hard
reset, so hard-reset artifacts keep their bytes), the simulator's arithmetic (fast path and int64
path against a plain loop), an exactly representable network whose every spike equals the float
stage's, and spikingjelly conv SNNs with ``LIFNode(v_reset=None)`` / ``IFNode(v_reset=None)``."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spikec import interp
from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.ir.serialize import dumps, loads
from spikec.ir.types import ResetMode
from spikec.pipeline import compile_graph
from spikec.sim import simulate
from spikec.sim.neurons import CubaLIFLayer
from spikec.target import LAVA_FIXED_PT

from test_passes import lif_names, random_images, spikformer_like

FMT = LAVA_FIXED_PT


def soft_lif(shape, vth, sub, du=4095, dv=2048, bias=0, bias_exp=0) -> F.CubaLIF:
    full = lambda v, dt: np.full(shape, v, dt)  # noqa: E731
    return F.CubaLIF("n", ("x",), du=du, dv=dv, vth=full(vth, np.int32),
                     bias_mant=full(bias, np.int16), bias_exp=full(bias_exp, np.int8),
                     v_subtract=None if sub is None else full(sub, np.int32))


def plain_loop(op: F.CubaLIF, a_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lava's PyLifModelBitAcc step written out with Python integers, the reset replaced by the
    subtraction; returns (spikes, v after every step)."""
    lim = (1 << 23) - 1

    def decay(z, d):
        m = abs(z) * (4096 - d) >> 12
        return m if z >= 0 else -m

    T, n = a_in.shape
    spikes, vs = np.zeros((T, n), bool), np.zeros((T, n), np.int64)
    for i in range(n):
        u = v = 0
        bias = int(op.bias_mant.flat[i]) << int(op.bias_exp.flat[i])
        th = int(op.vth.flat[i]) << 6
        for t in range(T):
            u = decay(u, op.du + 1) + (int(a_in[t, i]) << 6)
            u = (u + (1 << 23)) % (1 << 24) - (1 << 23)
            v = max(-lim, min(lim, decay(v, op.dv) + u + bias))
            if v > th:
                spikes[t, i] = True
                v = 0 if op.v_subtract is None else v - int(op.v_subtract.flat[i])
            vs[t, i] = v
    return spikes, vs


@pytest.mark.parametrize("dv,sub", [(2048, 64 * 40), (0, 64 * 40), (2048, 64 * 40 + 17)])
def test_simulator_subtracts_the_threshold(dv, sub):
    rng = np.random.default_rng(0)
    T, n = 12, 500
    op = soft_lif((n,), 39, sub, dv=dv, bias=rng.integers(-50, 50), bias_exp=3)
    a_in = rng.integers(-30, 120, (T, n))
    ref, ref_v = plain_loop(op, a_in)
    for fast in (True, False):
        layer = CubaLIFLayer(op, FMT, fast=fast)
        got = layer.run(a_in[:, None])[:, 0]
        np.testing.assert_array_equal(got, ref, err_msg=f"fast={fast}")
        np.testing.assert_array_equal(np.asarray(layer.v, np.int64)[0], ref_v[-1])
    hard, _ = plain_loop(dataclasses.replace(op, v_subtract=None), a_in)
    assert (ref.sum(0) >= 3).mean() > 0.5       # neurons fire, and several times
    assert ref.sum() > hard.sum()               # keeping the excess brings more spikes


def test_hard_reset_serializes_as_before_and_soft_round_trips():
    x = F.GradedInput("x", (), shape=(4,), kind="count")
    hard = dataclasses.replace(soft_lif((4,), 10, None), inputs=("x",))
    soft = soft_lif((4,), 10, 640)
    g_hard = Graph([x, hard, O.Output("out", ("n",))], timesteps=2, domain="fixed")
    assert b"v_subtract" not in dumps(g_hard)
    assert hard.reset is ResetMode.HARD and soft.reset is ResetMode.SOFT
    back = loads(dumps(Graph([x, soft, O.Output("out", ("n",))], timesteps=2, domain="fixed")))
    op = back.op("n")
    assert op.reset is ResetMode.SOFT and np.array_equal(op.v_subtract, soft.v_subtract)
    assert loads(dumps(g_hard)).op("n").v_subtract is None


def soft(graph: Graph) -> Graph:
    """The graph with every LIF's reset made soft."""
    ops = [dataclasses.replace(op, v_reset=None) if isinstance(op, O.LIF) else op
           for op in graph.ops]
    return Graph(ops, timesteps=graph.timesteps, meta=dict(graph.meta), domain=graph.domain)


def test_exactly_representable_soft_network_is_bit_exact():
    """Dyadic weights and pixels: every layer is exact (threshold and v_subtract included), so
    every spike of every layer equals the float stage's, resets included."""
    g = soft(spikformer_like(12, T=4, bn=False, normalize=False, pixel_scale=1 / 256,
                             weight_grid=0.25, dim=32))
    imgs = random_images(6, (1, 16, 16), seed=3)
    res = compile_graph(g, "loihi2")
    names = lif_names(res.folded)
    layers = res.notes["layers"]
    assert all(layers[n]["exact"] and layers[n]["reset"] == "soft" for n in names), \
        res.notes["exact_layers"]
    assert all(res.fixed.op(n).reset is ResetMode.SOFT for n in names)
    flt = interp.run(res.folded, imgs, dtype=np.float64, record=names)
    bits = simulate(res.fixed, imgs, record=names)
    twice = 0
    for nm in names:
        s = flt.values[nm].astype(bool)
        np.testing.assert_array_equal(bits.values[nm].astype(bool), s, err_msg=nm)
        twice += int((s.sum(0) >= 2).sum())
    assert twice > 100      # neurons that fire again after a reset
    np.testing.assert_allclose(bits.outputs["logits"], flt.outputs["logits"], rtol=1e-12,
                               atol=1e-12)


def _exact_soft():
    g = soft(spikformer_like(12, T=4, bn=False, normalize=False, pixel_scale=1 / 256,
                             weight_grid=0.25, dim=32))
    return g, compile_graph(g, "loihi2")


def test_estimator_costs_soft_reset_as_hard_reset():
    from spikec.estimate import estimate
    from spikec.target.profile import load_profile

    _, res = _exact_soft()
    hard = Graph([dataclasses.replace(op, v_subtract=None) if isinstance(op, F.CubaLIF) else op
                  for op in res.fixed.ops], timesteps=res.fixed.timesteps,
                 meta=dict(res.fixed.meta), domain="fixed")
    loihi2 = load_profile("loihi2")
    assert estimate(res.fixed, loihi2).to_json() == estimate(hard, loihi2).to_json()


def test_nir_refuses_soft_reset_naming_the_layer():
    from spikec.backends import nir as bnir
    from spikec.backends.nir.quantized import to_nir_quantized
    from spikec.errors import UnsupportedOpError

    pytest.importorskip("nir")
    g, res = _exact_soft()
    first = next(op.name for op in res.fixed.ops if isinstance(op, F.CubaLIF))
    with pytest.raises(UnsupportedOpError, match=f"{first!r}.*soft reset"):
        to_nir_quantized(res.fixed, ssa="decompose")
    with pytest.raises(UnsupportedOpError, match=r"op '[^']+' \(lif\): soft reset"):
        bnir.to_nir(bnir.prepare(res.folded), ssa="decompose", prepared=True)


def test_onnx_steps_the_soft_reset_exactly():
    """The float stage exported to ONNX and stepped in onnxruntime: dyadic weights, so every
    spike equals the interpreter's (the soft reset ``V = H - v_th S`` included)."""
    from spikec.backends import onnx as bonnx

    pytest.importorskip("onnxruntime")
    _, res = _exact_soft()
    graph = bonnx.prepare(res.folded)
    imgs = random_images(4, (1, 16, 16), seed=3)
    model, _ = bonnx.to_onnx(graph, prepared=True)
    import onnx
    names = lif_names(graph)
    for name in names:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                                     None))
    out = bonnx.run_steps(model.SerializeToString(), imgs)
    ref = interp.run(graph, imgs, record=names)
    for name in names:
        got = np.stack([step[name] for step in out["steps"]])
        np.testing.assert_array_equal(got.astype(bool), ref.values[name].astype(bool), err_msg=name)


# ----------------------------------------------------------------------------- spikingjelly
torch = pytest.importorskip("torch")
pytest.importorskip("spikingjelly.activation_based")


def conv_snn(neuron_cls, T: int = 4):
    from spikingjelly.activation_based import functional, layer

    class ConvSNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.T = T
            self.body = torch.nn.Sequential(
                layer.Conv2d(3, 8, 3, padding=1, bias=False), layer.BatchNorm2d(8),
                neuron_cls(v_reset=None), layer.MaxPool2d(2),
                layer.Conv2d(8, 16, 3, padding=1, bias=False), layer.BatchNorm2d(16),
                neuron_cls(v_reset=None), layer.Flatten(), layer.Linear(16 * 8 * 8, 5))
            functional.set_step_mode(self, "m")

        def forward(self, img):
            return self.body(img.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)).mean(0)

    return ConvSNN()


@pytest.mark.parametrize("kind", ["LIFNode", "IFNode"])
def test_spikingjelly_conv_snn_with_soft_reset(kind):
    from spikingjelly.activation_based import neuron

    import test_spikingjelly as S
    cls = getattr(neuron, kind)
    torch.manual_seed(0)
    raw = S.raw_images()
    model = S.prepared(conv_snn(lambda **kw: cls(**kw) if kind == "IFNode" else cls(tau=2.0, **kw)),
                       raw)
    s = S.stages(model, 4, raw)
    lifs = [op for op in s["graph"].ops if isinstance(op, O.LIF)]
    assert len(lifs) == 2 and all(op.reset is ResetMode.SOFT for op in lifs)
    res = s["result"]
    names = lif_names(res.folded)
    assert all(res.fixed.op(n).reset is ResetMode.SOFT for n in names)
    flt = interp.run(res.folded, raw, dtype=np.float64, record=names)
    bits = simulate(res.fixed, raw, record=names)
    agree = {n: float(np.mean(bits.values[n].astype(bool) == flt.values[n].astype(bool)))
             for n in names}
    print(f"{kind}: predictions {s['bit_exact_agreement']:.2%}, logit correlation "
          f"{s['bit_exact_correlation']:.3f}, spikes equal {agree}")
    assert S.close_enough(s)
    assert min(agree.values()) > 0.95
