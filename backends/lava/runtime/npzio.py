"""Deterministic ``.npz`` files: the same arrays give the same bytes (numpy's ``savez`` stamps
each zip member with the current time). Imports numpy only; read back with ``numpy.load``."""
from __future__ import annotations

import os
import tempfile
import zipfile

import numpy as np

_EPOCH = (1980, 1, 1, 0, 0, 0)


def npz_bytes(arrays: dict, *, consume: bool = False) -> bytes:
    """Zip of ``NAME.npy`` members in sorted name order, fixed timestamps, stored uncompressed.

    Each array is streamed into a temporary file (no second copy of a member, no growing
    buffer) and the bytes are read back in one piece; ``consume`` removes each array from
    ``arrays`` once written, so a large bundle is never held twice in memory."""
    with tempfile.TemporaryFile() as f:
        _write_zip(f, arrays, consume)
        f.seek(0)
        return f.read()


def _write_zip(f, arrays: dict, consume: bool) -> None:
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            arr = np.asanyarray(arrays.pop(name) if consume else arrays[name])
            info = zipfile.ZipInfo(name + ".npy", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            big = arr.nbytes > zipfile.ZIP64_LIMIT - (1 << 16)
            with zf.open(info, "w", force_zip64=big) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)
            del arr


def save_npz(path, arrays: dict) -> None:
    """Write ``arrays`` to ``path`` atomically (temporary file + rename)."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".npz.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(npz_bytes(arrays))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_npz(path) -> dict:
    """All arrays of an ``.npz`` as a dict (pickles refused)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
