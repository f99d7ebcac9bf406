"""spikec.target.fixedpoint against Lava's own fixed_pt process models, bit for bit.

Each test builds a small Lava network with random integer parameters and inputs, runs it with
``Loihi2SimCfg(select_tag='fixed_pt')`` and compares every probed value with spikec's helpers.
"""
from __future__ import annotations

import numpy as np
import pytest

from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv
from lava.proc.dense.process import Dense
from lava.proc.graded.process import GradedVec
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source
from lava.proc.lif.process import LIF
from lava.proc.monitor.process import Monitor
from lava.proc.prodneuron.process import ProdNeuron
from lava.utils.weightutils import SignMode as LavaSignMode

from spikec.target import SignMode, load_profile
from spikec.target import fixedpoint as fx

pytestmark = pytest.mark.lava

FMT = load_profile("loihi2").formats
STEPS = 20


def _run_lif(lif: LIF, shape: tuple[int, ...], steps: int = STEPS):
    """Run the network around ``lif``; return u, v as int64 [T, *shape] and spikes bool [T, *shape]."""
    sink = Sink(shape=shape, buffer=steps)
    lif.s_out.connect(sink.a_in)
    mon_u, mon_v = Monitor(), Monitor()
    mon_u.probe(lif.u, steps)
    mon_v.probe(lif.v, steps)
    try:
        lif.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        u = mon_u.get_data()[lif.name]["u"]
        v = mon_v.get_data()[lif.name]["v"]
        s = sink.data.get()
    finally:
        lif.stop()
    # Monitors return float64 [T, N] (exact for 24-bit values); the sink [*shape, T].
    u = np.rint(u).astype(np.int64).reshape((steps,) + shape)
    v = np.rint(v).astype(np.int64).reshape((steps,) + shape)
    s = np.moveaxis(np.rint(s).astype(np.int64), -1, 0) != 0
    return u, v, s


def _simulate_lif(a_in: np.ndarray, p: dict):
    """spikec's LIF over a_in [T, *shape]."""
    u = np.zeros(a_in.shape[1:], np.int64)
    v = np.zeros(a_in.shape[1:], np.int64)
    us, vs, ss = [], [], []
    for t in range(a_in.shape[0]):
        u, v, s = fx.lif_step(u, v, a_in[t], p["du"], p["dv"], p["vth"], p["bias_mant"],
                              p["bias_exp"], FMT)
        us.append(u), vs.append(v), ss.append(s)
    return np.stack(us), np.stack(vs), np.stack(ss)


def _assert_same(name, ours, lava_values):
    if not np.array_equal(ours, lava_values):
        t, *idx = np.argwhere(ours != lava_values)[0]
        raise AssertionError(f"{name} differs first at step {t + 1}, neuron {tuple(idx)}: "
                             f"spikec {ours[(t, *idx)]}, lava {lava_values[(t, *idx)]}")


def _random_lif_params(rng, n, du=None, dv=None, vth=None):
    return dict(
        du=int(rng.integers(0, FMT.decay_max + 1)) if du is None else du,
        dv=int(rng.integers(0, FMT.decay_max + 1)) if dv is None else dv,
        vth=int(rng.integers(0, FMT.vth_max + 1)) if vth is None else vth,
        bias_mant=rng.integers(FMT.bias_mant_min, FMT.bias_mant_max + 1, n),
        bias_exp=rng.integers(0, FMT.bias_exp_max + 1, n),
    )


# (seed, du, dv, vth, a_in magnitude): random params, the decay extremes, u that wraps (small du,
# large input), v that saturates (vth at its maximum), and inputs beyond int16 (Lava's int32 path).
LIF_CASES = [
    (0, None, None, None, 1 << 15),
    (1, 0, 0, None, 1 << 15),
    (2, 4095, 4095, 0, 1 << 12),
    (3, 5, 2048, FMT.vth_max, 1 << 15),
    (4, 100, 10, 200, 1 << 20),
    (5, None, None, 50, 1 << 27),
]


@pytest.mark.parametrize("seed,du,dv,vth,amp", LIF_CASES)
def test_lif_matches_lava(seed, du, dv, vth, amp):
    rng = np.random.default_rng(seed)
    n = 16
    p = _random_lif_params(rng, n, du, dv, vth)
    a_in = rng.integers(-amp, amp, size=(STEPS, n))
    a_in[:, 0] = 0                       # a neuron driven by its bias alone
    a_in[:, 1] = amp - 1                 # a neuron driven hard in one direction
    src = Source(data=a_in.T.astype(np.int32))
    lif = LIF(shape=(n,), **p)
    src.s_out.connect(lif.a_in)
    u_l, v_l, s_l = _run_lif(lif, (n,))
    u, v, s = _simulate_lif(a_in, p)
    _assert_same("u", u, u_l)
    _assert_same("v", v, v_l)
    _assert_same("spikes", s, s_l)


def test_lif_cases_exercise_wrap_and_saturation():
    """The cases above are not vacuous: some u wraps, some v saturates, some neurons spike."""
    wrapped = saturated = spiked = False
    for seed, du, dv, vth, amp in LIF_CASES:
        rng = np.random.default_rng(seed)
        p = _random_lif_params(rng, 16, du, dv, vth)
        a_in = rng.integers(-amp, amp, size=(STEPS, 16))
        a_in[:, 0], a_in[:, 1] = 0, amp - 1
        u = v = np.zeros(16, np.int64)
        for t in range(STEPS):
            pre = fx.decay_current(u, p["du"], FMT) + fx.synaptic_input(a_in[t], FMT)
            wrapped |= bool(np.any(~fx.fits_signed(pre, FMT.state_bits, symmetric=True)))
            u, v, s = fx.lif_step(u, v, a_in[t], **p, fmt=FMT)
            saturated |= bool(np.any(np.abs(v) == FMT.state_max))
            spiked |= bool(s.any())
    assert wrapped and saturated and spiked


# (seed, weight range, weight_exp, sign_mode, num_weight_bits, graded)
DENSE_CASES = [
    (10, (-300, 300), 0, None, None, False),          # mixed, clipped to [-256, 255], low bit cleared
    (11, (0, 300), 2, None, None, False),             # excitatory, left shift
    (12, (-300, 1), -3, None, None, False),           # inhibitory, arithmetic right shift
    (13, (-128, 128), -1, LavaSignMode.MIXED, 5, False),
    (14, (-256, 256), 1, None, None, True),           # graded spikes (num_message_bits = 8)
]


@pytest.mark.parametrize("seed,wrange,wexp,sign_mode,nbits,graded", DENSE_CASES)
def test_dense_lif_chain_matches_lava(seed, wrange, wexp, sign_mode, nbits, graded):
    rng = np.random.default_rng(seed)
    n_in, n_out = 24, 12
    w = rng.integers(*wrange, size=(n_out, n_in))
    if graded:
        s_in = rng.integers(-128, 128, size=(STEPS, n_in)) * (rng.random((STEPS, n_in)) < 0.5)
    else:
        s_in = (rng.random((STEPS, n_in)) < 0.4).astype(np.int64)
    p = _random_lif_params(rng, n_out, du=int(rng.integers(0, 4096)), dv=int(rng.integers(0, 4096)),
                           vth=int(rng.integers(0, 2000)))
    kwargs = dict(weight_exp=wexp, num_message_bits=8 if graded else 0)
    if sign_mode is not None:
        kwargs["sign_mode"] = sign_mode
    if nbits is not None:
        kwargs["num_weight_bits"] = nbits
    src = Source(data=s_in.T.astype(np.int32))
    dense = Dense(weights=w, **kwargs)
    lif = LIF(shape=(n_out,), **p)
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    u_l, v_l, s_l = _run_lif(lif, (n_out,))

    w_eff = fx.dense_weights(w, FMT, None if sign_mode is None else SignMode(sign_mode.value), nbits)
    sent = fx.dense_accumulate(w_eff, s_in, wexp, FMT, graded=graded)
    a_in = np.concatenate([np.zeros((1, n_out), np.int64), sent[:-1]])  # Dense adds one step
    u, v, s = _simulate_lif(a_in, p)
    _assert_same("u", u, u_l)
    _assert_same("v", v, v_l)
    _assert_same("spikes", s, s_l)


@pytest.mark.parametrize("seed,stride,padding,dilation,groups,graded", [
    (20, (1, 1), (1, 1), (1, 1), 1, False),
    (21, (2, 1), (0, 2), (1, 2), 2, False),
    (22, (1, 2), (1, 0), (1, 1), 1, True),
])
def test_conv_lif_chain_matches_lava(seed, stride, padding, dilation, groups, graded):
    rng = np.random.default_rng(seed)
    in_shape = (7, 6, 4)                                   # (X, Y, C)
    c_out, k = 6, (3, 2)
    w = rng.integers(-200, 200, size=(c_out, *k, in_shape[2] // groups))
    if graded:
        s_in = rng.integers(-60, 60, size=(STEPS, *in_shape)) * (rng.random((STEPS, *in_shape)) < .5)
    else:
        s_in = (rng.random((STEPS, *in_shape)) < 0.4).astype(np.int64)
    src = Source(data=np.moveaxis(s_in, 0, -1).astype(np.int32))
    # weight_exp is given to show that Lava's fixed_pt Conv ignores it (conv_accumulate does too).
    conv = Conv(weight=w, weight_exp=3, input_shape=in_shape, stride=stride, padding=padding,
                dilation=dilation, groups=groups, num_message_bits=8 if graded else 0)
    out_shape = tuple(conv.output_shape)
    p = _random_lif_params(rng, out_shape, du=4095, dv=int(rng.integers(0, 4096)),
                           vth=int(rng.integers(0, 300)))
    lif = LIF(shape=out_shape, **p)
    src.s_out.connect(conv.s_in)
    conv.a_out.connect(lif.a_in)
    u_l, v_l, s_l = _run_lif(lif, out_shape)

    sent = fx.conv_accumulate(s_in, w, FMT, stride=stride, padding=padding, dilation=dilation,
                              groups=groups, graded=graded)
    assert sent.shape[1:] == out_shape == fx.conv_output_shape(in_shape, c_out, k, stride,
                                                                 padding, dilation)
    a_in = np.concatenate([np.zeros((1,) + out_shape, np.int64), sent[:-1]])
    u, v, s = _simulate_lif(a_in, p)
    _assert_same("u", u, u_l)
    _assert_same("v", v, v_l)
    _assert_same("spikes", s, s_l)


def _run_to_sink(proc, out_port, shape, steps=STEPS):
    sink = Sink(shape=shape, buffer=steps)
    out_port.connect(sink.a_in)
    try:
        proc.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        data = sink.data.get()
    finally:
        proc.stop()
    return np.moveaxis(np.rint(data).astype(np.int64), -1, 0)


def test_prod_neuron_matches_lava():
    rng = np.random.default_rng(30)
    n = 32
    a1 = rng.integers(-3000, 3000, size=(STEPS, n))
    a2 = rng.integers(-3000, 3000, size=(STEPS, n))
    a1[:, 0] = 1 << 20                     # product beyond int32: Lava's int32 wrap
    a2[:, 0] = 1 << 12
    src1, src2 = Source(data=a1.T.astype(np.int32)), Source(data=a2.T.astype(np.int32))
    prod = ProdNeuron(shape=(n,), vth=100, exp=4)
    src1.s_out.connect(prod.a_in1)
    src2.s_out.connect(prod.a_in2)
    out = _run_to_sink(prod, prod.s_out, (n,))
    _assert_same("ProdNeuron s_out", fx.prod_neuron_step(a1, a2, 100, 4, FMT), out)


def test_graded_vec_matches_lava():
    rng = np.random.default_rng(31)
    n = 32
    a = rng.integers(-500, 500, size=(STEPS, n))
    src = Source(data=a.T.astype(np.int32))
    gv = GradedVec(shape=(n,), vth=200)
    src.s_out.connect(gv.a_in)
    out = _run_to_sink(gv, gv.s_out, (n,))
    _assert_same("GradedVec s_out", fx.graded_vec_step(a, 200, FMT), out)
