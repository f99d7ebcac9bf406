"""A synapse's sums handed to its LIF as the GEMM left them (``spikec.sim.grid``): the LIF's spikes
and final state equal those of the materialized input, on cropped, uncropped, token and repeated
grids, per-channel and per-neuron constants, hard and soft reset, float32 and float64 carriers,
compiled (numba) and as plain Python; the network's values are those without grids."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spikec.backends.lava import samples
from spikec.ir import CubaLIF
from spikec.sim import CubaLIFLayer, Simulator, jit
from spikec.sim import linalg as la
from spikec.sim.grid import GridSums, materialized
from spikec.target import LAVA_FIXED_PT as FMT

CHECKPOINT = Path(__file__).resolve().parents[1] / "examples" / "checkpoints" / \
    "spikformer_v2_fmnist.pt"
BOUND = 1000          # |a_in| <= BOUND: the memoryless range proofs hold


@pytest.fixture(params=["numba", "python-loop"])
def loops(request, monkeypatch):
    if request.param == "numba":
        pytest.importorskip("numba")
        monkeypatch.setattr(jit, "_numba", None)
        monkeypatch.setenv("SPIKEC_SIM_NUMBA", "1")
        assert jit.enabled()
    else:
        monkeypatch.setattr(jit, "enabled", lambda: True)
        monkeypatch.setattr(jit, "kernel", lambda loop: loop)
    return request.param


GEOMETRIES = [
    # (O, T, B, grid, crop, repeated)
    (3, 4, 2, (5, 6), (4, 4), False),      # a 3x3 conv's padded grid, cropped
    (4, 3, 3, (3, 3), (3, 3), False),      # a 1x1 conv's map, nothing to crop
    (5, 2, 2, (1, 7), (1, 7), False),      # a dense product's tokens
    (3, 4, 2, (4, 5), (3, 5), True),       # one step repeated (a repeated input)
]


def _sums(rng, o, T, B, grid, crop, repeated, key="syn"):
    hs, r = grid
    steps = 1 if repeated else T
    y = rng.integers(-400, 401, (o, steps * B * hs * r)).astype(np.int32)
    shift = rng.integers(-3, 2, o).astype(np.int32)
    shape = (o,) + (crop[1:] if crop[0] == 1 and grid[0] == 1 else crop)
    return GridSums(y, T, B, grid, crop, shift, shape, key, repeated=repeated)


def _op(rng, shape, per_channel: bool, soft: bool, dv: int):
    o = shape[0]
    def draw(lo, hi):
        if per_channel:
            return np.broadcast_to(rng.integers(lo, hi, (o,) + (1,) * (len(shape) - 1)), shape).copy()
        return rng.integers(lo, hi, shape)
    return CubaLIF("lif", ("syn",), du=4095, dv=dv, vth=draw(10, 400), bias_mant=draw(-50, 50),
                   bias_exp=np.full(shape, 2), v_subtract=draw(100, 3000) * 64 if soft else None)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("dv", [2048, 1000])          # float32 and float64 carriers
def test_grid_lif_equals_the_materialized_input(geometry, per_channel, soft, dv, loops):
    rng = np.random.default_rng(abs(hash((geometry, per_channel, soft, dv))) % 2**32)
    g = _sums(rng, *geometry)
    op = _op(rng, g.sample_shape, per_channel, soft, dv)
    layer = CubaLIFLayer(op, FMT)
    spikes = layer.run(g, BOUND)
    assert layer._grid_constants, "the grid path did not run"
    ref = CubaLIFLayer(op, FMT)
    want = ref.run(g.materialize(), BOUND)
    exact = CubaLIFLayer(op, FMT, fast=False)
    assert spikes.shape == g.shape == want.shape and spikes.dtype == bool
    assert np.array_equal(spikes, want)
    assert np.array_equal(spikes, exact.run(np.array(g.materialize()), BOUND))
    assert np.array_equal(layer.v, ref.v) and np.array_equal(layer.u, ref.u)
    assert np.array_equal(layer.v, exact.v) and np.array_equal(layer.u, exact.u)


def test_grid_lif_leaves_what_it_cannot_prove(loops):
    """Outside the static range proof, strict mode or a current with memory: the LIF makes the
    input and takes its usual path, with the same values."""
    rng = np.random.default_rng(3)
    g = _sums(rng, *GEOMETRIES[0])
    op = _op(rng, g.sample_shape, True, False, 2048)
    for layer, bound in [(CubaLIFLayer(op, FMT), 1 << 20), (CubaLIFLayer(op, FMT, strict=True),
                                                             BOUND)]:
        got = layer.run(g, bound)
        assert not layer._grid_constants
        assert np.array_equal(got, CubaLIFLayer(op, FMT, fast=False).run(g.materialize(), bound))


def test_gridsums_materialize_reshape_and_views():
    rng = np.random.default_rng(4)
    o, T, B, (hs, r), (ho, wo) = 3, 2, 2, (5, 6), (4, 4)
    g = _sums(rng, o, T, B, (hs, r), (ho, wo), False)
    v = g.materialize()
    want = la._to_nchw(g.y, (hs, r), (ho, wo), g.shift).reshape(T, B, o, ho, wo)
    assert v.shape == g.shape and np.array_equal(v, want) and materialized(g).shape == g.shape
    assert materialized(v) is v
    assert g.reshape((T, B, o, 16)) is None                 # a cropped grid: not as a view
    rep = _sums(rng, o, T, B, (4, 5), (3, 5), True)
    assert np.array_equal(rep.materialize()[0], rep.materialize()[1])
    tok = _sums(rng, 4, T, B, (1, 12), (1, 12), False)
    assert tok.sample_shape == (4, 12)
    maps = tok.reshape((T, B, 4, 3, 4))
    assert maps.grid == (3, 4) and np.array_equal(maps.materialize(),
                                                  tok.materialize().reshape(T, B, 4, 3, 4))
    assert tok.reshape((T, B, 2, 24)) is None                # another channel count
    out = rng.random((4, T, B, 12)) < 0.5
    assert np.array_equal(tok.spikes(out), out.transpose(1, 2, 0, 3))


def _no_grids(sim: Simulator) -> Simulator:
    sim._gridded = frozenset()
    return sim


@pytest.mark.parametrize("name", ["add", "iand", "chain"])
def test_network_values_with_and_without_grids(name):
    graph = samples.chain() if name == "chain" else samples.spikformer_like(residual=name)
    x = samples.images(5)
    a = Simulator(graph).run(x, record="all")
    b = _no_grids(Simulator(graph)).run(x, record="all")
    for k, v in b.values.items():
        assert np.array_equal(a.values[k], v), k
    assert a.totals() == b.totals() and np.array_equal(a.logits, b.logits)


def test_shipped_v2_values_with_and_without_grids():
    pytest.importorskip("torch")
    from spikec import data
    from spikec.frontends import LoadOptions, load_model
    from spikec.pipeline import CompileOptions, compile_graph

    images = data.load("fashion-mnist:test", 12).images
    fixed = compile_graph(load_model(CHECKPOINT, LoadOptions()), profile="loihi2",
                          calib=images[:8], options=CompileOptions()).fixed
    sim = Simulator(fixed)
    assert len(sim._gridded) >= 18        # every conv and dense synapse but the head
    a = sim.run(images, record="all")
    b = _no_grids(Simulator(fixed)).run(images, record="all")
    for k, v in b.values.items():
        assert np.array_equal(a.values[k], v), k
    assert a.totals() == b.totals() and np.array_equal(a.logits, b.logits)
