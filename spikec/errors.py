"""Typed errors. The CLI turns every ``SpikecError`` into one line and exit code ``exit_code``.

Each message says what went wrong, where (file, layer, op, limit) and, where it helps, what to do.
"""
from __future__ import annotations

import importlib


class SpikecError(Exception):
    """Base of every error spikec reports to a user (never a bug in spikec itself)."""

    exit_code = 2


class InputFileError(SpikecError):
    """A file is missing, unreadable or not of the expected kind."""


class CheckpointError(SpikecError):
    """A checkpoint does not match the architecture (missing/unexpected keys, shapes)."""


class UnsafePickleError(SpikecError):
    """A file needs full unpickling, which is refused without ``--trust-pickle``."""


class UnsupportedOpError(SpikecError):
    """A module or tensor operation the frontend or a backend cannot express."""


class ShapeError(SpikecError):
    """Shapes or value kinds that do not fit an op (input shape, data shape, IR verification)."""


class IRError(SpikecError):
    """The IR is malformed: dangling value, duplicate name, op that fails verification."""


class FormatError(SpikecError):
    """A value does not fit a fixed-point format of the target even at its widest setting."""


class StateOverflowError(SpikecError):
    """The bit-exact simulator saw a state overflow in strict mode."""


class CapacityError(SpikecError):
    """A network does not fit the chip (neurons, synaptic memory, axons, chips)."""

    exit_code = 3


class ProfileError(SpikecError):
    """A hardware profile is malformed or lacks a field."""


class DataError(SpikecError):
    """A dataset is missing or does not match the model."""


class MissingEnvironmentError(SpikecError):
    """A required external environment (Lava's Python 3.10, a package) is missing."""


class OutputError(SpikecError):
    """An output directory may not or cannot be written (user files in it, the input inside it,
    another run writing it, a read-only or full file system)."""


def require(package: str, purpose: str, extra: str = "interchange"):
    """Import the optional ``package`` or raise ``MissingEnvironmentError`` saying what needs it
    (``purpose``) and how to install it (the ``spikec[extra]`` extra)."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise MissingEnvironmentError(f"{purpose} needs the '{package}' package: pip install "
                                      f"'spikec[{extra}]'") from None
