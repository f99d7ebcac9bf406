"""Compiled loops of the simulator: an optional accelerator (numba).

A few passes of the simulator move small arrays in patterns numpy serves poorly (inner loops of a
dozen elements, several passes where one would do). Where numba is installed (``pip install
spikec[fast]``) they run as compiled loops; each loop is a plain Python function that computes the
same integers without numba (slowly: tests run both), and the numpy code beside each use stays the
reference and the fallback. ``SPIKEC_SIM_NUMBA=0`` turns the loops off.

Loops are compiled on first use (``nogil``: the simulator's threads run them in parallel), cached
on disk where the package directory is writable.
"""
from __future__ import annotations

import os

_numba = None           # None: not looked up yet; False: unavailable or off; else numba
_compiled: dict = {}    # Python loop -> its compiled form


def enabled() -> bool:
    """Whether compiled loops run here (numba importable, ``SPIKEC_SIM_NUMBA`` not ``0``)."""
    global _numba
    if _numba is None:
        _numba = _load()
    return _numba is not False


def _load():
    if os.environ.get("SPIKEC_SIM_NUMBA", "1") == "0":
        return False
    try:
        import numba
    except ImportError:
        return False
    return numba


def kernel(loop):
    """``loop`` compiled by numba (once per process), or None where compiled loops are off."""
    if not enabled():
        return None
    fn = _compiled.get(loop)
    if fn is None:
        try:
            fn = _numba.njit(nogil=True, cache=True)(loop)
        except RuntimeError:                # no writable cache location: compile per process
            fn = _numba.njit(nogil=True)(loop)
        _compiled[loop] = fn
    return fn
