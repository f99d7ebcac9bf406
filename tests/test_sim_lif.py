"""The LIF fast path for a current without memory (``CubaLIFLayer._run_memoryless``): spike for
spike and state for state the int64 ``step`` and a plain Python-integer loop, for decay factors
that are and are not powers of two, hard and soft reset, no, uniform and per-neuron bias and
threshold, the input carriers and layouts the engine hands over, voltages near +-2**23, strict
mode, and inputs one beyond the range proof (which must leave this path). Each test runs the
numpy passes, the compiled loop (numba) and that loop as plain Python (what the compiled one
computes, checked where numba is absent too)."""
from __future__ import annotations

import numpy as np
import pytest

from spikec.errors import StateOverflowError
from spikec.ir import CubaLIF
from spikec.sim import CubaLIFLayer
from spikec.sim import jit, neurons
from spikec.target import LAVA_FIXED_PT as FMT

from test_sim import sdecay, wrap

LIM = FMT.state_max
MEMORYLESS_KERNEL = neurons._memoryless_kernel
T, B, N = 5, 3, 12


@pytest.fixture(params=["numpy", "numba", "python-loop"], autouse=True)
def backend(request, monkeypatch):
    """Which implementation ``_run_memoryless`` uses."""
    if request.param == "numba":
        monkeypatch.setattr(jit, "_numba", None)        # looked up again, restored afterwards
        monkeypatch.setenv("SPIKEC_SIM_NUMBA", "1")
        pytest.importorskip("numba")
        assert neurons._memoryless_kernel(np.float32) is not None
    else:
        plain = request.param == "python-loop"
        monkeypatch.setattr(neurons, "_memoryless_kernel",
                            lambda dt: neurons._LOOPS[np.dtype(dt)] if plain else None)
    return request.param


def test_numba_switch(monkeypatch):
    monkeypatch.setattr(jit, "_numba", None)
    monkeypatch.setenv("SPIKEC_SIM_NUMBA", "0")
    assert MEMORYLESS_KERNEL(np.float32) is None       # the real lookup, whatever the fixture


def reference(a, du, dv, thr, bias, sub):
    """Lava's PyLifModelBitAcc (with spikec's soft reset where ``sub`` is given) for ``a`` [T, n]
    (Python ints); per-neuron ``thr`` (``vth << 6``), ``bias`` (``mant << exp``), ``sub``.
    Returns spikes [T, n] and the final (u, v) per neuron."""
    spikes, final = np.zeros(a.shape, bool), []
    for n in range(a.shape[1]):
        u = v = 0
        for t in range(a.shape[0]):
            x = wrap(wrap(int(a[t, n]), 32) << 6, 32)
            us = wrap(sdecay(u, 4096 - (du + 1)) + x, 32)
            u = us - (1 << 24) if us > (1 << 23) else us + (1 << 24) if us <= -(1 << 23) else us
            v = max(-LIM, min(LIM, wrap(sdecay(v, 4096 - dv) + u + bias[n], 32)))
            if v > thr[n]:
                spikes[t, n] = True
                v = 0 if sub is None else v - sub[n]
        final.append((u, v))
    return spikes, final


def make_op(dv, reset, bias_kind, rng):
    """A ``cuba_lif`` of N neurons (du = 4095: no current memory); half the thresholds at the
    largest vth, so that some voltages climb toward +2**23 without firing."""
    vth = rng.integers(0, 3000, N)
    vth[::2] = FMT.vth_max
    bias_mant = {"none": np.zeros(N, int), "uniform": np.full(N, -1500),
                 "per-neuron": rng.integers(FMT.bias_mant_min, FMT.bias_mant_max + 1, N)}[bias_kind]
    bias_exp = np.full(N, 5) if bias_kind == "uniform" else rng.integers(0, FMT.bias_exp_max + 1, N)
    sub = None if reset == "hard" else rng.integers(1, 4000, N) * 64 + rng.integers(0, 64, N)
    return CubaLIF("n", ("x",), du=4095, dv=dv, vth=vth.astype(np.int64),
                   bias_mant=bias_mant.astype(np.int64), bias_exp=bias_exp.astype(np.int64),
                   v_subtract=None if sub is None else sub.astype(np.int64))


def proof_limit(layer: CubaLIFLayer) -> int:
    """The largest ``|a_in|`` for which the range proofs hold (bisection; -1 if none does)."""
    lo, hi = -1, 1 << 18
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if all(layer._proofs_from(mid)) else (lo, mid)
    return lo


def inputs(a_max, rng):
    """[T, B, N] ints in [-a_max, a_max]: random, plus neurons held at +a_max or -a_max."""
    a = rng.integers(-a_max, a_max + 1, (T, B, N))
    a[:, 0, :4] = a_max
    a[:, 1, :4] = -a_max
    a[2, 2, 5] = a_max
    return a


def carriers(a):
    """``a`` in the carriers and layouts the engine hands a LIF: int32 (int8 GEMM), float32,
    int64, float64, and a view whose time axis is innermost (a transposed conv output)."""
    t_inner = np.ascontiguousarray(np.moveaxis(a.astype(np.float32), 0, -1))
    return {"int32": a.astype(np.int32), "float32": a.astype(np.float32), "int64": a,
            "float64": a.astype(np.float64), "time-innermost": np.moveaxis(t_inner, -1, 0)}


def check(layer, a, op, want_spikes, want_final, bound=None):
    got = layer.run(a, bound)
    assert got.dtype == np.bool_ and got.shape == a.shape
    np.testing.assert_array_equal(got, want_spikes)
    u, v = np.asarray(layer.u).astype(np.int64), np.asarray(layer.v).astype(np.int64)
    np.testing.assert_array_equal(u, want_final[0])
    np.testing.assert_array_equal(v, want_final[1])


def expected(op, a):
    """Spikes [T, B, N] and final (u, v) [B, N] of the brute-force loop, checked against the
    int64 ``step`` too."""
    thr = [int(x) << FMT.weight_shift for x in op.vth]
    bias = [int(m) << int(e) for m, e in zip(op.bias_mant, op.bias_exp)]
    sub = None if op.v_subtract is None else [int(x) for x in op.v_subtract]
    spikes = np.zeros(a.shape, bool)
    u, v = np.zeros(a.shape[1:], np.int64), np.zeros(a.shape[1:], np.int64)
    for b in range(a.shape[1]):
        spikes[:, b], final = reference(a[:, b], op.du, op.dv, thr, bias, sub)
        u[b], v[b] = zip(*final)
    ref = CubaLIFLayer(op, FMT, fast=False)
    np.testing.assert_array_equal(ref.run(a), spikes)
    np.testing.assert_array_equal(ref.u, u)
    np.testing.assert_array_equal(ref.v, v)
    return spikes, (u, v)


def no_general_path(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the general fast path ran")
    monkeypatch.setattr(CubaLIFLayer, "_fast_step", refuse)
    monkeypatch.setattr(CubaLIFLayer, "step", refuse)


# dv: factor 4096 - dv = 2048 and 1 (powers of two: float32), 3096 and 1025 (float64), 4096 (no
# decay: the proof holds only without input and bias)
@pytest.mark.parametrize("dv", [2048, 4095, 1000, 3071, 0])
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("bias_kind", ["none", "uniform", "per-neuron"])
def test_memoryless_path_is_exact_at_the_edge_of_its_range(dv, reset, bias_kind, monkeypatch):
    rng = np.random.default_rng(dv + 7 * len(reset) + len(bias_kind))
    op = make_op(dv, reset, bias_kind, rng)
    layer = CubaLIFLayer(op, FMT)
    assert layer.dtype == (np.float32 if dv in (2048, 4095, 0) else np.float64)
    a_max = proof_limit(layer)
    if a_max < 0:       # no decay: the voltage proof fails with any bias; the general path runs
        assert dv == 0 and bias_kind != "none"
        a_max = 0
    else:
        assert a_max == 0 or dv != 0
        assert dv == 0 or (a_max + 1) << FMT.weight_shift > LIM // 8   # inputs near the edge
    a = inputs(a_max, rng)
    want_spikes, want_final = expected(op, a)
    if dv == 4095 and bias_kind == "none":   # the voltages do come near the 24-bit limit
        assert abs(want_final[1]).max() > LIM - 2 * LIM // 4096 - 64
    with monkeypatch.context() as m:
        if a_max > 0 or bias_kind == "none":
            no_general_path(m)
        for name, x in carriers(a).items():
            for bound in (None, a_max):
                check(CubaLIFLayer(op, FMT), x, op, want_spikes, want_final, bound)
    # one step beyond the proof: the general path takes over, still exact
    a[3, 1, 7] = a_max + 1
    a[1, 0, 2] = -(a_max + 1)
    want_spikes, want_final = expected(op, a)
    check(CubaLIFLayer(op, FMT), a.astype(np.float64), op, want_spikes, want_final)


def test_memoryless_path_reuses_the_layer_and_reads_its_state_lazily(monkeypatch):
    """The engine reuses one layer for every batch and drops the final state unread."""
    rng = np.random.default_rng(3)
    op = make_op(2048, "hard", "per-neuron", rng)
    batches = [rng.integers(-20000, 20000, (T, B, N)).astype(np.int32) for _ in range(3)]
    wanted = [expected(op, a) for a in batches]
    no_general_path(monkeypatch)
    layer = CubaLIFLayer(op, FMT)
    for a, (spikes, final) in zip(batches, wanted):
        check(layer, a, op, spikes, final)
        layer.run(a[:, :2])
        layer.u = layer.v = None                # as the engine does
        assert layer.u is None and layer.v is None
        layer.run(a)
        np.testing.assert_array_equal(np.asarray(layer.v).astype(np.int64), final[1])  # v first
        check(layer, a, op, spikes, final)
        assert spikes.any() and not spikes.all()


def test_memoryless_path_in_strict_mode(monkeypatch):
    """Strict mode: inputs inside int16 take the fast path and give the same spikes; an input
    the range proof accepts but the int16 in-port does not raises at its step and neuron."""
    rng = np.random.default_rng(11)
    op = make_op(2048, "soft", "per-neuron", rng)
    a = rng.integers(FMT.a_in_min, FMT.a_in_max + 1, (T, B, N))
    spikes, final = expected(op, a)
    with monkeypatch.context() as m:
        no_general_path(m)
        check(CubaLIFLayer(op, FMT, strict=True), a.astype(np.int32), op, spikes, final)
    a[2, 1, 6] = FMT.a_in_max + 1
    layer = CubaLIFLayer(op, FMT, strict=True)
    assert all(layer._proofs_from(FMT.a_in_max + 1))
    want = r"a_in \(int16\).*time step 2, sample 1, neuron \(6,\)"
    with pytest.raises(StateOverflowError, match=want):
        layer.run(a.astype(np.int32), FMT.a_in_max + 1)
