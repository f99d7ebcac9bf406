"""Large outputs spooled to disk (``spikec.spool``): the same bytes as the in-memory writers,
linked or copied into OUT, removed when released."""
from __future__ import annotations

import gc
import hashlib
import os

import numpy as np
import pytest

from spikec.backends.lava import bundle_files, samples
from spikec.backends.lava.runtime.npzio import npz_bytes
from spikec.ir import dumps, loads
from spikec.ir.serialize import spooled
from spikec.outputs import replace_dir
from spikec.spool import Spooled


def _spool(data: bytes) -> Spooled:
    s = Spooled()
    s.file.write(data)
    return s.done()


def test_spooled_stands_for_its_bytes():
    data = bytes(range(256)) * 5000
    s = _spool(data)
    assert len(s) == len(data) and s.read_bytes() == data and bytes(s) == data
    assert s == data and data == s and s == _spool(data)
    assert s != data[:-1] + b"x" and s != data[:-1]
    assert s.sha256() == hashlib.sha256(data).hexdigest()


def test_spooled_is_read_only_after_done():
    s = Spooled()
    s.file.write(b"abc")
    with pytest.raises(RuntimeError, match="before done"):
        len(s)
    s.done()
    assert s.file is None and len(s) == 3


def test_spooled_file_is_removed_when_released():
    s = _spool(b"x" * 100)
    path = s.path
    assert path.exists()
    del s
    gc.collect()
    assert not path.exists()


def test_save_links_once_then_copies(tmp_path):
    s = _spool(b"payload")
    s.save(tmp_path / "a")
    s.save(tmp_path / "b")
    a, b = os.stat(tmp_path / "a"), os.stat(tmp_path / "b")
    assert a.st_ino == s.path.stat().st_ino     # same file system: the first save is a link
    assert b.st_ino != a.st_ino                 # two outputs never share a file
    assert (tmp_path / "b").read_bytes() == b"payload"
    mask = os.umask(0)
    os.umask(mask)
    assert a.st_mode & 0o777 == 0o666 & ~mask   # like a file written in place


def test_spooled_graph_has_the_bytes_of_dumps():
    g = samples.spikformer_like(residual="add")
    s = spooled(g)
    data = dumps(g)
    assert s == data
    assert loads(s.read_bytes()).ops[0].name == g.ops[0].name


def test_bundle_npz_is_spooled_with_the_bytes_of_npz_bytes():
    from spikec.backends.lava import build_plan

    g = samples.spikformer_like(residual="add")
    files, _ = bundle_files(g)
    assert isinstance(files["network.npz"], Spooled)
    _, arrays, _ = build_plan(g)
    assert files["network.npz"] == npz_bytes(arrays)


def test_replace_dir_writes_spooled_and_plain_files(tmp_path):
    big = np.arange(1 << 16, dtype=np.int32).tobytes()
    replace_dir(tmp_path / "out", {"big.bin": _spool(big), "sub/small.txt": b"hi\n"})
    assert (tmp_path / "out" / "big.bin").read_bytes() == big
    assert (tmp_path / "out" / "sub" / "small.txt").read_bytes() == b"hi\n"


def test_npz_spool_writes_the_bytes_of_npz_bytes():
    from spikec.backends.lava.npzspool import NpzSpool

    r = np.random.default_rng(0)
    arrays = {"z.w": r.integers(-128, 127, (5, 3, 3, 4)).astype(np.int8),
              "a.b": np.arange(7, dtype=np.int64), "m.t": np.eye(3, dtype=bool).T,
              "s": np.array(3, np.int16), "e": np.zeros((0, 2), np.int32),
              "f": np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4))}
    spool = NpzSpool()
    spool["a.b"] = np.zeros(3, np.uint8)       # set again below: the last value is kept
    for k, v in arrays.items():
        spool[k] = v
    assert "a.b" in spool and len(spool) == len(arrays)
    npz = spool.npz()
    assert npz == npz_bytes(arrays)
    with pytest.raises(RuntimeError, match="after npz"):
        spool["late"] = np.zeros(1)
