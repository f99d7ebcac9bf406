"""Quantization: integer helpers against brute force, the canonical CUBA neuron against spikingjelly's
LIF, and quantized networks (run by a small reference integer evaluator written here) against the
folded float graph."""
from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest

from spikec import interp, ir
from spikec.errors import FormatError
from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.pipeline import FLOAT_PASSES, CompileOptions, compile_graph
from spikec.quantize import numbers as N
from spikec.target import LAVA_FIXED_PT, SignMode, load_profile
from spikec.target import fixedpoint as fx

from test_passes import assert_same_run, lif_names, random_images, spikformer_like

FMT = LAVA_FIXED_PT
FORMATS = [FMT,
           dataclasses.replace(FMT, weight_bits=4, bias_mant_bits=6, bias_exp_bits=2, vth_bits=8,
                               vth_shift=3, weight_shift=2, weight_exp_min=-3, weight_exp_max=3),
           dataclasses.replace(FMT, weight_bits=6, bias_mant_bits=9, bias_exp_bits=4, vth_shift=4,
                               weight_shift=4)]
IDS = [f"w{f.weight_bits}-b{f.bias_mant_bits}e{f.bias_exp_bits}-s{f.vth_shift}" for f in FORMATS]


# ----------------------------------------------------------------------------- integer helpers

def representable(mode, f):
    b = f.weight_bits
    if mode == SignMode.MIXED:  # Lava: clip to [-2^b, 2^b - 1], then clear the lowest bit
        return sorted({(w >> 1) << 1 for w in range(-(1 << b), 1 << b)})
    if mode == SignMode.EXCITATORY:
        return list(range(0, 1 << b))
    return list(range(-(1 << b) + 1, 1))


@pytest.mark.parametrize("f", FORMATS, ids=IDS)
def test_round_weights_is_nearest_representable(f):
    rng = np.random.default_rng(0)
    for mode in (SignMode.MIXED, SignMode.EXCITATORY, SignMode.INHIBITORY):
        grid = np.array(representable(mode, f))
        x = rng.uniform(grid.min() - 20, grid.max() + 20, size=500)
        got = N.round_weights(x, mode, f)
        want = grid[np.argmin(np.abs(x[:, None] - grid[None, :]), axis=1)]
        np.testing.assert_array_equal(got, want)
        lo, hi, step = N.weight_grid(mode, f)
        assert (lo, hi) == (grid.min(), grid.max())
        # Lava's own clip + truncation leaves them unchanged
        w = got.reshape(50, 10)
        np.testing.assert_array_equal(fx.dense_weights(w, dataclasses.replace(FMT, weight_bits=f.weight_bits), mode), w)


@pytest.mark.parametrize("f", FORMATS, ids=IDS)
def test_max_weight_scale_fills_the_range(f):
    rng = np.random.default_rng(1)
    for _ in range(50):
        w = rng.normal(size=20) * rng.uniform(0.01, 10)
        for ww in (w, np.abs(w), -np.abs(w)):
            mode = N.sign_mode_of(ww)
            r = N.max_weight_scale(ww, mode, f)
            lo, hi, _ = N.weight_grid(mode, f)
            x = ww * r
            assert x.min() >= lo - 1e-9 and x.max() <= hi + 1e-9
            assert np.isclose(x.max(), hi) or np.isclose(x.min(), lo)


@pytest.mark.parametrize("f", FORMATS, ids=IDS)
def test_encode_bias_is_optimal(f):
    rng = np.random.default_rng(2)
    top = f.bias_mant_max << f.bias_exp_max
    b = np.concatenate([rng.uniform(-1.2 * top, 1.2 * top, 300), rng.uniform(-50, 50, 100),
                        [0.0, top, -top, f.bias_mant_max + 0.4]])
    mant, exp, clipped = N.encode_bias(b, f)
    assert mant.min() >= f.bias_mant_min and mant.max() <= f.bias_mant_max
    assert exp.min() >= 0 and exp.max() <= f.bias_exp_max
    val = mant << exp
    every = np.array(sorted({m << e for m in range(f.bias_mant_min, f.bias_mant_max + 1)
                             for e in range(f.bias_exp_max + 1)}))
    best = np.abs(b[:, None] - every[None, :]).min(axis=1)
    np.testing.assert_allclose(np.abs(val - b), best, atol=1e-9)
    half = (1 << f.bias_exp_max) / 2
    bottom = f.bias_mant_min << f.bias_exp_max
    assert clipped == int(np.sum((b > top + half) | (b < bottom - half)))


@pytest.mark.parametrize("f", FORMATS, ids=IDS)
def test_threshold_mantissa(f):
    rng = np.random.default_rng(3)
    step = 1 << f.vth_shift
    for kt in np.concatenate([rng.uniform(1, 5000, 200), np.arange(1, 40) * step]):
        n = int(N.threshold_mantissa(kt, ">=", f))
        assert max(m for m in range(0, int(kt) + 2) if m * step < kt) == n
        # on a grid of 2**vth_shift, Loihi's '>' is spikingjelly's '>='
        for v in range(0, int(kt) + 3 * step, step):
            if kt == int(kt) and int(kt) % step == 0:
                assert (v > n * step) == (v >= kt)
        n2 = int(N.threshold_mantissa(kt, ">", f))
        assert max(m for m in range(0, int(kt) + 2) if m * step <= kt) == n2


@pytest.mark.parametrize("f", FORMATS, ids=IDS)
def test_choose_scale_is_the_largest_feasible(f):
    rng = np.random.default_rng(4)
    s = f.weight_shift
    for _ in range(300):
        k_max = float(np.exp(rng.uniform(0, 25)))
        r_max = float(np.exp(rng.uniform(-4, 12)))
        for snap in (False, True):
            sc = N.choose_scale(k_max, r_max, f, snap=snap)
            assert sc.k <= k_max * (1 + 1e-12) and sc.r <= r_max * (1 + 1e-12)
            assert f.weight_exp_min <= sc.weight_exp <= f.weight_exp_max
            assert math.isclose(sc.k, sc.r * 2.0 ** (s + sc.weight_exp))
            r0 = 2.0 ** math.floor(math.log2(r_max)) if snap else r_max
            feasible = [r0 * 2.0 ** (s + e) for e in range(f.weight_exp_min, f.weight_exp_max + 1)
                        if r0 * 2.0 ** (s + e) <= k_max]
            if feasible:
                assert math.isclose(sc.k, max(feasible)) and sc.r == r0
            else:  # even the smallest exponent overshoots: r shrinks, K = k_max (pow2 below it)
                assert sc.weight_exp == f.weight_exp_min
                assert sc.k > k_max / 2 if snap else math.isclose(sc.k, k_max)


def test_group_channels_matches_brute_force():
    rng = np.random.default_rng(5)
    for _ in range(40):
        n = int(rng.integers(2, 8))
        r = np.exp(rng.normal(size=n) * 2)
        for G in (1, 2, 3):
            lab = N.group_channels(r, G)
            assert lab.max() < G

            def cost(labels):
                return sum(np.sum(np.log2(r[labels == g] / r[labels == g].min()))
                           for g in np.unique(labels))

            best = min(cost(np.array(p)) for p in itertools.product(range(G), repeat=n))
            assert cost(lab) == pytest.approx(best, abs=1e-9)


@pytest.mark.parametrize("f", FORMATS, ids=IDS)
def test_truncation_offset_is_the_mean_floor_loss(f):
    for e in range(-4, 2):
        d = 1 << max(-e, 0)
        loss = np.mean([(x / d - (x >> max(-e, 0))) for x in range(-5 * d, 5 * d)])
        assert N.truncation_offset(e, f) == pytest.approx(loss * (1 << f.weight_shift))


# ----------------------------------------------------------------------------- canonical neuron

def sj_lif(x: np.ndarray, theta: float) -> np.ndarray:
    """spikingjelly's LIF (tau 2, decay_input, hard reset 0, '>='), exact rationals via float64."""
    v = np.zeros(x.shape[1:])
    out = np.zeros(x.shape, bool)
    for t in range(len(x)):
        h = v + (x[t] - v) / 2.0
        out[t] = h >= theta
        v = np.where(out[t], 0.0, h)
    return out


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 6])
def test_cuba_reproduces_spikingjelly_on_integer_inputs(T):
    """u forgets (du = 4095), v halves (dv = 2048), a_in = m X with m = 2**(T-1):
    spikes identical to the float LIF for every integer input sequence, with or without bias."""
    rng = np.random.default_rng(T)
    s = FMT.weight_shift
    m = 1 << (T - 1)
    for theta in (1.0, 0.5, 4.0):
        for bias in (0, 1, -2):
            x = rng.integers(-6, 12, size=(T, 4000))
            want = sj_lif((x + bias).astype(np.float64), theta)
            k = (1 << s) * m * 2  # v = K H with H the spikingjelly membrane (canonical: H' = 2H)
            vth = int(N.threshold_mantissa(k * theta, ">=", FMT))
            u = v = np.zeros(x.shape[1], np.int64)
            bm, be, _ = N.encode_bias(np.full(x.shape[1], float(k // 2 * bias)), FMT)
            for t in range(T):
                u, v, spk = fx.lif_step(u, v, m * x[t], 4095, 2048, vth, bm, be, FMT)
                np.testing.assert_array_equal(spk, want[t], err_msg=f"T={T} theta={theta} t={t}")


def test_cuba_with_unit_gain_is_not_exact_beyond_one_step():
    """Why the count gain exists: with a_in = X (m = 1), v moves on a grid finer than 2**6 after two
    steps, so no vth reproduces '>=' for every sequence."""
    rng = np.random.default_rng(0)
    xs = rng.integers(0, 12, size=(3, 5000))
    want = sj_lif(xs.astype(float), 4.0)
    k = (1 << FMT.weight_shift) * 2  # m = 1
    vth = int(N.threshold_mantissa(k * 4.0, ">=", FMT))
    u = v = np.zeros(5000, np.int64)
    bad = []
    for t in range(3):
        u, v, spk = fx.lif_step(u, v, xs[t], 4095, 2048, vth, 0, 0, FMT)
        bad.append(int(np.sum(spk != want[t])))
    assert bad[0] == 0 and sum(bad) > 0


# ----------------------------------------------------------------------------- reference evaluator

def _shift(a: np.ndarray, e: np.ndarray, axis: int) -> np.ndarray:
    shape = [1] * a.ndim
    shape[axis] = -1
    e = e.astype(np.int64).reshape(shape)
    return np.where(e >= 0, a << np.maximum(e, 0), a >> np.maximum(-e, 0))


def run_fixed(g: Graph, raw: np.ndarray, fmt=FMT) -> tuple[dict, dict]:
    """A plain reference of the fixed-point IR (docstrings of spikec.ir.fixed), integers only.

    Returns (values by name [T, B, ...], outputs). Checks that no a_in leaves int16.
    """
    T, B = g.timesteps, len(raw)
    env: dict[str, np.ndarray] = {}
    outs = {}
    for op in g.ops:
        ins = [env[i] for i in op.inputs]
        if isinstance(op, F.GradedInput):
            x = raw.astype(np.int64)
            if op.pad:
                x = np.pad(x, [(0, 0), (0, 0), (op.pad, op.pad), (op.pad, op.pad)])
            y = np.broadcast_to(x, (T,) + x.shape)
        elif isinstance(op, (F.ConvSynapse, F.DenseSynapse)):
            w = op.weight.astype(np.int64)
            y = 0
            for x in ins:
                flat = x.reshape((T * B,) + x.shape[2:]).astype(np.int64)
                if isinstance(op, F.ConvSynapse):
                    acc = interp.conv2d(flat, w, None, op.stride, op.padding, op.dilation, op.groups)
                    ax = 1
                else:
                    acc = interp.linear(flat, w, None, op.axis)
                    ax = op.axis % (acc.ndim - 1) + 1
                y = y + _shift(acc, op.weight_exp, ax)
            y = y.reshape((T, B) + y.shape[1:])
        elif isinstance(op, F.CubaLIF):
            a = ins[0].astype(np.int64)
            assert np.abs(a).max(initial=0) <= fmt.a_in_max, op.name
            u = v = np.zeros(a.shape[1:], np.int64)
            y = np.zeros(a.shape, bool)
            for t in range(T):
                u, v, y[t] = fx.lif_step(u, v, a[t], op.du, op.dv, op.vth, op.bias_mant,
                                         op.bias_exp, fmt, strict=True, name=op.name)
        elif isinstance(op, F.Readout):
            a = ins[0].astype(np.int64) << fmt.weight_shift
            a = a.sum(axis=tuple(x % (a.ndim - 2) + 2 for x in op.sum_axes))
            acc = np.zeros(a.shape[1:], np.int64)
            for t in range(T):
                acc = np.clip(acc + a[t], -fmt.state_max, fmt.state_max)
            y = op.scale * acc + op.offset
        elif isinstance(op, O.MaxPool2d):
            x = ins[0].reshape((T * B,) + ins[0].shape[2:]).astype(np.float64)
            y = interp._maxpool(op, x).reshape(ins[0].shape[:2] + (-1,) + interp._maxpool(op, x).shape[2:])
            y = y.astype(np.int64)
        elif isinstance(op, O.Reshape):
            y = ins[0].reshape(ins[0].shape[:2] + tuple(op.shape))
        elif isinstance(op, O.Transpose):
            y = ins[0].transpose((0, 1) + tuple(p + 2 for p in op.perm))
        elif isinstance(op, O.Add):
            y = ins[0].astype(np.int64) + ins[1]
        elif isinstance(op, O.IAND):
            y = ((1 - ins[0].astype(np.int64)) * ins[1]).astype(bool)
        elif isinstance(op, O.SpikeMatmul):
            y = ins[0].astype(np.int64) @ ins[1].astype(np.int64)
        elif isinstance(op, O.Output):
            y = ins[0]
            outs[op.name] = y
        else:
            raise AssertionError(f"no reference for {op.OPCODE}")
        env[op.name] = y
    return env, outs


# ----------------------------------------------------------------------------- whole networks

def exact_graph(layout: str, residual: str, T: int = 4) -> Graph:
    """Weights on a 1/4 grid, pixels scaled by 1/256, no BN: every parameter is dyadic, so the
    quantizer can encode the network exactly."""
    return spikformer_like(12, T=T, layout=layout, residual=residual, bn=False, normalize=False,
                           pixel_scale=1 / 256, weight_grid=0.25, dim=32)


@pytest.mark.parametrize("layout,residual,mode", [("conv", "add", "graded"),
                                                  ("linear", "add", "fanin"),
                                                  ("conv", "iand", "graded")])
def test_exactly_representable_network_is_bit_exact(layout, residual, mode):
    g = exact_graph(layout, residual)
    imgs = random_images(6, (1, 16, 16), seed=3)
    res = compile_graph(g, "loihi2", options=CompileOptions(residual=mode))
    assert all(res.notes["layers"][n]["exact"] for n in lif_names(res.folded)), res.notes["exact_layers"]
    names = lif_names(res.folded)
    flt = interp.run(res.folded, imgs, dtype=np.float64, record=names)
    env, outs = run_fixed(res.fixed, imgs)
    rates = []
    for nm in names:
        np.testing.assert_array_equal(env[nm], flt.values[nm].astype(bool), err_msg=nm)
        rates.append(flt.values[nm].mean())
    assert min(rates) > 0.01  # every layer is active, so the check means something
    np.testing.assert_allclose(outs["logits"], flt.outputs["logits"], rtol=1e-12, atol=1e-12)


def test_random_network_is_close():
    g = spikformer_like(7, cin=1, bn_spread=2.0)
    imgs = random_images(16, (1, 16, 16), seed=4)
    res = compile_graph(g, "loihi2", calib=random_images(4, (1, 16, 16), seed=5))
    names = lif_names(res.folded)
    flt = interp.run(res.folded, imgs, dtype=np.float64, record=names)
    env, outs = run_fixed(res.fixed, imgs)
    agree = {nm: float(np.mean(env[nm] == flt.values[nm].astype(bool))) for nm in names}
    assert agree[names[0]] > 0.99, agree
    assert min(agree.values()) > 0.8, agree
    assert np.corrcoef(outs["logits"].ravel(), flt.outputs["logits"].ravel())[0, 1] > 0.9


def test_notes_schema_and_serialization():
    g = spikformer_like(8, layout="linear")
    res = compile_graph(g, "loihi2", options=CompileOptions(residual="fanin"))
    notes = json.loads(json.dumps(res.notes))
    assert notes["real_valued_input"]["consumers"] == [res.fixed.ops[1].name]
    assert notes["residual"]["mode"] == "fanin" and notes["residual"]["extra_weights"] > 0
    assert not any(isinstance(op, O.Add) for op in res.fixed.ops)
    assert notes["passes"] == [p.__name__ for p in FLOAT_PASSES]
    for name, lay in notes["layers"].items():
        for key in ("a_in_bound", "a_in_limit", "u_bound", "state_limit", "overflow_risks"):
            assert key in lay, (name, key)
    assert notes["layers"]["attn_lif"]["gain"] >= 1
    back = ir.loads(ir.dumps(res.fixed))
    assert back == res.fixed and back.domain == "fixed"


def test_loihi_refuses_graded_input_naming_the_layer():
    g = spikformer_like(2)
    with pytest.raises(FormatError, match="conv.*graded spikes.*--input-encoding bitplane or host"):
        compile_graph(g, "loihi", options=CompileOptions(input_encoding="graded"))


def test_weights_too_large_for_any_exponent():
    rng = np.random.default_rng(0)
    ops = [O.Input("x", (), shape=(4, 6, 6), kind="spike"),
           O.Conv2d("big", ("x",), weight=rng.normal(size=(3, 4, 3, 3)) * 1e7),
           O.LIF("s", ("big",)), O.Output("y", ("s",))]
    with pytest.raises(FormatError, match="layer 's'"):
        compile_graph(Graph(ops, timesteps=2), "loihi2")


def test_strict_overflow_names_the_layer():
    """A count that can reach 64**3 cannot enter an int16 a_in: reported, and fatal with strict."""
    ops = [O.Input("x", (), shape=(1, 64, 64), kind="spike"),
           O.SpikeMatmul("aa", ("x", "x")), O.SpikeMatmul("aaa", ("aa", "x")),
           O.SpikeMatmul("a4", ("aaa", "x")), O.LIF("s", ("a4",), v_threshold=0.5),
           O.Output("y", ("s",))]
    g = Graph(ops, timesteps=1)
    res = compile_graph(g, "loihi2")
    assert "a_in" in res.notes["overflow_risks"]["s"]
    with pytest.raises(FormatError, match="layer 's'"):
        compile_graph(g, "loihi2", options=CompileOptions(strict=True))
    from spikec.errors import CapacityError

    with pytest.raises(CapacityError, match="layer 's'.*no graded spikes"):   # exit 3
        compile_graph(g, "loihi")


@pytest.mark.parametrize("mode", ["threshold", "exponent", "layer"])
def test_every_synapse_survives_lavas_weight_truncation(mode):
    """Each exponent class of a synapse (one Lava Dense) is unchanged by Lava's clip + truncate."""
    g = spikformer_like(9, bn_spread=2.0)
    res = compile_graph(g, "loihi2", options=CompileOptions(scale_mode=mode, threshold_groups=8))
    syns = [op for op in res.fixed.ops if isinstance(op, (F.ConvSynapse, F.DenseSynapse))]
    assert syns
    for op in syns:
        rows = op.weight.reshape(op.weight.shape[0], -1).astype(np.int64)
        for e in np.unique(op.weight_exp):
            blk = rows[op.weight_exp == e]
            np.testing.assert_array_equal(fx.dense_weights(blk, FMT), blk, err_msg=op.name)
        assert op.weight_exp.min() >= FMT.weight_exp_min and op.weight_exp.max() <= FMT.weight_exp_max
    for op in res.fixed.ops:
        if isinstance(op, F.CubaLIF):
            fx.check_lif_params(op.du, op.dv, op.vth, op.bias_mant, op.bias_exp, FMT, op.name)
            if mode == "layer":
                assert len(np.unique(op.vth)) == 1, op.name


def test_min_weight_exp_keeps_shifts_out_of_synapses():
    g = spikformer_like(9)
    res = compile_graph(g, "loihi2", options=CompileOptions(min_weight_exp=0))
    for op in res.fixed.ops:
        if isinstance(op, (F.ConvSynapse, F.DenseSynapse)):
            assert op.weight_exp.min() >= 0, op.name


def test_spike_input_mlp_on_loihi():
    """Event input (binary spikes, a sequence) needs no graded spikes: compiles for loihi, with a
    read-out that has no token axes."""
    rng = np.random.default_rng(3)
    ops = [O.Input("ev", (), shape=(40,), encoding="sequence", kind="spike"),
           O.Linear("fc", ("ev",), weight=rng.normal(size=(30, 40)) * 0.4, bias=rng.normal(size=30) * 0.2),
           O.LIF("s", ("fc",)),
           O.Linear("head", ("s",), weight=rng.normal(size=(5, 30)), bias=rng.normal(size=5)),
           O.TimeMean("tm", ("head",)), O.Output("y", ("tm",))]
    g = Graph(ops, timesteps=5)
    data = (rng.random((64, 5, 40)) < 0.3).astype(np.uint8)
    res = compile_graph(g, "loihi", calib=data[:8])
    assert res.notes["real_valued_input"] is None
    assert isinstance(res.fixed.op("tm"), F.Readout) and res.fixed.op("tm").sum_axes == ()
    raw = data.swapaxes(0, 1).astype(np.int64)  # [T, B, 40]
    a = _shift(interp.linear(raw.reshape(-1, 40), res.fixed.op("fc").weight.astype(np.int64), None, -1),
               res.fixed.op("fc").weight_exp, 1).reshape(5, 64, 30)
    lif = res.fixed.op("s")
    u = v = np.zeros((64, 30), np.int64)
    spikes = np.zeros((5, 64, 30), bool)
    for t in range(5):
        u, v, spikes[t] = fx.lif_step(u, v, a[t], lif.du, lif.dv, lif.vth, lif.bias_mant, lif.bias_exp,
                                      load_profile("loihi").formats, strict=True)
    flt = interp.run(res.folded, data, dtype=np.float64, record=["s"])
    assert np.mean(spikes == flt.values["s"].astype(bool)) > 0.99


@pytest.mark.parametrize("arch", ["spikformer_v2_tiny", "spikformer_v2_tiny_iand",
                                  "spikformer_cifar_tiny"])
def test_traced_spikformers_compile(arch, tmp_path):
    """The whole pipeline on models traced by the torch frontend (random weights)."""
    torch = pytest.importorskip("torch")
    from spikec.frontends import LoadOptions, load_model
    from spikec.models import create
    from spikec.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create(arch)
    for mod in model.modules():  # trained-looking BN: spread per-channel gains and offsets
        if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            mod.weight.data = torch.exp(torch.randn(mod.num_features) * 0.5)
            mod.bias.data = 0.3 * torch.randn(mod.num_features)
    path = tmp_path / "m.pt"
    save_checkpoint(model, path, preprocess={"pixel_scale": 1 / 255, "mean": [0.13], "std": [0.31]})
    graph = load_model(path, LoadOptions())
    imgs = random_images(2, graph.inputs[0].shape, seed=1)
    res = compile_graph(graph, "loihi2", calib=imgs)
    assert not any(isinstance(op, (O.BatchNorm, O.Scale)) for op in res.folded.ops)
    assert res.fixed.domain == "fixed" and res.notes["real_valued_input"]["consumers"]
    attn = [n for n in res.notes["layers"] if n.endswith("attn_lif")]
    assert attn and all(res.notes["layers"][n]["exact"] for n in attn)
    # the float passes round differently: spikes via tests/floatcheck.py, logits to 1e-9
    assert_same_run(graph, res.folded, imgs)


def _summed_graph(T: int = 4) -> Graph:
    """conv -> LIF s (2, 4, 4); a token sum read by a LIF (fused), a grid sum read by a LIF (two
    axes: kept, the count path) and a token sum read by a linear (kept, a graded count); the
    three branches joined (counts) and read out."""
    rng = np.random.default_rng(7)
    f = np.float32

    def lin(name, src, n_in, n_out):
        return O.Linear(name, (src,), weight=rng.normal(0, 1.0, (n_out, n_in)).astype(f),
                        bias=np.full(n_out, 0.8, f))

    return Graph([
        O.Input("x", (), shape=(1, 8, 8), pixel_scale=1 / 255),
        O.Conv2d("c", ("x",), weight=rng.normal(0.4, 0.6, (2, 1, 3, 3)).astype(f),
                 bias=np.zeros(2, f), stride=(2, 2), padding=(1, 1)),
        O.LIF("s", ("c",)),
        O.ReduceSum("tok_sum", ("s",), axes=(2,)),                      # (2, 4, 1)
        O.LIF("tok_lif", ("tok_sum",), v_threshold=0.5),
        O.Reshape("tok_feat", ("tok_lif",), shape=(8,)),
        O.ReduceSum("grid_sum", ("s",), axes=(1, 2)),                   # (2, 1, 1)
        O.LIF("grid_lif", ("grid_sum",), v_threshold=1.5),
        O.Reshape("grid_feat", ("grid_lif",), shape=(2,)),
        lin("g", "grid_feat", 2, 8), O.LIF("g_lif", ("g",)),
        O.ReduceSum("row_sum", ("s",), axes=(1,)),                      # (2, 1, 4)
        O.Reshape("rows", ("row_sum",), shape=(8,)),
        lin("l", "rows", 8, 8), O.LIF("l_lif", ("l",)),
        O.Add("j1", ("tok_feat", "g_lif")), O.Add("j2", ("j1", "l_lif")),
        lin("head", "j2", 8, 3),
        O.TimeMean("tm", ("head",)),
        O.Output("y", ("tm",)),
    ], timesteps=T)


def test_reduce_sum_read_by_a_lif_becomes_its_unit_weight_synapse():
    g = _summed_graph()
    raw = random_images(8, (1, 8, 8))
    res = compile_graph(g, "loihi2", calib=raw)
    fixed = {op.name: op for op in res.fixed.ops}
    fused = fixed["tok_sum"]                # one summed axis, sole reader a LIF
    assert isinstance(fused, F.DenseSynapse) and fused.axis == 2 and fused.weight.shape == (1, 4)
    gain = res.notes["layers"]["tok_lif"]["gain"]
    assert np.all(fused.weight.astype(np.int64) << int(fused.weight_exp[0]) == gain)
    assert res.notes["layers"]["tok_lif"]["exact"]
    assert isinstance(fixed["grid_sum"], O.ReduceSum)       # two axes: kept, read as a count
    assert isinstance(fixed["row_sum"], O.ReduceSum)        # read by a linear: a graded count
    from spikec.sim import Simulator
    sim = Simulator(res.fixed).run(raw, record=["s", "tok_lif", "grid_lif"]).values
    s = sim["s"].astype(np.float64)         # [T, B, 2, 4, 4]: the chip's spikes, summed exactly
    for n, axes, theta in (("tok_lif", (4,), 0.5), ("grid_lif", (3, 4), 1.5)):
        want = sj_lif(s.sum(axis=axes, keepdims=True), theta)
        assert np.array_equal(sim[n], want), n      # spikingjelly's LIF on the count, exactly
        assert sim[n].any() and not sim[n].all()


@pytest.mark.parametrize("residual, reads", [("graded", ("j",)), ("fanin", ("s", "s2"))])
def test_summed_count_reads_its_sources_by_fan_in(residual, reads):
    """A token sum of the residual stream (a count) read by a LIF: the unit-weight synapse reads
    the count (graded) or its two spike sources (fan-in); either way the LIF spikes as
    spikingjelly's on the exact sum."""
    rng = np.random.default_rng(7)
    f = np.float32

    def conv(name, src, cin):
        return O.Conv2d(name, (src,), weight=rng.normal(0.4, 0.6, (2, cin, 3, 3)).astype(f),
                        bias=np.zeros(2, f), padding=(1, 1))

    g = Graph([
        O.Input("x", (), shape=(1, 8, 8), pixel_scale=1 / 255),
        conv("c", "x", 1), O.LIF("s", ("c",)), conv("c2", "s", 2), O.LIF("s2", ("c2",)),
        O.Add("j", ("s", "s2")),
        O.ReduceSum("tok_sum", ("j",), axes=(2,)),
        O.LIF("tok_lif", ("tok_sum",), v_threshold=0.5),
        O.Reshape("feat", ("tok_lif",), shape=(16,)),
        O.Linear("head", ("feat",), weight=rng.normal(0, 1, (3, 16)).astype(f),
                 bias=np.zeros(3, f)),
        O.TimeMean("tm", ("head",)), O.Output("y", ("tm",))], timesteps=4)
    raw = random_images(8, (1, 8, 8))
    res = compile_graph(g, "loihi2", calib=raw, options=CompileOptions(residual=residual))
    assert res.fixed.op("tok_sum").inputs == reads
    from spikec.sim import Simulator
    sim = Simulator(res.fixed).run(raw, record=["s", "s2", "tok_lif"]).values
    count = (sim["s"].astype(np.float64) + sim["s2"]).sum(axis=4, keepdims=True)
    assert np.array_equal(sim["tok_lif"], sj_lif(count, 0.5)) and sim["tok_lif"].any()
