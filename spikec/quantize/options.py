"""Options of the compiler's quantization step."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from spikec.errors import FormatError
from spikec.ir.types import Word


class ResidualLowering(Word):
    """How the quantizer sends ``count`` values (the residual stream) to synapses (``--residual``;
    see ``CompileOptions.residual``). Not the model's join (``spikec.models.ResidualJoin``)."""

    AUTO = "auto"
    GRADED = "graded"
    FANIN = "fanin"


RESIDUAL_LOWERINGS = ResidualLowering.values()


class InputEncoding(Word):
    """How the raw uint8 input reaches the first layer (``--input-encoding``; docs/compiler.md,
    "Input encodings"). ``rate`` is refused: it is not exact for a trained model."""

    AUTO = "auto"
    GRADED = "graded"
    BITPLANE = "bitplane"
    RATE = "rate"
    HOST = "host"


INPUT_ENCODINGS = InputEncoding.values()
SCALE_MODES = ("threshold", "exponent", "layer")
SNAP_MODES = ("auto", "pow2", "free")


@dataclass(frozen=True)
class CompileOptions:
    """How the quantizer maps a folded float graph onto the target.

    Attributes
    ----------
    residual : ResidualLowering ("auto", "graded", "fanin")
        How ``count`` values (the residual stream) reach synapses. ``graded``: the count is sent as a
        graded spike payload and the ``add`` stays. ``fanin``: every synapse reading ``add(a, b)``
        reads ``a`` and ``b`` as separate spike sources through the same weights (no add, no graded
        spikes; the synapses are stored once per source). ``auto``: graded where the target has
        graded spikes, else fan-in.
    input_encoding : InputEncoding ("auto", "graded", "bitplane", "host"; "rate" is refused)
        How raw pixels reach the first layer: ``graded`` (8-bit graded spikes), ``bitplane`` (8
        binary spike planes through the first synapse with exponents ``e + k``: exact),
        ``host`` (the first synapse and LIF run on the host; the chip gets its spikes).
        ``auto``: graded where the target has graded spikes, else bitplane.
    threshold_groups : int
        Most distinct (weight_exp, vth) groups one layer is split into (Lava: one Dense/Conv and
        one LIF process per group). 1 = one scale per layer.
    scale_mode : {"threshold", "exponent", "layer"}
        What differs between a layer's groups: ``threshold`` (each group its own scale ``K``,
        so its own vth and weight_exp), ``exponent`` (one vth per layer, per-group weight_exp:
        power-of-two steps only), ``layer`` (one group, whatever ``threshold_groups`` says).
    snap : {"auto", "pow2", "free"}
        Mantissa scale: ``free`` fills the 8-bit mantissa; ``pow2`` uses a power of two (dyadic
        weights, biases and thresholds are then encoded exactly, at up to one bit of resolution);
        ``auto`` takes ``pow2`` for a block where it is exact, else ``free``.
    strict : bool
        Raise ``FormatError`` naming the layer when a bound (calibrated when ``calib`` is given,
        else the worst case) says a_in can leave int16 or u/v their 24 bits.
    calib_margin : float
        Calibrated ranges are multiplied by this before scales are chosen.
    exact_counts : bool
        Give neurons that read counts directly (``attn_lif``) the input gain ``2**(T-1)`` that makes
        them spike exactly like the float model (docs/compiler.md), as far as a_in allows.
    truncation_compensation : bool
        For ``weight_exp < 0`` add the mean loss of Dense's floor shift back through the bias.
    min_weight_exp : int or None
        Smallest weight exponent to use (default: the profile's). 0 keeps every right shift out of
        the synapses (a backend that splits one synapse op into several processes floors each
        part separately when ``weight_exp < 0``), at the cost of mantissa bits in wide layers.
    """

    residual: str = "auto"
    input_encoding: str = "auto"
    threshold_groups: int = 4
    scale_mode: str = "threshold"
    snap: str = "auto"
    strict: bool = False
    calib_margin: float = 1.25
    exact_counts: bool = True
    truncation_compensation: bool = True
    min_weight_exp: int | None = None

    def __post_init__(self):
        if not ResidualLowering.has(self.residual):
            raise FormatError(f"residual must be one of {', '.join(RESIDUAL_LOWERINGS)}, "
                              f"not {self.residual!r}")
        if not InputEncoding.has(self.input_encoding):
            raise FormatError(f"input_encoding must be one of {', '.join(INPUT_ENCODINGS)}, "
                              f"not {self.input_encoding!r}")
        if self.scale_mode not in SCALE_MODES:
            raise FormatError(f"scale_mode must be one of {', '.join(SCALE_MODES)}, "
                              f"not {self.scale_mode!r}")
        if self.snap not in SNAP_MODES:
            raise FormatError(f"snap must be one of {', '.join(SNAP_MODES)}, not {self.snap!r}")
        if not isinstance(self.threshold_groups, int) or self.threshold_groups < 1:
            raise FormatError(f"threshold_groups must be a positive integer, "
                              f"not {self.threshold_groups!r}")
        if not self.calib_margin >= 1.0:
            raise FormatError(f"calib_margin must be >= 1, not {self.calib_margin!r}")

    def to_dict(self) -> dict:
        return asdict(self)
