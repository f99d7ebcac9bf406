"""Spike comparisons between two float computations that may sum in different orders.

Another BLAS, CPU, thread count, runtime (torch, onnxruntime, nirtorch) or a pass that refactors
the arithmetic (BN folding, LIF canonicalisation) rounds a float sum differently, so a membrane
potential H within a few ulps of its threshold can land on the other side. Equal spikes are then
no valid assertion; this module is the one place tests compare such spikes instead:

* **cascade** flip: an earlier flip in the same sample could have caused it (a flip in an earlier
  LIF layer at the same or an earlier step, or in the same neuron at an earlier step): allowed,
  counted. Its input really changed, so its H may be anywhere; in a Spikformer one flipped q, k
  or v spike moves a whole attention map, so one root flip can bring thousands of these;
* **root** flip, any other: allowed only where the reference's membrane is within ``eps`` of the
  threshold, ``|H - v_threshold| <= eps * max(1, |v_threshold|)``; a root flip farther away fails,
  naming the layer, step, sample, neuron, H and the threshold; more than ``max_roots`` root flips
  fail.

Cascades stay inside the samples that hold a root flip (``Flips.flipped``); a test compares logits
and predictions to rounding on the other samples. Where the arithmetic is exact (dyadic weights
and inputs, integers, the bit-exact simulator, Lava) tests assert equality, not this.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spikec.ir import ops as O

#: Stated epsilons, relative to max(1, |v_threshold|). Measured: torch and the interpreter give
#: float32 membranes at most 4e-6 apart on tests/test_interp.py's Spikformers (T = 4), so EPS32
#: leaves a 25x margin; float64 sums differ by ~1e-15.
EPS32 = 1e-4
EPS64 = 1e-9


def eps_for(dtype) -> float:
    return EPS64 if np.dtype(dtype) == np.float64 else EPS32


def lif_membrane(op: O.LIF, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, S) [T, ...] of ``op`` on input ``x`` [T, ...]: the pre-fire membrane and the spikes,
    with the arithmetic of ``spikec.interp.lif_float`` (so S equals the interpreter's spikes)."""
    dt = x.dtype.type
    tau, vth = dt(op.tau), dt(op.v_threshold)
    v_reset = dt(0.0 if op.v_reset is None else op.v_reset)
    v = np.zeros_like(x[0])
    hs, ss = np.empty_like(x), np.empty(x.shape, bool)
    for t in range(x.shape[0]):
        h = v + (x[t] - (v - v_reset)) / tau if op.decay_input else v - (v - v_reset) / tau + x[t]
        s = (h >= vth) if op.fire_on == ">=" else (h > vth)
        hs[t], ss[t] = h, s
        v = h - vth * s if op.v_reset is None else np.where(s, v_reset, h)
    return hs, ss


@dataclass
class Flips:
    """What :func:`check_spikes` counted: spikes compared, root (near-threshold) and cascade
    flips per layer, and the samples with at least one flip."""

    compared: int = 0
    roots: int = 0
    cascade: int = 0
    eps: float = 0.0
    flipped: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    per_layer: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.roots + self.cascade

    def __str__(self) -> str:
        layers = ", ".join(f"{k}: {n}+{c}" for k, (n, c) in self.per_layer.items() if n + c)
        return (f"{self.total}/{self.compared} spikes flipped ({self.roots} within {self.eps:g} of "
                f"threshold, {self.cascade} downstream of those) in {int(self.flipped.sum())}/"
                f"{self.flipped.size} samples" + (f" [{layers}]" if layers else ""))


def check_spikes(graph, ref, other: dict[str, np.ndarray], *, eps: float | None = None,
                 max_roots: int = 2) -> Flips:
    """Compare ``other``'s spikes with the reference run ``ref`` of ``graph``, LIF by LIF.

    Parameters
    ----------
    graph : the float graph ``ref`` ran (its LIF ops give thresholds, order and inputs).
    ref : ``spikec.interp.Trace`` with every LIF and every LIF's input recorded (``record="all"``).
    other : spikes by LIF name, any array reshapeable to the reference's ``[T, B, *shape]``.
        LIFs missing from ``other`` are skipped; at least one must be compared.
    eps : allowed distance of a near flip, relative to ``max(1, |v_threshold|)``
        (default: :data:`EPS32` or :data:`EPS64` from the reference's dtype).
    max_roots : the most root flips (not downstream of another) the comparison accepts.

    Raises AssertionError on a root flip farther than ``eps`` from the threshold, on more than
    ``max_roots`` root flips, or on a reference whose recomputed spikes disagree with its record.
    """
    lifs = [op for op in graph.ops if isinstance(op, O.LIF) and op.name in other]
    assert lifs, "no LIF layer to compare"
    out = Flips()
    first_up = None   # per sample: the earliest step with a flip in an earlier layer
    for op in lifs:
        want = ref.values[op.name]
        got = np.asarray(other[op.name]).reshape(want.shape)
        h, s = lif_membrane(op, ref.values[op.inputs[0]])
        assert np.array_equal(s, want.astype(bool)), f"{op.name}: membrane recomputation is off"
        out.eps = eps = eps_for(h.dtype) if eps is None else eps
        T, B = want.shape[:2]
        if first_up is None:
            first_up = np.full(B, T, np.int64)
        diff = (got != want).reshape(T, B, -1)
        tol = eps * max(1.0, abs(op.v_threshold))
        near = np.abs(h - h.dtype.type(op.v_threshold)).reshape(T, B, -1) <= tol
        earlier_same = np.cumsum(diff, axis=0) - diff > 0          # same neuron, an earlier step
        upstream = np.arange(T)[:, None, None] >= first_up[None, :, None]
        cascade = diff & (earlier_same | upstream)
        far = diff & ~cascade & ~near
        if far.any():
            t, b, i = (int(v[0]) for v in np.nonzero(far))
            idx = tuple(int(k) for k in np.unravel_index(i, want.shape[2:]))
            raise AssertionError(
                f"{op.name}: spike at step {t}, sample {b}, neuron {idx} differs with membrane "
                f"{float(h.reshape(T, B, -1)[t, b, i]):.9g}, not within {tol:g} of the threshold "
                f"{op.v_threshold} and downstream of no earlier flip ({int(far.sum())} such)")
        n_near, n_casc = int((diff & ~cascade).sum()), int(cascade.sum())
        out.roots += n_near
        out.cascade += n_casc
        out.compared += want.size
        out.per_layer[op.name] = (n_near, n_casc)
        steps = np.where(diff.any(axis=2), np.arange(T)[:, None], T).min(axis=0)
        first_up = np.minimum(first_up, steps)
    out.flipped = first_up < T
    assert out.roots <= max_roots, f"more than {max_roots} near-threshold root flips: {out}"
    return out


def assert_close_where_unflipped(got, want, flips: Flips, *, rtol: float, atol: float,
                                 sample_axis: int = 0, predictions: bool = True) -> None:
    """``got`` and ``want`` agree to rounding (``rtol``, ``atol``) on every sample without a flip
    (samples along ``sample_axis``); with ``predictions`` (logits [B, classes]) those samples also
    predict the same class wherever ``want``'s top-two margin exceeds that rounding. Samples with a
    flip are left out (counted in ``flips``); at least half the samples must be flip-free."""
    keep = ~flips.flipped
    assert keep.sum() * 2 >= keep.size, f"flips in most samples: {flips}"
    got = np.compress(keep, np.asarray(got), axis=sample_axis)
    want = np.compress(keep, np.asarray(want), axis=sample_axis)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    if predictions:
        top2 = np.sort(want, axis=-1)[..., -2:]
        clear = top2[..., 1] - top2[..., 0] > 2 * (atol + rtol * np.abs(top2[..., 1]))
        assert np.array_equal(np.argmax(got, -1)[clear], np.argmax(want, -1)[clear]), \
            "predictions differ"
