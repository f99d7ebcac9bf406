"""Bit-exact simulator: every kernel against a brute-force per-element loop in Python integers.

The references below re-derive Lava 0.10's ``fixed_pt`` arithmetic from its source on purpose
(plain Python ints, no numpy, no spikec.target): they are the independent check of the simulator.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from spikec.errors import DataError, IRError, ShapeError, StateOverflowError
from spikec.ir import (AND, IAND, Add, ReduceSum, ConvSynapse, CubaLIF, DenseSynapse, GradedInput, Graph,
                       MaxPool2d, Output, Readout, Reshape, SpikeMatmul, Transpose)
from spikec.sim import CubaLIFLayer, Simulator, simulate
from spikec.sim import events as ev
from spikec.sim import linalg as la
from spikec.sim import intgemm as ig
from spikec.target import LAVA_FIXED_PT as FMT
from spikec.target import fixedpoint as fx

I64 = np.int64


def i64(a):
    return np.asarray(a, dtype=I64)


# ----------------------------------------------------------------------------- python references
def wrap(x: int, bits: int) -> int:
    half = 1 << (bits - 1)
    return ((x + half) % (1 << bits)) - half


def shift(x: int, e: int) -> int:
    return x << e if e >= 0 else x >> -e      # Python's >> floors, like numpy's arithmetic shift


def sdecay(x: int, factor: int) -> int:
    p = x * factor
    return (1 if p > 0 else -1 if p < 0 else 0) * (abs(p) >> 12)


def lif_reference(a_seq, du, dv, vth, bias):
    """Lava's PyLifModelBitAcc for one neuron over the steps of ``a_seq`` (Python ints)."""
    u = v = 0
    spikes, states = [], []
    for a in a_seq:
        a = wrap(int(a), 32)                                  # int32 in-port, not truncated to 16 bit
        x = wrap(a << 6, 32)                                  # shifted in int32
        us = wrap(sdecay(u, 4096 - (du + 1)) + x, 32)
        u = us - (1 << 24) if us > (1 << 23) else us + (1 << 24) if us <= -(1 << 23) else us
        vs = wrap(sdecay(v, 4096 - dv) + u + bias, 32)
        v = max(-(1 << 23) + 1, min((1 << 23) - 1, vs))
        s = v > (vth << 6)
        if s:
            v = 0
        spikes.append(int(s))
        states.append((u, v))
    return spikes, states


def conv_reference(x, w, e, stride, pad, dil, groups, graded_bits=24, wrap_bits=24):
    """x [C, H, W] ints, w [O, C/g, kh, kw] -> [O, Ho, Wo] ints after shift and the 24-bit wrap."""
    C, H, W = x.shape
    O, cg, kh, kw = w.shape
    Ho = (H + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (W + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((O, Ho, Wo), dtype=object)
    og = O // groups
    for o, i, j in itertools.product(range(O), range(Ho), range(Wo)):
        g = o // og
        acc = 0
        for c, u, v in itertools.product(range(cg), range(kh), range(kw)):
            y = stride[0] * i + dil[0] * u - pad[0]
            z = stride[1] * j + dil[1] * v - pad[1]
            if 0 <= y < H and 0 <= z < W:
                acc += int(w[o, c, u, v]) * int(x[g * cg + c, y, z])
        out[o, i, j] = wrap(shift(acc, int(e[o])), wrap_bits)
    return out


def conv_events_reference(x, kshape, stride, pad, dil, out_channels, groups):
    """Synaptic events of one step: for every output and tap that reads a nonzero input: one."""
    C, H, W = x.shape
    kh, kw = kshape
    Ho = (H + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (W + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    cg = C // groups
    n = 0
    for o, i, j in itertools.product(range(out_channels), range(Ho), range(Wo)):
        g = o // (out_channels // groups)
        for c, u, v in itertools.product(range(cg), range(kh), range(kw)):
            y, z = stride[0] * i + dil[0] * u - pad[0], stride[1] * j + dil[1] * v - pad[1]
            if 0 <= y < H and 0 <= z < W and x[g * cg + c, y, z] != 0:
                n += 1
    return n


def graph(ops, T=3):
    return Graph(ops, timesteps=T, domain="fixed")


def lif(name, src, shape, du=4095, dv=2048, vth=20, bias=0, bias_exp=0):
    full = lambda v: np.broadcast_to(i64(v), shape).copy()  # noqa: E731
    return CubaLIF(name, (src,), du=du, dv=dv, vth=full(vth), bias_mant=full(bias),
                   bias_exp=full(bias_exp))


# ----------------------------------------------------------------------------- synapses
CONV_CASES = [
    # (C, H, W, O, k, stride, pad, dil, groups, payload_bits, weight range, exps)
    (2, 5, 6, 3, (3, 3), (1, 1), (1, 1), (1, 1), 1, 8, 127, (0, 0, 0)),
    (2, 7, 7, 2, (3, 3), (2, 2), (1, 1), (1, 1), 1, 8, 127, (-2, 1, 0)[:2]),
    (3, 6, 6, 4, (2, 2), (2, 2), (0, 0), (1, 1), 1, 8, 255, (0, -1, 3, 0)),      # patchify
    (4, 5, 5, 2, (1, 1), (1, 1), (0, 0), (1, 1), 1, 1, 255, (0, 0)),             # 1x1
    (4, 7, 6, 4, (3, 2), (2, 1), (1, 0), (2, 1), 2, 8, 100, (1, -3, 0, 2)),      # groups, dilation
    (2, 5, 5, 2, (3, 3), (1, 1), (1, 1), (1, 1), 1, 20, 127, (4, -1)),           # 24-bit wrap
    (2, 17, 16, 3, (3, 3), (1, 1), (1, 1), (1, 1), 1, 8, 127, (0, -1, 2)),       # large map
    (3, 16, 17, 2, (1, 1), (1, 1), (0, 0), (1, 1), 1, 1, 255, (0, 1)),           # large 1x1
]


@pytest.mark.parametrize("shape", [(5, 3, 7, 7, 4, 3, 1), (5, 3, 16, 17, 4, 3, 1),
                                   (5, 6, 7, 7, 8, 1, 0), (5, 6, 16, 16, 8, 1, 0)])
def test_conv2d_layouts_and_chunks_agree_with_int64(shape, monkeypatch):
    """Small maps (one GEMM over samples) and large maps (one GEMM per sample), in one chunk or
    in chunks of one sample, give the exact integer convolution."""
    n, c, h, w, o, k, p = shape
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (n, c, h, w)).astype(bool)
    wt = rng.integers(-255, 256, (o, c, k, k))
    ref = np.stack([conv_reference(xi.astype(np.int64), i64(wt), np.zeros(o, np.int64), (1, 1),
                                   (p, p), (1, 1), 1) for xi in x])
    for budget in (la.IM2COL_BYTES, 1):
        monkeypatch.setattr(la, "IM2COL_BYTES", budget)
        got = la.conv2d(x, wt.astype(np.float32), (1, 1), (p, p), (1, 1), 1)
        assert np.array_equal(got.astype(np.int64), ref), budget


@pytest.mark.parametrize("k,pad,dil", [((3, 3), (1, 1), (1, 1)), ((3, 2), (2, 0), (2, 3)),
                                         ((1, 3), (0, 1), (1, 1)), ((2, 2), (0, 0), (1, 1)),
                                         ((2, 3), (1, 2), (1, 1)),     # padding shared at its limit
                                         ((3, 3), (3, 2), (1, 1)),     # padding beyond the reach:
                                         ((1, 1), (1, 1), (1, 1))])    # each side its own zeros
@pytest.mark.parametrize("int8", [False, True])
def test_conv2d_shifted_rows_agree_with_int64(k, pad, dil, int8, monkeypatch):
    """Stride-1 convolutions on small maps (the contiguous-row im2col over the padded map, whose
    wrapped positions are dropped; neighbouring rows and samples share their zeros where the
    window's reach allows): any kernel, padding and dilation, float or int8 GEMM, in one chunk
    or in chunks of one sample, give the exact integer convolution."""
    if int8 and not ig.available():
        pytest.skip("no int8 GEMM (torch not installed)")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, (5, 3, 7, 6)).astype(bool)
    wt = rng.integers(-128, 128, (4, 3) + k)
    ref = np.stack([conv_reference(xi.astype(np.int64), i64(wt), np.zeros(4, np.int64), (1, 1),
                                   pad, dil, 1) for xi in x])
    for budget in (la.IM2COL_BYTES, 1):
        monkeypatch.setattr(la, "IM2COL_BYTES", budget)
        got = la.conv2d(x, wt.astype(np.int8 if int8 else np.float32), (1, 1), pad, dil, 1)
        assert np.array_equal(got.astype(np.int64), ref), budget


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_synapse_matches_brute_force(case):
    C, H, W, O, k, s, p, d, g, bits, wmax, exps = case
    rng = np.random.default_rng(hash(case) % 2**32)
    w = i64(rng.integers(-wmax, wmax + 1, (O, C // g) + k))
    e = i64(exps)
    kind = "spike" if bits == 1 else "count"
    hi = 1 if bits == 1 else (1 << bits) - 1
    x = rng.integers(0, hi + 1, (2, 2, C, H, W))                  # [B, T, C, H, W]
    x[rng.random(x.shape) < 0.3] = 0
    gr = graph([GradedInput("x", (), shape=(C, H, W), encoding="sequence", kind=kind,
                            payload_bits=bits),
                ConvSynapse("c", ("x",), weight=w, weight_exp=e, stride=s, padding=p, dilation=d,
                            groups=g),
                Output("y", ("c",))], T=2)
    res = Simulator(gr).run(x)
    slow = Simulator(gr, fast=False).run(x)
    for b, t in itertools.product(range(2), range(2)):
        ref = conv_reference(x[b, t], w, e, s, p, d, g)
        assert np.array_equal(res.outputs["y"][t, b], ref.astype(I64)), (b, t)
    assert np.array_equal(res.outputs["y"], slow.outputs["y"])
    # synaptic events: each nonzero input times its fan-out, per step
    ref_events = [sum(conv_events_reference(x[b, t], k, s, p, d, O, g) for b in range(2))
                  for t in range(2)]
    assert list(res.stats["c"].synaptic_events) == ref_events
    nnz = [int(np.count_nonzero(x[:, t])) for t in range(2)]
    assert list(res.stats["c"].input_events) == nnz
    assert list(res.stats["c"].graded_events) == (nnz if kind == "count" else [0, 0])


@pytest.mark.parametrize("silent", ["some", "all"])
def test_synapses_skip_silent_inputs_exactly(silent):
    """Input channels without any event are pruned (event-driven); the sums must not change."""
    rng = np.random.default_rng(21)
    C, H, O = 8, 5, 3
    w = i64(rng.integers(-100, 101, (O, C, 3, 3)))
    x = rng.integers(0, 2, (2, 2, C, H, H))
    x[:, :, 1:] = 0 if silent == "some" else x[:, :, 1:]
    if silent == "all":
        x[:] = 0
    gr = graph([GradedInput("x", (), shape=(C, H, H), encoding="sequence", kind="spike"),
                ConvSynapse("c", ("x",), weight=w, weight_exp=i64([0, 1, -1]), padding=(1, 1)),
                Reshape("f", ("x",), shape=(C * H * H,)),
                DenseSynapse("d", ("f",), weight=i64(rng.integers(-9, 10, (4, C * H * H))),
                             weight_exp=i64([0] * 4)),
                Output("y", ("c",)), Output("z", ("d",))], T=2)
    res = Simulator(gr).run(x)
    wd = gr.op("d").weight
    for b, t in itertools.product(range(2), range(2)):
        ref = conv_reference(x[b, t], w, i64([0, 1, -1]), (1, 1), (1, 1), (1, 1), 1)
        assert np.array_equal(res.outputs["y"][t, b], ref.astype(I64))
        assert np.array_equal(res.outputs["z"][t, b], wd @ x[b, t].reshape(-1))


@pytest.mark.parametrize("bits,wmax,exp,graded", [(1, 254, 0, False), (8, 127, -3, True),
                                                  (8, 255, 5, True), (24, 255, 7, True)])
def test_dense_synapse_matches_brute_force(bits, wmax, exp, graded):
    rng = np.random.default_rng(bits * 100 + exp)
    n_in, n_out = 13, 5
    w = i64(rng.integers(-wmax, wmax + 1, (n_out, n_in)))
    e = i64([exp] * n_out)
    hi = (1 << bits) - 1
    x = rng.integers(0, hi + 1, (3, 2, n_in))
    x[rng.random(x.shape) < 0.4] = 0
    gr = graph([GradedInput("x", (), shape=(n_in,), encoding="sequence",
                            kind="count" if graded else "spike", payload_bits=bits),
                DenseSynapse("d", ("x",), weight=w, weight_exp=e),
                Output("y", ("d",))], T=2)
    y = Simulator(gr).run(x).outputs["y"]
    for b, t in itertools.product(range(3), range(2)):
        for o in range(n_out):
            acc = sum(int(w[o, i]) * int(x[b, t, i]) for i in range(n_in))
            if graded:
                acc = wrap(acc, 32)                   # Lava: int32 dot product for graded input
            assert y[t, b, o] == wrap(shift(acc, exp), 32)
    stats = Simulator(gr).run(x).stats["d"]
    assert list(stats.synaptic_events) == [int(np.count_nonzero(x[:, t])) * n_out for t in range(2)]


def test_dense_synapse_token_layout_and_fan_in_duplication():
    """axis=0 on (C, N) tokens, and two inputs through the same weights (one term each)."""
    rng = np.random.default_rng(3)
    C, N, O = 6, 4, 3
    w = i64(rng.integers(-50, 50, (O, C)))
    e = i64([-1, 0, 2])
    x = rng.integers(0, 2, (2, 2, C, N))
    gr = graph([GradedInput("a", (), shape=(C, N), encoding="sequence", kind="spike"),
                GradedInput("b", (), shape=(C, N), encoding="sequence", kind="spike"),
                DenseSynapse("d", ("a", "b"), weight=w, weight_exp=e, axis=0),
                Output("y", ("d",))], T=2)
    xb = 1 - x
    y = Simulator(gr).run({"a": x, "b": xb}).outputs["y"]
    for b, t, o, n in itertools.product(range(2), range(2), range(O), range(N)):
        ref = sum(shift(sum(int(w[o, c]) * int(src[b, t, c, n]) for c in range(C)), int(e[o]))
                  for src in (x, xb))
        assert y[t, b, o, n] == ref


# ----------------------------------------------------------------------------- neurons
LIF_PARAMS = [(4095, 2048, 20, 0, 0), (0, 0, 100, 5, 2), (1000, 3000, 131071, -4096, 7),
              (2047, 1, 0, 4095, 3), (4000, 4095, 7, -100, 0)]


@pytest.mark.parametrize("du,dv,vth,bias,bexp", LIF_PARAMS)
@pytest.mark.parametrize("fast", [True, False])
def test_cuba_lif_matches_brute_force(du, dv, vth, bias, bexp, fast):
    rng = np.random.default_rng(du + dv)
    T, B, N = 12, 2, 9
    a = rng.integers(-3000, 3000, (T, B, N))
    # edges: int16 overflow (not truncated by Lava), u wrap, int32 wrap of a << 6, v clip
    a[2, 0, 0] = 40000
    a[3, 0, 1] = (1 << 17) + 5          # u = a << 6 > 2**23: wraps
    a[4, 1, 2] = -(1 << 17)             # u <= -2**23: wraps up (to +2**23 exactly)
    a[5, 1, 3] = (1 << 25) + 7          # a << 6 wraps in int32 first
    a[6:, 0, 4] = 60000                 # v saturates
    a[7, 1, 5] = 1 << 24                # far out of range
    op = lif("n", "x", (N,), du=du, dv=dv, vth=vth, bias=bias, bias_exp=bexp)
    layer = CubaLIFLayer(op, FMT, fast=fast)
    out = layer.run(a.astype(np.float64) if fast else a)
    for b, n in itertools.product(range(B), range(N)):
        spikes, states = lif_reference(a[:, b, n], du, dv, vth, bias << bexp)
        assert list(out[:, b, n].astype(int)) == spikes, (b, n)
        assert (int(layer.u[b, n]), int(layer.v[b, n])) == states[-1], (b, n)


def test_cuba_lif_fast_path_is_taken_in_range():
    rng = np.random.default_rng(9)
    a = rng.integers(-2000, 2000, (10, 3, 7)).astype(np.float32)
    for du, dv in [(4095, 2048), (100, 3000)]:
        layer = CubaLIFLayer(lif("n", "x", (7,), du=du, dv=dv, vth=50), FMT)
        ref = CubaLIFLayer(lif("n", "x", (7,), du=du, dv=dv, vth=50), FMT, fast=False)
        assert np.array_equal(layer.run(a), ref.run(a.astype(np.int64)))
        assert layer.exact_steps == 0 and ref.exact_steps == 10


@pytest.mark.parametrize("du,dv,vth,bias,bexp", LIF_PARAMS)
def test_cuba_lif_static_bound_gives_the_same_spikes(du, dv, vth, bias, bexp):
    """The static bound on ``|a_in|`` replaces the passes over ``a_in`` only where it proves the
    range: with a tight bound, a loose one (too wide to prove anything) and none, the spikes and
    the final state are the int64 reference's, for inputs inside and at the edge of the range."""
    rng = np.random.default_rng(du + 7)
    T, B, N = 6, 3, 8
    edge = (FMT.state_max >> FMT.weight_shift) // 3
    a = rng.integers(-edge, edge + 1, (T, B, N))
    a[0, 0, 0], a[1, 0, 1] = edge, -edge
    op = lif("n", "x", (N,), du=du, dv=dv, vth=vth, bias=bias, bias_exp=bexp)
    ref = CubaLIFLayer(op, FMT, fast=False)
    want = ref.run(a)
    for bound in (edge, 1 << 31, None):
        layer = CubaLIFLayer(op, FMT)
        assert np.array_equal(layer.run(a.astype(np.float32), bound), want), bound
        assert np.array_equal(layer.u.astype(I64), ref.u) and np.array_equal(layer.v.astype(I64),
                                                                             ref.v), bound


def test_range_proofs_use_the_static_bound_when_it_suffices():
    layer = CubaLIFLayer(lif("n", "x", (3,), du=4095, dv=2048, vth=50), FMT)
    a = np.full((2, 1, 3), 10, dtype=np.int32)
    assert layer._range_proofs(a, 20) == (True, True)
    assert layer._range_proofs(a, 1 << 20) == (True, True)      # too wide: the data decide
    a[0, 0, 0] = 1 << 17                                         # u = a << 6 leaves the range
    assert layer._range_proofs(a, 1 << 20) == (False, False)


def test_run_without_events_gives_the_same_values():
    g = small_net(residual=True)
    x = np.random.default_rng(4).integers(0, 256, (3, 2, 8, 8))
    full = Simulator(g).run(x, record="all")
    bare = Simulator(g).run(x, record="all", events=False)
    assert bare.stats == {} and full.stats
    for k, v in full.values.items():
        assert np.array_equal(bare.values[k], v), k
    assert np.array_equal(bare.logits, full.logits)


def test_cuba_lif_step_equals_fixedpoint_lif_step():
    """The simulator's phase-by-phase step is the target helpers' lif_step."""
    rng = np.random.default_rng(7)
    N = 50
    vth = rng.integers(0, 2000, N)
    bias, bexp = rng.integers(-4096, 4096, N), rng.integers(0, 8, N)
    op = CubaLIF("n", ("x",), du=300, dv=1200, vth=i64(vth), bias_mant=i64(bias), bias_exp=i64(bexp))
    layer = CubaLIFLayer(op, FMT, fast=False)
    layer.reset_state((N,))
    u = v = np.zeros(N, I64)
    for t in range(20):
        a = rng.integers(-(1 << 20), 1 << 20, N)
        s = layer.step(a, t)
        for n in range(N):   # lif_step takes one vth per process
            un, vn, sn = fx.lif_step(u[n:n + 1], v[n:n + 1], a[n:n + 1], 300, 1200, int(vth[n]),
                                     bias[n:n + 1], bexp[n:n + 1], FMT)
            assert (layer.u[n], layer.v[n], s[n]) == (un[0], vn[0], sn[0])
        u, v = layer.u.copy(), layer.v.copy()


def test_readout_matches_brute_force():
    rng = np.random.default_rng(11)
    Ntok, C = 4, 3
    x = rng.integers(0, 256, (2, 3, Ntok, C))
    w = i64(rng.integers(-127, 128, (C, C)))
    offset = np.array([0.5, -1.0, 2.0])
    gr = graph([GradedInput("x", (), shape=(Ntok, C), encoding="sequence", payload_bits=8),
                DenseSynapse("d", ("x",), weight=w, weight_exp=i64([3, 3, 3])),
                Readout("r", ("d",), scale=0.25, offset=offset, sum_axes=(0,)),
                Output("y", ("r",))], T=3)
    y = Simulator(gr).run(x).outputs["y"]
    for b in range(2):
        acc = [0] * C
        for t in range(3):
            for o in range(C):
                a = sum(shift(wrap(sum(int(w[o, i]) * int(x[b, t, n, i]) for i in range(C)), 32), 3)
                        for n in range(Ntok))
                acc[o] = max(-(1 << 23) + 1, min((1 << 23) - 1, acc[o] + wrap(a << 6, 32)))
        assert list(y[b]) == [0.25 * acc[o] + offset[o] for o in range(C)]


@pytest.mark.parametrize("sum_axes", [(), (0,), (-1,)])
def test_readout_all_steps_at_once_equals_step_by_step(sum_axes):
    """``ReadoutLayer.run`` (sums, wraps and shifts of all steps at once) gives the integers of
    ``step`` step by step, with int32 wraps and the accumulator's clip at both ends."""
    from spikec.sim.neurons import ReadoutLayer

    rng = np.random.default_rng(12)
    a = rng.integers(-(1 << 31), 1 << 31, (5, 3, 4, 6))
    a[:, 0] = (1 << 31) - 1                    # pushes the accumulator to its upper clip
    a[:, 1] = -(1 << 31)                       # and to its lower clip
    op = Readout("r", ("x",), scale=0.5, offset=np.zeros(1), sum_axes=sum_axes)
    layer = ReadoutLayer(op, FMT)
    got = layer.run(a)
    ref = ReadoutLayer(op, FMT)
    for t in range(len(a)):
        ref.step(a[t], t)
    assert np.array_equal(layer.acc, ref.acc) and np.array_equal(got, ref.result())
    assert np.abs(ref.acc).max() == (1 << 23) - 1


# ----------------------------------------------------------------------------- shared integer ops
def test_shared_ops_match_brute_force():
    rng = np.random.default_rng(5)
    B, T, C, H, W = 2, 2, 2, 5, 5
    a = rng.integers(0, 2, (B, T, C, H, W))
    b = rng.integers(0, 2, (B, T, C, H, W))
    gr = graph([
        GradedInput("a", (), shape=(C, H, W), encoding="sequence", kind="spike"),
        GradedInput("b", (), shape=(C, H, W), encoding="sequence", kind="spike"),
        Add("sum", ("a", "b")),
        IAND("iand", ("a", "b")),
        AND("and", ("a", "b")),
        MaxPool2d("pool", ("sum",), kernel=(3, 3), stride=(2, 2), padding=(1, 1)),
        Reshape("tok", ("sum",), shape=(C, H * W)),
        Transpose("tokT", ("tok",), perm=(1, 0)),
        SpikeMatmul("mm", ("tokT", "tok")),
        Output("o1", ("pool",)), Output("o2", ("iand",)), Output("o3", ("mm",)),
        Output("o4", ("and",)),
    ], T=T)
    res = Simulator(gr).run({"a": a, "b": b})
    for bb, t in itertools.product(range(B), range(T)):
        s = a[bb, t] + b[bb, t]
        assert np.array_equal(res.outputs["o2"][t, bb], (1 - a[bb, t]) * b[bb, t])
        assert np.array_equal(res.outputs["o4"][t, bb], a[bb, t] * b[bb, t])
        for c, i, j in itertools.product(range(C), range(3), range(3)):
            win = [s[c, y, z] for y in range(2 * i - 1, 2 * i + 2) for z in range(2 * j - 1, 2 * j + 2)
                   if 0 <= y < H and 0 <= z < W]
            assert res.outputs["o1"][t, bb, c, i, j] == max(win)
        tok = s.reshape(C, H * W)
        for m, n in itertools.product(range(H * W), range(H * W)):
            assert res.outputs["o3"][t, bb, m, n] == sum(int(tok[k, m]) * int(tok[k, n])
                                                         for k in range(C))
    # SSA ops: sum_k nnz(column k of a) * nnz(row k of b) with a = tok^T [HW, C], b = tok [C, HW]
    ops_ref = [sum(int(np.count_nonzero((a[bb, t] + b[bb, t]).reshape(C, -1)[k])) ** 2
                   for bb in range(B) for k in range(C)) for t in range(T)]
    assert list(res.stats["mm"].ssa_ops) == ops_ref


def test_reduce_sum_and_broadcast_and_match_brute_force():
    """SDSA on integers: kv = sum over tokens of k AND v (a count), a mask with a size-1 axis
    ANDed with q (broadcast), and a sum of counts over two axes; carriers sized by BOUNDS."""
    rng = np.random.default_rng(6)
    B, T, h, N, d = 2, 3, 2, 5, 3
    q, k, v = (rng.integers(0, 2, (B, T, h, N, d)) for _ in range(3))
    m = rng.integers(0, 2, (B, T, h, 1, d))
    gr = graph([
        GradedInput("q", (), shape=(h, N, d), encoding="sequence", kind="spike"),
        GradedInput("k", (), shape=(h, N, d), encoding="sequence", kind="spike"),
        GradedInput("v", (), shape=(h, N, d), encoding="sequence", kind="spike"),
        GradedInput("m", (), shape=(h, 1, d), encoding="sequence", kind="spike"),
        AND("kv", ("k", "v")),
        ReduceSum("kv_sum", ("kv",), axes=(1,)),
        AND("masked", ("q", "m")),
        Add("c", ("q", "k")),
        ReduceSum("c_sum", ("c",), axes=(-1, 1)),
        Output("o1", ("kv_sum",)), Output("o2", ("masked",)), Output("o3", ("c_sum",)),
    ], T=T)
    sim = Simulator(gr)
    assert sim.bounds["kv_sum"] == N and sim.bounds["c_sum"] == 2 * N * d
    res = sim.run({"q": q, "k": k, "v": v, "m": m})
    for bb, t in itertools.product(range(B), range(T)):
        assert np.array_equal(res.outputs["o1"][t, bb], (k[bb, t] * v[bb, t]).sum(1, keepdims=True))
        assert np.array_equal(res.outputs["o2"][t, bb], q[bb, t] * m[bb, t])
        assert np.array_equal(res.outputs["o3"][t, bb],
                              (q[bb, t] + k[bb, t]).sum((1, 2), keepdims=True))


# ----------------------------------------------------------------------------- whole graphs
def small_net(T=4, residual=False):
    rng = np.random.default_rng(1)
    C, H = 2, 8
    ops = [
        GradedInput("x", (), shape=(C, H, H), pad=1),
        ConvSynapse("c1", ("x",), weight=i64(rng.integers(-20, 21, (4, C, 3, 3))),
                    weight_exp=i64([0, -1, 1, 0]), stride=(2, 2), padding=(0, 0)),
        lif("l1", "c1", (4, 4, 4), vth=40),
        ConvSynapse("c2", ("l1",), weight=i64(rng.integers(-60, 61, (4, 4, 3, 3))),
                    weight_exp=i64([1, 1, 1, 1]), padding=(1, 1)),
        lif("l2", "c2", (4, 4, 4), du=10, dv=100, vth=60, bias=3, bias_exp=2),
    ]
    last = "l2"
    if residual:
        ops.append(Add("res", ("l1", "l2")))
        last = "res"
    ops += [
        MaxPool2d("p", (last,), kernel=(2, 2), stride=(2, 2)),
        Reshape("f", ("p",), shape=(16,)),
        DenseSynapse("d", ("f",), weight=i64(rng.integers(-100, 101, (10, 16))),
                     weight_exp=i64(np.zeros(10))),
        Readout("r", ("d",), scale=0.1, offset=np.zeros(10)),
        Output("out", ("r",)),
    ]
    return graph(ops, T=T)


def images(n=6, seed=2):
    return np.random.default_rng(seed).integers(0, 256, (n, 2, 8, 8)).astype(np.uint8)


@pytest.mark.parametrize("residual", [False, True])
def test_layer_by_layer_equals_step_by_step_and_int64(residual):
    g = small_net(residual=residual)
    x = images()
    fast = Simulator(g).run(x, record="all")
    slow = Simulator(g, fast=False).run(x, record="all")
    step = Simulator(g).run(x, record="all", stepwise=True)
    for k in fast.values:
        assert np.array_equal(fast.values[k], slow.values[k]), k
        assert np.array_equal(fast.values[k], step.values[k]), k
    assert fast.totals()["spikes"] > 0


def test_batch_invariance():
    g = small_net(residual=True)
    x = images(5)
    whole = Simulator(g).run(x, record=["l1", "l2"])
    parts = [Simulator(g).run(x[i:i + 1], record=["l1", "l2"]) for i in range(5)]
    assert np.array_equal(whole.logits, np.concatenate([p.logits for p in parts]))
    assert np.array_equal(whole.values["l2"], np.concatenate([p.values["l2"] for p in parts], 1))
    for name, s in whole.stats.items():
        for c in ev.COUNTERS:
            assert np.array_equal(s.counts[c], sum(p.stats[name].counts[c] for p in parts)), (name, c)
    batched = simulate(g, x, batch_size=2, record=["l2"])
    assert np.array_equal(batched.logits, whole.logits)
    assert np.array_equal(batched.values["l2"], whole.values["l2"])
    assert batched.samples == 5 and batched.totals() == whole.totals()


def test_event_counts_of_a_network():
    g = small_net()
    x = images(3)
    res = Simulator(g).run(x, record="all")
    T = g.timesteps
    l1 = res.values["l1"]
    assert list(res.stats["l1"].spikes) == [int(l1[t].sum()) for t in range(T)]
    assert list(res.stats["l1"].neuron_updates) == [3 * 64] * T
    assert list(res.stats["r"].neuron_updates) == [3 * 10] * T
    assert list(res.stats["d"].synaptic_events) == [
        int(np.count_nonzero(res.values["f"][t])) * 10 for t in range(T)]
    # the padded image: graded events are the nonzero pixels, every step (repeat encoding)
    assert list(res.stats["c1"].graded_events) == [int(np.count_nonzero(x))] * T
    c2 = g.op("c2")
    ref = [sum(conv_events_reference(l1[t, b], (3, 3), c2.stride, c2.padding, c2.dilation, 4, 1)
               for b in range(3)) for t in range(T)]
    assert list(res.stats["c2"].synaptic_events) == ref


def test_axis_fanout_counts_windows():
    # 5 inputs, kernel 3, stride 2, pad 1 -> outputs at -1..1, 1..3, 3..5
    assert list(ev.axis_fanout(5, 3, 3, 2, 1)) == [1, 2, 1, 2, 1]
    assert list(ev.axis_fanout(4, 2, 2, 2, 0)) == [1, 1, 1, 1]
    assert list(ev.axis_fanout(7, 2, 2, 3, 0)) == [1, 1, 0, 1, 1, 0, 0]


# ----------------------------------------------------------------------------- strict mode, errors
def test_strict_mode_names_layer_quantity_step_and_neuron():
    N = 4
    x = np.zeros((1, 3, N), dtype=np.int64)
    x[0, 2, 3] = (1 << 17) + 1           # u = a << 6 > 2**23 - 1 at step 2, neuron 3
    gr = graph([GradedInput("x", (), shape=(N,), encoding="sequence", payload_bits=20),
                lif("hidden", "x", (N,), vth=131071), Output("y", ("hidden",))], T=3)
    Simulator(gr).run(x)                 # wraps silently by default, like the chip
    with pytest.raises(StateOverflowError) as err:
        Simulator(gr, strict=True).run(x)
    msg = str(err.value)
    assert "'hidden'" in msg and "a_in" in msg and "time step 2" in msg and "(3,)" in msg
    gr2 = graph([GradedInput("x", (), shape=(N,), encoding="sequence", payload_bits=20),
                 lif("hidden", "x", (N,), dv=0, vth=131071), Output("y", ("hidden",))], T=5)
    x2 = np.full((1, 5, N), 30000)       # v += 30000 << 6 per step, no decay: saturates at step 4
    x2[0, :, :3] = 0
    Simulator(gr2).run(x2)
    with pytest.raises(StateOverflowError, match=r"voltage v .* time step 4, sample 0, neuron \(3,\)"):
        Simulator(gr2, strict=True).run(x2)
    x3 = np.zeros((1, 3, N), dtype=np.int64)
    x3[0, 1, 0] = 32000
    gr3 = graph([GradedInput("x", (), shape=(N,), encoding="sequence", payload_bits=20),
                 DenseSynapse("d", ("x",), weight=i64(np.eye(N, dtype=int) * 100),
                              weight_exp=i64([0] * N)),
                 lif("h", "d", (N,), vth=131071), Output("y", ("h",))], T=3)
    with pytest.raises(StateOverflowError, match=r"'h': synaptic input a_in \(int16\).*time step 1"):
        Simulator(gr3, strict=True).run(x3)


def test_strict_mode_conv_wrap():
    w = i64(np.full((1, 1, 3, 3), 255))
    gr = graph([GradedInput("x", (), shape=(1, 3, 3), payload_bits=16),
                ConvSynapse("c", ("x",), weight=w, weight_exp=i64([4]), padding=(1, 1)),
                Output("y", ("c",))], T=1)
    x = np.full((1, 1, 3, 3), 60000)
    Simulator(gr).run(x)
    with pytest.raises(StateOverflowError, match="'c': synaptic output a_out"):
        Simulator(gr, strict=True).run(x)


def test_bad_inputs():
    g = small_net()
    with pytest.raises(ShapeError, match=r"\(2, 8, 8\).*\(3, 8, 8\)"):
        Simulator(g).run(np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(DataError, match="raw integer"):
        Simulator(g).run(np.zeros((2, 2, 8, 8), np.float32))
    with pytest.raises(DataError, match=r"\[0, 255\]"):
        Simulator(g).run(np.full((2, 2, 8, 8), 300))
    float_graph = Graph(g.ops, timesteps=4)
    with pytest.raises(IRError):
        Simulator(float_graph)


def test_carrier_bounds():
    assert la.carrier(1 << 24) == np.float32
    assert la.carrier((1 << 24) + 1) == np.float64
    assert la.carrier(1 << 53) == np.float64
    assert la.carrier((1 << 53) + 1) == np.int64


def test_every_fixed_domain_op_has_a_kernel():
    """No op type of a fixed graph is left without a simulator test above."""
    from spikec.ir.fixed import FIXED_DOMAIN_OPS

    tested = {GradedInput, ConvSynapse, DenseSynapse, CubaLIF, Readout, Output, Reshape, Transpose,
              MaxPool2d, Add, IAND, AND, ReduceSum, SpikeMatmul}
    assert set(FIXED_DOMAIN_OPS) <= tested


# ----------------------------------------------------------------------------- a compiled Spikformer
def test_compiled_spikformer_fast_int64_and_stepwise_agree():
    """The quantizer's output for a tiny Spikformer V2 (random weights, BatchNorm statistics from
    one batch so that every layer is active): float carriers, int64 and step-by-step agree."""
    torch = pytest.importorskip("torch")
    from spikec import models
    from spikec.models.activity import batchnorm_from_batch
    from spikec.frontends.torch import input_op, trace
    from spikec.pipeline import CompileOptions, compile_graph

    torch.manual_seed(0)
    model = models.create("spikformer_v2_tiny", T=2)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 1, 28, 28), dtype=np.uint8)
    batchnorm_from_batch(model, torch.from_numpy(x.astype(np.float32) / 255))
    g = trace(model, input_op((1, 28, 28), None), timesteps=2)
    fixed = compile_graph(g, profile="loihi2", calib=x, options=CompileOptions()).fixed
    lifs = [op.name for op in fixed.ops if isinstance(op, CubaLIF)]
    fast = Simulator(fixed).run(x[:3], record="all")
    slow = Simulator(fixed, fast=False).run(x[:3], record="all")
    step = Simulator(fixed).run(x[:3], record="all", stepwise=True)
    for k in fast.values:
        assert np.array_equal(fast.values[k], slow.values[k]), k
        assert np.array_equal(fast.values[k], step.values[k]), k
    rates = [fast.stats[n].firing_rate() for n in lifs]
    assert sum(r > 0 for r in rates) >= len(lifs) // 2, rates
    assert fast.totals() == slow.totals()
    # values_out: the nonzero values each residual add and SSA product emits, per step
    relays = [op.name for op in fixed.ops if isinstance(op, (Add, SpikeMatmul))]
    assert relays
    for n in relays:
        v = fast.values[n]
        assert list(fast.stats[n].values_out) == [np.count_nonzero(v[t]) for t in range(len(v))], n
    assert all(not fast.stats[n].values_out.any() for n in lifs)


def test_pruning_is_retried_after_a_run_of_misses(monkeypatch):
    """A synapse whose inputs never prune is tested only every PRUNE_RETRY-th batch; the sums
    are the same whether it prunes or not."""
    from spikec.sim import synapse

    rng = np.random.default_rng(5)
    C, H = 8, 5
    w = i64(rng.integers(-100, 101, (3, C, 3, 3)))
    gr = graph([GradedInput("x", (), shape=(C, H, H), encoding="sequence", kind="spike"),
                ConvSynapse("c", ("x",), weight=w, weight_exp=i64([0, 1, -1]), padding=(1, 1)),
                Output("y", ("c",))], T=2)
    tried = []
    prune = synapse.Synapse._prune
    monkeypatch.setattr(synapse.Synapse, "_prune",
                        lambda syn, wt, flat: tried.append(syn) or prune(syn, wt, flat))
    sim, ref = Simulator(gr), Simulator(gr, fast=False)
    dense = np.ones((2, 2, C, H, H), np.int64)
    sparse = dense.copy()
    sparse[:, :, 1:] = 0
    batches = [dense] * synapse.PRUNE_PATIENCE + \
        [sparse] * (synapse.PRUNE_RETRY - synapse.PRUNE_PATIENCE)
    for k, x in enumerate(batches):
        assert np.array_equal(sim.run(x).outputs["y"], ref.run(x).outputs["y"])
        if k == len(batches) - 2:   # the dense batches were tested, the sparse ones not yet
            assert tried.count(sim.synapses["c"]) == synapse.PRUNE_PATIENCE
    assert tried.count(sim.synapses["c"]) == synapse.PRUNE_PATIENCE + 1      # the retry
    assert sim.synapses["c"].prune_misses == 0          # ... pruned
