"""Output files built on disk instead of in memory.

A compile holds every file of its output until the end, so that an error leaves no partial OUT
(``spikec.outputs``). For a paper-scale model the three ``.spkc`` graphs and the Lava bundle's
``network.npz`` are gigabytes; held as ``bytes`` they were most of the compile's peak memory.
A ``Spooled`` file is written once into a temporary file instead and stands for those bytes:
``spikec.outputs.replace_dir`` links (or copies) it into OUT, and the temporary file is removed
when the ``Spooled`` object is released.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["Spooled"]

#: Bytes read at a time when a spooled file is hashed, compared or read back.
CHUNK_BYTES = 1 << 20


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Spooled:
    """The content of one output file, kept in a temporary file.

    Write it through ``file`` (a seekable binary file, open until ``done``), then call ``done``.
    The temporary file has the permissions an ordinary ``open(path, 'w')`` gives (0666 less the
    umask), so a link to it is like a file written in place.

    Parameters
    ----------
    dir : path, optional
        Where the temporary file is made (default: ``tempfile.gettempdir()``). On the file
        system of OUT, ``save`` links instead of copying.
    """

    def __init__(self, dir: str | os.PathLike | None = None):
        fd, path = tempfile.mkstemp(dir=dir, prefix=".spikec-spool-")
        self.path = Path(path)
        self._release = weakref.finalize(self, _remove, path)
        os.chmod(fd, 0o666 & ~_umask())
        self.file: BinaryIO | None = os.fdopen(fd, "w+b")
        self._size: int | None = None
        self._sha256: str | None = None
        self._linked = False

    def done(self) -> "Spooled":
        """Finish writing (flush and close ``file``); returns ``self``."""
        if self.file is not None:
            self.file.close()
            self.file = None
            self._size = self.path.stat().st_size
        return self

    def _written(self) -> None:
        if self.file is not None:
            raise RuntimeError("a Spooled file is read before done()")

    def __len__(self) -> int:
        self._written()
        return self._size

    def chunks(self) -> Iterator[bytes]:
        """The content, ``CHUNK_BYTES`` at a time."""
        self._written()
        with open(self.path, "rb") as f:
            while block := f.read(CHUNK_BYTES):
                yield block

    def sha256(self) -> str:
        """SHA-256 (hex) of the content, computed once."""
        if self._sha256 is None:
            h = hashlib.sha256()
            for block in self.chunks():
                h.update(block)
            self._sha256 = h.hexdigest()
        return self._sha256

    def read_bytes(self) -> bytes:
        """The whole content in memory (for small files and tests)."""
        self._written()
        return self.path.read_bytes()

    __bytes__ = read_bytes

    def __eq__(self, other) -> bool:
        if isinstance(other, Spooled):
            return len(self) == len(other) and self.sha256() == other.sha256()
        if isinstance(other, (bytes, bytearray, memoryview)):
            other = memoryview(other).cast("B")
            if len(self) != len(other):
                return False
            pos = 0
            for block in self.chunks():
                if other[pos:pos + len(block)] != block:
                    return False
                pos += len(block)
            return True
        return NotImplemented

    __hash__ = None

    def save(self, path: str | os.PathLike) -> None:
        """Write the content to ``path`` (which must not exist): the first time a hard link to
        the temporary file where the file system allows one, otherwise (and every later time,
        so that two outputs never share a file) a copy."""
        self._written()
        if not self._linked:
            try:
                os.link(self.path, path)
                self._linked = True
                return
            except OSError:
                pass
        shutil.copyfile(self.path, path)

    def __repr__(self) -> str:
        size = "writing" if self.file is not None else f"{self._size} bytes"
        return f"Spooled({str(self.path)!r}, {size})"
