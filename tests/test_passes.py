"""Float passes: each one against the float interpreter on random graphs and inputs.

"Exact" here means: float64 graphs, identical spikes at every LIF that survives the pass, and real
values equal to float64 rounding. A pass that changes the arithmetic in front of a LIF (BN folding,
input normalisation folding, LIF canonicalisation) rounds differently, so there a spike may flip
where the membrane is within ``floatcheck.EPS64`` of the threshold (tests/floatcheck.py); passes
that leave it unchanged or scale by powers of two keep every spike. The builders below
(``spikformer_like``) are also used by tests/test_quantize.py.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

from spikec import interp
from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.passes import (canonicalize_lif, eliminate_dead_ops, fold_avgpool, fold_batchnorm,
                           fold_input_normalization, fold_readout, fold_scale, simplify_layout)

from floatcheck import EPS64, assert_close_where_unflipped, check_spikes


# ----------------------------------------------------------------------------- graph builders

class _Builder:
    """Appends ops with fresh names; weights drawn from ``rng`` (float64 unless told)."""

    def __init__(self, rng: np.random.Generator, dtype=np.float64, weight_grid: float | None = None,
                 bn_spread: float = 1.0):
        self.rng, self.dtype, self.grid, self.spread = rng, dtype, weight_grid, bn_spread
        self.ops: list[O.Op] = []
        self.count: dict[str, int] = {}

    def name(self, base: str) -> str:
        k = self.count.get(base, 0)
        self.count[base] = k + 1
        return base if k == 0 else f"{base}{k}"

    def add(self, op: O.Op) -> str:
        self.ops.append(op)
        return op.name

    def w(self, *shape, scale=1.0) -> np.ndarray:
        if self.grid:  # exactly representable weights: small multiples of the grid
            return (self.rng.integers(-3, 4, size=shape) * self.grid).astype(self.dtype)
        return (self.rng.normal(size=shape) * scale).astype(self.dtype)

    def bn(self, x: str, c: int, axis: int = 0) -> str:
        """A BN with placeholder statistics (``spikformer_like`` sets them from data) and per-channel
        gains spread like a trained network's (log-normal, ``bn_spread``)."""
        r = self.rng
        return self.add(O.BatchNorm(self.name("bn"), (x,), mean=np.zeros(c), var=np.ones(c),
                                    gamma=1.5 * np.exp(r.normal(size=c) * 0.5 * self.spread),
                                    beta=0.2 + 0.3 * r.normal(size=c), axis=axis))

    def lif(self, x: str, vth: float = 1.0, name: str = "lif") -> str:
        return self.add(O.LIF(self.name(name), (x,), v_threshold=vth))

    def conv(self, x: str, cin: int, cout: int, k=3, pad=1, stride=1, bias=False) -> str:
        b = self.w(cout, scale=0.1) if bias else None
        return self.add(O.Conv2d(self.name("conv"), (x,), weight=self.w(cout, cin, k, k,
                                                                            scale=1 / np.sqrt(cin * k * k)),
                                 bias=b, padding=(pad, pad), stride=(stride, stride)))

    def linear(self, x: str, nin: int, nout: int, axis: int, bias=True, name="linear") -> str:
        b = self.w(nout, scale=0.1) if bias else None
        return self.add(O.Linear(self.name(name), (x,), weight=self.w(nout, nin, scale=1 / np.sqrt(nin)),
                                 bias=b, axis=axis))


@functools.lru_cache(maxsize=32)
def spikformer_like(seed: int = 0, *, T: int = 4, layout: str = "conv", residual: str = "add",
                    img: int = 16, cin: int = 1, dim: int = 32, heads: int = 2, classes: int = 5,
                    bn: bool = True, normalize: bool = True, pixel_scale: float = 1 / 255,
                    weight_grid: float | None = None, bn_spread: float = 1.0, stem_pad: int = 1,
                    dtype=np.float64) -> Graph:
    """A small random Spikformer V1 as the frontend would trace it.

    SPS stem (conv-BN-LIF, max-pool, conv-BN-LIF, RPE conv joined), one encoder block (SSA with
    ``q (k^T v) * 0.125`` and ``attn_lif`` at 0.5, MLP), token mean, time mean, head. ``layout``:
    ``"conv"`` (Conv1d-style ``(C, N)`` tokens, Linear axis 0) or ``"linear"`` (CIFAR-style
    ``(N, C)`` tokens, Linear axis -1 with the transpose-BN-transpose pattern). BN statistics are
    those of the pre-activations on random images (as after training), so every layer fires.
    ``weight_grid``: weights are small multiples of it (exactly representable; use with ``bn=False``).
    """
    b = _Builder(np.random.default_rng(seed), dtype, weight_grid, bn_spread)
    mean, std = ((0.45,) * cin, (0.25,) * cin) if normalize else ((), ())
    x = b.add(O.Input("image", (), shape=(cin, img, img), pixel_scale=pixel_scale,
                      mean=mean, std=std))
    join = (lambda a, s: b.add(O.Add(b.name("add"), (a, s)))) if residual == "add" else \
        (lambda a, s: b.add(O.IAND(b.name("iand"), (a, s))))

    def cbl(x, cin, cout, **kw):
        y = b.conv(x, cin, cout, **kw)
        return b.lif(b.bn(y, cout) if bn else y)

    s = cbl(x, cin, dim // 2, pad=stem_pad)
    s = b.add(O.MaxPool2d(b.name("maxpool"), (s,), kernel=(3, 3), stride=(2, 2), padding=(1, 1)))
    s = cbl(s, dim // 2, dim)
    rpe = cbl(s, dim, dim)
    x = join(s, rpe)
    side = (img - 2 + 2 * stem_pad - 1) // 2 + 1
    n = side * side
    d = dim // heads
    x = b.add(O.Reshape(b.name("reshape"), (x,), shape=(dim, n)))
    if layout == "linear":
        x = b.add(O.Transpose(b.name("transpose"), (x,), perm=(1, 0)))  # (N, C)

    def proj(x, nin, nout, vth=1.0, bias=True):
        if layout == "conv":
            y = b.linear(x, nin, nout, axis=0, bias=bias)
            y = b.bn(y, nout, axis=0) if bn else y
        else:
            y = b.linear(x, nin, nout, axis=-1, bias=bias)
            if bn:
                y = b.add(O.Transpose(b.name("transpose"), (y,), perm=(1, 0)))
                y = b.bn(y, nout, axis=0)
                y = b.add(O.Transpose(b.name("transpose"), (y,), perm=(1, 0)))
        return b.lif(y, vth)

    def heads_of(s):  # -> (h, N, d)
        if layout == "conv":
            s = b.add(O.Reshape(b.name("reshape"), (s,), shape=(heads, d, n)))
            return b.add(O.Transpose(b.name("transpose"), (s,), perm=(0, 2, 1)))
        s = b.add(O.Reshape(b.name("reshape"), (s,), shape=(n, heads, d)))
        return b.add(O.Transpose(b.name("transpose"), (s,), perm=(1, 0, 2)))

    q, k, v = (heads_of(proj(x, dim, dim, bias=(layout == "linear"))) for _ in range(3))
    kt = b.add(O.Transpose(b.name("transpose"), (k,), perm=(0, 2, 1)))
    kv = b.add(O.SpikeMatmul(b.name("matmul"), (kt, v)))
    a = b.add(O.SpikeMatmul(b.name("matmul"), (q, kv)))
    a = b.add(O.Scale(b.name("scale"), (a,), factor=0.125))
    if layout == "conv":
        a = b.add(O.Transpose(b.name("transpose"), (a,), perm=(0, 2, 1)))
        a = b.add(O.Reshape(b.name("reshape"), (a,), shape=(dim, n)))
    else:
        a = b.add(O.Transpose(b.name("transpose"), (a,), perm=(1, 0, 2)))
        a = b.add(O.Reshape(b.name("reshape"), (a,), shape=(n, dim)))
    a = b.lif(a, 0.5, name="attn_lif")
    x = join(x, proj(a, dim, dim))
    h = proj(x, dim, 2 * dim)
    x = join(x, proj(h, 2 * dim, dim))
    m = b.add(O.Mean(b.name("mean"), (x,), axes=(1,) if layout == "conv" else (0,)))
    m = b.add(O.TimeMean(b.name("time_mean"), (m,)))
    y = b.linear(m, dim, classes, axis=-1, name="head")
    b.add(O.Output("logits", (y,)))
    g = Graph(b.ops, timesteps=T)
    return _set_bn_statistics(g, random_images(16, (cin, img, img), seed=seed + 100)) if bn else g


def _set_bn_statistics(g: Graph, images: np.ndarray) -> Graph:
    """Set every BN's running mean/var to the statistics of its input on ``images``, in order."""
    from dataclasses import replace
    ops = list(g.ops)
    for i, op in enumerate(ops):
        if not isinstance(op, O.BatchNorm):
            continue
        x = interp.run(g.with_ops(ops), images, dtype=np.float64, record=[op.inputs[0]]) \
            .values[op.inputs[0]]
        a = op.axis % (x.ndim - 2) + 2
        other = tuple(j for j in range(x.ndim) if j != a)
        ops[i] = replace(op, mean=x.mean(axis=other), var=x.var(axis=other) + 1e-3)
    return g.with_ops(ops)


def random_images(n: int, shape, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n,) + tuple(shape)).astype(np.uint8)


def lif_names(g: Graph) -> list[str]:
    return [op.name for op in g.ops if isinstance(op, O.LIF)]


def assert_same_run(g0: Graph, g1: Graph, data, *, exact: bool = False, rtol=1e-9, atol=1e-9):
    """``g1`` (after a pass) runs like ``g0`` in float64 at every LIF both graphs have.

    ``exact``: the pass leaves the arithmetic in front of every LIF unchanged (or scales it by
    powers of two), so every spike is equal. Otherwise the pass rounds differently, and
    ``floatcheck.check_spikes`` allows a flip only within ``EPS64`` of the threshold (at most 2)
    and downstream of it. Outputs agree to float64 rounding on every flip-free sample.
    """
    names = sorted(set(lif_names(g0)) & set(lif_names(g1)))
    r0 = interp.run(g0, data, dtype=np.float64, record="all")
    r1 = interp.run(g1, data, dtype=np.float64, record=names)
    if exact:
        for nm in names:
            np.testing.assert_array_equal(r0.values[nm], r1.values[nm], err_msg=nm)
    flips = check_spikes(g0, r0, {nm: r1.values[nm] for nm in names}, eps=EPS64)
    assert not exact or flips.total == 0
    for k, y in r0.outputs.items():
        axis = 1 if g0.spec(k).rate.value == "step" else 0     # [T, B, ...] or [B, ...]
        assert_close_where_unflipped(r1.outputs[k], y, flips, rtol=rtol, atol=atol,
                                     sample_axis=axis, predictions=False)
    return r0, r1


# ----------------------------------------------------------------------------- tests

IMAGES = random_images(6, (1, 16, 16))


@pytest.mark.parametrize("layout", ["conv", "linear"])
def test_fold_batchnorm_removes_every_bn_and_keeps_spikes(layout):
    g = spikformer_like(3, layout=layout)
    f = fold_batchnorm(g)
    assert not any(isinstance(op, O.BatchNorm) for op in f.ops)
    # the CIFAR transpose-BN-transpose pattern leaves no transpose pair behind
    kinds = {op.name: type(op) for op in f.ops}
    assert not any(isinstance(op, O.Transpose) and kinds[op.inputs[0]] is O.Transpose
                   for op in f.ops)
    assert all(kinds[op.inputs[0]] in (O.Linear, O.Conv2d) for op in f.ops if isinstance(op, O.LIF)
               and op.name != "attn_lif")
    assert_same_run(g, f, IMAGES)
    assert g.ops[1].weight is not f.ops[1].weight  # input graph untouched


def test_fold_batchnorm_leaves_shared_producer():
    rng = np.random.default_rng(0)
    ops = [O.Input("x", (), shape=(2, 4, 4)),
           O.Conv2d("c", ("x",), weight=rng.normal(size=(3, 2, 1, 1))),
           O.BatchNorm("bn", ("c",), mean=np.zeros(3), var=np.ones(3), gamma=np.ones(3) * 2,
                       beta=np.ones(3)),
           O.Add("sum", ("c", "bn")), O.Output("y", ("sum",))]
    g = Graph(ops, timesteps=2)
    assert fold_batchnorm(g) == g


def test_eliminate_dead_ops_and_layout():
    rng = np.random.default_rng(0)
    ops = [O.Input("x", (), shape=(2, 3)),
           O.Linear("dead", ("x",), weight=rng.normal(size=(4, 2)), axis=0),
           O.Transpose("t1", ("x",), perm=(1, 0)), O.Transpose("t2", ("t1",), perm=(1, 0)),
           O.Reshape("r", ("t2",), shape=(2, 3)), O.LIF("s", ("r",)), O.Output("y", ("s",))]
    g = Graph(ops, timesteps=3)
    f = simplify_layout(eliminate_dead_ops(g))
    assert [op.OPCODE for op in f.ops] == ["input", "lif", "output"]
    data = np.random.default_rng(1).normal(size=(4, 2, 3)) * 3
    assert_same_run(g, f, data, exact=True)


@pytest.mark.parametrize("pad", [0, 1])
def test_fold_input_normalization(pad):
    g = fold_batchnorm(spikformer_like(5, cin=3, stem_pad=pad))
    f = fold_input_normalization(g)
    inp = f.inputs[0]
    assert inp.pixel_scale == 1.0 and all(s == 1.0 for s in inp.std)
    assert (inp.mean == ()) == (pad == 0)
    if pad:  # the mean stays, in raw pixel units
        np.testing.assert_allclose(inp.mean, [0.45 * 255] * 3)
    assert_same_run(g, f, random_images(5, (3, 16, 16)))


def test_fold_scale_power_of_two_only():
    g = spikformer_like(2)
    f = fold_scale(g)
    assert not any(isinstance(op, O.Scale) for op in f.ops)
    attn = next(op for op in f.ops if op.name == "attn_lif")
    assert attn.v_threshold == 4.0  # 0.5 / 0.125 on the raw count
    assert_same_run(g, f, IMAGES, exact=True, rtol=0, atol=0)
    from dataclasses import replace
    g3 = g.with_ops([replace(op, factor=0.1) if isinstance(op, O.Scale) else op for op in g.ops])
    assert fold_scale(g3) == g3


def test_canonicalize_lif_threshold_and_spikes():
    g = spikformer_like(4)
    f = canonicalize_lif(fold_scale(g))
    for op in f.ops:
        if isinstance(op, O.LIF):
            assert not op.decay_input and op.v_reset == 0.0
    assert next(op for op in f.ops if op.name == "attn_lif").v_threshold == 8.0
    assert_same_run(g, f, IMAGES)


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 6, 8])
def test_canonical_lif_bit_exact_on_integer_inputs(T):
    """Integer (count) inputs: the canonical form spikes exactly like spikingjelly's, every T."""
    rng = np.random.default_rng(T)
    for vth in (1.0, 0.5, 4.0):
        ops = [O.Input("x", (), shape=(64,), encoding="sequence", kind="real"),
               O.LIF("s", ("x",), v_threshold=vth), O.Output("y", ("s",))]
        g = Graph(ops, timesteps=T)
        f = canonicalize_lif(g)
        data = rng.integers(-3, 9, size=(50, T, 64)).astype(np.float64)
        for dt in (np.float32, np.float64):
            a = interp.run(g, data, dtype=dt).outputs["y"]
            b_ = interp.run(f, data, dtype=dt).outputs["y"]
            np.testing.assert_array_equal(a, b_)


def test_fold_readout():
    for layout in ("conv", "linear"):
        g = spikformer_like(6, layout=layout)
        f = fold_readout(g)
        names = [op.OPCODE for op in f.ops[-4:]]
        assert names == ["linear", "mean", "time_mean", "output"]
        head = f.op("head")
        assert head.axis == (0 if layout == "conv" else 1)
        assert_same_run(g, f, IMAGES, exact=True, rtol=1e-12)


def test_fold_avgpool_into_conv_and_linear():
    rng = np.random.default_rng(0)
    ops = [O.Input("x", (), shape=(2, 8, 8)),
           O.AvgPool2d("p", ("x",), kernel=(2, 2), stride=(2, 2)),
           O.Conv2d("c", ("p",), weight=rng.normal(size=(3, 2, 3, 3)), stride=(1, 1)),
           O.AvgPool2d("p2", ("c",), kernel=(3, 3), stride=(1, 1), padding=(1, 1)),
           O.Reshape("flat", ("p2",), shape=(3 * 2 * 2,)),
           O.Linear("fc", ("flat",), weight=rng.normal(size=(4, 12)), bias=rng.normal(size=4)),
           O.LIF("s", ("fc",)), O.Output("y", ("s",))]
    g = Graph(ops, timesteps=2)
    f = fold_avgpool(g)
    assert not any(isinstance(op, O.AvgPool2d) for op in f.ops)
    assert f.op("c").weight.shape == (3, 2, 6, 6) and f.op("c").stride == (2, 2)
    data = rng.normal(size=(5, 2, 8, 8)) * 4
    r0 = interp.run(g, data, dtype=np.float64, record=["fc"])
    r1 = interp.run(f, data, dtype=np.float64, record=["fc"])
    np.testing.assert_allclose(r1.values["fc"], r0.values["fc"], rtol=1e-12, atol=1e-12)
