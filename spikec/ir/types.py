"""Value types of the IR: what a named value holds, per sample and per time step."""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(str, enum.Enum):
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


class Rate(str, enum.Enum):
    """When a value exists.

    ``step``: once per time step (arrays carry a leading ``[T, B]``).
    ``final``: once per inference, after the last step (arrays carry a leading ``[B]``).
    """

    STEP = "step"
    FINAL = "final"


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
