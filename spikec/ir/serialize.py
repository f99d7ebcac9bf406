"""Deterministic one-file serialization of a graph (``.spkc``).

Layout: the 8-byte magic ``b"SPIKEC\\x00\\x01"``, an 8-byte little-endian header length, the
header (UTF-8 JSON, sorted keys, no spaces), then every array's raw little-endian bytes in the
order the header lists them, each 64-byte aligned. Same graph -> same bytes; the JSON header
is readable with ``head -c``.
"""
from __future__ import annotations

import json
import os
import struct
from enum import Enum
from pathlib import Path

import numpy as np

from spikec.atomic import write_atomic
from spikec.errors import InputFileError, IRError
from spikec.ir.graph import Graph, verify
import spikec.ir.fixed  # noqa: F401  (registers the fixed-point ops)
from spikec.ir.ops import op_type

MAGIC = b"SPIKEC\x00\x01"
FORMAT_VERSION = 1
_ALIGN = 64


def _encode(value, arrays: list[np.ndarray]):
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        arrays.append(arr)
        return {"$array": len(arrays) - 1, "dtype": arr.dtype.str, "shape": list(arr.shape)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return {"$tuple": [_encode(v, arrays) for v in value]} if isinstance(value, tuple) \
            else [_encode(v, arrays) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v, arrays) for k, v in value.items()}
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise IRError(f"cannot serialize a field of type {type(value).__name__}")


def _decode(value, blobs: list[np.ndarray]):
    if isinstance(value, dict):
        if "$array" in value:
            return blobs[value["$array"]]
        if "$tuple" in value:
            return tuple(_decode(v, blobs) for v in value["$tuple"])
        return {k: _decode(v, blobs) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, blobs) for v in value]
    return value


def dumps(graph: Graph) -> bytes:
    """Serialize a verified graph to bytes."""
    verify(graph)
    arrays: list[np.ndarray] = []
    ops = []
    for op in graph.ops:
        fields = {k: _encode(v, arrays) for k, v in vars(op).items() if not k.startswith("_")}
        ops.append({"op": op.OPCODE, **fields})
    header = {"format": FORMAT_VERSION, "timesteps": graph.timesteps, "domain": graph.domain,
              "meta": _encode(graph.meta, arrays), "ops": ops}
    offsets = []
    pos = 0
    for arr in arrays:
        pos = -(-pos // _ALIGN) * _ALIGN
        offsets.append(pos)
        pos += arr.nbytes
    header["blobs"] = [{"offset": o, "nbytes": a.nbytes} for o, a in zip(offsets, arrays)]
    head = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()
    out = bytearray(MAGIC + struct.pack("<Q", len(head)) + head)
    base = len(out)
    for off, arr in zip(offsets, arrays):
        out.extend(b"\x00" * (base + off - len(out)))
        out.extend(arr.tobytes(order="C"))
    return bytes(out)


def loads(data: bytes, source: str = "<bytes>") -> Graph:
    """Inverse of ``dumps``; raises ``InputFileError`` naming ``source`` on a malformed file."""
    if data[:len(MAGIC)] != MAGIC:
        raise InputFileError(f"{source}: not a spikec graph file (bad magic)")
    try:
        (n,) = struct.unpack("<Q", data[8:16])
        header = json.loads(data[16:16 + n])
        base = 16 + n
        blobs = []
        for spec, desc in zip(_array_descs(header), header["blobs"]):
            start = base + desc["offset"]
            buf = data[start:start + desc["nbytes"]]
            arr = np.frombuffer(buf, dtype=np.dtype(spec["dtype"])).reshape(spec["shape"]).copy()
            blobs.append(arr)
    except (ValueError, KeyError, struct.error) as e:
        raise InputFileError(f"{source}: corrupt spikec graph file ({e})") from None
    if header.get("format") != FORMAT_VERSION:
        raise InputFileError(f"{source}: graph format {header.get('format')} is not supported "
                             f"(this spikec reads format {FORMAT_VERSION})")
    ops = []
    for rec in header["ops"]:
        rec = dict(rec)
        cls = op_type(rec.pop("op"))
        fields = {k: _decode(v, blobs) for k, v in rec.items()}
        ops.append(cls(**fields))
    graph = Graph(ops, timesteps=header["timesteps"], meta=_decode(header["meta"], blobs),
                  domain=header.get("domain", "float"))
    verify(graph)
    return graph


def _array_descs(header) -> list[dict]:
    """Array descriptors in index order (walks the header the way ``_encode`` numbered them)."""
    found: dict[int, dict] = {}

    def walk(v):
        if isinstance(v, dict):
            if "$array" in v:
                found[v["$array"]] = v
                return
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(header["meta"])
    walk(header["ops"])
    return [found[i] for i in range(len(found))]


def save(graph: Graph, path: str | os.PathLike) -> None:
    """Write atomically: to a temporary file beside ``path``, then rename."""
    write_atomic(Path(path), dumps(graph))


def load(path: str | os.PathLike) -> Graph:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputFileError(f"{p}: cannot read ({e.strerror})") from None
    return loads(data, source=str(p))
