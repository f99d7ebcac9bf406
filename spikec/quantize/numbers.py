"""Integer encodings of one layer's parameters in the target's number formats.

Notation (docs/compiler.md): a canonical float neuron has membrane ``H``; its integer twin has
``v = K H`` (``K``: v units per unit of ``H``). A weight ``w`` becomes the mantissa ``W = w r``
(``r``: mantissa units per weight unit) sent with the exponent ``e``, so that the synaptic input
``a_in = shift(sum W x, e)`` adds ``a_in << weight_shift = K w x`` to ``v``:
``K = r * 2**(weight_shift + e)``. Every width comes from the profile's ``NumberFormats``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spikec.errors import FormatError
from spikec.ir.types import FireOn
from spikec.target.formats import NumberFormats, SignMode


# ----------------------------------------------------------------------------- weights

def sign_mode_of(w: np.ndarray) -> SignMode:
    """The sign mode a float weight block needs (all-zero blocks count as excitatory)."""
    if w.size == 0 or w.min() >= 0:
        return SignMode.EXCITATORY
    if w.max() <= 0:
        return SignMode.INHIBITORY
    return SignMode.MIXED


def weight_grid(mode: SignMode, fmt: NumberFormats) -> tuple[int, int, int]:
    """``(lo, hi, step)``: the mantissas Lava's bit-accurate Dense keeps unchanged.

    lava/utils/weightutils.py ``clip_weights`` + ``truncate_weights`` with 8 bits: a MIXED block is
    clipped to ``[-2**b, 2**b - 1]`` and its lowest bit cleared (even values, ``[-256, 254]``);
    EXCITATORY keeps ``[0, 2**b - 1]``, INHIBITORY ``[-(2**b - 1), 0]``.
    """
    b = fmt.weight_bits
    if mode == SignMode.MIXED:
        return -(1 << b), (1 << b) - 2, 2
    if mode == SignMode.INHIBITORY:
        return -((1 << b) - 1), 0, 1
    return 0, (1 << b) - 1, 1


def round_weights(x: np.ndarray, mode: SignMode, fmt: NumberFormats) -> np.ndarray:
    """Nearest representable mantissa to each real ``x`` (ties to even multiples of the step),
    saturated to the grid's range. Returns int64."""
    lo, hi, step = weight_grid(mode, fmt)
    q = np.round(np.asarray(x, np.float64) / step) * step
    return np.clip(q, lo, hi).astype(np.int64)


def max_weight_scale(w: np.ndarray, mode: SignMode, fmt: NumberFormats) -> float:
    """Largest ``r`` with ``w * r`` inside the grid's range (``inf`` for an all-zero block)."""
    lo, hi, _ = weight_grid(mode, fmt)
    pos = float(w.max(initial=0.0))
    neg = float(-w.min(initial=0.0))
    r = math.inf
    if pos > 0:
        r = min(r, hi / pos)
    if neg > 0:
        r = min(r, -lo / neg)
    return r


# ----------------------------------------------------------------------------- bias, threshold

def encode_bias(b: np.ndarray, fmt: NumberFormats) -> tuple[np.ndarray, np.ndarray, int]:
    """``(mant, exp, n_clipped)`` with ``mant << exp`` the representable value nearest to ``b``.

    Per element, the smallest exponent in ``[0, 2**bias_exp_bits - 1]`` whose rounded mantissa fits
    ``bias_mant_bits`` (signed); values beyond the largest exponent saturate (counted in
    ``n_clipped``). The smallest fitting exponent has the finest grid, so its nearest value is the
    nearest representable one.
    """
    b = np.asarray(b, np.float64)
    mant = np.zeros(b.shape, np.int64)
    exp = np.full(b.shape, -1, np.int64)
    for e in range(fmt.bias_exp_max + 1):
        m = np.round(b / (1 << e))
        ok = (exp < 0) & (m >= fmt.bias_mant_min) & (m <= fmt.bias_mant_max)
        mant[ok] = m[ok]
        exp[ok] = e
    over = exp < 0
    exp[over] = fmt.bias_exp_max
    mant[over] = np.where(b[over] > 0, fmt.bias_mant_max, fmt.bias_mant_min)
    # tidy: an exact zero gets exponent 0
    exp[mant == 0] = 0
    return mant, exp, int(over.sum())


def bias_limit(fmt: NumberFormats) -> int:
    """Largest representable bias magnitude, ``(2**(m-1) - 1) << (2**e_bits - 1)``."""
    return fmt.bias_mant_max << fmt.bias_exp_max


def threshold_mantissa(k_theta, fire_on: str, fmt: NumberFormats) -> np.ndarray:
    """The ``vth`` that makes Loihi's ``v > vth << vth_shift`` act as ``v >= K theta`` (or ``>``).

    ``'>='``: the largest ``vth`` with ``vth << s < K theta``: ``ceil(K theta / 2**s) - 1``. Every
    ``v >= K theta`` then spikes; ``v`` in ``(vth << s, K theta)`` spikes too, which never happens
    when ``v`` moves on a grid of ``2**s`` (docs/compiler.md, exact canonicalization).
    ``'>'``: ``floor(K theta / 2**s)``. Returns int64 (not yet checked against ``vth_bits``).
    """
    x = np.asarray(k_theta, np.float64) / (1 << fmt.vth_shift)
    if fire_on == FireOn.GE:
        return (np.ceil(x) - 1).astype(np.int64)
    return np.floor(x).astype(np.int64)


# ----------------------------------------------------------------------------- scale choice

@dataclass(frozen=True)
class Scale:
    """One block's encoding: ``K = r * 2**(weight_shift + weight_exp)``.

    Attributes
    ----------
    k : float
        v units per unit of the float membrane (and of the float synaptic input).
    weight_exp : int
    r : float
        Mantissa units per weight unit.
    """

    k: float
    weight_exp: int
    r: float


def choose_scale(k_max: float, r_max: float, fmt: NumberFormats, *, snap: bool) -> Scale:
    """The encoding with the largest ``K <= k_max`` whose mantissa scale ``r`` stays ``<= r_max``.

    ``r_max``: the block's full-mantissa scale (``max_weight_scale``); ``k_max``: the tightest of
    the block's range limits (a_in, threshold, bias, state). With ``snap``, ``r`` is a power of two
    (then ``K`` is one too, and dyadic weights, biases and thresholds are encoded exactly) at the
    cost of up to one mantissa bit. The exponent is the largest in the profile's range that keeps
    ``K <= k_max``; when even the smallest exponent overshoots, ``r`` shrinks below ``r_max``.
    """
    s = fmt.weight_shift
    if not (k_max > 0 and math.isfinite(k_max)):
        raise ValueError(f"k_max must be positive and finite, got {k_max}")
    r = r_max if math.isfinite(r_max) else k_max / 2.0 ** (s + fmt.weight_exp_min)
    if snap:
        r = 2.0 ** math.floor(math.log2(r))
    e = math.floor(math.log2(k_max / (r * 2.0 ** s)))
    if r * 2.0 ** (s + e + 1) <= k_max:  # log2 rounded down across a power of two
        e += 1
    elif r * 2.0 ** (s + e) > k_max:
        e -= 1
    if e > fmt.weight_exp_max:
        e = fmt.weight_exp_max
    elif e < fmt.weight_exp_min:
        e = fmt.weight_exp_min
        r = k_max / 2.0 ** (s + e)
        if snap:
            r = 2.0 ** math.floor(math.log2(r))
    return Scale(k=r * 2.0 ** (s + e), weight_exp=e, r=r)


def truncation_offset(weight_exp: int, fmt: NumberFormats) -> float:
    """Mean loss, in v units, of ``acc >> -e`` (floor) per synaptic input, for ``e < 0``:
    ``2**s * (1 - 2**e) / 2``. Added to the bias so that the floor is unbiased on average."""
    if weight_exp >= 0:
        return 0.0
    return (1 << fmt.weight_shift) * (1.0 - 2.0 ** weight_exp) / 2.0


# ----------------------------------------------------------------------------- channel groups

def group_channels(r: np.ndarray, groups: int) -> np.ndarray:
    """Split channels with full-mantissa scales ``r`` into at most ``groups`` groups (labels
    ``0..G-1``), minimizing the mantissa bits lost, ``sum_o log2(r_o / min_{g(o)} r)``.

    Exact dynamic programme over the channels sorted by ``log2 r`` (a group is a contiguous run).
    All-zero channels (``r = inf``) join the group of the largest finite scale.
    """
    r = np.asarray(r, np.float64)
    n = len(r)
    labels = np.zeros(n, np.int64)
    finite = np.isfinite(r)
    if groups <= 1 or finite.sum() <= 1:
        return labels
    order = np.argsort(np.where(finite, r, np.inf), kind="stable")
    m = int(finite.sum())
    lg = np.log2(r[order[:m]])
    csum = np.concatenate([[0.0], np.cumsum(lg)])
    g = min(groups, m)
    # cost[i, j]: channels i..j-1 in one group (its minimum is lg[i], the list is ascending)
    i_idx = np.arange(m)[:, None]
    j_idx = np.arange(m + 1)[None, :]
    cost = np.where(j_idx > i_idx, csum[j_idx] - csum[i_idx] - (j_idx - i_idx) * lg[:, None],
                    np.inf)
    best = np.full((g + 1, m + 1), np.inf)
    arg = np.zeros((g + 1, m + 1), np.int64)
    best[0, 0] = 0.0
    for k in range(1, g + 1):
        # best[k, j] = min_i best[k-1, i] + cost[i, j]
        tot = best[k - 1, :m, None] + cost
        arg[k] = np.argmin(tot, axis=0)
        best[k] = tot[arg[k], np.arange(m + 1)]
    k_best = int(np.argmin(best[1:, m])) + 1
    bounds = []
    j = m
    for k in range(k_best, 0, -1):
        i = int(arg[k, j])
        bounds.append((i, j))
        j = i
    for lab, (i, j) in enumerate(sorted(bounds)):
        labels[order[i:j]] = lab
    labels[order[m:]] = len(bounds) - 1
    return labels
