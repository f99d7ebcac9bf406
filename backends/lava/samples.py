"""Small hand-made fixed-point graphs for the Lava backend's tests and examples.

``ms_resnet_like`` is a float graph (compile it first): the membrane-shortcut residual.

Random but deterministic integer weights inside Lava's representable sets (even mixed-sign
weights), thresholds and biases small enough that no state saturates: the bundle and the bit-exact
simulator must then agree spike for spike.
"""
from __future__ import annotations

import numpy as np

from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.ir.graph import Graph

TAU2_DU, TAU2_DV = 4095, 2048  # spikingjelly's tau = 2 on Loihi (u forgets, v halves)


def _w(rng, shape, lo=-40, hi=40):
    """Even weights (a mixed-sign Lava matrix keeps even values only)."""
    return (rng.integers(lo // 2, hi // 2 + 1, size=shape) * 2).astype(np.int16)


def _lif(name, src, shape, rng, vths=(20,), bias=4):
    vth = np.asarray(vths)[np.arange(shape[0]) % len(vths)]  # threshold groups by channel
    vth = np.broadcast_to(vth.reshape((-1,) + (1,) * (len(shape) - 1)), shape).astype(np.int32)
    return F.CubaLIF(name, (src,), du=TAU2_DU, dv=TAU2_DV, vth=np.ascontiguousarray(vth),
                     bias_mant=rng.integers(-bias, bias + 1, size=shape).astype(np.int16),
                     bias_exp=np.full(shape, 3, np.int8))


def chain(seed: int = 0, T: int = 3) -> Graph:
    """graded input 1x8x8 -> conv 3x3 (4 ch) -> LIF -> flatten -> dense 10 -> LIF: a netx chain."""
    rng = np.random.default_rng(seed)
    ops = [
        F.GradedInput("x", (), shape=(1, 8, 8), payload_bits=8),
        F.ConvSynapse("c1", ("x",), weight=_w(rng, (4, 1, 3, 3), 0, 6),
                      weight_exp=np.zeros(4, np.int8), padding=(1, 1)),
        _lif("l1", "c1", (4, 8, 8), rng, vths=(60,), bias=0),
        O.Reshape("flat", ("l1",), shape=(256,)),
        F.DenseSynapse("d1", ("flat",), weight=_w(rng, (10, 256)), weight_exp=np.ones(10, np.int8)),
        _lif("l2", "d1", (10,), rng, vths=(30,), bias=0),
        O.Output("out", ("l2",)),
    ]
    return Graph(ops, timesteps=T, domain="fixed", meta={"sample": "chain"})


def spikformer_like(seed: int = 0, T: int = 3, residual: str = "add") -> Graph:
    """A miniature Spikformer block with every op the backend lowers.

    stem: graded 1x8x8 -> conv (per-channel exponents incl. negative) -> LIF (two thresholds)
    -> maxpool -> conv -> LIF;  join(stem spikes, conv-MLP spikes) (``add``, ``iand`` or ``and``);
    tokens (C=4, N=16): q, k, v = LIF(dense(tokens)) (fan-in of the join for ``add``: a count);
    heads (2 x d=2): kv = k^T v (spike x spike), y = q kv (spike x count) -> attn LIF;
    proj dense -> LIF; head dense (token-wise) -> readout summed over tokens.
    """
    rng = np.random.default_rng(seed)
    C, H, N, d = 4, 2, 16, 2
    ops = [
        F.GradedInput("x", (), shape=(1, 8, 8), payload_bits=8),
        F.ConvSynapse("c1", ("x",), weight=_w(rng, (C, 1, 3, 3), -6, 8),
                      weight_exp=np.array([0, -1, 0, -2], np.int8), padding=(1, 1)),
        _lif("l1", "c1", (C, 8, 8), rng, vths=(40, 70), bias=2),
        O.MaxPool2d("mp", ("l1",), kernel=(3, 3), stride=(2, 2), padding=(1, 1)),
        F.ConvSynapse("c2", ("mp",), weight=_w(rng, (C, C, 3, 3)),
                      weight_exp=np.ones(C, np.int8), padding=(1, 1)),
        _lif("l2", "c2", (C, 4, 4), rng, vths=(30,)),
    ]
    join = {"add": O.Add, "iand": O.IAND, "and": O.AND}[residual]
    ops.append(join("join", ("mp", "l2")))
    ops += [
        O.Reshape("tok", ("join",), shape=(C, N)),
        F.DenseSynapse("q_syn", ("tok",), weight=_w(rng, (C, C)), weight_exp=np.zeros(C, np.int8),
                       axis=0),
        _lif("q", "q_syn", (C, N), rng, vths=(10,)),
        F.DenseSynapse("k_syn", ("tok",), weight=_w(rng, (C, C)), weight_exp=np.full(C, -1, np.int8),
                       axis=0),
        _lif("k", "k_syn", (C, N), rng, vths=(8,)),
        F.DenseSynapse("v_syn", ("tok",), weight=_w(rng, (C, C)), weight_exp=np.zeros(C, np.int8),
                       axis=0),
        _lif("v", "v_syn", (C, N), rng, vths=(10, 14)),
        O.Reshape("qh", ("q",), shape=(H, d, N)),
        O.Transpose("qt", ("qh",), perm=(0, 2, 1)),          # (H, N, d)
        O.Reshape("kh", ("k",), shape=(H, d, N)),            # k^T per head: (H, d, N)
        O.Reshape("vh", ("v",), shape=(H, d, N)),
        O.Transpose("vt", ("vh",), perm=(0, 2, 1)),          # (H, N, d)
        O.SpikeMatmul("kv", ("kh", "vt")),                   # (H, d, d) counts
        O.SpikeMatmul("qkv", ("qt", "kv")),                  # (H, N, d) counts
        O.Transpose("qkv_t", ("qkv",), perm=(0, 2, 1)),      # (H, d, N)
        O.Reshape("attn_in", ("qkv_t",), shape=(C, N)),
        F.CubaLIF("attn", ("attn_in",), du=TAU2_DU, dv=TAU2_DV, vth=np.full((C, N), 3, np.int32),
                  bias_mant=np.zeros((C, N), np.int16), bias_exp=np.zeros((C, N), np.int8)),
        F.DenseSynapse("proj_syn", ("attn",), weight=_w(rng, (C, C), -10, 60),
                       weight_exp=np.zeros(C, np.int8), axis=0),
        _lif("proj", "proj_syn", (C, N), rng, vths=(2, 1), bias=12),
        # a split layer read with a negative exponent: the backend must gather it first
        F.DenseSynapse("head", ("proj",), weight=(2 * rng.integers(0, 40, (3, C)) + 1).astype(np.int16),
                       weight_exp=np.full(3, -1, np.int8), axis=0),   # odd, excitatory
        F.Readout("readout", ("head",), scale=0.01, offset=np.array([0.5, -0.25, 0.0]),
                  sum_axes=(1,)),
        O.Output("logits", ("readout",)),
    ]
    return Graph(ops, timesteps=T, domain="fixed", meta={"sample": f"spikformer_like_{residual}"})


def conv_zoo(seed: int = 0, T: int = 3) -> Graph:
    """Every way a synapse becomes a weight-shared Lava Conv, on a graded 2x9x9 input.

    c1: 3x3 conv, per-channel exponents (0, -1, -2, 1) -> LIF with two thresholds (split);
    c2: strided, dilated conv with odd weights and exponent -2 from the split layer (gathered
    first); c3: grouped 1x1 conv; join = l2 + l3 (counts); c4: fan-in of l2 (spikes, needs a
    delay line) and the join (counts) through the same weights; tokens: d1 along axis 0 of
    (C, N) counts with a negative exponent -> split LIF; d2 along axis 1 of (N, C) (a 1x1
    conv over N positions) -> readout summed over tokens."""
    rng = np.random.default_rng(seed)
    odd = (2 * rng.integers(-6, 7, (4, 4, 3, 2)) + 1).astype(np.int16)
    ops = [
        F.GradedInput("x", (), shape=(2, 9, 9), payload_bits=8),
        F.ConvSynapse("c1", ("x",), weight=_w(rng, (4, 2, 3, 3), -8, 10),
                      weight_exp=np.array([0, -1, -2, 1], np.int8), padding=(1, 1)),
        _lif("l1", "c1", (4, 9, 9), rng, vths=(40, 60), bias=2),
        F.ConvSynapse("c2", ("l1",), weight=odd, weight_exp=np.full(4, -2, np.int8),
                      stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
        _lif("l2", "c2", (4, 5, 7), rng, vths=(6,)),
        F.ConvSynapse("c3", ("l2",), weight=_w(rng, (4, 2, 1, 1), -10, 30),
                      weight_exp=np.full(4, -1, np.int8), groups=2),
        _lif("l3", "c3", (4, 5, 7), rng, vths=(4, 6)),
        O.Add("join", ("l2", "l3")),
        F.ConvSynapse("c4", ("l2", "join"), weight=_w(rng, (4, 4, 3, 3), -8, 12),
                      weight_exp=np.zeros(4, np.int8), padding=(1, 1)),
        _lif("l4", "c4", (4, 5, 7), rng, vths=(40,)),
        O.Reshape("tok", ("join",), shape=(4, 35)),
        F.DenseSynapse("d1", ("tok",), weight=_w(rng, (6, 4), -20, 40),
                       weight_exp=np.array([-1, 0, -1, 0, 1, -1], np.int8), axis=0),
        _lif("l5", "d1", (6, 35), rng, vths=(8, 10)),
        O.Reshape("tok4", ("l4",), shape=(4, 35)),
        O.Transpose("tok4t", ("tok4",), perm=(1, 0)),       # (N, C)
        F.DenseSynapse("d2", ("tok4t",), weight=_w(rng, (3, 4), -10, 40),
                       weight_exp=np.zeros(3, np.int8), axis=1),
        F.Readout("readout", ("d2",), scale=0.01, offset=np.zeros(3), sum_axes=(0,)),
        O.Output("logits", ("readout",)),
    ]
    return Graph(ops, timesteps=T, domain="fixed", meta={"sample": "conv_zoo"})


def images(n: int, shape=(1, 8, 8), seed: int = 0) -> np.ndarray:
    """Random uint8 images [n, *shape]."""
    return np.random.default_rng(seed + 1000).integers(0, 256, size=(n,) + tuple(shape),
                                                       dtype=np.uint8)


def matmul_zoo(T: int = 3) -> Graph:
    """Every kind pair of ``spike_matmul`` on one binary per-step input x [2, 4, 4] (heads 2):
    spike x spike, count x spike, spike x count, count x count (c = x + x, one step later than x,
    so the mixed products also exercise the delay balancing)."""
    ops = [
        F.GradedInput("x", (), shape=(2, 4, 4), encoding="sequence", kind="spike", payload_bits=1),
        O.Transpose("xt", ("x",), perm=(0, 2, 1)),
        O.Add("c", ("x", "x")),
        O.Transpose("ct", ("c",), perm=(0, 2, 1)),
        O.SpikeMatmul("mm_ss", ("x", "xt")),
        O.SpikeMatmul("mm_cs", ("c", "xt")),
        O.SpikeMatmul("mm_sc", ("x", "ct")),
        O.SpikeMatmul("mm_cc", ("c", "ct")),
        O.Output("out", ("mm_cc",)),
    ]
    return Graph(ops, timesteps=T, domain="fixed", meta={"sample": "matmul_zoo"})


def sequences(n: int, T: int, shape=(2, 4, 4), seed: int = 0) -> np.ndarray:
    """Random binary per-step inputs [n, T, *shape] (uint8)."""
    rng = np.random.default_rng(seed + 2000)
    return (rng.random((n, T) + tuple(shape)) < 0.5).astype(np.uint8)


def attention_float(kind: str = "sdsa", seed: int = 0, T: int = 2, heads: int = 2) -> Graph:
    """A float graph of one spiking attention block, for compiling and validating against Lava.

    stem: input 1x8x8 (pixels) -> conv 3x3 stride 2 (4 ch) -> LIF -> tokens (C=4, N=16);
    q, k, v = LIF(linear over C); heads (h, d, N);
    ``sdsa`` (Spike-driven Transformer): ``kv = LIF_0.5(sum_N(k AND v))``, ``y = q AND kv``;
    ``qk`` (QKFormer token attention): ``a = LIF_0.5(sum_d q)``, ``y = a AND k``;
    ``qk_channel`` (QKFormer channel attention): ``a = LIF_0.5(sum_N q)``, ``y = a AND k``;
    then proj linear -> LIF, the join ``tokens + y`` (a count) and a token-wise head summed over
    tokens (the read-out). Every ``reduce_sum`` feeds a LIF, so the quantizer makes it that LIF's
    unit-weight dense synapse.
    """
    if kind not in ("sdsa", "qk", "qk_channel"):
        raise ValueError(f"kind must be 'sdsa', 'qk' or 'qk_channel', got {kind!r}")
    rng = np.random.default_rng(seed)
    f = np.float32
    C, N, d = 4, 16, 4 // heads

    def lin(name, src, n_in, n_out, gain=2.0, bias=1.5):
        return O.Linear(name, (src,), weight=(rng.normal(0, gain, (n_out, n_in))).astype(f),
                        bias=rng.normal(bias, 0.5, n_out).astype(f), axis=0)

    ops = [
        O.Input("x", (), shape=(1, 8, 8), pixel_scale=1 / 255),
        O.Conv2d("c0", ("x",), weight=rng.normal(0.3, 0.5, (C, 1, 3, 3)).astype(f),
                 bias=np.zeros(C, f), stride=(2, 2), padding=(1, 1)),
        O.LIF("s0", ("c0",)),
        O.Reshape("tok", ("s0",), shape=(C, N)),
    ]
    for n in "qkv":
        ops += [lin(f"{n}_lin", "tok", C, C), O.LIF(f"{n}_s", (f"{n}_lin",)),
                O.Reshape(f"{n}_h", (f"{n}_s",), shape=(heads, d, N))]
    if kind == "sdsa":
        ops += [O.AND("kv_and", ("k_h", "v_h")),
                O.ReduceSum("kv_sum", ("kv_and",), axes=(2,)),
                O.LIF("kv_s", ("kv_sum",), v_threshold=0.5),
                O.AND("attn", ("q_h", "kv_s"))]
    else:
        ops += [O.ReduceSum("q_sum", ("q_h",), axes=(1 if kind == "qk" else 2,)),
                O.LIF("a_s", ("q_sum",), v_threshold=0.5),
                O.AND("attn", ("a_s", "k_h"))]
    ops += [
        O.Reshape("attn_tok", ("attn",), shape=(C, N)),
        lin("proj", "attn_tok", C, C, gain=3.0, bias=1.0), O.LIF("proj_s", ("proj",)),
        O.Add("join", ("tok", "proj_s")),
        lin("head", "join", C, 3, gain=0.5, bias=0.0),
        O.Mean("tok_mean", ("head",), axes=(1,)),
        O.TimeMean("tm", ("tok_mean",)),
        O.Output("logits", ("tm",)),
    ]
    return Graph(ops, timesteps=T, meta={"sample": f"attention_{kind}"})


def reduce_sum_zoo(T: int = 3) -> Graph:
    """``reduce_sum`` kept as a graded relay (no LIF reads it): binary per-step x [2, 4, 4] summed
    over the last axis, over the last two, and a count (x + x) summed over the first."""
    ops = [
        F.GradedInput("x", (), shape=(2, 4, 4), encoding="sequence", kind="spike", payload_bits=1),
        O.ReduceSum("sum_n", ("x",), axes=(2,)),
        O.ReduceSum("sum_grid", ("x",), axes=(1, 2)),
        O.Add("c", ("x", "x")),
        O.ReduceSum("sum_c", ("c",), axes=(0,)),
        O.Output("out", ("sum_c",)),
    ]
    return Graph(ops, timesteps=T, domain="fixed", meta={"sample": "reduce_sum_zoo"})

def ms_resnet_like(seed: int = 0, T: int = 3, ch: int = 4, current_head: bool = False) -> Graph:
    """stem conv (raw pixels) -> x; x = x + conv(lif(x)) twice (the second through a 1x1 conv of
    different shape); head on lif(x) (or, ``current_head``, on the sum of currents itself, as
    Spikingformer's): the last neuron sums three synapse ops of three depths."""
    rng = np.random.default_rng(seed)

    def conv(name, src, cin, k, pad, scale=0.5):
        return O.Conv2d(name, (src,), weight=rng.normal(size=(ch, cin, k, k)) * scale,
                        bias=rng.normal(size=ch) * 0.2, padding=(pad, pad))

    ops = [O.Input("x", (), shape=(1, 8, 8), pixel_scale=1 / 255),
           conv("stem", "x", 1, 3, 1, 1.5),
           O.LIF("l1", ("stem",)), conv("c1", "l1", ch, 3, 1),
           O.Add("x1", ("stem", "c1")),
           O.LIF("l2", ("x1",)), conv("c2", "l2", ch, 1, 0, 0.8),
           O.Add("x2", ("x1", "c2")),
           O.LIF("l3", ("x2",))]
    if current_head:  # Spikingformer: head(mean over tokens of the currents)
        ops += [O.Reshape("tokens", ("x2",), shape=(ch, 64)),
                O.Linear("head", ("tokens",), weight=rng.normal(size=(5, ch)), bias=np.zeros(5),
                         axis=0),
                O.Mean("mean", ("head",), axes=(1,)), O.TimeMean("tm", ("mean",))]
    else:
        ops += [O.Reshape("flat", ("l3",), shape=(ch * 64,)),
                O.Linear("head", ("flat",), weight=rng.normal(size=(5, ch * 64)), bias=np.zeros(5)),
                O.TimeMean("tm", ("head",))]
    ops.append(O.Output("y", ("tm",)))
    return Graph(ops, timesteps=T)


def pixel_chain(seed: int = 0, T: int = 3, ch: int = 4) -> Graph:
    """A float graph whose first layer reads raw pixels only (compile it first): stem conv ->
    LIF -> max-pool -> conv -> LIF -> flatten -> head, for the input encodings (a ``host``
    first layer is a synapse and a LIF that read nothing but the input)."""
    rng = np.random.default_rng(seed)
    ops = [O.Input("x", (), shape=(1, 8, 8), pixel_scale=1 / 255),
           O.Conv2d("stem", ("x",), weight=rng.normal(size=(ch, 1, 3, 3)) * 1.5,
                    bias=rng.normal(size=ch) * 0.2, padding=(1, 1)),
           O.LIF("l1", ("stem",)),
           O.MaxPool2d("mp", ("l1",), kernel=(2, 2), stride=(2, 2)),
           O.Conv2d("c1", ("mp",), weight=rng.normal(size=(ch, ch, 3, 3)) * 0.5,
                    bias=rng.normal(size=ch) * 0.2, padding=(1, 1)),
           O.LIF("l2", ("c1",)),
           O.Reshape("flat", ("l2",), shape=(ch * 16,)),
           O.Linear("head", ("flat",), weight=rng.normal(size=(5, ch * 16)), bias=np.zeros(5)),
           O.TimeMean("tm", ("head",)),
           O.Output("y", ("tm",))]
    return Graph(ops, timesteps=T)
