"""``network.npz`` built while the plan is lowered, so the bundle's arrays are never all in memory.

The plan builder stores every array under a key (``PlanBuilder.array``). Given an ``NpzSpool``
instead of a dict, each array is written at once as a ``.npy`` member into one temporary file
and dropped; ``npz`` then copies the members, in sorted key order, into the archive that
``runtime.npzio.npz_bytes`` would have written from the same arrays (same bytes: the same
``.npy`` encoding, member order, timestamps and zip64 choice; ``tests/test_spool.py`` compares).
For V2-16-768 at 224 px the arrays are 0.95 GB.
"""
from __future__ import annotations

import zipfile

import numpy as np

from spikec.spool import CHUNK_BYTES, Spooled

from .runtime.npzio import _EPOCH


class NpzSpool:
    """A write-only mapping of key -> array whose values go to disk as they are set."""

    def __init__(self):
        self._members = Spooled()
        # key -> (offset in the spool, length of its .npy bytes, the array's nbytes)
        self._where: dict[str, tuple[int, int, int]] = {}

    def __setitem__(self, key: str, arr: np.ndarray) -> None:
        if self._members is None or self._members.file is None:
            raise RuntimeError("NpzSpool: array added after npz()")
        f = self._members.file
        start = f.tell()
        np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)
        self._where[key] = (start, f.tell() - start, arr.nbytes)   # a key set again: the last

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def __len__(self) -> int:
        return len(self._where)

    def npz(self) -> Spooled:
        """The archive (a ``Spooled`` file); the members' temporary file is removed."""
        members = self._members.done()
        out = Spooled()
        try:
            with open(members.path, "rb") as src, \
                    zipfile.ZipFile(out.file, "w", zipfile.ZIP_STORED) as zf:
                for key in sorted(self._where):
                    start, length, nbytes = self._where[key]
                    info = zipfile.ZipInfo(key + ".npy", date_time=_EPOCH)
                    info.external_attr = 0o644 << 16
                    big = nbytes > zipfile.ZIP64_LIMIT - (1 << 16)
                    src.seek(start)
                    with zf.open(info, "w", force_zip64=big) as member:
                        while length:
                            block = src.read(min(length, CHUNK_BYTES))
                            member.write(block)
                            length -= len(block)
        finally:
            out.done()
            self._members = None    # releases (removes) the members' temporary file
        return out
