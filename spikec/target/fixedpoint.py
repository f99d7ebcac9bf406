"""The target's integer arithmetic: exactly lava-nc 0.10.0's ``fixed_pt`` process models.

Every function here is vectorized over numpy arrays, computes in int64 and returns int64 (spikes:
bool), and reads every bit width from a ``NumberFormats``. The quantizer, the bit-exact simulator
and the Lava backend all call these functions, so there is one definition of the chip's arithmetic;
tests/lava/ checks it against Lava itself. The formulas, with the Lava source lines they reproduce,
are in docs/target-arithmetic.md. Where Lava's CPU model holds a value in an int32 container, the
wrap of that container is reproduced too (``fmt.container_bits``), so results agree with Lava bit for
bit even outside the chip's ranges; ``strict=True`` raises ``StateOverflowError`` there instead.

Per time step a CUBA LIF compartment does (``lif_step``)::

    u <- wrap_u( decay(u, du + 1) + (a_in << 6) )             # 24-bit wrap, see wrap_current
    v <- clip_24( decay(v, dv) + u + (bias_mant << bias_exp) )
    s <- v > (vth << 6);  v <- 0 where s
    decay(x, d) = sign(x * (4096 - d)) * (|x * (4096 - d)| >> 12)   # truncates toward zero

and a Dense synapse block sends, one step later, ``(sum of W[:, spiking]) << weight_exp`` (an
arithmetic right shift when ``weight_exp < 0``).
"""
from __future__ import annotations

import numpy as np

from spikec.errors import FormatError, ProfileError, StateOverflowError
from spikec.target.formats import NumberFormats, SignMode

__all__ = [
    "wrap_signed", "clip_signed", "fits_signed", "wrap_current",
    "decay_current", "decay_voltage", "synaptic_input", "effective_bias", "effective_threshold",
    "check_lif_params", "lif_step",
    "determine_sign_mode", "dense_weights", "scale_dendritic_sum", "dense_accumulate",
    "conv_output_shape", "conv_accumulate", "conv_weight_from_torch",
    "prod_neuron_step", "graded_vec_step",
]


# ----------------------------------------------------------------------------- integer helpers

def _as_int(x, name: str) -> np.ndarray:
    """``x`` as an int64 array; refuses floats (a silent truncation would hide a quantizer bug)."""
    a = np.asarray(x)
    if a.dtype == np.bool_:
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.integer):
        raise FormatError(f"{name} must be an integer array, got dtype {a.dtype}; quantize it first")
    return a.astype(np.int64, copy=False)


def _require_lava(fmt: NumberFormats) -> None:
    if not fmt.is_lava:
        raise ProfileError(
            f"number formats with arithmetic = {fmt.arithmetic!r} are descriptive only; spikec's "
            "fixed-point arithmetic is Loihi's (profiles loihi, loihi2 and their systems)")


def wrap_signed(x, bits: int) -> np.ndarray:
    """Two's-complement wrap of ``x`` into ``[-2**(bits-1), 2**(bits-1) - 1]``.

    ``((x + 2**(bits-1)) mod 2**bits) - 2**(bits-1)``: what a ``bits``-wide register keeps.
    """
    x = _as_int(x, "x")
    half = np.int64(1) << (bits - 1)
    return ((x + half) & ((half << 1) - 1)) - half


def clip_signed(x, bits: int, symmetric: bool = False) -> np.ndarray:
    """Saturate ``x`` to ``[-2**(bits-1), 2**(bits-1) - 1]``.

    With ``symmetric=True`` the lower limit is ``-(2**(bits-1) - 1)``, as Lava clips ``v``.
    """
    x = _as_int(x, "x")
    hi = (1 << (bits - 1)) - 1
    lo = -hi if symmetric else -hi - 1
    return np.clip(x, lo, hi)


def fits_signed(x, bits: int, symmetric: bool = False) -> np.ndarray:
    """Boolean mask: where ``x`` is representable by ``clip_signed(., bits, symmetric)`` unchanged."""
    x = _as_int(x, "x")
    hi = (1 << (bits - 1)) - 1
    lo = -hi if symmetric else -hi - 1
    return (x >= lo) & (x <= hi)


def _check(ok: np.ndarray, values: np.ndarray, quantity: str, limit: str, name: str) -> None:
    """Raise ``StateOverflowError`` naming ``quantity`` when ``ok`` is false anywhere."""
    if not np.all(ok):
        bad = np.flatnonzero(~np.broadcast_to(ok, values.shape))
        first = int(bad[0])
        raise StateOverflowError(
            f"{name}: {quantity} out of range at {bad.size} element(s), first at flat index {first} "
            f"(value {int(values.reshape(-1)[first])}, limit {limit}); lower the layer's scale or "
            "run without strict mode to see the chip's wrapped result")


# ----------------------------------------------------------------------------- LIF compartment

def wrap_current(u, fmt: NumberFormats) -> np.ndarray:
    """Lava's wrap of the current ``u`` into ``state_bits`` (lava/proc/lif/models.py:161-170).

    ``u - 2**24`` where ``u > 2**23``; ``u + 2**24`` where ``u <= -2**23``; else ``u``. A single
    period: the result lies in ``(-2**23, 2**23]`` (note: ``+2**23`` is kept and ``-2**23`` becomes
    ``+2**23``, one value outside a 24-bit register, as Lava holds u in an int32).
    """
    u = _as_int(u, "u")
    half = 1 << (fmt.state_bits - 1)
    return np.where(u > half, u - 2 * half, np.where(u <= -half, u + 2 * half, u))


def _decay(x: np.ndarray, factor, fmt: NumberFormats) -> np.ndarray:
    # Sign-magnitude shift: the product's magnitude is shifted, so the result truncates toward zero
    # (an arithmetic shift of a negative product would round toward -inf instead).
    p = x * factor
    return np.sign(p) * (np.abs(p) >> fmt.decay_bits)


def decay_current(u, du, fmt: NumberFormats) -> np.ndarray:
    """Decayed current: ``sign(p) * (|p| >> 12)`` with ``p = u * (4096 - (du + 1))``.

    lava/proc/lif/models.py:145-153 (``ds_offset`` = ``fmt.u_decay_offset`` = 1): ``du = 4095``
    forgets ``u`` entirely, ``du = 0`` multiplies by 4095/4096.
    """
    return _decay(_as_int(u, "u"), fmt.decay_unity - (_as_int(du, "du") + fmt.u_decay_offset), fmt)


def decay_voltage(v, dv, fmt: NumberFormats) -> np.ndarray:
    """Decayed voltage: ``sign(p) * (|p| >> 12)`` with ``p = v * (4096 - dv)``.

    lava/proc/lif/models.py:174-184 (``dm_offset`` = ``fmt.v_decay_offset`` = 0): ``dv = 0`` keeps
    ``v`` exactly, ``dv = 2048`` halves it (toward zero).
    """
    return _decay(_as_int(v, "v"), fmt.decay_unity - (_as_int(dv, "dv") + fmt.v_decay_offset), fmt)


def synaptic_input(a_in, fmt: NumberFormats) -> np.ndarray:
    """Synaptic input as added to ``u``: ``a_in << 6`` (lava/proc/lif/models.py:155).

    Lava receives ``a_in`` in an int32 and shifts it in int32, so both wrap at
    ``fmt.container_bits``; on the chip ``a_in`` is ``fmt.a_in_bits`` (16) wide and never wraps here.
    """
    a = wrap_signed(_as_int(a_in, "a_in"), fmt.container_bits)
    return wrap_signed(a << fmt.weight_shift, fmt.container_bits)


def effective_bias(bias_mant, bias_exp, fmt: NumberFormats) -> np.ndarray:
    """``bias_mant << bias_exp`` (arithmetic ``>> -bias_exp`` for a negative exponent).

    lava/proc/lif/models.py:110-122; recomputed by Lava at every step (line 202).
    """
    m = _as_int(bias_mant, "bias_mant")
    e = _as_int(bias_exp, "bias_exp")
    return np.where(e >= 0, m << np.maximum(e, 0), m >> np.maximum(-e, 0))


def effective_threshold(vth, fmt: NumberFormats) -> np.ndarray:
    """``vth << 6``, the value ``v`` is compared with (lava/proc/lif/models.py:268-278).

    Lava scales the threshold once, at the first step; a later change of ``vth`` is not seen.
    """
    return _as_int(vth, "vth") << fmt.vth_shift


def check_lif_params(du, dv, vth, bias_mant, bias_exp, fmt: NumberFormats, name: str = "lif") -> None:
    """Raise ``FormatError`` unless every LIF parameter fits the chip's register for it.

    du, dv: unsigned ``decay_bits``; vth: unsigned ``vth_bits``; bias_mant: signed ``bias_mant_bits``;
    bias_exp: unsigned ``bias_exp_bits`` (lava/proc/lif/models.py:250-257).
    """
    _require_lava(fmt)
    limits = (
        ("du", du, 0, fmt.decay_max), ("dv", dv, 0, fmt.decay_max), ("vth", vth, 0, fmt.vth_max),
        ("bias_mant", bias_mant, fmt.bias_mant_min, fmt.bias_mant_max),
        ("bias_exp", bias_exp, 0, fmt.bias_exp_max),
    )
    for quantity, value, lo, hi in limits:
        a = _as_int(value, quantity)
        if a.size and (a.min() < lo or a.max() > hi):
            bad = a.min() if a.min() < lo else a.max()
            raise FormatError(f"{name}: {quantity} = {int(bad)} does not fit the chip's format "
                              f"[{lo}, {hi}]")


def lif_step(u, v, a_in, du, dv, vth, bias_mant, bias_exp, fmt: NumberFormats, *,
             strict: bool = False, name: str = "lif") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One time step of Loihi's CUBA LIF, in the order of Lava's ``PyLifModelBitAcc.run_spk``.

    Parameters
    ----------
    u, v : int array, shape (..., N)
        State after the previous step.
    a_in : int array, shape (..., N)
        Synaptic input received this step (a Dense/Conv output, or a graded source).
    du, dv, vth : int
        Per-process decay constants and threshold mantissa.
    bias_mant, bias_exp : int array, broadcastable to (..., N)
        Per-neuron bias mantissa and exponent.
    fmt : NumberFormats
    strict : bool
        Raise ``StateOverflowError`` naming the quantity when ``a_in`` exceeds ``a_in_bits`` or when
        ``u`` would wrap or ``v`` would saturate, instead of computing Lava's wrapped result.
    name : str
        Layer name for error messages.

    Returns
    -------
    u, v : int64 arrays, shape (..., N)
        New state (``v`` already reset to 0 where the neuron spiked).
    spikes : bool array, shape (..., N)

    Notes
    -----
    lava/proc/lif/models.py:138-216::

        u  = wrap_current(wrap32(decay_current(u, du) + wrap32(a_in << 6)))
        v  = clip(decay_voltage(v, dv) + u + (bias_mant << bias_exp), -(2**23 - 1), 2**23 - 1)
        s  = v > (vth << 6)                  # strictly greater
        v  = 0 where s                       # u is not reset
    """
    check_lif_params(du, dv, vth, bias_mant, bias_exp, fmt, name)
    u, v, a_in = _as_int(u, "u"), _as_int(v, "v"), _as_int(a_in, "a_in")
    if strict:
        _check(fits_signed(a_in, fmt.a_in_bits), a_in, f"synaptic input a_in (int{fmt.a_in_bits})",
               f"[{fmt.a_in_min}, {fmt.a_in_max}]", name)
    u_sum = wrap_signed(decay_current(u, du, fmt) + synaptic_input(a_in, fmt), fmt.container_bits)
    if strict:
        _check(fits_signed(u_sum, fmt.state_bits, symmetric=True), u_sum,
               f"current u ({fmt.state_bits}-bit) would wrap", f"+-{fmt.state_max}", name)
    u_new = wrap_current(u_sum, fmt)
    v_sum = wrap_signed(decay_voltage(v, dv, fmt) + u_new + effective_bias(bias_mant, bias_exp, fmt),
                        fmt.container_bits)
    if strict:
        _check(fits_signed(v_sum, fmt.state_bits, symmetric=True), v_sum,
               f"voltage v ({fmt.state_bits}-bit) would saturate", f"+-{fmt.state_max}", name)
    v_new = clip_signed(v_sum, fmt.state_bits, symmetric=True)
    spikes = v_new > effective_threshold(vth, fmt)
    v_new = np.where(spikes, 0, v_new)
    return u_new, v_new, spikes


# ----------------------------------------------------------------------------- Dense synapses

def determine_sign_mode(weights) -> SignMode:
    """Lava's ``determine_sign_mode`` (lava/utils/weightutils.py:21-43)."""
    w = _as_int(weights, "weights")
    if w.min(initial=0) >= 0:
        return SignMode.EXCITATORY
    if w.max(initial=0) <= 0:
        return SignMode.INHIBITORY
    return SignMode.MIXED


def dense_weights(weights, fmt: NumberFormats, sign_mode: SignMode | None = None,
                  num_weight_bits: int | None = None) -> np.ndarray:
    """The weights Lava's bit-accurate Dense actually uses (lava/proc/dense/models.py:82-91).

    ``clip_weights`` then ``truncate_weights`` of lava/utils/weightutils.py, with ``b`` =
    ``fmt.weight_bits`` (8) and ``n = num_weight_bits`` (default ``b``)::

        EXCITATORY:  w = clip(w, 0, 2**b - 1);      w = (w >> k) << k,  k = b - n
        MIXED:       w = clip(w, -2**b, 2**b - 1);  w = (w >> k) << k,  k = b - n + 1
        INHIBITORY:  as EXCITATORY applied to -w, then negated

    So a mixed-sign matrix keeps ``n`` bits including the sign: even values in [-256, 254] for
    n = 8, i.e. an 8-bit mantissa m with weight 2*m. (Lava's Dense docstring describes a factor 2
    for mixed weights; the code clears the low bit instead.) ``>>`` floors, so a negative odd mixed
    weight moves down (-3 -> -4) while an inhibitory one moves toward zero.

    Parameters
    ----------
    weights : int array, shape (N_out, N_in)
    sign_mode : SignMode, optional
        Default: from the weights, as Lava does when ``sign_mode`` is not given to ``Dense``.
    num_weight_bits : int, optional
        Lava's ``num_weight_bits`` proc param (default ``fmt.weight_bits``).
    """
    _require_lava(fmt)
    w = _as_int(weights, "weights")
    mode = determine_sign_mode(w) if sign_mode is None else SignMode(sign_mode)
    n = fmt.weight_bits if num_weight_bits is None else int(num_weight_bits)
    if not 0 <= n <= fmt.weight_bits:
        raise FormatError(f"num_weight_bits = {n} is outside [0, {fmt.weight_bits}]")
    mixed = int(mode == SignMode.MIXED)
    sign = -1 if mode == SignMode.INHIBITORY else 1
    w = sign * w
    w = np.clip(w, -(1 << fmt.weight_bits) * mixed, (1 << fmt.weight_bits) - 1)
    k = fmt.weight_bits - n + mixed
    w = (w >> k) << k
    return sign * w


def scale_dendritic_sum(acc, weight_exp: int, fmt: NumberFormats, *, graded: bool = False,
                        strict: bool = False, name: str = "dense") -> np.ndarray:
    """Dense's output ``a_out`` from the weighted sum ``acc`` (lava/proc/dense/models.py:97-107).

    ``acc << weight_exp`` for ``weight_exp > 0``, else ``acc >> -weight_exp`` (arithmetic: floors).
    Binary spikes: the sum is int64 (numpy's ``sum`` of int32 rows) and the result wraps to int32
    when sent. Graded spikes: ``weights.dot(s_in)`` is an int32 product, so the sum wraps before
    the shift. With ``strict=True`` a sum that does not fit ``fmt.container_bits`` raises instead.
    """
    _require_lava(fmt)
    acc = _as_int(acc, "acc")
    e = int(weight_exp)
    if strict:
        _check(fits_signed(acc, fmt.container_bits), acc, "dendritic sum", f"int{fmt.container_bits}",
               name)
    if graded:
        acc = wrap_signed(acc, fmt.container_bits)
    out = acc << e if e > 0 else acc >> -e
    if strict:
        _check(fits_signed(out, fmt.container_bits), out, "scaled dendritic sum",
               f"int{fmt.container_bits}", name)
    return wrap_signed(out, fmt.container_bits)


def dense_accumulate(weights, s_in, weight_exp: int, fmt: NumberFormats, *, graded: bool = False,
                     strict: bool = False, name: str = "dense") -> np.ndarray:
    """What a bit-accurate Dense sends one step after receiving ``s_in``.

    Parameters
    ----------
    weights : int array, shape (N_out, N_in)
        Effective weights (``dense_weights``).
    s_in : int or bool array, shape (..., N_in)
        Binary spikes (``graded=False``: any nonzero counts as 1) or graded payloads.
    weight_exp : int

    Returns
    -------
    int64 array, shape (..., N_out): the ``a_in`` the receiving neurons see at the next step.
    """
    w = _as_int(weights, "weights")
    s = _as_int(s_in, "s_in")
    s = wrap_signed(s, fmt.container_bits) if graded else (s != 0).astype(np.int64)
    acc = s @ w.T
    return scale_dendritic_sum(acc, weight_exp, fmt, graded=graded, strict=strict, name=name)


# ----------------------------------------------------------------------------- Conv synapses

def _pair(x) -> tuple[int, int]:
    if np.isscalar(x):
        return int(x), int(x)
    x = tuple(int(i) for i in x)
    return (x[0], x[0]) if len(x) == 1 else (x[0], x[1])


def conv_output_shape(input_shape, out_channels: int, kernel_size, stride=1, padding=0,
                      dilation=1) -> tuple[int, int, int]:
    """Output shape (X, Y, C_out) of Lava's Conv (lava/proc/conv/utils.py:87-160)."""
    (kx, ky), (sx, sy), (px, py), (dx, dy) = map(_pair, (kernel_size, stride, padding, dilation))
    x = (input_shape[0] + 2 * px - dx * (kx - 1) - 1) // sx + 1
    y = (input_shape[1] + 2 * py - dy * (ky - 1) - 1) // sy + 1
    if x < 1 or y < 1:
        raise FormatError(f"convolution output would be empty: input {tuple(input_shape)}, "
                          f"kernel {(kx, ky)}, stride {(sx, sy)}, padding {(px, py)}")
    return int(x), int(y), int(out_channels)


def conv_accumulate(s_in, weight, fmt: NumberFormats, *, stride=1, padding=0, dilation=1,
                    groups: int = 1, graded: bool = False) -> np.ndarray:
    """What Lava's ``fixed_pt`` Conv sends one step after receiving ``s_in``.

    lava/proc/conv/models.py:34-79 and utils.py:163-296: a true convolution (``scipy.signal.
    convolve2d``, kernel flipped) over zero-padded input, strided, then ``signed_clamp(., 24)``,
    which despite its name wraps modulo 2**24 (``fmt.conv_out_bits``). Lava's fixed_pt Conv ignores
    ``weight_exp`` and ``num_weight_bits``: the weights are used as given (int32), unclipped.

    Parameters
    ----------
    s_in : int or bool array, shape (..., X, Y, C_in)
        Lava's (X, Y, C) = (width, height, channel) order.
    weight : int array, shape (C_out, KX, KY, C_in // groups)
        Lava's layout (``conv_weight_from_torch`` converts a PyTorch kernel).
    stride, padding, dilation : int or (x, y)

    Returns
    -------
    int64 array, shape (..., X_out, Y_out, C_out)
    """
    _require_lava(fmt)
    w = _as_int(weight, "weight")
    s = _as_int(s_in, "s_in")
    s = wrap_signed(s, fmt.container_bits) if graded else (s != 0).astype(np.int64)
    (sx, sy), (px, py), (dx, dy) = _pair(stride), _pair(padding), _pair(dilation)
    c_out, kx, ky, c_grp = w.shape
    if s.shape[-1] != c_grp * groups or c_out % groups:
        raise FormatError(f"conv channels do not match: input {s.shape[-1]}, weight {w.shape}, "
                          f"groups {groups}")
    ox, oy, _ = conv_output_shape(s.shape[-3:], c_out, (kx, ky), (sx, sy), (px, py), (dx, dy))
    pad = [(0, 0)] * (s.ndim - 3) + [(px, px), (py, py), (0, 0)]
    s = np.pad(s, pad)
    flipped = w[:, ::-1, ::-1, :]  # convolution = correlation with the flipped kernel
    out = np.zeros(s.shape[:-3] + (ox, oy, c_out), dtype=np.int64)
    k_grp = c_out // groups
    for a in range(kx):
        for b in range(ky):
            patch = s[..., a * dx: a * dx + sx * (ox - 1) + 1: sx,
                      b * dy: b * dy + sy * (oy - 1) + 1: sy, :]
            for g in range(groups):
                out[..., g * k_grp:(g + 1) * k_grp] += (
                    patch[..., g * c_grp:(g + 1) * c_grp] @ flipped[g * k_grp:(g + 1) * k_grp, a, b, :].T)
    return wrap_signed(out, fmt.conv_out_bits)


def conv_weight_from_torch(weight_oihw) -> np.ndarray:
    """PyTorch kernel (C_out, C_in, KH, KW) -> Lava Conv kernel (C_out, KX, KY, C_in).

    PyTorch correlates, Lava convolves: the spatial axes are flipped as well as transposed, so a
    Lava Conv with this kernel, stride ``(sW, sH)`` and padding ``(pW, pH)`` on input
    ``x.transpose(2, 1, 0)`` computes ``torch.conv2d(x, weight)`` transposed the same way.
    """
    w = np.asarray(weight_oihw)
    return np.ascontiguousarray(w.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :])


# ----------------------------------------------------------------------------- graded neurons

def prod_neuron_step(a_in1, a_in2, vth, exp, fmt: NumberFormats) -> np.ndarray:
    """Lava's ``ProdNeuron`` (lava/proc/prodneuron/models.py:28-38): a graded spike per step.

    ``v = (a_in1 * a_in2) >> exp`` (int32 product, arithmetic shift); sends ``v`` where
    ``|v| > vth``, else 0. No state is kept between steps.
    """
    _require_lava(fmt)
    a1 = wrap_signed(_as_int(a_in1, "a_in1"), fmt.container_bits)
    a2 = wrap_signed(_as_int(a_in2, "a_in2"), fmt.container_bits)
    prod = wrap_signed(a1 * a2, fmt.container_bits) >> int(exp)
    return np.where(np.abs(prod) > int(vth), prod, 0)


def graded_vec_step(a_in, vth, fmt: NumberFormats) -> np.ndarray:
    """Lava's ``GradedVec`` (lava/proc/graded/models.py:27-40): sends ``a_in`` where ``|a_in| > vth``.

    ``v += a_in`` then ``v = 0`` every step, so the output depends on this step's input only.
    """
    _require_lava(fmt)
    a = wrap_signed(_as_int(a_in, "a_in"), fmt.container_bits)
    return np.where(np.abs(a) > int(vth), a, 0)
