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


class InvalidValueError(SpikecError):
    """A number out of its range: NaN/Inf, a negative rate or energy, a zero count."""


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


def _os_error_line(e: OSError) -> str:
    """``OSError`` as one line naming the path(s) and what to do about the common causes."""
    import errno

    where = e.filename if e.filename is not None else ""
    if getattr(e, "filename2", None) is not None:
        where = f"{e.filename} -> {e.filename2}"
    what = e.strerror or type(e).__name__
    hints = {errno.ENOSPC: "free space on that disk or write elsewhere",
             errno.EDQUOT: "free space on that disk or write elsewhere",
             errno.EACCES: "check the permissions or write elsewhere",
             errno.EPERM: "check the permissions or write elsewhere",
             errno.EROFS: "the file system is read-only: write elsewhere",
             errno.ENOTDIR: "a part of the path is a file, not a folder",
             errno.EEXIST: "a part of the path already exists as a file",
             errno.EISDIR: "a folder is in the way of a file"}
    hint = hints.get(e.errno)
    text = f"{where}: {what}" if where else what
    return text + (f" ({hint})" if hint else "")


def one_line(exc: BaseException) -> tuple[str, int]:
    """The one line the CLI prints for ``exc`` (without the ``spikec: error:`` prefix) and the
    exit code: the error's own code for a ``SpikecError``, 2 for bad input (``OSError``,
    ``UnicodeDecodeError``, ``ValueError`` from a reader), 3 for ``MemoryError``.

    Any newline in a message is folded, so the caller can rely on exactly one line.
    """
    if isinstance(exc, SpikecError):
        text, code = str(exc), exc.exit_code
    elif isinstance(exc, MemoryError):
        text, code = ("out of memory" + (f": {exc}" if str(exc) else "")
                      + " (use smaller inputs, a smaller --batch-size or --limit, or set "
                      "SPIKEC_MEMORY_LIMIT to refuse earlier)"), 3
    elif isinstance(exc, UnicodeDecodeError):
        text, code = (f"a file is not UTF-8 text (byte {exc.start}: "
                      f"{exc.object[exc.start:exc.start + 1]!r})"), 2
    elif isinstance(exc, OSError):
        text, code = _os_error_line(exc), 2
    else:
        text, code = f"{type(exc).__name__}: {exc}", 2
    text = " ".join(str(text).split()) or type(exc).__name__
    return text, code
