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
