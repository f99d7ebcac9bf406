"""Reading a trace file (``.npz`` written by a Lava bundle's ``run_lava.py``) with every field
checked, for ``spikec validate --against trace``.

A trace holds ``meta`` (a JSON string: format, version, bundle hash, samples, layers, seconds),
``spikes/<layer>`` [N, T, *shape] and ``readout/<layer>`` [N, *shape] integer arrays, and the
inputs it was recorded on (``inputs/<value>`` [N, *shape]). :func:`read_trace` refuses, with one
``InputFileError`` naming the file and the field: a file that is not a zip of ``.npy`` arrays (or
is truncated), an array of Python objects (never unpickled), non-integer spike or input arrays, a
``meta`` of the wrong JSON types, another bundle's trace, missing or extra layers, and shapes
that do not match the bundle. Its arrays are only decompressed after a memory check.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from spikec.errors import InputFileError
from spikec.memory import require_memory

TRACE_FORMAT = "spikec-trace"
TRACE_FORMAT_VERSION = 1
_INT_KINDS = "biu"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _need(ok: bool, path, field: str, what: str) -> None:
    if not ok:
        raise InputFileError(f"{path}: trace field {field}: {what}")


def _read_arrays(path) -> dict[str, np.ndarray]:
    """Every array of the .npz (no pickles), after a check of their total size."""
    try:
        with zipfile.ZipFile(path) as z:
            total = sum(i.file_size for i in z.infolist())
            require_memory(total, f"{path}: reading the trace's arrays")
        with np.load(path, allow_pickle=False) as z:
            out = {}
            for k in z.files:
                try:
                    out[k] = z[k]
                except ValueError as e:
                    raise InputFileError(f"{path}: trace field {k}: cannot be read without "
                                         f"unpickling Python objects or is malformed ({e})") from None
            return out
    except FileNotFoundError:
        raise InputFileError(f"{path}: not a spikec trace (no such file)") from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError) as e:
        raise InputFileError(f"{path}: not a spikec trace (not a readable .npz: {e})") from None


def _read_meta(arrays: dict, path) -> dict:
    _need("meta" in arrays, path, "meta", "missing")
    raw = arrays["meta"]
    _need(raw.shape == () and raw.dtype.kind == "U", path, "meta", "expected one JSON string")
    try:
        meta = json.loads(str(raw))
    except ValueError as e:
        raise InputFileError(f"{path}: trace field meta: not JSON ({e})") from None
    _need(isinstance(meta, dict), path, "meta", f"expected an object, got {type(meta).__name__}")
    _need(meta.get("format") == TRACE_FORMAT and meta.get("format_version") == TRACE_FORMAT_VERSION,
          path, "meta.format", f"not a {TRACE_FORMAT} {TRACE_FORMAT_VERSION} file")
    _need(isinstance(meta.get("bundle_hash"), str), path, "meta.bundle_hash", "expected a string")
    n = meta.get("samples")
    _need(_is_int(n) and n >= 0, path, "meta.samples",
          f"expected a non-negative integer, got {n!r}")
    layers = meta.get("layers")
    _need(isinstance(layers, list), path, "meta.layers", "expected a list")
    for i, layer in enumerate(layers):
        _need(isinstance(layer, dict) and isinstance(layer.get("name"), str)
              and isinstance(layer.get("shape"), list)
              and all(_is_int(d) for d in layer["shape"]), path, f"meta.layers[{i}]",
              "expected an object with a string name and a list of integer sizes")
    secs = meta.get("seconds", {})
    _need(isinstance(secs, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                         or v is None for v in secs.values()),
          path, "meta.seconds", "expected an object of numbers")
    return meta


def read_trace(path, plan: dict, manifest: dict) -> tuple[dict, dict]:
    """A trace file's arrays and meta, checked against the bundle (format, bundle hash, layer
    names, dtypes and shapes, inputs). Raises ``InputFileError`` naming the file and the field."""
    path = Path(path)
    arrays = _read_arrays(path)
    meta = _read_meta(arrays, path)
    if meta["bundle_hash"] != manifest["bundle_hash"]:
        raise InputFileError(f"{path}: recorded with another bundle (hash "
                             f"{meta['bundle_hash'][:12]}, this bundle "
                             f"{manifest['bundle_hash'][:12]})")
    want = {p["value"]: p for p in plan["probes"]}
    got = {layer["name"]: layer for layer in meta["layers"]}
    for name in want:
        if name not in got:
            raise InputFileError(f"{path}: layer {name!r} is missing from the trace")
    for name in got:
        if name not in want:
            raise InputFileError(f"{path}: layer {name!r} is not a layer of this bundle")
    n, T = meta["samples"], plan["timesteps"]
    for name, p in want.items():
        key = ("readout/" if p["kind"] == "readout" else "spikes/") + name
        shape = (n,) + ((() if p["kind"] == "readout" else (T,)) + tuple(p["shape"]))
        if key not in arrays:
            raise InputFileError(f"{path}: no array {key!r}")
        _need(arrays[key].dtype.kind in _INT_KINDS, path, key,
              f"expected integers, got {arrays[key].dtype}")
        if tuple(arrays[key].shape) != shape or list(got[name]["shape"]) != list(p["shape"]):
            raise InputFileError(f"{path}: layer {name!r} has shape {tuple(arrays[key].shape)}, "
                                 f"the bundle expects {shape}")
    for i in plan.get("inputs", []):
        key = "inputs/" + i["value"]
        if key in arrays:
            a = arrays[key]
            _need(a.dtype.kind in _INT_KINDS and a.ndim >= 1 and a.shape[0] == n, path, key,
                  f"expected {n} integer samples, got {a.dtype} {a.shape}")
    return arrays, meta
