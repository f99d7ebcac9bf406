"""The target chip: hardware profiles and the chip's fixed-point arithmetic (numpy only).

``load_profile("loihi2").formats`` gives the number formats that ``spikec.target.fixedpoint``
computes with; see docs/target-arithmetic.md.
"""
from __future__ import annotations

from spikec.target.formats import LAVA_FIXED_PT, NumberFormats, SignMode
from spikec.target.profile import (
    Capacity, EventCosts, Figure, HardwareProfile, System, list_profiles, load_profile,
    profiles_dir,
)

__all__ = [
    "Capacity", "EventCosts", "Figure", "HardwareProfile", "LAVA_FIXED_PT", "NumberFormats",
    "SignMode", "System", "list_profiles", "load_profile", "profiles_dir",
]
