"""Quantization of one layer: a synapse and the CUBA neurons it drives, a count-fed neuron, or the
read-out. Pure functions of float arrays and ranges; the graph walk lives in ``lower.py``."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spikec.errors import FormatError, UnsupportedOpError
from spikec.ir import ops as O
from spikec.ir.types import FireOn
from spikec.quantize.numbers import (Scale, bias_limit, choose_scale, encode_bias, group_channels,
                                     max_weight_scale, round_weights, sign_mode_of,
                                     threshold_mantissa, truncation_offset, weight_grid)
from spikec.quantize.options import CompileOptions
from spikec.target.formats import NumberFormats, SignMode


@dataclass
class Ranges:
    """What the quantizer knows about one synapse's weighted sums ``sum_i w_i x_i`` (weight units).

    ``sums``: per output channel, the bound the scale is chosen for (calibrated x margin, or the
    worst case); ``worst``: the worst case; ``x_max``: the largest input value (1 for spikes, the
    count bound, 255 for raw pixels); ``sources``: synapse inputs (fan-in copies);
    ``calibrated``: whether ``sums`` comes from calibration.
    """

    sums: np.ndarray
    worst: np.ndarray
    x_max: float
    sources: int = 1
    calibrated: bool = False


@dataclass
class NeuronParams:
    du: int
    dv: int
    vth: np.ndarray
    bias_mant: np.ndarray
    bias_exp: np.ndarray
    v_subtract: np.ndarray | None = None


def lif_decays(lif: O.LIF, fmt: NumberFormats) -> tuple[int, int, bool]:
    """``(du, dv, exact)`` of the CUBA compartment for a canonical LIF.

    ``du`` clears the current every step (``decay_unity - (du + offset) = 0``): ``u = a_in << s``.
    ``dv`` multiplies ``v`` by ``1 - 1/tau``: ``decay_unity / tau``, exact for ``tau = 2**k``.
    """
    if lif.decay_input:
        raise UnsupportedOpError(f"LIF {lif.name!r} is not canonical (decay_input=True); run "
                                 "spikec.passes.canonicalize_lif first")
    if lif.v_reset is not None and lif.v_reset != 0.0:
        raise UnsupportedOpError(
            f"LIF {lif.name!r}: Loihi's CUBA neuron resets v to 0 or subtracts the threshold; "
            f"v_reset={lif.v_reset!r} has no equivalent")
    du = fmt.decay_unity - fmt.u_decay_offset
    dv_real = fmt.decay_unity / float(lif.tau) - fmt.v_decay_offset
    dv = int(min(max(round(dv_real), 0), fmt.decay_max))
    if not 0 <= du <= fmt.decay_max:
        raise FormatError(f"LIF {lif.name!r}: du={du} does not fit {fmt.decay_bits} bits")
    return du, dv, dv == dv_real


def soft_reset_amount(lif: O.LIF, k_theta: np.ndarray, fmt: NumberFormats) -> np.ndarray | None:
    """``v_subtract`` of a soft-reset LIF (``v_reset`` None): the float threshold in ``v``'s units,
    ``round(K theta)`` per neuron (int32), or None for a hard reset. Exact where ``K theta`` is an
    integer, as the threshold itself is exact only where it is a multiple of ``2**vth_shift``."""
    if lif.v_reset is not None:
        return None
    sub = np.clip(np.round(np.asarray(k_theta, np.float64)), 0, fmt.state_max)
    return np.ascontiguousarray(sub.astype(np.int32))


def _valuation(x: np.ndarray) -> int:
    """Smallest 2-adic valuation of the nonzero integers in ``x`` (64 when all are zero)."""
    nz = np.abs(x[x != 0]).astype(np.int64)
    if nz.size == 0:
        return 64
    return int(np.min(nz & -nz)).bit_length() - 1


def apply_layout(arr: np.ndarray, chain: list[O.Op]) -> np.ndarray:
    for op in chain:
        arr = arr.reshape(op.shape) if isinstance(op, O.Reshape) else arr.transpose(op.perm)
    return np.ascontiguousarray(arr)


def _channel_axis(syn: O.Op, ndim: int) -> int:
    return 0 if isinstance(syn, O.Conv2d) else syn.axis % ndim


def _per_neuron(values: np.ndarray, axis: int, shape: tuple[int, ...]) -> np.ndarray:
    bshape = [1] * len(shape)
    bshape[axis] = -1
    return np.broadcast_to(values.reshape(bshape), shape)


def quantize_synaptic_layer(syn: O.Op, lif: O.LIF, out_shape: tuple[int, ...], chain: list[O.Op],
                            ranges: Ranges, fmt: NumberFormats, opts: CompileOptions, T: int,
                            bias_map: np.ndarray | None = None):
    """Integer weights, exponents and neuron parameters for ``syn -> layout* -> lif``.

    Returns ``(weight [int16], weight_exp [C_out, int8], NeuronParams, notes)``. ``bias_map``: a
    per-neuron float bias (in the synapse's output shape) replacing the per-channel bias (the
    first layer's input mean).
    """
    w = syn.weight.astype(np.float64)
    cout = w.shape[0]
    ax = _channel_axis(syn, len(out_shape))
    b = np.zeros(cout) if syn.bias is None else syn.bias.astype(np.float64)
    chan = apply_layout(_per_neuron(np.arange(cout), ax, out_shape), chain)
    bias_full = apply_layout(_per_neuron(b, ax, out_shape) if bias_map is None else bias_map, chain)
    rows = w.reshape(cout, -1)
    weight, wexp, params, notes = quantize_current_sum(
        syn.name, rows, [(rows.shape[1], ranges.x_max, ranges.sources)], chan, bias_full, lif,
        ranges, fmt, opts, T)
    return weight.reshape(w.shape), wexp[0], params, notes


def quantize_current_sum(synapse: str, rows: np.ndarray, columns: list[tuple[int, float, int]],
                         chan: np.ndarray, bias_full: np.ndarray, lif: O.LIF, ranges: Ranges,
                         fmt: NumberFormats, opts: CompileOptions, T: int,
                         synapse_copy: bool = False):
    """Integer weights, exponents and neuron parameters for neurons fed by the sum of synapses.

    ``rows``: ``[C_out, n]`` float weights of every summed synapse side by side (one synapse:
    its own rows); ``columns``: ``(width, x_max, sources)`` of each synapse's block of columns,
    in order; ``chan``: per neuron (in the LIF's shape) its output channel; ``bias_full``: per
    neuron the summed float bias. Every synapse of a channel shares its scale ``K`` (one ``vth``
    per neuron); each synapse takes its own exponent per channel (the widest mantissas at that
    ``K``: Lava runs one process per synapse and exponent). Returns ``(weight rows [int16],
    weight_exp [synapses, C_out] int8, NeuronParams, notes)``. ``synapse_copy``: one synapse that also feeds other neurons (its own copy here):
    the symmetric mixed grid as for several synapses.
    """
    cout = rows.shape[0]
    theta = float(lif.v_threshold)
    if not theta > 0:
        raise FormatError(f"layer {lif.name!r}: threshold {theta} must be positive on Loihi")
    bmax_o = np.zeros(cout)
    np.maximum.at(bmax_o, chan.ravel(), np.abs(bias_full).ravel())

    # each synapse is its own target process: its own sign mode per exponent
    blocks = np.split(np.arange(rows.shape[1]), np.cumsum([c[0] for c in columns])[:-1])
    r_o = np.array([min(max_weight_scale(rows[o, b], sign_mode_of(rows[o, b]), fmt)
                        for b in blocks) for o in range(cout)])
    symmetric = len(blocks) > 1 or synapse_copy
    if symmetric:  # mixed grids without their lowest value (a one-sign piece cannot hold it)
        hi = weight_grid(SignMode.MIXED, fmt)[1]
        r_o = np.minimum(r_o, hi / np.maximum(np.abs(rows).max(axis=1), 1e-300))
    labels = group_channels(r_o, 1 if opts.scale_mode == "layer" else opts.threshold_groups)
    groups = [np.flatnonzero(labels == g) for g in range(labels.max() + 1)]
    k_max = [_k_limit(ranges.sums[idx], bmax_o[idx], theta, fmt) for idx in groups]
    scales, snaps = _group_scales(rows, groups, k_max, opts, fmt)
    weight, wexp, k_o, modes = _mantissas(rows, groups, labels, scales, fmt, blocks, symmetric)

    # thresholds and biases per neuron, in the LIF's shape
    k_full = k_o[chan]
    vth = threshold_mantissa(k_full * theta, lif.fire_on, fmt)
    if vth.min() < 1 or vth.max() > fmt.vth_max:
        low = np.full(cout, np.inf)
        np.minimum.at(low, chan.ravel(), vth.ravel())
        bad = int(np.argmin(low))
        raise FormatError(
            f"layer {lif.name!r}: the threshold cannot be encoded (vth {int(vth.min())}.."
            f"{int(vth.max())}, format 1..{fmt.vth_max}): weights up to {np.abs(rows[bad]).max():.3g} "
            f"against a threshold of {theta:.3g} (channel {bad}) do not fit {fmt.weight_bits}-bit "
            f"mantissas even at weight_exp {fmt.weight_exp_max}; rescale the layer or reduce its "
            "weights")
    shift_exact, inc_val = np.ones(cout, bool), np.full(cout, 1 << 20, np.int64)
    comp = np.zeros(cout)
    for b, e_b, (_, _, sources) in zip(blocks, wexp, columns):
        ok_b, val_b = _shift_exactness(weight[:, b], e_b, groups, fmt)
        shift_exact &= ok_b
        inc_val = np.minimum(inc_val, val_b)
        if opts.truncation_compensation:
            comp = comp + np.array([0.0 if ok else truncation_offset(int(e), fmt)
                                    for e, ok in zip(e_b, ok_b)]) * sources
    bias_v = k_full * bias_full + comp[chan]
    mant, bexp, clipped = encode_bias(bias_v, fmt)
    du, dv, dv_exact = lif_decays(lif, fmt)
    params = NeuronParams(du, dv, np.ascontiguousarray(vth.astype(np.int32)),
                          np.ascontiguousarray(mant.astype(np.int16)),
                          np.ascontiguousarray(bexp.astype(np.int8)),
                          soft_reset_amount(lif, k_full * theta, fmt))

    # --- facts for the notes
    s = fmt.weight_shift
    recon = np.empty(rows.shape)
    a_worst = np.zeros(cout, np.int64)
    for b, e_b, (_, x_max, _) in zip(blocks, wexp, columns):
        recon[:, b] = weight[:, b] / (k_o / 2.0 ** (s + e_b))[:, None]
        block = weight[:, b]
        wc_int = np.maximum(np.clip(block, 0, None).sum(1), -np.clip(block, None, 0).sum(1)) * x_max
        a_worst = a_worst + np.array([_shift(int(math.ceil(v)), int(e))
                                      for v, e in zip(wc_int, e_b)])
    err = float(np.sqrt(np.mean((recon - rows) ** 2)) / max(np.sqrt(np.mean(rows ** 2)), 1e-30))
    a_used = np.ceil(k_o * ranges.sums / (1 << s) - 1e-6)  # K = k_max may land on the limit
    b_eff = mant.astype(np.int64) << bexp.astype(np.int64)
    exact_steps = None
    if dv_exact and lif.tau == 2.0:
        val = min(int(inc_val.min()), _valuation(b_eff))
        if params.v_subtract is not None:
            val = min(val, _valuation(params.v_subtract))
        exact_steps = max(val - s + 1, 0) if shift_exact.all() else 0
    vth_i = vth.astype(np.int64) + (1 if lif.fire_on == FireOn.GE else 0)
    vth_exact = bool(np.all(vth_i << fmt.vth_shift == k_full * theta))
    if params.v_subtract is not None:
        vth_exact = vth_exact and bool(np.all(params.v_subtract == k_full * theta))
    notes = {
        "synapse": synapse, "neurons": int(np.prod(params.vth.shape)), "groups": len(groups),
        "weight_exp": sorted({int(e) for e in wexp.ravel()}),
        "weight_scale": [float(sc.r) for sc in scales],
        "k": [float(sc.k) for sc in scales],
        "vth": sorted({int(v) for v in np.unique(vth)})[:16],
        "sign_mode": modes, "pow2_scale": snaps,
        "weight_rel_rms_error": err,
        "a_in_bound": int(a_used.max(initial=0)), "a_in_worst_case": int(a_worst.max(initial=0)),
        "a_in_limit": fmt.a_in_max, "a_in_source": "calib" if ranges.calibrated else "worst_case",
        "bias_max": int(np.abs(b_eff).max(initial=0)), "bias_clipped": clipped,
        "du": du, "dv": dv,
        "exact": bool(err == 0 and np.all(b_eff == bias_v) and vth_exact
                      and exact_steps is not None and exact_steps >= T),
        "exact_steps": exact_steps,
    }
    if params.v_subtract is not None:
        notes["reset"] = "soft"
    return weight.astype(np.int16), wexp.astype(np.int8), params, notes


def _k_limit(sums: np.ndarray, bias_abs: np.ndarray, theta: float, fmt: NumberFormats) -> float:
    """Largest ``K`` one group may use: a_in (int16), threshold (vth bits), state and bias limits.

    ``sums``: bounds of ``|sum w x|`` of the group's channels; ``bias_abs``: their ``|b|``.
    """
    s = fmt.weight_shift
    x = max(float(sums.max(initial=0.0)), 1e-30)
    bm = float(bias_abs.max(initial=0.0))
    lims = [(1 << s) * fmt.a_in_max / x, (1 << s) * (fmt.vth_max + 1) / theta,
            fmt.state_max / (2.0 * (x + bm))]
    if bm > 0:
        lims.append(bias_limit(fmt) / bm)
    return min(lims)


def _group_scales(rows: np.ndarray, groups: list[np.ndarray], k_max: list[float],
                  opts: CompileOptions, fmt: NumberFormats) -> tuple[list[Scale], list[bool]]:
    """The ``Scale`` of every group and whether it is a power of two (``opts.snap``)."""

    def exact(idx, sc: Scale) -> bool:
        x = rows[idx] * sc.r
        return bool(np.all(x == np.round(x)))

    def r_max(idx) -> float:
        return max_weight_scale(rows[idx], sign_mode_of(rows[idx]), fmt)

    if opts.scale_mode == "exponent" and len(groups) > 1:
        # one K (so one vth) for the layer; each group picks the exponent that keeps its
        # mantissas in range
        rm = [r_max(idx) for idx in groups]
        pick = None
        if opts.snap in ("auto", "pow2"):
            pick = _shared_k_scales(min(k_max), rm, fmt, snap=True)
            if opts.snap == "auto" and not all(exact(i, sc) for i, sc in zip(groups, pick)):
                pick = None
        return (pick or _shared_k_scales(min(k_max), rm, fmt, snap=False)), \
            [pick is not None] * len(groups)
    scales, snaps = [], []
    for idx, km in zip(groups, k_max):
        pick = None
        if opts.snap in ("auto", "pow2"):
            pick = choose_scale(km, r_max(idx), fmt, snap=True)
            if opts.snap == "auto" and not exact(idx, pick):
                pick = None
        snaps.append(pick is not None)
        scales.append(pick or choose_scale(km, r_max(idx), fmt, snap=False))
    return scales, snaps


def _mantissas(rows: np.ndarray, groups: list[np.ndarray], labels: np.ndarray,
               scales: list[Scale], fmt: NumberFormats, blocks: list[np.ndarray],
               symmetric: bool = False):
    """``(weight, weight_exp, K, sign modes)`` per output channel; ``rows`` ``[C_out, n]``,
    ``blocks``: the columns of each synapse (one per summed synapse).

    A target process holds every channel of one exponent of one synapse (Lava: one Dense per
    weight_exp) and Lava infers one sign mode per process: groups sharing an exponent with a
    mixed-sign group use the mixed grid too, so that Lava's truncation leaves every weight
    unchanged. Several synapses: modes per group joined by ``+``. ``symmetric``: the mixed grid
    without its lowest value, so that a process holding only some rows (a threshold group) whose
    weights are all negative keeps them exactly.
    """
    weight = np.zeros(rows.shape, np.int64)
    common = np.array([sc.weight_exp for sc in scales])[labels]
    wexp = np.repeat(common[None], len(blocks), axis=0)
    k_o = np.array([sc.k for sc in scales])[labels]
    hi = weight_grid(SignMode.MIXED, fmt)[1]
    modes = []
    for idx, sc in zip(groups, scales):
        names = []
        for j, b in enumerate(blocks):
            part = rows[np.ix_(idx, b)]
            mode = sign_mode_of(rows[common == sc.weight_exp][:, b])
            names.append(mode.name)
            e, r = sc.weight_exp, sc.r
            if len(blocks) > 1:  # this synapse's widest mantissas at the group's K
                r_max = max_weight_scale(part, mode, fmt)
                if symmetric:
                    r_max = min(r_max, hi / max(float(np.abs(part).max(initial=0.0)), 1e-300))
                if math.isfinite(r_max):
                    e = math.ceil(math.log2(sc.k / ((1 << fmt.weight_shift) * r_max)))
                    e = min(max(e, fmt.weight_exp_min), sc.weight_exp)
                    r = sc.k / 2.0 ** (fmt.weight_shift + e)
            wexp[j, idx] = e
            q = round_weights(part * r, mode, fmt)
            if symmetric and mode is SignMode.MIXED:
                q = np.maximum(q, -hi)
            weight[np.ix_(idx, b)] = q
        modes.append("+".join(names))
    return weight, wexp, k_o, modes


def _shift_exactness(weight: np.ndarray, wexp: np.ndarray, groups: list[np.ndarray],
                     fmt: NumberFormats) -> tuple[np.ndarray, np.ndarray]:
    """Per channel: whether the exponent's right shift is exact (the mantissas carry enough
    trailing zeros), and the 2-adic valuation of ``a_in << weight_shift``."""
    weight = weight.reshape(len(wexp), -1)
    shift_exact = np.zeros(len(wexp), bool)
    inc_val = np.zeros(len(wexp), np.int64)
    for idx in groups:
        nu = _valuation(weight[idx])
        shift_exact[idx] = wexp[idx[0]] + nu >= 0
        inc_val[idx] = fmt.weight_shift + wexp[idx[0]] + nu
    return shift_exact, inc_val


def _shared_k_scales(k: float, r_max: list[float], fmt: NumberFormats, *, snap: bool) -> list[Scale]:
    """One ``K <= k`` for all groups, each with the exponent that keeps ``r <= r_max[g]``."""
    s = fmt.weight_shift
    finite = [rm for rm in r_max if math.isfinite(rm)]
    if finite:  # the largest weights must fit at the widest exponent
        k = min(k, min(finite) * 2.0 ** (s + fmt.weight_exp_max))
    if snap:
        k = 2.0 ** math.floor(math.log2(k))
    out = []
    for rm in r_max:
        e = math.ceil(math.log2(k / ((1 << s) * rm))) if math.isfinite(rm) else fmt.weight_exp_min
        e = min(max(e, fmt.weight_exp_min), fmt.weight_exp_max)
        out.append(Scale(k=k, weight_exp=e, r=k / 2.0 ** (s + e)))
    return out


def _shift(x: int, e: int) -> int:
    return x << e if e >= 0 else x >> -e


def quantize_count_layer(lif: O.LIF, factor: float, x_bound: float, calibrated: bool,
                         fmt: NumberFormats, opts: CompileOptions, T: int, shape):
    """Parameters for a neuron that reads an integer count directly (``attn_lif``).

    ``factor``: a constant the count is multiplied by before the neuron (a non-power-of-two
    ``scale`` the float passes left in place; 1 otherwise). The count reaches ``a_in`` through an
    input gain ``m`` (a one-to-one synapse; ``m = 1``: no synapse), ``K = m 2**s``. Returns
    ``(gain, NeuronParams, notes)``.
    """
    s = fmt.weight_shift
    theta = float(lif.v_threshold) / factor
    want = 1 << max(T - 1, 0) if opts.exact_counts else 1
    room = fmt.a_in_max / max(x_bound, 1.0)
    gain = max(1, min(want, 1 << max(int(math.floor(math.log2(room))), 0))) if room >= 1 else 1
    k = float(gain << s)
    vth = threshold_mantissa(k * theta, lif.fire_on, fmt)
    if not 0 <= int(vth) <= fmt.vth_max:
        raise FormatError(f"layer {lif.name!r}: threshold {theta:.3g} on its count input gives vth "
                          f"{int(vth)}, outside 0..{fmt.vth_max}")
    du, dv, dv_exact = lif_decays(lif, fmt)
    full = np.full(shape, int(vth), np.int32)
    params = NeuronParams(du, dv, full, np.zeros(shape, np.int16), np.zeros(shape, np.int8),
                          soft_reset_amount(lif, np.full(shape, k * theta), fmt))
    a_bound = gain * x_bound
    vth_exact = ((int(vth) + 1) << fmt.vth_shift) == k * theta if lif.fire_on == FireOn.GE \
        else (int(vth) << fmt.vth_shift) == k * theta
    exact_steps = int(math.log2(gain)) + 1 if dv_exact and lif.tau == 2.0 else None
    if params.v_subtract is not None:
        vth_exact = vth_exact and float(params.v_subtract.flat[0]) == k * theta
        if exact_steps is not None:
            exact_steps = min(exact_steps, max(_valuation(params.v_subtract) - s + 1, 0))
    notes = {
        "gain": gain, "neurons": int(np.prod(shape)), "vth": [int(vth)], "du": du, "dv": dv,
        "threshold_on_count": theta, "factor_folded": factor,
        "a_in_bound": int(math.ceil(a_bound)), "a_in_limit": fmt.a_in_max,
        "a_in_source": "calib" if calibrated else "worst_case",
        "exact": bool(vth_exact and factor == 1.0 and exact_steps is not None and exact_steps >= T),
        "exact_steps": exact_steps,
    }
    if params.v_subtract is not None:
        notes["reset"] = "soft"
    return gain, params, notes


def quantize_readout(syn: O.Linear, tokens: int, ranges: Ranges, acc_bound: np.ndarray,
                     fmt: NumberFormats, opts: CompileOptions, T: int):
    """Integer weights for the classifier and the host-side scale of its accumulators.

    ``acc_bound``: per class, the bound of ``|sum_{t, tokens} sum_i w_i x_i|`` the 24-bit
    accumulator must hold (calibrated x margin, or ``tokens T`` times the worst case). Returns
    ``(weight, weight_exp, scale, offset, notes)`` with logits ``= scale * acc + offset``.
    """
    s = fmt.weight_shift
    w = syn.weight.astype(np.float64)
    mode = sign_mode_of(w)
    x = max(float(ranges.sums.max(initial=0.0)), 1e-30)
    acc = max(float(acc_bound.max(initial=0.0)), 1e-30)
    k_max = min((1 << s) * fmt.a_in_max / x, fmt.state_max / acc)
    r_max = max_weight_scale(w, mode, fmt)
    sc = choose_scale(k_max, r_max, fmt, snap=False)
    if opts.snap != "free":
        p2 = choose_scale(k_max, r_max, fmt, snap=True)
        if opts.snap == "pow2" or np.all(w * p2.r == np.round(w * p2.r)):
            sc = p2
    weight = round_weights(w * sc.r, mode, fmt)
    b = np.zeros(len(w)) if syn.bias is None else syn.bias.astype(np.float64)
    offset = b.copy()
    if opts.truncation_compensation and sc.weight_exp + _valuation(weight) < 0:
        offset += truncation_offset(sc.weight_exp, fmt) * ranges.sources / sc.k
    scale = 1.0 / (sc.k * tokens * T)
    err = float(np.sqrt(np.mean((weight / sc.r - w) ** 2)) / max(np.sqrt(np.mean(w ** 2)), 1e-30))
    notes = {
        "synapse": syn.name, "weight_exp": [sc.weight_exp], "weight_scale": [sc.r], "k": [sc.k],
        "sign_mode": [mode.name], "weight_rel_rms_error": err,
        "a_in_bound": int(math.ceil(sc.k * x / (1 << s) - 1e-6)), "a_in_limit": fmt.a_in_max,
        "accumulator_bound": int(math.ceil(sc.k * acc)), "state_limit": fmt.state_max,
        "a_in_source": "calib" if ranges.calibrated else "worst_case", "tokens": tokens,
    }
    wexp = np.full(len(w), sc.weight_exp, np.int8)
    return weight.astype(np.int16), wexp, scale, offset, notes
