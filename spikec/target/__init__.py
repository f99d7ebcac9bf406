"""The target chip: hardware profiles and the fixed-point arithmetic."""
