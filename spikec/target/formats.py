"""Number formats of a target chip: every bit width, shift and offset of its arithmetic.

This is the one place where the widths of Loihi's fixed-point arithmetic are written as numbers
(``LAVA_FIXED_PT``, copied from lava-nc 0.10.0's bit-accurate models). Hardware profiles
(``hardware_profiles/*.toml``) carry the same numbers with their sources; the quantizer, the bit-exact
simulator, the Lava backend and the estimator read them from a loaded profile's ``formats``.
See docs/target-arithmetic.md for the formulas and the Lava source lines they come from.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

#: ``NumberFormats.arithmetic`` of chips whose neurons compute exactly Lava's ``fixed_pt`` models.
LAVA_ARITHMETIC = "lava_fixed_pt"
#: ``NumberFormats.arithmetic`` of other chips: formats are descriptive (used by the estimator only).
OTHER_ARITHMETIC = "other"
ARITHMETICS = (LAVA_ARITHMETIC, OTHER_ARITHMETIC)


class SignMode(enum.IntEnum):
    """Sign mode of a Dense weight matrix, numbered as ``lava.utils.weightutils.SignMode``.

    ``MIXED`` weights carry their sign in the mantissa, which costs one bit of resolution: Lava's
    bit-accurate Dense clears the lowest bit of a mixed-sign weight (weights are even numbers).
    """

    NULL = 0
    MIXED = 1
    EXCITATORY = 2
    INHIBITORY = 3


@dataclass(frozen=True)
class NumberFormats:
    """Bit widths and fixed shifts of a chip's neuron and synapse arithmetic.

    Widths of signed quantities count the sign bit. ``None`` means the chip's documentation does not
    give the figure (only allowed when ``arithmetic`` is ``"other"``).

    Attributes
    ----------
    arithmetic : str
        ``"lava_fixed_pt"``: the neurons compute exactly lava-nc 0.10.0's ``fixed_pt`` models, and
        ``spikec.target.fixedpoint`` is their arithmetic. ``"other"``: descriptive only.
    weight_bits : int
        Synaptic weight mantissa width (8 on Loihi 2). Unsigned for single-sign matrices; a mixed-sign
        matrix spends the lowest bit on the sign (see ``SignMode``).
    weight_exp_min, weight_exp_max : int
        Range of the per-process shared weight exponent (the accumulated sum is shifted by it).
    weight_shift : int
        Left shift that MSB-aligns the synaptic input ``a_in`` with the 24-bit current ``u``
        (Lava's ``act_shift``: ``u += a_in << 6``).
    state_bits : int
        Width of the current ``u`` and voltage ``v`` (24).
    decay_bits : int
        Width of the decay constants ``du``, ``dv`` (12); products with a decay are shifted right by
        this many bits.
    decay_unity : int
        ``2 ** decay_bits`` (4096): the decay factor is ``decay_unity - (d + offset)``.
    u_decay_offset, v_decay_offset : int
        Offsets added to ``du`` / ``dv`` (Lava's ``ds_offset`` = 1, ``dm_offset`` = 0), so ``du``
        = 4095 clears ``u`` every step while ``dv`` = 0 keeps ``v`` exactly.
    vth_bits : int
        Width of the unsigned threshold mantissa (17).
    vth_shift : int
        Left shift of the threshold mantissa before the compare ``v > vth << vth_shift`` (6).
    bias_mant_bits : int
        Width of the signed bias mantissa (13).
    bias_exp_bits : int
        Width of the unsigned bias exponent (3): bias = ``bias_mant << bias_exp``.
    a_in_bits : int
        Width of the synaptic input a neuron receives per step (int16 on the chip).
    graded_spikes : bool
        Whether spikes carry integer payloads.
    payload_bits : int
        Width of a graded spike's payload (0 when ``graded_spikes`` is false).
    container_bits : int
        Width of the integers Lava's CPU models use to hold messages and dendritic sums (int32);
        intermediate results wrap at this width in Lava.
    conv_out_bits : int
        Width at which Lava's ``fixed_pt`` Conv wraps its output sum (24).
    """

    arithmetic: str
    weight_bits: int | None
    weight_exp_min: int | None
    weight_exp_max: int | None
    weight_shift: int | None
    state_bits: int | None
    decay_bits: int | None
    decay_unity: int | None
    u_decay_offset: int | None
    v_decay_offset: int | None
    vth_bits: int | None
    vth_shift: int | None
    bias_mant_bits: int | None
    bias_exp_bits: int | None
    a_in_bits: int | None
    graded_spikes: bool
    payload_bits: int | None
    container_bits: int | None
    conv_out_bits: int | None

    @property
    def is_lava(self) -> bool:
        """True when ``spikec.target.fixedpoint`` computes this chip's arithmetic."""
        return self.arithmetic == LAVA_ARITHMETIC

    # Derived limits, named so that no caller writes ``2 ** 23`` itself.
    @property
    def state_max(self) -> int:
        """Largest value of a ``state_bits`` signed register (2**23 - 1)."""
        return (1 << (self.state_bits - 1)) - 1

    @property
    def vth_max(self) -> int:
        """Largest threshold mantissa (2**17 - 1)."""
        return (1 << self.vth_bits) - 1

    @property
    def decay_max(self) -> int:
        """Largest ``du`` / ``dv`` (4095)."""
        return (1 << self.decay_bits) - 1

    @property
    def bias_mant_min(self) -> int:
        return -(1 << (self.bias_mant_bits - 1))

    @property
    def bias_mant_max(self) -> int:
        return (1 << (self.bias_mant_bits - 1)) - 1

    @property
    def bias_exp_max(self) -> int:
        return (1 << self.bias_exp_bits) - 1

    @property
    def a_in_min(self) -> int:
        return -(1 << (self.a_in_bits - 1))

    @property
    def a_in_max(self) -> int:
        return (1 << (self.a_in_bits - 1)) - 1


#: lava-nc 0.10.0's bit-accurate (``fixed_pt``) models, the arithmetic of record for Loihi 2.
#: Sources (lava/...): proc/lif/models.py:78-108 (u, v 24 bit; du, dv 12 bit; bias 13/3 bit; a_in
#: int16; ds_offset 1, dm_offset 0; decay_shift 12; vth_shift 6; act_shift 6), :262 (vth 17 bit),
#: proc/dense/models.py:64-87 (int32 a_out, 8-bit weights), proc/conv/models.py:73-79 (24-bit wrap).
#: Weight exponent range: Lava does not bound it; -8..7 is Loihi's 4-bit signed ``wgtExp``.
LAVA_FIXED_PT = NumberFormats(
    arithmetic=LAVA_ARITHMETIC,
    weight_bits=8,
    weight_exp_min=-8,
    weight_exp_max=7,
    weight_shift=6,
    state_bits=24,
    decay_bits=12,
    decay_unity=4096,
    u_decay_offset=1,
    v_decay_offset=0,
    vth_bits=17,
    vth_shift=6,
    bias_mant_bits=13,
    bias_exp_bits=3,
    a_in_bits=16,
    graded_spikes=True,
    payload_bits=24,
    container_bits=32,
    conv_out_bits=24,
)
