"""The int8 accelerator of the simulator (``spikec.sim.intgemm``, torch's int8 GEMM) is bit-exact.

Each fast path is compared with the int64 reference (``Simulator(fast=False)``) layer by layer:
on the shipped checkpoints, on random-weight synapses of every layout, and at the worst-case bound
where an int32 accumulator is exactly big enough (and one step beyond, where the simulator must
leave the int8 path).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spikec.ir import ConvSynapse, DenseSynapse, GradedInput, Graph, Output  # noqa: E402
from spikec.sim import Simulator  # noqa: E402
from spikec.sim import intgemm as ig  # noqa: E402
from spikec.sim import jit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "examples" / "checkpoints"
I64 = np.int64


@pytest.fixture
def gemm_calls(monkeypatch):
    """Counts the int8 GEMMs the simulator runs."""
    calls = []
    real = ig.matmul

    def counted(a, b, out=None):
        calls.append((a.shape, b.shape))
        return real(a, b, out)
    monkeypatch.setattr(ig, "matmul", counted)
    return calls


def test_the_accelerator_is_available_and_probed():
    assert ig.available()            # torch is installed in the development environment


def test_int8_matmul_matches_int64_on_every_layout():
    """Row- and column-major operands, degenerate strides of size-1 dimensions (``w.T`` of an
    ``[n, 1]`` matrix: the case torch's int8 GEMM misreads unless the strides are rewritten),
    with and without ``out``."""
    rng = np.random.default_rng(1)
    for _ in range(300):
        m, k, n = (int(v) for v in rng.integers(1, 24, 3))
        k = 1 if rng.random() < 0.3 else k
        a = rng.integers(-128, 128, (m, k)).astype(np.int8)
        b = rng.integers(-128, 128, (k, n)).astype(np.int8)
        want = a.astype(I64) @ b.astype(I64)
        for aa in (a, np.ascontiguousarray(a.T).T):
            for bb in (b, np.ascontiguousarray(b.T).T):
                assert np.array_equal(ig.matmul(aa, bb), want), (m, k, n)
                out = np.empty((m, n), np.int32)
                ig.matmul(aa, bb, out=out)
                assert np.array_equal(out, want), (m, k, n)


def test_int8_weights_and_shift():
    w8, g = ig.int8_weights(np.array([[-256, 254], [0, 2]]))
    assert g == 1 and w8.dtype == np.int8 and w8.tolist() == [[-128, 127], [0, 1]]
    assert ig.int8_weights(np.array([[-128, 127, 3]]))[1] == 0
    assert ig.int8_weights(np.array([[255, 1]])) is None          # unsigned 8-bit: no int8
    assert ig.int8_weights(np.zeros((2, 2), np.int64))[1] == 0
    rng = np.random.default_rng(2)
    acc = rng.integers(-2**20, 2**20, (3, 4, 5)).astype(np.int32)
    for s in ([2, 2, 2, 2], [-3, -3, -3, -3], [1, -2, 0, 3]):
        want = np.floor(acc.astype(np.float64) * 2.0 ** np.array(s)[:, None]).astype(I64)
        assert np.array_equal(ig.shift(acc.copy(), np.array(s), axis=1), want), s


def _one_synapse(op, x_shape, kind, bits, T=2):
    return Graph([GradedInput("x", (), shape=x_shape, encoding="sequence", kind=kind,
                              payload_bits=bits), op, Output("y", (op.name,))],
                 timesteps=T, domain="fixed")


CASES = [
    # (conv?, input shape, weight shape, stride, pad, groups, payload bits, weight values)
    (True, (4, 9, 9), (6, 4, 3, 3), 1, 1, 1, 1, "even"),      # 3x3, large map per sample
    (True, (4, 20, 20), (6, 4, 3, 3), 1, 1, 1, 1, "even"),    # map > SMALL_MAP: per-sample GEMMs
    (True, (8, 6, 6), (4, 8, 2, 2), 2, 0, 1, 7, "odd"),       # patchify, counts up to 127
    (True, (8, 5, 5), (4, 8, 1, 1), 1, 0, 1, 2, "even"),      # 1x1 on a small map
    (True, (8, 17, 17), (4, 8, 1, 1), 1, 0, 1, 1, "odd"),     # 1x1 on a large map
    (True, (4, 7, 7), (4, 2, 3, 3), 1, 1, 2, 1, "even"),      # groups
    (True, (4, 9, 9), (6, 4, 3, 3), 2, 1, 1, 1, "even"),      # stride 2, small map: one GEMM
    (True, (4, 40, 40), (6, 4, 3, 3), 2, 1, 1, 1, "odd"),     # stride 2, large map
    (True, (8, 34, 34), (4, 8, 2, 2), 2, 0, 1, 3, "even"),    # patchify, large map
    (True, (4, 7, 7), (4, 4, 3, 3), 1, 1, 1, 1, "unsigned"),  # weights up to 255: float path
    (True, (4, 7, 7), (4, 4, 3, 3), 1, 1, 1, 8, "even"),      # pixels up to 255: float path
    (False, (24,), (5, 24), None, None, 1, 1, "even"),
    (False, (24,), (5, 24), None, None, 1, 7, "odd"),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("numba", ["1", "0"])
def test_random_synapses_match_int64(case, numba, gemm_calls, monkeypatch):
    """Each case with the compiled conv loops (where numba is installed) and without them
    (``SPIKEC_SIM_NUMBA=0``; tests/test_sim_jit.py runs the loops as plain Python too)."""
    monkeypatch.setenv("SPIKEC_SIM_NUMBA", numba)
    monkeypatch.setattr(jit, "_numba", None)
    conv, shape, wshape, stride, pad, groups, bits, values = case
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    lo, hi = {"even": (-128, 128), "odd": (-128, 128), "unsigned": (0, 256)}[values]
    w = rng.integers(lo, hi, wshape).astype(I64) * (2 if values == "even" else 1)
    e = rng.integers(-3, 3, wshape[0]).astype(I64)
    if conv:
        op = ConvSynapse("s", ("x",), weight=w, weight_exp=e, stride=(stride, stride),
                         padding=(pad, pad), groups=groups)
    else:
        op = DenseSynapse("s", ("x",), weight=w, weight_exp=e)
    kind = "spike" if bits == 1 else "count"
    g = _one_synapse(op, shape, kind, bits)
    x = rng.integers(0, 1 << bits, (3, 2) + shape)
    x[rng.random(x.shape) < 0.5] = 0
    got = Simulator(g).run(x).outputs["y"]
    want = Simulator(g, fast=False).run(x).outputs["y"]
    assert np.array_equal(np.asarray(got).astype(I64), want)
    expect_int8 = values != "unsigned" and bits <= 7
    assert bool(gemm_calls) == expect_int8


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("bits,values", [(1, "even"), (7, "odd"), (10, "odd"), (1, "unsigned")])
def test_one_input_feature_synapses_match_int64(axis, bits, values, gemm_calls):
    """A dense synapse with one input feature (the attention gain of Spikformer V2) is an outer
    product, computed element-wise (no GEMM) on the int8 and on the float path, with mixed
    weight exponents (left and right shifts) and inputs up to the payload's limit."""
    rng = np.random.default_rng(bits)
    lo, hi = {"even": (-128, 128), "odd": (-128, 128), "unsigned": (0, 256)}[values]
    w = rng.integers(lo, hi, (5, 1)).astype(I64) * (2 if values == "even" else 1)
    w[0, 0] = lo * (2 if values == "even" else 1)
    e = np.array([-3, 0, 2, -1, 7], dtype=I64)
    op = DenseSynapse("s", ("x",), weight=w, weight_exp=e, axis=axis)
    shape = (1, 4) if axis == 0 else (4, 1)
    g = _one_synapse(op, shape, "spike" if bits == 1 else "count", bits)
    x = rng.integers(0, 1 << bits, (3, 2) + shape)
    x[0, 0] = (1 << bits) - 1
    got = Simulator(g).run(x).outputs["y"]
    want = Simulator(g, fast=False).run(x).outputs["y"]
    assert np.array_equal(np.asarray(got).astype(I64), want)
    assert not gemm_calls


@pytest.mark.parametrize("fan_in,int8", [(132_104, True), (132_105, False)])
def test_int32_accumulator_worst_case(fan_in, int8, gemm_calls):
    """Inputs of 127 against weights of -128 (the largest |partial sum| of an int8 product):
    the bound ``127 * 128 * fan_in`` is below 2**31 for 132,104 inputs (the int8 path, exact at
    its limit) and reaches it for 132,105, where Lava's int32 dot product could wrap and the
    simulator computes in int64 instead."""
    w = np.full((2, fan_in), -128, dtype=I64)
    w[1, ::2] = 127
    op = DenseSynapse("s", ("x",), weight=w, weight_exp=np.array([0, -1], dtype=I64))
    g = _one_synapse(op, (fan_in,), "count", 7, T=1)
    x = np.full((1, 1, fan_in), 127, dtype=np.int64)
    got = Simulator(g).run(x).outputs["y"]
    want = Simulator(g, fast=False).run(x).outputs["y"]
    assert np.array_equal(np.asarray(got).astype(I64), want)
    assert int(want[0, 0, 0]) == -127 * 128 * fan_in or not int8
    assert bool(gemm_calls) == int8


@pytest.mark.parametrize("name", ["spikformer_v2_fmnist", "spikformer_v1_fmnist",
                                  "spikformer_v2_fmnist_iand"])
def test_shipped_checkpoints_match_int64_layer_by_layer(name, gemm_calls):
    from spikec import data
    from spikec.frontends import LoadOptions, load_model
    from spikec.pipeline import CompileOptions, compile_graph

    path = CHECKPOINTS / f"{name}.pt"
    graph = load_model(path, LoadOptions())
    images = data.load("fashion-mnist:test", 6).images
    fixed = compile_graph(graph, profile="loihi2", calib=images, options=CompileOptions()).fixed
    fast = Simulator(fixed).run(images, record="all")
    assert gemm_calls, "the int8 path was not used"
    ref = Simulator(fixed, fast=False).run(images, record="all")
    for op in fixed.ops:
        if op.name in ref.values:
            assert np.array_equal(fast.values[op.name], ref.values[op.name]), op.name
    assert np.array_equal(fast.logits, ref.logits)
    assert fast.totals() == ref.totals()
