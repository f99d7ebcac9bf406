"""Output directories that never lose a user's data.

``spikec compile -o OUT`` (every target) writes through ``OutputDir``:

* **What may be replaced.** OUT is replaced only when it does not exist, is empty, or is an earlier
  spikec output, recognised by the marker file ``MARKER`` (``.spikec-output.json``) that spikec
  writes into every output, listing the files it wrote; a file added to it since (other than
  ``DERIVED_FILES``) makes it a user's directory again. Anything else is refused with one line
  naming files that would be lost, unless ``force``. A file the run reads (the model, ``--data``, ``--calib``, ``--profile``) that
  lies inside OUT is never deleted: refused even with ``force``. OUT may not be the current
  directory or one of its parents.
* **Early checks.** Before the expensive compile: OUT is not a file, no parent of OUT is a file,
  the folder OUT is created in is writable (permission, read-only file system).
* **One run at a time.** A run holds an exclusive ``fcntl.flock`` on ``.OUT.lock`` beside OUT from
  the early checks to the end. A second run into the same OUT does not wait: it fails at once with
  one line (exit 2), before its own compile, so two runs never both report success. (Waiting would
  let the second silently replace the first's result as soon as it finished.)
* **The swap.** The new output is written into ``.OUT.tmp-*`` beside OUT, then: (1) the old OUT is
  renamed to ``.OUT.old-*/dir``, (2) the new one is renamed onto OUT, (3) the old one is removed.
  A kill before (1) leaves the old OUT in place; between (1) and (2) OUT is missing until the next
  run (or ``recover``) renames the aside copy back; after (2) the new OUT is in place. The next run
  into the same OUT removes ``.OUT.tmp-*`` leftovers and restores or removes ``.OUT.old-*`` ones.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from spikec import __version__
from spikec.errors import OutputError
from spikec.spool import Spooled

MARKER = ".spikec-output.json"
MARKER_FORMAT = "spikec-output"
MARKER_VERSION = 1
#: Files named in the refusal message (then "and N more").
NAMED_FILES = 5


def _after(step: str) -> None:
    """Called after each step of the swap (``written``, ``aside``, ``in_place``); tests replace
    it to simulate a kill between two steps."""


#: Files other spikec commands add to an output (``spikec report``, ``estimate --sweep``): not a
#: user's data, replaced with the output.
DERIVED_FILES = ("report.html", "sweep.png")


def marker_bytes(kind: str, files=()) -> bytes:
    """The marker file's content: format, version, what wrote it and the files it wrote (so a
    file a user added later is recognised as theirs). Deterministic: no time, no host."""
    return (json.dumps({"format": MARKER_FORMAT, "version": MARKER_VERSION, "kind": kind,
                        "spikec_version": __version__, "files": sorted(files)},
                       sort_keys=True) + "\n").encode()


def read_marker(path: Path) -> dict | None:
    """The marker of the directory ``path``, or None when it carries none."""
    try:
        info = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("format") == MARKER_FORMAT else None


def is_spikec_output(path: Path) -> bool:
    """Whether the directory ``path`` carries spikec's marker."""
    return read_marker(path) is not None


def foreign_files(out: Path) -> list[Path]:
    """What replacing the directory ``out`` would delete that spikec did not write: everything
    without a marker, else the files (and links) its marker does not list."""
    marker = read_marker(out)
    if marker is None:
        return list(out.iterdir())
    written = marker.get("files")
    if not isinstance(written, list):
        return []
    known = {str(f) for f in written} | {MARKER, *DERIVED_FILES}
    return [p for p in out.rglob("*") if (p.is_file() or p.is_symlink())
            and str(p.relative_to(out)) not in known]


def default_out(model: str | os.PathLike) -> Path:
    """The output directory of ``spikec compile MODEL`` without ``-o``: ``MODEL_STEM.spikec``
    beside the model (``runs/model.pt`` -> ``runs/model.spikec``)."""
    model = Path(model)
    return model.with_name(model.stem + ".spikec")


def _names(paths: Iterable[Path], root: Path) -> str:
    paths = sorted(paths)
    shown = ", ".join(str(p.relative_to(root)) for p in paths[:NAMED_FILES])
    more = len(paths) - NAMED_FILES
    return shown + (f" and {more} more" if more > 0 else "")


def _first_file_ancestor(path: Path) -> Path | None:
    for p in reversed(path.parents):
        if p.exists() and not p.is_dir():
            return p
    return None


class OutputDir:
    """An output directory being prepared: checked and locked on entry, replaced by ``write``.

    Parameters
    ----------
    out : path
        The output directory.
    force : bool
        Replace OUT even when it is not an earlier spikec output.
    keep : paths
        Files the run reads; refused when one lies inside OUT (even with ``force``).
    kind : str
        What wrote the output (``compile``, ``nir``, ``onnx``), recorded in the marker.

    Use as a context manager around the whole run::

        with OutputDir(out, force=force, keep=[model]) as target:
            files = expensive_compile()
            target.write(files)
    """

    def __init__(self, out: str | os.PathLike, *, force: bool = False,
                 keep: Iterable[str | os.PathLike | None] = (), kind: str = "compile"):
        self.given = Path(out)
        self.out = Path(os.path.abspath(out))
        self.force = force
        self.keep = [Path(os.path.realpath(k)) for k in keep if k is not None]
        self.kind = kind
        self._lock = DirLock(self.out, shown=f"-o {self.given}")
        self._made: list[Path] = []

    # ------------------------------------------------------------------ checks
    def check(self) -> None:
        """Refuse (``OutputError``) an OUT that cannot or may not be replaced."""
        out, shown = self.out, self.given
        if out.parent == out:
            raise OutputError(f"-o {shown}: the root directory cannot be an output directory")
        cwd = Path(os.path.realpath(os.getcwd()))
        real = Path(os.path.realpath(out))
        if real == cwd or real in cwd.parents:
            raise OutputError(f"-o {shown}: is the current directory or contains it; choose a new "
                              "directory for the output")
        if out.exists() and not out.is_dir():
            raise OutputError(f"-o {shown}: exists and is not a directory; choose another -o")
        blocker = _first_file_ancestor(out)
        if blocker is not None:
            raise OutputError(f"-o {shown}: {blocker} is a file, not a directory")
        for k in self.keep:
            if real in k.parents:
                raise OutputError(f"-o {shown}: the input {k} lies inside it and would be deleted "
                                  "(even with --force); choose another -o")
        existing = next(p for p in [out.parent, *out.parent.parents] if p.exists())
        if not os.access(existing, os.W_OK | os.X_OK):
            why = "read-only file system" if _read_only(existing) else "permission denied"
            raise OutputError(f"-o {shown}: cannot write into {existing} ({why})")
        if out.is_dir() and not self.force:
            try:
                entries = foreign_files(out)
            except OSError as e:
                raise OutputError(f"-o {shown}: cannot read it ({e.strerror})") from None
            if entries:
                what = "holds files spikec did not write" if is_spikec_output(out) \
                    else "not empty and not a spikec output"
                raise OutputError(
                    f"-o {shown}: {what}; replacing it would delete {_names(entries, out)}; "
                    "choose another -o or pass --force")

    # ------------------------------------------------------------------ lock
    def _make_parents(self) -> None:
        missing = [p for p in [self.out.parent, *self.out.parent.parents] if not p.exists()]
        for p in reversed(missing):
            try:
                p.mkdir()
            except FileExistsError:
                continue
            except OSError as e:
                raise OutputError(f"-o {self.given}: cannot create {p} ({e.strerror})") from None
            self._made.append(p)

    def __enter__(self) -> "OutputDir":
        self.check()
        self._make_parents()
        try:
            self._lock.acquire()
            recover(self.out)
            self.check()    # a restored or changed OUT is judged again, now under the lock
        except BaseException:
            self._release(failed=True)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._release(failed=exc_type is not None)

    def _release(self, failed: bool) -> None:
        self._lock.release()
        if failed:
            for p in reversed(self._made):      # the folders made for an output that never came
                try:
                    p.rmdir()
                except OSError:
                    break

    # ------------------------------------------------------------------ write
    def write(self, files: dict[str, bytes]) -> None:
        """Write ``files`` (relative path -> bytes) plus the marker into ``.OUT.tmp-*`` and swap
        it onto OUT (see the module docstring). Raises ``OutputError`` on a file-system error,
        leaving OUT as it was."""
        if not self._lock.held:
            raise RuntimeError("OutputDir.write outside its 'with' block")
        replace_dir(self.out, {**files, MARKER: marker_bytes(self.kind, files)},
                    shown=f"-o {self.given}")


class DirLock:
    """An exclusive ``fcntl.flock`` on ``.NAME.lock`` beside the directory ``path``, taken without
    waiting (``OutputError`` naming ``shown`` when another run holds it). The holder removes the
    file on release; a taker checks after locking that the path still names the file it locked."""

    def __init__(self, path: str | os.PathLike, shown: str | None = None):
        path = Path(os.path.abspath(path))
        self.path = path.parent / f".{path.name}.lock"
        self.shown = shown or str(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise OutputError(f"{self.shown}: cannot create {self.path} ({e.strerror})") \
                    from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise OutputError(f"{self.shown}: another spikec run is writing it (lock "
                                      f"{self.path}); wait for it to finish or use another directory"
                                      ) from None
                raise
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "DirLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def replace_dir(out: str | os.PathLike, files: dict[str, bytes], *, shown: str | None = None
                ) -> None:
    """Replace the directory ``out`` by one holding ``files`` (relative path -> ``bytes`` or a
    ``spikec.spool.Spooled`` file), safe against a kill at any step
    (the module docstring's swap). No checks and no marker: the caller holds ``out``'s lock
    (``OutputDir.write``, or a backend rewriting its bundle inside an output)."""
    out = Path(os.path.abspath(out))
    parent, shown = out.parent, shown or str(out)
    tmp = old = None
    try:
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.tmp-"))
        os.chmod(tmp, 0o777 & ~_umask())
        for name, data in sorted(files.items()):
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, Spooled):   # a large file already on disk: linked or copied
                data.save(tmp / name)
            else:
                (tmp / name).write_bytes(data)
        _after("written")
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.old-"))
            os.replace(out, old / "dir")
            _after("aside")
        os.replace(tmp, out)
        tmp = None
        _after("in_place")
    except BaseException as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "dir").exists() and not out.exists():
            os.replace(old / "dir", out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if isinstance(e, OSError):
            raise OutputError(f"{shown}: writing the output failed ({e.strerror or e}); the old "
                              "output is unchanged") from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover(out: str | os.PathLike) -> None:
    """Clean up after killed runs into ``out``: remove ``.OUT.tmp-*`` folders, and restore the
    newest ``.OUT.old-*/dir`` when OUT is missing (removing the others). Call with OUT's lock
    held (``OutputDir`` does)."""
    out = Path(os.path.abspath(out))
    parent = out.parent
    if not parent.is_dir():
        return
    tmps = sorted(parent.glob(f".{out.name}.tmp-*"))
    olds = sorted(parent.glob(f".{out.name}.old-*"), key=lambda p: p.stat().st_mtime)
    for p in tmps:
        shutil.rmtree(p, ignore_errors=True)
    if not out.exists():
        for p in reversed(olds):
            if (p / "dir").is_dir():
                os.replace(p / "dir", out)
                break
    for p in olds:
        shutil.rmtree(p, ignore_errors=True)


def write_dir(out: str | os.PathLike, files: dict[str, bytes], *, force: bool = False,
              keep: Iterable[str | os.PathLike | None] = (), kind: str = "compile") -> None:
    """Check, lock and replace ``out`` with ``files`` in one call (``OutputDir`` without work
    between the checks and the write)."""
    with OutputDir(out, force=force, keep=keep, kind=kind) as target:
        target.write(files)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
