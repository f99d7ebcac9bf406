"""Deterministic one-file serialization of a graph (``.spkc``).

Layout (format 2): the 8-byte magic ``b"SPIKEC\\x00\\x02"``, an 8-byte little-endian header
length, the 32-byte SHA-256 of everything after it (header and arrays), the header (UTF-8 JSON,
sorted keys, no spaces), then every array's raw little-endian bytes in the order the header lists
them, each 64-byte aligned. Same graph -> same bytes; the JSON header is readable with
``tail -c +49 | head -c N``.

Loading checks, before building any op: the checksum (a flipped byte anywhere is an error), the
JSON types of every header field, every array's dtype (plain numbers only: never an object
array), shape and blob range (inside the file, of the size its shape needs). Each failure is
one ``InputFileError`` naming the file and the field.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import struct
from enum import Enum
from pathlib import Path

import numpy as np

from spikec.atomic import write_atomic
from spikec.errors import InputFileError, IRError, SpikecError
from spikec.ir.graph import Graph, verify
import spikec.ir.fixed  # noqa: F401  (registers the fixed-point ops)
from spikec.ir.ops import op_type
from spikec.spool import Spooled

MAGIC = b"SPIKEC\x00\x02"
OLD_MAGICS = {b"SPIKEC\x00\x01": 1}
FORMAT_VERSION = 2
HEADER_START = 8 + 8 + 32            # magic, header length, sha256
_ALIGN = 64
_DOMAINS = ("float", "fixed")
_DTYPE_KINDS = "biuf"                # bool, signed, unsigned, float: never objects or records


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
            items = value["$tuple"]
            if not isinstance(items, list):
                raise TypeError(f"$tuple holds a {type(items).__name__}, not a list")
            return tuple(_decode(v, blobs) for v in items)
        return {k: _decode(v, blobs) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, blobs) for v in value]
    return value


def dumps(graph: Graph) -> bytes:
    """Serialize a verified graph to bytes.

    Built in place in one buffer (each array's bytes copied once, the checksum hashed as they
    go), so a graph of N array bytes needs about N more while it is written, not four copies."""
    buf = io.BytesIO()
    dump_to(graph, buf)
    return buf.getvalue()   # hands over the buffer itself: no copy


def dump_to(graph: Graph, f) -> None:
    """Write ``dumps(graph)`` into the seekable binary file ``f`` at its current position,
    streaming each array's bytes (nothing but the header is built in memory)."""
    head, offsets, arrays = _layout(graph)
    start = f.tell()
    f.write(MAGIC + struct.pack("<Q", len(head)) + bytes(32) + head)
    digest = hashlib.sha256(head)
    for piece in _pieces(offsets, arrays):
        f.write(piece)
        digest.update(piece)
    end = f.tell()
    f.seek(start + len(MAGIC) + 8)
    f.write(digest.digest())
    f.seek(end)


def spooled(graph: Graph) -> Spooled:
    """``dumps(graph)`` written into a temporary file (``spikec.spool``): the same bytes,
    never held in memory, for outputs too large to keep as ``bytes``."""
    out = Spooled()
    try:
        dump_to(graph, out.file)
    finally:
        out.done()
    return out


def graph_sha256(graph: Graph) -> str:
    """The SHA-256 (hex) of ``dumps(graph)``, hashed without building the bytes."""
    head, offsets, arrays = _layout(graph)
    inner = hashlib.sha256(head)
    for piece in _pieces(offsets, arrays):
        inner.update(piece)
    outer = hashlib.sha256(MAGIC + struct.pack("<Q", len(head)) + inner.digest() + head)
    for piece in _pieces(offsets, arrays):
        outer.update(piece)
    return outer.hexdigest()


def _layout(graph: Graph) -> tuple[bytes, list[int], list[np.ndarray]]:
    """The header (JSON bytes), and the offset in the array region of each array."""
    verify(graph)
    arrays: list[np.ndarray] = []
    ops = []
    for op in graph.ops:
        fields = {k: _encode(v, arrays) for k, v in vars(op).items()
                  if not k.startswith("_") and not (v is None and k in op.OPTIONAL)}
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
    return head, offsets, arrays


def _pieces(offsets: list[int], arrays: list[np.ndarray]):
    """The array region in order: alignment zeros and each array's bytes (a view; ``_encode``
    made every array C-contiguous and little-endian)."""
    end = 0
    for off, arr in zip(offsets, arrays):
        if off > end:
            yield bytes(off - end)
        yield memoryview(arr.reshape(-1).view(np.uint8))
        end = off + arr.nbytes


def pack(head: bytes, body: bytes) -> bytes:
    """The file bytes of a header (JSON bytes) and its array region (checksum included)."""
    digest = hashlib.sha256(head + body).digest()
    return MAGIC + struct.pack("<Q", len(head)) + digest + head + body


def loads(data: bytes, source: str = "<bytes>") -> Graph:
    """Inverse of ``dumps``; raises ``InputFileError`` naming ``source`` and the field on a
    malformed, truncated or edited file."""
    header, body = _unpack(data, source)
    blobs = _blobs(header, body, source)
    ops = []
    for i, rec in enumerate(header["ops"]):
        rec = dict(rec)
        opcode = rec.pop("op")
        where = f"{source}: ops[{i}] ({rec.get('name', opcode)!r})"
        try:
            cls = op_type(opcode)
            fields = {k: _decode(v, blobs) for k, v in rec.items()}
            ops.append(cls(**fields))
        except SpikecError as e:
            raise InputFileError(f"{where}: {e}") from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            raise InputFileError(f"{where}: fields do not make a {opcode!r} op ({e})") from None
    try:
        graph = Graph(ops, timesteps=header["timesteps"], meta=_decode(header["meta"], blobs),
                      domain=header["domain"])
        verify(graph)
    except SpikecError as e:
        raise InputFileError(f"{source}: {e}") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        raise InputFileError(f"{source}: not a valid graph ({e})") from None
    return graph


def _unpack(data: bytes, source: str) -> tuple[dict, bytes]:
    """(header, array region) after checking magic, length, checksum and the header's types."""
    if data[:len(MAGIC)] != MAGIC:
        old = OLD_MAGICS.get(bytes(data[:len(MAGIC)]))
        if old is not None:
            raise InputFileError(f"{source}: graph format {old} (written by an older spikec, "
                                 f"without a checksum); this spikec reads format "
                                 f"{FORMAT_VERSION}: compile the model again")
        raise InputFileError(f"{source}: not a spikec graph file (bad magic)")
    if len(data) < HEADER_START:
        raise InputFileError(f"{source}: corrupt spikec graph file: truncated to {len(data)} bytes")
    (n,) = struct.unpack("<Q", data[8:16])
    if n > len(data) - HEADER_START:
        raise InputFileError(f"{source}: corrupt spikec graph file: truncated (header length {n}, only "
                             f"{len(data) - HEADER_START} bytes follow)")
    if hashlib.sha256(data[HEADER_START:]).digest() != data[16:HEADER_START]:
        raise InputFileError(f"{source}: corrupt spikec graph file: checksum mismatch (field "
                             "sha256): damaged, truncated or edited")
    try:
        header = json.loads(data[HEADER_START:HEADER_START + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InputFileError(f"{source}: header is not JSON ({e})") from None
    _check_header(header, source)
    return header, data[HEADER_START + n:]


def _need(ok: bool, source: str, field: str, what: str) -> None:
    if not ok:
        raise InputFileError(f"{source}: header field {field}: {what}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_header(h, source: str) -> None:
    """Raise ``InputFileError`` naming the first header field of the wrong JSON type or value."""
    _need(isinstance(h, dict), source, "<header>", f"expected an object, got {type(h).__name__}")
    _need(h.get("format") == FORMAT_VERSION, source, "format",
          f"{h.get('format')!r} is not supported (this spikec reads format {FORMAT_VERSION})")
    t = h.get("timesteps")
    _need(_is_int(t) and t >= 1, source, "timesteps", f"expected a positive integer, got {t!r}")
    _need(h.get("domain") in _DOMAINS, source, "domain",
          f"expected one of {', '.join(_DOMAINS)}, got {h.get('domain')!r}")
    _need(isinstance(h.get("meta"), dict), source, "meta", "expected an object")
    ops = h.get("ops")
    _need(isinstance(ops, list), source, "ops", "expected a list")
    for i, rec in enumerate(ops):
        _need(isinstance(rec, dict) and isinstance(rec.get("op"), str), source, f"ops[{i}]",
              "expected an object with a string 'op'")
    blobs = h.get("blobs")
    _need(isinstance(blobs, list), source, "blobs", "expected a list")
    for i, b in enumerate(blobs):
        _need(isinstance(b, dict) and set(b) == {"offset", "nbytes"}, source, f"blobs[{i}]",
              "expected an object with offset and nbytes")
        for k in ("offset", "nbytes"):
            _need(_is_int(b[k]) and b[k] >= 0, source, f"blobs[{i}].{k}",
                  f"expected a non-negative integer, got {b[k]!r}")


def _blobs(header: dict, body: bytes, source: str) -> list[np.ndarray]:
    """The arrays the header describes, each checked against its blob's range and size."""
    descs = _array_descs(header, source)
    blobs_meta = header["blobs"]
    _need(len(descs) == len(blobs_meta), source, "blobs",
          f"{len(blobs_meta)} entries for {len(descs)} arrays")
    out = []
    for i, (spec, desc) in enumerate(zip(descs, blobs_meta)):
        field = f"blobs[{i}]"
        dtype = _dtype(spec.get("dtype"), source, f"array {i} dtype")
        shape = spec.get("shape")
        _need(isinstance(shape, list) and all(_is_int(d) and d >= 0 for d in shape), source,
              f"array {i} shape", f"expected a list of non-negative integers, got {shape!r}")
        need = math.prod(shape) * dtype.itemsize
        _need(desc["nbytes"] == need, source, f"{field}.nbytes",
              f"{desc['nbytes']} bytes, but shape {shape} of {dtype} needs {need}")
        end = desc["offset"] + desc["nbytes"]
        _need(end <= len(body), source, f"{field}.offset",
              f"bytes {desc['offset']}..{end} lie beyond the file's {len(body)} array bytes")
        buf = body[desc["offset"]:end]
        out.append(np.frombuffer(buf, dtype=dtype).reshape(shape).copy())
    return out


def _dtype(text, source: str, field: str) -> np.dtype:
    _need(isinstance(text, str), source, field, f"expected a string, got {text!r}")
    try:
        dt = np.dtype(text)
    except (TypeError, ValueError):
        dt = None
    _need(dt is not None and dt.kind in _DTYPE_KINDS and dt.fields is None and not dt.subdtype,
          source, field, f"{text!r} is not a plain number type")
    return dt


def _array_descs(header, source: str = "<bytes>") -> list[dict]:
    """Array descriptors in index order (walks the header the way ``_encode`` numbered them)."""
    found: dict[int, dict] = {}

    def walk(v):
        if isinstance(v, dict):
            if "$array" in v:
                k = v["$array"]
                _need(_is_int(k) and k >= 0 and k not in found, source, "$array",
                      f"index {k!r} is not a new non-negative integer")
                found[k] = v
                return
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(header["meta"])
    walk(header["ops"])
    _need(sorted(found) == list(range(len(found))), source, "$array",
          f"indices {sorted(found)[:8]} are not 0..{len(found) - 1}")
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
