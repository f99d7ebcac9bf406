"""Value, memory and error-line guards (issue 14, items 5 and 6) at the library level; the CLI
behaviour on hostile files is in test_hostile.py."""
from __future__ import annotations

import errno
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from spikec import data
from spikec.errors import (CapacityError, DataError, InputFileError, InvalidValueError,
                           ProfileError, one_line)
from spikec.memory import MemoryBudgetError, require_simulation_memory


# ----------------------------------------------------------------------------- npz, lazily
def _bomb(path, n=20_000):
    """A compressed .npz whose images inflate to n KiB."""
    np.savez_compressed(path, images=np.zeros((n, 1, 32, 32), np.uint8),
                        labels=np.arange(n) % 10, classes=np.int64(10))
    return path


def test_npz_limit_applies_before_decompression(tmp_path, monkeypatch):
    path = _bomb(tmp_path / "bomb.npz")
    monkeypatch.setenv("SPIKEC_MEMORY_LIMIT", "1M")      # the whole file inflates to ~20 MiB
    with pytest.raises(MemoryBudgetError, match=r"bomb\.npz: loading 20000 images.*--limit"):
        data.load(str(path))
    ds = data.load(str(path), limit=5)                   # 5 KiB: read, nothing else inflated
    assert ds.images.shape == (5, 1, 32, 32) and ds.labels.tolist() == [0, 1, 2, 3, 4]
    assert ds.classes == 10 and ds.images.flags.writeable


def test_npz_rows_match_numpy_for_c_and_fortran_order(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 2, 3, 4), dtype=np.uint8)
    for name, arr in (("c.npz", images), ("f.npz", np.asfortranarray(images))):
        np.savez(tmp_path / name, images=arr, labels=np.arange(7))
        for limit in (None, 3):
            ds = data.load(str(tmp_path / name), limit)
            assert np.array_equal(ds.images, images[:limit])


@pytest.mark.parametrize("fields, match", [
    ({"images": np.array([object()], dtype=object), "labels": np.arange(1)}, "Python objects"),
    ({"images": np.zeros((2, 1, 2, 2), np.uint8), "labels": np.arange(2),
      "classes": np.array("ten")}, "'classes' must be one positive integer"),
    ({"images": np.zeros((2, 1, 2, 2), np.uint8), "labels": np.arange(2),
      "classes": np.int64(0)}, "'classes'"),
    ({"images": np.zeros((2, 1, 2, 2), np.uint8)}, "missing field 'labels'"),
])
def test_npz_fields_of_the_wrong_kind_are_one_line(tmp_path, fields, match):
    p = tmp_path / "x.npz"
    _savez(p, fields)
    with pytest.raises(DataError, match=match):
        data.load(str(p))


def _savez(path, fields):
    """An .npz written member by member (np.savez refuses nothing, but this also stores
    object arrays as pickles: what a hostile file holds)."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for k, v in fields.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, v, allow_pickle=True)
            z.writestr(k + ".npy", buf.getvalue())


def test_truncated_npz_and_limit_zero(tmp_path):
    p = _bomb(tmp_path / "t.npz", n=100)
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(DataError, match=r"t\.npz: not a readable \.npz"):
        data.load(str(p))
    with pytest.raises(DataError, match="limit must be >= 1, got 0"):
        data.load(str(_bomb(tmp_path / "ok.npz", n=4)), limit=0)


def test_labels_beyond_the_models_classes_are_refused():
    ds = data.Dataset(np.zeros((2, 1, 2, 2), np.uint8), np.array([0, 12]), "d.npz", 13)
    graph = SimpleNamespace(outputs=[SimpleNamespace(name="out")],
                            specs={"out": SimpleNamespace(shape=(10,))})
    with pytest.raises(DataError, match="up to 12, but the model has 10 classes"):
        data.check_labels(ds, graph)


# ----------------------------------------------------------------------------- preprocessing
@pytest.mark.parametrize("raw, match", [
    ({"pixel_scale": None}, "pixel_scale must be a number"),
    ({"pixel_scale": float("nan")}, "pixel_scale must be finite"),
    ({"pixel_scale": 0}, "pixel_scale must not be 0"),
    ({"pixel_scale": [1, 2]}, "pixel_scale must be a number"),
    ({"mean": 0.5, "std": 0.5}, "mean must be a list"),
    ({"mean": [0.5], "std": [float("inf")]}, r"std\[0\] must be finite"),
    ({"pad": 1.5}, "pad must be a whole number"),
    ({"pad": True}, "pad must be a whole number"),
    (5, "expected a mapping"),
    ({"scale": 1}, "unknown keys"),
])
def test_invalid_preprocessing_names_the_key(raw, match):
    with pytest.raises(DataError, match=match):
        data.Preprocess.from_dict(raw)


# ----------------------------------------------------------------------------- estimator values
@pytest.mark.parametrize("rate", [float("nan"), -1.0, 5.0, float("inf"), True])
def test_rate_outside_zero_one_is_refused(rate):
    from spikec.estimate.events import check_rate

    with pytest.raises(InvalidValueError, match="--rate"):
        check_rate(rate)
    assert check_rate(0.0) == 0.0 and check_rate(1) == 1.0


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_profile_energy_must_be_finite(tmp_path, value):
    from pathlib import Path

    from spikec.target.profile import load_profile

    src = (Path(__file__).parent.parent / "hardware_profiles" / "loihi.toml").read_text()
    lines = src.splitlines()
    section, done = None, False
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("["):
            section = s
        elif section == "[energy]" and "=" in s and not s.startswith(("#", "source", "status",
                                                                       "note")) and not done:
            key = s.split("=")[0].strip()
            lines[i] = f"{key} = {value}"
            done = True
    p = tmp_path / "chip.toml"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ProfileError, match=rf"chip\.toml: energy\.{key}: .*finite"):
        load_profile(p)
    p.write_bytes(b"[profile]\nname = \"\xff\"\n")
    with pytest.raises(ProfileError, match="not UTF-8"):
        load_profile(p)


# ----------------------------------------------------------------------------- reports
def test_report_writer_names_the_nan_field():
    from spikec.report import dumps

    with pytest.raises(InvalidValueError, match=r"layers\[1\]\.spikes"):
        dumps({"layers": [{"spikes": 1.0}, {"spikes": float("nan")}]})
    assert json.loads(dumps({"a": np.float32(0.5), "b": np.int64(3)})) == {"a": 0.5, "b": 3}


@pytest.mark.parametrize("content, match", [
    (b"\xff\xfe{}", "not UTF-8"), (b"[1]", "expected a JSON object"), (b'{"a": NaN}', "NaN"),
    (b'{"layers": "x"}', "'layers'"), (b'{"layers": [{"name": "a", "spikes": "3"}]}',
                                       r"layers\[0\]\.spikes"),
    (b'{"accuracy": {"float": "x"}}', "accuracy.float"), (b'{"estimate": 5}', "'estimate'"),
])
def test_report_reader_checks_types(tmp_path, content, match):
    from spikec.report import read_report

    p = tmp_path / "report.json"
    p.write_bytes(content)
    with pytest.raises(InputFileError, match=match):
        read_report(p)


# ----------------------------------------------------------------------------- memory
def test_simulation_memory_guard(monkeypatch):
    graph = SimpleNamespace(timesteps=100_000, specs={"a": SimpleNamespace(shape=(64, 8, 8))})
    monkeypatch.setenv("SPIKEC_MEMORY_LIMIT", "1G")
    with pytest.raises(MemoryBudgetError, match="T = 100000 steps of a batch of 32"):
        require_simulation_memory(graph, 32, where="OUT/quantized")
    require_simulation_memory(SimpleNamespace(timesteps=4, specs=graph.specs), 32)


# ----------------------------------------------------------------------------- one line
@pytest.mark.parametrize("exc, text, code", [
    (OSError(errno.ENOSPC, "No space left on device", "/out/x"), r"/out/x: No space.*free space", 2),
    (PermissionError(errno.EACCES, "Permission denied", "/ro"), r"/ro: Permission denied", 2),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/f/OUT"), "is a file, not a folder", 2),
    (OSError(errno.EROFS, "Read-only file system", "/mnt"), "read-only", 2),
    (MemoryError(), "out of memory", 3),
    (CapacityError("too big\nsecond line"), "too big second line", 3),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "not UTF-8", 2),
])
def test_one_line_for_every_failure(exc, text, code):
    import re

    line, got = one_line(exc)
    assert re.search(text, line) and "\n" not in line and got == code


def test_loader_estimates_model_and_trace_memory():
    pytest.importorskip("torch")
    from spikec.frontends.torch.loader import _model_bytes, _trace_bytes

    assert _model_bytes({"embed_dim": 4_000_000, "depth": 1}) > 1e15
    assert _model_bytes({"embed_dim": "x"}) == 0.0           # the model's own check names it
    assert _trace_bytes((1, 28, 28), 100_000, 64) > 1e11
    assert math.isclose(_trace_bytes((1, 8, 8), 1, 16), 4 * 4 * 3 * 16 * 64)
