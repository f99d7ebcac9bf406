"""Value types of the IR: what a named value holds, per sample and per time step."""
from __future__ import annotations

import enum
from dataclasses import dataclass


class _Closed:
    """``values()`` and ``has(value)`` for the string enums below."""

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """The words, in definition order."""
        return tuple(m.value for m in cls)

    @classmethod
    def has(cls, value) -> bool:
        """``value`` is one of the words (a member or its string)."""
        return isinstance(value, str) and value in cls.values()


class Kind(_Closed, str, enum.Enum):
    """What the numbers of a value are.

    ``real``: floating point (membrane inputs, the image, logits).
    ``spike``: 0 or 1 (an LIF's output).
    ``count``: a non-negative integer (a sum of spikes: the residual stream, an attention product,
    an 8-bit pixel sent as a graded spike).
    ``current``: a signed integer synaptic input (fixed-point graphs only: the ``a_in`` a synapse
    op delivers to a neuron compartment in one step).
    """

    REAL = "real"
    SPIKE = "spike"
    COUNT = "count"
    CURRENT = "current"

    @property
    def is_integer(self) -> bool:
        return self is not Kind.REAL


class Rate(_Closed, str, enum.Enum):
    """When a value exists.

    ``step``: once per time step (arrays carry a leading ``[T, B]``).
    ``final``: once per inference, after the last step (arrays carry a leading ``[B]``).
    """

    STEP = "step"
    FINAL = "final"


class Word(_Closed, str, enum.Enum):
    """A closed set of words stored as plain strings (op fields, headers, JSON).

    Members compare equal to their value (``Encoding.REPEAT == "repeat"``) and print as it, so
    fields may hold either the member or the string and serialized bytes stay the same.
    """

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    __hash__ = str.__hash__


class Encoding(Word):
    """How a graph input is presented over the T steps: ``repeat`` (the same static sample every
    step, direct encoding) or ``sequence`` (one frame per step; data carry a time axis)."""

    REPEAT = "repeat"
    SEQUENCE = "sequence"


class FireOn(Word):
    """A neuron's firing comparison with its threshold: ``H >= v_th`` or ``H > v_th``."""

    GE = ">="
    GT = ">"


class ResetMode(Word):
    """What a neuron's membrane does after a spike: ``hard`` (set to ``v_reset``) or ``soft``
    (the threshold is subtracted). ``LIF.reset`` derives it from ``v_reset`` (None: soft)."""

    HARD = "hard"
    SOFT = "soft"


class Domain(Word):
    """A graph's domain: ``float`` (the traced network) or ``fixed`` (a target's integer one)."""

    FLOAT = "float"
    FIXED = "fixed"


@dataclass(frozen=True)
class ValueSpec:
    """Type of one IR value.

    Attributes
    ----------
    shape : tuple of int
        Per sample and per time step: no batch axis, no time axis (e.g. ``(C, H, W)``).
    kind : Kind
    rate : Rate
    """

    shape: tuple[int, ...]
    kind: Kind
    rate: Rate = Rate.STEP

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def __str__(self) -> str:
        dims = "x".join(str(d) for d in self.shape) or "scalar"
        suffix = "" if self.rate is Rate.STEP else " final"
        return f"{self.kind.value}[{dims}]{suffix}"
