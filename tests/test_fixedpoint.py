"""spikec.target.fixedpoint against brute-force pure-Python references, element by element.

The references below restate each formula with Python integers (unbounded, floor division for
shifts), independently of the vectorized implementation, and run over several bit widths and over
random values mixed with the edges (0, +-max, +-min, values just past a limit). tests/lava/ checks
the same helpers against Lava itself.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
import tokenize

import numpy as np
import pytest

from spikec.errors import FormatError, ProfileError, StateOverflowError
from spikec.target import LAVA_FIXED_PT, SignMode, load_profile
from spikec.target import fixedpoint as fx

FMT = LAVA_FIXED_PT


def formats_variants():
    """Lava's formats plus narrower and wider variants (every width is read from the formats)."""
    yield FMT
    yield dataclasses.replace(FMT, state_bits=12, decay_bits=6, decay_unity=64, weight_shift=2,
                              vth_bits=8, vth_shift=3, bias_mant_bits=6, bias_exp_bits=2,
                              a_in_bits=8, container_bits=16, conv_out_bits=10, weight_bits=4)
    yield dataclasses.replace(FMT, state_bits=16, decay_bits=8, decay_unity=256, weight_shift=0,
                              vth_bits=12, vth_shift=4, u_decay_offset=0, v_decay_offset=1,
                              conv_out_bits=16, weight_bits=6)
    yield dataclasses.replace(FMT, state_bits=30, decay_bits=14, decay_unity=1 << 14,
                              container_bits=40, conv_out_bits=28, a_in_bits=20)


FORMATS = list(formats_variants())
IDS = [f"state{f.state_bits}-decay{f.decay_bits}-box{f.container_bits}" for f in FORMATS]


def edge_values(bits: int, rng, n: int = 200) -> np.ndarray:
    """Random values of a ``bits``-wide signed range plus its edges and values just outside."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    edges = [0, 1, -1, hi, lo, hi - 1, lo + 1, hi + 1, lo - 1, 2 * hi, 2 * lo, 3 * hi, 3 * lo]
    rand = rng.integers(lo, hi + 1, size=n)
    wide = rng.integers(4 * lo, 4 * hi + 1, size=n // 4)
    return np.concatenate([np.array(edges, np.int64), rand, wide])


# ----------------------------------------------------------------------------- references

def ref_wrap(x: int, bits: int) -> int:
    m = 1 << bits
    return (x + m // 2) % m - m // 2


def ref_clip(x: int, bits: int, symmetric: bool) -> int:
    hi = 2 ** (bits - 1) - 1
    lo = -hi if symmetric else -hi - 1
    return min(max(x, lo), hi)


def ref_decay(x: int, d: int, offset: int, f) -> int:
    p = x * (2 ** f.decay_bits - (d + offset))
    q = abs(p) // 2 ** f.decay_bits            # magnitude truncated: rounds toward zero
    return q if p >= 0 else -q


def ref_wrap_current(u: int, f) -> int:
    half = 2 ** (f.state_bits - 1)
    if u > half:
        return u - 2 * half
    if u <= -half:
        return u + 2 * half
    return u


def ref_lif(u, v, a, du, dv, vth, bm, be, f):
    syn = ref_wrap(ref_wrap(a, f.container_bits) * 2 ** f.weight_shift, f.container_bits)
    u = ref_wrap_current(ref_wrap(ref_decay(u, du, f.u_decay_offset, f) + syn, f.container_bits), f)
    bias = bm * 2 ** be
    v = ref_clip(ref_wrap(ref_decay(v, dv, f.v_decay_offset, f) + u + bias, f.container_bits),
                 f.state_bits, True)
    s = v > vth * 2 ** f.vth_shift
    return u, (0 if s else v), s


# ----------------------------------------------------------------------------- integer helpers

@pytest.mark.parametrize("bits", [2, 8, 16, 24, 32])
def test_wrap_clip_fits(bits):
    rng = np.random.default_rng(bits)
    x = edge_values(bits, rng)
    for sym in (False, True):
        assert fx.clip_signed(x, bits, sym).tolist() == [ref_clip(int(i), bits, sym) for i in x]
        assert fx.fits_signed(x, bits, sym).tolist() == [ref_clip(int(i), bits, sym) == i for i in x]
    assert fx.wrap_signed(x, bits).tolist() == [ref_wrap(int(i), bits) for i in x]
    assert fx.wrap_signed(x, bits).dtype == np.int64


@pytest.mark.parametrize("f", FORMATS, ids=IDS)
def test_decays(f):
    rng = np.random.default_rng(1)
    x = edge_values(f.state_bits, rng)
    for d in sorted({0, 1, f.decay_max // 2, f.decay_max - 1, f.decay_max,
                     int(rng.integers(0, f.decay_max + 1))}):
        assert fx.decay_current(x, d, f).tolist() == [ref_decay(int(i), d, f.u_decay_offset, f)
                                                       for i in x]
        assert fx.decay_voltage(x, d, f).tolist() == [ref_decay(int(i), d, f.v_decay_offset, f)
                                                       for i in x]
    # Loihi's defaults: du = 4095 forgets u, dv = 0 keeps v, both truncate toward zero.
    if f is FMT:
        assert fx.decay_current(x, f.decay_max, f).tolist() == [0] * x.size
        assert fx.decay_voltage(x, 0, f).tolist() == x.tolist()
        assert fx.decay_voltage(np.array([-3, 3]), 2048, f).tolist() == [-1, 1]


@pytest.mark.parametrize("f", FORMATS, ids=IDS)
def test_wrap_current_and_synaptic_input(f):
    rng = np.random.default_rng(2)
    x = edge_values(f.state_bits + 1, rng)
    assert fx.wrap_current(x, f).tolist() == [ref_wrap_current(int(i), f) for i in x]
    a = edge_values(f.container_bits, rng)
    want = [ref_wrap(ref_wrap(int(i), f.container_bits) << f.weight_shift, f.container_bits)
            for i in a]
    assert fx.synaptic_input(a, f).tolist() == want


def test_wrap_current_keeps_lavas_quirk():
    half = 1 << (FMT.state_bits - 1)
    # Lava keeps +2**23 and maps -2**23 to +2**23 (a single-period wrap of an int32).
    assert fx.wrap_current([half, -half, half + 1, -half - 1], FMT).tolist() == \
        [half, half, -half + 1, half - 1]


@pytest.mark.parametrize("f", FORMATS, ids=IDS)
def test_bias_and_threshold(f):
    m = np.arange(f.bias_mant_min, f.bias_mant_max + 1, max(1, (1 << f.bias_mant_bits) // 97))
    for e in range(-2, f.bias_exp_max + 1):
        assert fx.effective_bias(m, e, f).tolist() == [int(i) * 2 ** e if e >= 0
                                                        else int(i) // 2 ** -e for i in m]
    assert fx.effective_threshold(f.vth_max, f) == f.vth_max * 2 ** f.vth_shift


@pytest.mark.parametrize("f", FORMATS, ids=IDS)
def test_lif_step_against_reference(f):
    rng = np.random.default_rng(3)
    n = 64
    for trial in range(6):
        du = int(rng.integers(0, f.decay_max + 1)) if trial else f.decay_max
        dv = int(rng.integers(0, f.decay_max + 1)) if trial else 0
        vth = int(rng.integers(0, f.vth_max + 1)) if trial % 3 else (0, f.vth_max)[trial % 2]
        bm = rng.integers(f.bias_mant_min, f.bias_mant_max + 1, n)
        be = rng.integers(0, f.bias_exp_max + 1, n)
        u = rng.integers(-f.state_max, f.state_max + 1, n)
        v = rng.integers(-f.state_max, f.state_max + 1, n)
        u[:4] = [0, f.state_max, -f.state_max, 1 << (f.state_bits - 1)]
        for step in range(5):
            a = rng.integers(f.a_in_min, f.a_in_max + 1, n) << (step % 3 * 4)
            a[:3] = [0, f.a_in_max, f.a_in_min]
            want = [ref_lif(int(u[i]), int(v[i]), int(a[i]), du, dv, vth, int(bm[i]), int(be[i]), f)
                    for i in range(n)]
            u, v, s = fx.lif_step(u, v, a, du, dv, vth, bm, be, f)
            assert u.tolist() == [w[0] for w in want]
            assert v.tolist() == [w[1] for w in want]
            assert s.tolist() == [w[2] for w in want]


def test_lif_step_batched_shapes():
    rng = np.random.default_rng(4)
    u = rng.integers(-1000, 1000, (3, 5, 7))
    v = rng.integers(-1000, 1000, (3, 5, 7))
    a = rng.integers(-100, 100, (3, 5, 7))
    bm = rng.integers(-10, 10, 7)
    u2, v2, s = fx.lif_step(u, v, a, 10, 20, 3, bm, 1, FMT)
    assert u2.shape == v2.shape == s.shape == (3, 5, 7) and s.dtype == bool
    flat = fx.lif_step(u.reshape(-1, 7), v.reshape(-1, 7), a.reshape(-1, 7), 10, 20, 3, bm, 1, FMT)
    assert np.array_equal(flat[0].reshape(u.shape), u2)


def test_threshold_is_strictly_greater():
    vth = 5
    v_at = vth << FMT.vth_shift
    _, v, s = fx.lif_step([0, 0], [v_at, v_at + 1], [0, 0], 0, 0, vth, 0, 0, FMT)
    assert s.tolist() == [False, True] and v.tolist() == [v_at, 0]


# ----------------------------------------------------------------------------- strict mode, errors

def test_strict_mode_names_the_quantity():
    big = FMT.a_in_max + 1
    with pytest.raises(StateOverflowError, match=r"layer3: synaptic input a_in"):
        fx.lif_step([0], [0], [big], 0, 0, 1, 0, 0, FMT, strict=True, name="layer3")
    assert fx.lif_step([0], [0], [big], 0, 0, 1, 0, 0, FMT)[0].tolist() == [big << FMT.weight_shift]
    with pytest.raises(StateOverflowError, match=r"current u .* would wrap"):
        fx.lif_step([FMT.state_max], [0], [FMT.a_in_max], 0, 0, 1, 0, 0, FMT, strict=True)
    with pytest.raises(StateOverflowError, match=r"voltage v .* would saturate"):
        fx.lif_step([FMT.state_max - 10], [FMT.state_max - 10], [0], 4094, 0, FMT.vth_max, 0, 0,
                    FMT, strict=True)
    # In range: strict and lenient agree.
    args = ([5, -5], [7, -7], [100, -100], 10, 10, 10, [1, 2], [0, 3], FMT)
    for a, b in zip(fx.lif_step(*args), fx.lif_step(*args, strict=True)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("param,value", [("du", 4096), ("dv", -1), ("vth", 1 << 17),
                                         ("bias_mant", 4096), ("bias_exp", 8)])
def test_lif_params_out_of_format(param, value):
    p = dict(du=0, dv=0, vth=1, bias_mant=0, bias_exp=0)
    p[param] = value
    with pytest.raises(FormatError, match=param):
        fx.lif_step([0], [0], [0], fmt=FMT, **p)


def test_floats_are_refused():
    with pytest.raises(FormatError, match="a_in must be an integer"):
        fx.lif_step([0], [0], [0.5], 0, 0, 1, 0, 0, FMT)


def test_descriptive_formats_are_refused():
    other = load_profile("truenorth").formats
    with pytest.raises(ProfileError, match="descriptive only"):
        fx.dense_weights(np.ones((2, 2), int), other)


# ----------------------------------------------------------------------------- Dense

def ref_dense_weight(w: int, mode: SignMode, n: int, b: int) -> int:
    if mode == SignMode.INHIBITORY:
        return -ref_dense_weight(-w, SignMode.EXCITATORY, n, b)
    mixed = mode == SignMode.MIXED
    w = min(max(w, -(2 ** b) if mixed else 0), 2 ** b - 1)
    k = b - n + int(mixed)
    return (w // 2 ** k) * 2 ** k


@pytest.mark.parametrize("b", [4, 8])
def test_dense_weights(b):
    f = dataclasses.replace(FMT, weight_bits=b)
    rng = np.random.default_rng(5)
    lim = 1 << (b + 1)
    w = np.concatenate([np.arange(-lim, lim + 1), rng.integers(-3 * lim, 3 * lim, 50)])
    for mode, n in itertools.product(SignMode, range(1, b + 1)):
        got = fx.dense_weights(w.reshape(-1, 1), f, mode, n).ravel().tolist()
        assert got == [ref_dense_weight(int(i), mode, n, b) for i in w], (mode, n)
    # Without a sign mode, Lava's is derived from the matrix.
    assert fx.determine_sign_mode(np.array([[0, 3]])) == SignMode.EXCITATORY
    assert fx.determine_sign_mode(np.array([[0, -3]])) == SignMode.INHIBITORY
    assert fx.determine_sign_mode(np.array([[-1, 3]])) == SignMode.MIXED
    assert fx.dense_weights(np.array([[-3, 3, 255, -300]]), FMT).tolist() == [[-4, 2, 254, -256]]


@pytest.mark.parametrize("f", FORMATS, ids=IDS)
@pytest.mark.parametrize("graded", [False, True])
def test_dense_accumulate(f, graded):
    rng = np.random.default_rng(6)
    n_in, n_out = 40, 9
    w = rng.integers(-256, 256, (n_out, n_in))
    w[0] = 255
    if graded:
        s = rng.integers(-(1 << (f.container_bits - 2)), 1 << (f.container_bits - 2), (4, n_in))
    else:
        s = rng.random((4, n_in)) < 0.5
    for e in range(-5, 4):
        got = fx.dense_accumulate(w, s, e, f, graded=graded)
        for bt, i in itertools.product(range(4), range(n_out)):
            if graded:
                acc = ref_wrap(sum(int(w[i, j]) * ref_wrap(int(s[bt, j]), f.container_bits)
                                   for j in range(n_in)), f.container_bits)
            else:
                acc = sum(int(w[i, j]) for j in range(n_in) if s[bt, j])
            want = ref_wrap(acc * 2 ** e if e > 0 else acc // 2 ** -e, f.container_bits)
            assert got[bt, i] == want, (e, bt, i)


def test_dense_strict_overflow():
    acc = np.array([1 << (FMT.container_bits - 1)])
    with pytest.raises(StateOverflowError, match="dendritic sum"):
        fx.scale_dendritic_sum(acc, 0, FMT, strict=True, name="fc1")
    with pytest.raises(StateOverflowError, match="scaled dendritic sum"):
        fx.scale_dendritic_sum(np.array([1 << 28]), 4, FMT, strict=True)
    assert fx.scale_dendritic_sum(acc, 0, FMT).tolist() == [-(1 << (FMT.container_bits - 1))]


# ----------------------------------------------------------------------------- Conv

def ref_conv(s, w, stride, padding, dilation, groups, bits):
    """Lava's conv_scipy restated: true 2-D convolution of the padded, dilated kernel, strided."""
    X, Y, C = s.shape
    co, kx, ky, cg = w.shape
    (sx, sy), (px, py), (dx, dy) = stride, padding, dilation
    kxd, kyd = dx * (kx - 1) + 1, dy * (ky - 1) + 1
    ox, oy = (X + 2 * px - kxd) // sx + 1, (Y + 2 * py - kyd) // sy + 1
    dw = np.zeros((co, kxd, kyd, cg), np.int64)
    dw[:, ::dx, ::dy, :] = w
    pad = np.pad(s, ((px, px), (py, py), (0, 0)))
    out = np.zeros((ox, oy, co), np.int64)
    kg = co // groups
    for o, i, j in itertools.product(range(co), range(ox), range(oy)):
        g = o // kg
        total = 0
        for m, n, c in itertools.product(range(kxd), range(kyd), range(cg)):
            total += int(pad[i * sx + kxd - 1 - m, j * sy + kyd - 1 - n, g * cg + c]) * int(dw[o, m, n, c])
        out[i, j, o] = ref_wrap(total, bits)
    return out


@pytest.mark.parametrize("stride,padding,dilation,groups", [
    ((1, 1), (0, 0), (1, 1), 1), ((2, 1), (1, 2), (1, 1), 1), ((1, 2), (1, 1), (2, 1), 2),
    ((3, 2), (2, 0), (1, 2), 4),
])
@pytest.mark.parametrize("bits", [10, 24])
def test_conv_accumulate(stride, padding, dilation, groups, bits):
    f = dataclasses.replace(FMT, conv_out_bits=bits)
    rng = np.random.default_rng(7)
    s = rng.integers(-30, 30, (7, 6, 4))
    w = rng.integers(-250, 250, (8, 3, 2, 4 // groups))
    got = fx.conv_accumulate(s, w, f, stride=stride, padding=padding, dilation=dilation,
                             groups=groups, graded=True)
    assert np.array_equal(got, ref_conv(s, w, stride, padding, dilation, groups, bits))
    binary = fx.conv_accumulate(s > 0, w, f, stride=stride, padding=padding, dilation=dilation,
                                groups=groups)
    assert np.array_equal(binary, ref_conv((s > 0).astype(np.int64), w, stride, padding, dilation,
                                           groups, bits))
    batched = fx.conv_accumulate(np.stack([s, -s]), w, f, stride=stride, padding=padding,
                                 dilation=dilation, groups=groups, graded=True)
    assert np.array_equal(batched[0], got)


def test_conv_weight_from_torch_computes_torch_correlation():
    rng = np.random.default_rng(8)
    c_in, c_out, h, w_, kh, kw = 3, 4, 6, 5, 3, 2
    (sh, sw), (ph, pw) = (2, 1), (1, 0)
    x = rng.integers(-5, 5, (c_in, h, w_))
    k = rng.integers(-5, 5, (c_out, c_in, kh, kw))
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w_ + 2 * pw - kw) // sw + 1
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    want = np.zeros((c_out, oh, ow), np.int64)    # torch.conv2d: a correlation
    for o, y, xx in itertools.product(range(c_out), range(oh), range(ow)):
        want[o, y, xx] = np.sum(k[o] * xp[:, y * sh:y * sh + kh, xx * sw:xx * sw + kw])
    got = fx.conv_accumulate(x.transpose(2, 1, 0), fx.conv_weight_from_torch(k), FMT,
                             stride=(sw, sh), padding=(pw, ph), graded=True)
    assert np.array_equal(got.transpose(2, 1, 0), want)


def test_conv_shape_errors():
    with pytest.raises(FormatError, match="empty"):
        fx.conv_output_shape((2, 2, 1), 1, (3, 3))
    with pytest.raises(FormatError, match="channels"):
        fx.conv_accumulate(np.zeros((4, 4, 3), int), np.zeros((2, 3, 3, 2), int), FMT)


# ----------------------------------------------------------------------------- graded neurons

def test_prod_and_graded_vec():
    rng = np.random.default_rng(9)
    a1 = np.concatenate([rng.integers(-5000, 5000, 100), [1 << 20, -(1 << 20)]])
    a2 = np.concatenate([rng.integers(-5000, 5000, 100), [1 << 12, 1 << 12]])
    for vth, e in ((0, 0), (100, 4), (1 << 20, 2)):
        want = []
        for x, y in zip(a1.tolist(), a2.tolist()):
            p = ref_wrap(x * y, 32) // 2 ** e
            want.append(p if abs(p) > vth else 0)
        assert fx.prod_neuron_step(a1, a2, vth, e, FMT).tolist() == want
        assert fx.graded_vec_step(a1, vth, FMT).tolist() == [x if abs(x) > vth else 0
                                                            for x in a1.tolist()]


# ----------------------------------------------------------------------------- one definition

def test_shipped_loihi_profiles_are_lavas_formats():
    assert load_profile("loihi2").formats == LAVA_FIXED_PT
    loihi = load_profile("loihi").formats
    assert dataclasses.replace(loihi, graded_spikes=True, payload_bits=LAVA_FIXED_PT.payload_bits) \
        == LAVA_FIXED_PT


def test_no_chip_literals_in_the_arithmetic():
    """Widths come from NumberFormats: formats.py is the one place that spells them out."""
    with open(fx.__file__, "rb") as fh:   # code tokens only: docstrings and comments may cite Lava
        code = " ".join(tok.string for tok in tokenize.tokenize(fh.readline)
                        if tok.type not in (tokenize.STRING, tokenize.COMMENT))
    for literal in (r"\b4096\b", r"<<\s*6\b", r"\b2\s*\*\*\s*23\b", r"\b8388608\b", r"\b4095\b",
                    r"\b24\b", r"\b12\b", r"\b17\b", r"\bint32\b", r"\bint16\b"):
        assert not re.search(literal, code), literal
