"""A float IR graph shaped like a tiny Spike-driven Transformer, built without torch (for the
tests of the token-mean fold here and in tests/lava).

input 1x8x8 -> conv 3x3 -> LIF -> max-pool (spikes) -> ``c1`` conv 3x3 (the stem's current) ->
LIF -> ``rpe`` conv 3x3; ``x = rpe + c1`` (membrane shortcut); one block: SDSA (1x1 q/k/v convs,
``kv = LIF_0.5(sum_N(k AND v))``, ``q AND kv``, 1x1 ``proj``) and an MLP (1x1 ``fc1``, ``fc2``),
each added to the stream of currents; the head ``head(head_lif(mean_N(x)))`` then the time mean.
4x4 tokens (N = 16) and weights and biases on a 1/8 grid, so every float sum of spikes is exact
and a fold that only re-associates sums must give identical values.
"""
from __future__ import annotations

import numpy as np

from spikec.ir import ops as O
from spikec.ir.graph import Graph

C = 8           # channels of the stream
HEADS = 2
GRID = 4        # tokens: GRID x GRID


def sdt_like(seed: int = 0, T: int = 2, attention: bool = True) -> Graph:
    """The graph above (``attention=False``: the block without SDSA, for exporters that refuse
    the attention's transposes)."""
    rng = np.random.default_rng(seed)

    def w(*shape, scale=1.0):
        return (rng.integers(-8, 9, shape) / 8.0 * scale).astype(np.float32)

    def conv(name, src, cin, cout, k, scale=1.0, bias=0.25):
        return O.Conv2d(name, (src,), weight=w(cout, cin, k, k, scale=scale),
                        bias=np.full(cout, bias, np.float32) + w(cout, scale=0.25),
                        padding=((k - 1) // 2,) * 2)

    n, d = GRID * GRID, C // HEADS
    ops = [O.Input("x", (), shape=(1, 8, 8), pixel_scale=1 / 255),
           conv("c0", "x", 1, 4, 3, scale=2.0), O.LIF("s0", ("c0",)),
           O.MaxPool2d("p0", ("s0",), kernel=(3, 3), stride=(2, 2), padding=(1, 1)),
           conv("c1", "p0", 4, C, 3), O.LIF("s1", ("c1",)),
           conv("rpe", "s1", C, C, 3, scale=0.5), O.Add("x0", ("rpe", "c1"))]
    stream = "x0"
    if attention:
        ops.append(O.LIF("sc", (stream,)))
        for h in "qkv":
            ops += [conv(f"{h}_conv", "sc", C, C, 1, scale=1.5, bias=0.5),
                    O.LIF(f"{h}_s", (f"{h}_conv",)),
                    O.Reshape(f"{h}_tok", (f"{h}_s",), shape=(C, n)),
                    O.Transpose(f"{h}_nc", (f"{h}_tok",), perm=(1, 0)),
                    O.Reshape(f"{h}_split", (f"{h}_nc",), shape=(n, HEADS, d)),
                    O.Transpose(f"{h}_h", (f"{h}_split",), perm=(1, 0, 2))]
        ops += [O.AND("kv_and", ("k_h", "v_h")),
                O.ReduceSum("kv_sum", ("kv_and",), axes=(1,)),
                O.LIF("kv_s", ("kv_sum",), v_threshold=0.5),
                O.AND("attn", ("q_h", "kv_s")),
                O.Transpose("attn_t", ("attn",), perm=(0, 2, 1)),
                O.Reshape("attn_img", ("attn_t",), shape=(C, GRID, GRID)),
                conv("proj", "attn_img", C, C, 1), O.Add("x1", ("proj", stream))]
        stream = "x1"
    ops += [O.LIF("f1", (stream,)), conv("fc1", "f1", C, 2 * C, 1, scale=1.5, bias=0.5),
            O.LIF("f2", ("fc1",)), conv("fc2", "f2", 2 * C, C, 1, scale=0.5),
            O.Add("x2", ("fc2", stream)),
            O.Reshape("tokens", ("x2",), shape=(C, n)),
            O.Mean("mean", ("tokens",), axes=(1,)),
            O.LIF("head_lif", ("mean",)),
            O.Linear("head", ("head_lif",), weight=w(3, C, scale=2.0), bias=w(3), axis=-1),
            O.TimeMean("tm", ("head",)), O.Output("y", ("tm",))]
    return Graph(ops, timesteps=T, meta={"sample": "sdt_like"})


def images(n: int, seed: int = 0) -> np.ndarray:
    """Random uint8 images [n, 1, 8, 8] with a coarse pattern, so that samples differ."""
    rng = np.random.default_rng(seed + 100)
    coarse = rng.random((n, 1, 2, 2)).repeat(4, 2).repeat(4, 3)
    fine = rng.random((n, 1, 8, 8))
    return np.clip(255 * (0.7 * coarse + 0.3 * fine), 0, 255).astype(np.uint8)
