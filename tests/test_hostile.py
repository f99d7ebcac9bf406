"""Hostile inputs over every command (issue 14, item 6): each case runs ``python -m spikec.cli``
as a subprocess and must fail cleanly: exit code 2 or 3, exactly one line on stderr, no
traceback, no output left behind (its folder is byte-identical afterwards), no file of the shared
fixtures changed, and no code from a file executed (payloads create ``MARKER`` or print
``PAYLOAD-RAN``).

The cases are data: ``CASES`` maps an id to a builder ``(ctx) -> args`` (with ``ctx.env`` for
environment variables). All subprocesses run once per session, a few at a time, in the
``results`` fixture; each test only reads its result. Fixtures are tiny (an 8x8 one-block
Spikformer, T = 2) so the whole corpus runs in well under two minutes.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parent.parent
PAYLOAD_TEXT = "PAYLOAD-RAN"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ----------------------------------------------------------------------------- fixtures
@dataclass
class Ctx:
    """What a case builder gets: the shared fixtures (read only), its own folder, env vars."""

    base: Path
    dir: Path
    env: dict = field(default_factory=dict)

    @property
    def ckpt(self) -> Path:
        return self.base / "small.pt"

    @property
    def data(self) -> Path:
        return self.base / "data.npz"

    @property
    def marker(self) -> Path:
        return self.dir / "MARKER"

    def out(self) -> Path:
        """A private copy of the compiled output folder."""
        dest = self.dir / "OUT"
        shutil.copytree(self.base / "OUT", dest)
        return dest

    def file(self, name: str, content: bytes | str) -> Path:
        p = self.dir / name
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        return p


class Payload:
    """Unpickling this creates ``path`` (the proof that code from a file ran)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def _small_model(**config):
    from spikec import models

    torch.manual_seed(0)
    cfg = dict(embed_dim=16, num_heads=2, T=2, img_size=8)
    cfg.update(config)
    return models.create("spikformer_cifar_tiny", **cfg)


def _checkpoint(path: Path, mutate=None, preprocess=None, **top) -> Path:
    """spikec's checkpoint of the small model, with ``mutate(obj)`` applied to the saved dict."""
    from spikec.models.checkpoint import save_checkpoint

    save_checkpoint(_small_model(), path, preprocess=preprocess)
    if mutate or top:
        obj = torch.load(path, weights_only=True)
        if mutate:
            mutate(obj)
        obj.update(top)
        torch.save(obj, path)
    return path


@pytest.fixture(scope="session")
def base(tmp_path_factory) -> Path:
    """small.pt, data.npz (8x8, 6 samples) and OUT (its compile output), built once."""
    from spikec.compiler import compile_model
    from spikec.data import Dataset, save_npz
    from spikec.frontends import LoadOptions

    d = tmp_path_factory.mktemp("hostile-base")
    _checkpoint(d / "small.pt")
    rng = np.random.default_rng(0)
    save_npz(Dataset(rng.integers(0, 256, (6, 1, 8, 8), dtype=np.uint8),
                     rng.integers(0, 10, 6), "small", 10), d / "data.npz")
    compile_model(d / "small.pt", d / "OUT", load_options=LoadOptions())
    return d


def _tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (folders as ``<dir>``)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink() or not p.is_file():
            out[rel] = "<dir>" if p.is_dir() else "<other>"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ----------------------------------------------------------------------------- hostile files
def _spkc_parts(data: bytes) -> tuple[bytes, dict, bytes]:
    """(prefix up to the header, header, blob bytes) of a .spkc (see spikec.ir.serialize)."""
    from spikec.ir import serialize as S

    start = getattr(S, "HEADER_START", 16)
    (n,) = struct.unpack("<Q", data[8:16])
    return data[:start], json.loads(data[start:start + n]), data[start + n:]


def _spkc_rewrite(path: Path, edit) -> None:
    """Edit the header of a .spkc and re-sign it (a forged file with a valid checksum)."""
    from spikec.ir import serialize as S

    prefix, header, blobs = _spkc_parts(path.read_bytes())
    edit(header)
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    if hasattr(S, "pack"):
        path.write_bytes(S.pack(head, blobs))
    else:  # format 1 (no checksum): for the sweep before the fix
        path.write_bytes(prefix[:8] + struct.pack("<Q", len(head)) + head + blobs)


def _edit_compiled(ctx: Ctx, edit) -> Path:
    out = ctx.out()
    _spkc_rewrite(out / "compiled.spkc", edit)
    return out


def _flip(path: Path, where: str) -> None:
    data = bytearray(path.read_bytes())
    if where == "arrays":
        for k in range(64):
            data[-(k * 97 + 1)] ^= 0x5A
    else:  # header
        i = data.index(b'"timesteps"')
        data[i + 12] = ord("7") if data[i + 12] != ord("7") else ord("3")
    path.write_bytes(bytes(data))


def _first_blob(header) -> dict:
    return header["blobs"][0]


def _torchscript_payload(ctx: Ctx) -> Path:
    """A TorchScript archive whose ``__setstate__`` prints PAYLOAD-RAN when loaded."""
    class Evil(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.ones(2)

        def forward(self, x):
            return x * self.w

        @torch.jit.export
        def __getstate__(self):
            return (self.w, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, bool]):
            print("PAYLOAD-RAN")
            self.w = state[0]
            self.training = state[1]

    p = ctx.dir / "evil_ts.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated
        torch.jit.save(torch.jit.script(Evil()), str(p))
    return p


def _pickle_payload(ctx: Ctx) -> Path:
    p = ctx.dir / "evil.pt"
    torch.save({"model": Payload(ctx.marker), "state_dict": {}}, p)
    return p


def _npz(ctx: Ctx, name="d.npz", images=None, labels=None, **extra) -> Path:
    rng = np.random.default_rng(1)
    arrays = {"images": rng.integers(0, 256, (4, 1, 8, 8), dtype=np.uint8) if images is None
              else images, "labels": np.arange(4) if labels is None else labels, **extra}
    p = ctx.dir / name
    np.savez(p, **{k: v for k, v in arrays.items() if v is not False})
    return p


def _npz_pickle(ctx: Ctx) -> Path:
    p = ctx.dir / "evil.npz"
    np.savez(p, images=np.array([Payload(ctx.marker)], dtype=object), labels=np.arange(1))
    return p


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def _npz_bomb(ctx: Ctx) -> Path:
    """A small .npz whose 'images' inflate to 96 MiB (bigger than SPIKEC_MEMORY_LIMIT=32M)."""
    p = ctx.dir / "bomb.npz"
    np.savez_compressed(p, images=np.zeros((96 * 1024, 1, 32, 32), np.uint8),
                        labels=np.zeros(96 * 1024, np.int64))
    ctx.env["SPIKEC_MEMORY_LIMIT"] = "32M"
    return p


def _profile(ctx: Ctx, edit=None, raw: bytes | None = None) -> Path:
    """A copy of loihi2.toml with ``edit(text) -> text`` applied (or raw bytes)."""
    text = (REPO / "hardware_profiles" / "loihi2.toml").read_text()
    p = ctx.dir / "chip.toml"
    p.write_bytes(raw if raw is not None else edit(text).encode())
    return p


def _set_toml(section: str, key: str, value: str):
    """An edit that replaces ``key = ...`` inside ``[section]`` by ``key = value``."""
    def edit(text: str) -> str:
        lines, cur, done = text.splitlines(), None, False
        for i, line in enumerate(lines):
            s = line.strip()
            if s.startswith("[") and s.endswith("]"):
                cur = s[1:-1]
            elif cur == section and s.split("=")[0].strip() == key:
                lines[i] = f"{key} = {value}"
                done = True
        if not done:
            raise AssertionError(f"{section}.{key} not in the profile")
        return "\n".join(lines) + "\n"
    return edit


def _energy_key(ctx: Ctx) -> str:
    from spikec.target.profile import load_profile

    prof = load_profile("loihi2")
    return next(k for k, v in vars(prof.energy).items() if v is not None)


def _report(ctx: Ctx, content: bytes | str) -> Path:
    out = ctx.out()
    (out / "report.json").write_bytes(content.encode() if isinstance(content, str) else content)
    return out


def _trace(ctx: Ctx, meta=None, arrays=None, raw: bytes | None = None) -> list:
    out = ctx.out()
    p = ctx.dir / "trace.npz"
    if raw is not None:
        p.write_bytes(raw)
    else:
        payload = dict(arrays or {})
        if meta is not None:
            payload["meta"] = np.array(json.dumps(meta) if not isinstance(meta, str) else meta)
        np.savez(p, **payload)
    return ["validate", out, "--against", "trace", p]


def _good_trace_meta(ctx: Ctx) -> dict:
    man = json.loads((ctx.base / "OUT" / "lava" / "manifest.json").read_text())
    return {"format": "spikec-trace", "format_version": 1, "bundle_hash": man["bundle_hash"],
            "samples": 1, "layers": []}


def _state_edit(fn):
    """A checkpoint mutation applied to the first tensor matching a predicate."""
    def mutate(obj):
        sd = obj["state_dict"]
        fn(sd)
    return mutate


def _nan_weight(sd):
    k = next(k for k, v in sd.items() if v.dtype.is_floating_point and k.endswith("weight"))
    sd[k] = sd[k].clone()
    sd[k].view(-1)[0] = float("nan")


def _inf_weight(sd):
    k = [k for k, v in sd.items() if v.dtype.is_floating_point and k.endswith("weight")][-1]
    sd[k] = sd[k].clone()
    sd[k].view(-1)[-1] = float("inf")


def _neg_var(sd):
    k = next(k for k in sd if k.endswith("running_var"))
    sd[k] = sd[k].clone()
    sd[k][0] = -1.0


def _ckpt(ctx: Ctx, name="m.pt", **kw) -> Path:
    return _checkpoint(ctx.dir / name, **kw)


def _big_config(obj):
    obj["config"] = dict(obj["config"], embed_dim=4_000_000)


def _config_type(obj):
    obj["config"] = dict(obj["config"], embed_dim="sixteen")


def _model_dir_file(ctx: Ctx) -> Path:
    p = ctx.dir / "d"
    p.mkdir()
    return p


# id -> builder(ctx) -> argv (after "spikec")
CASES = {
    # --- models / profiles / usage
    "models-extra-argument": lambda c: ["models", "extra"],
    "unknown-command": lambda c: ["frobnicate"],
    "profiles-bad-option": lambda c: ["profiles", "--bogus"],
    "profiles-dir-bad-profile": lambda c: _profiles_dir(c, b"[profile]\nname = \"\xff\"\n"),
    "profiles-dir-nan-energy": lambda c: _profiles_dir(
        c, _set_toml("energy", _energy_key(c), "nan")(
            (REPO / "hardware_profiles" / "loihi2.toml").read_text()).encode()),
    "estimate-profile-unknown-name": lambda c: ["estimate", c.out(), "--profile",
                                                "nonexistent_chip", "--no-save"],
    # --- inspect: model files
    "inspect-missing-file": lambda c: ["inspect", c.dir / "nope.pt"],
    "inspect-directory": lambda c: ["inspect", _model_dir_file(c)],
    "inspect-empty-file": lambda c: ["inspect", c.file("e.pt", b"")],
    "inspect-garbage": lambda c: ["inspect", c.file("g.pt", os.urandom(4096))],
    "inspect-truncated-checkpoint": lambda c: ["inspect", _truncate(_ckpt(c))],
    "inspect-torchscript-untrusted": lambda c: ["inspect", _torchscript_payload(c)],
    "inspect-torchscript-untrusted-arch": lambda c: ["inspect", _torchscript_payload(c), "--arch",
                                                     "spikformer_cifar_tiny"],
    "inspect-pickle-untrusted": lambda c: ["inspect", _pickle_payload(c)],
    "inspect-nan-weight": lambda c: ["inspect", _ckpt(c, mutate=_state_edit(_nan_weight))],
    "inspect-inf-weight": lambda c: ["inspect", _ckpt(c, mutate=_state_edit(_inf_weight))],
    "inspect-negative-bn-variance": lambda c: ["inspect", _ckpt(c, mutate=_state_edit(_neg_var))],
    "inspect-config-embed-dim-4e6": lambda c: ["inspect", _ckpt(c, mutate=_big_config)],
    "inspect-config-wrong-type": lambda c: ["inspect", _ckpt(c, mutate=_config_type)],
    "inspect-T-100000": lambda c: _limited(c, ["inspect", c.ckpt, "-T", "100000"]),
    "inspect-input-shape-huge": lambda c: ["inspect", c.ckpt, "--input-shape", "1,100000,100000"],
    "inspect-T-zero": lambda c: ["inspect", c.ckpt, "-T", "0"],
    "inspect-preprocess-null-scale": lambda c: [
        "inspect", _ckpt(c, mutate=lambda o: o.update(preprocess={"pixel_scale": None}))],
    "inspect-preprocess-nan-scale": lambda c: [
        "inspect", _ckpt(c, mutate=lambda o: o.update(preprocess={"pixel_scale": float("nan")}))],
    "inspect-preprocess-scalar-mean": lambda c: [
        "inspect", _ckpt(c, mutate=lambda o: o.update(preprocess={"mean": 0.5, "std": 0.5}))],
    "inspect-preprocess-not-a-dict": lambda c: [
        "inspect", _ckpt(c, mutate=lambda o: o.update(preprocess=5))],
    "inspect-set-bad-weights-key": lambda c: ["inspect", c.ckpt, "--set", "weights=nothing"],
    # --- compile
    "compile-preprocess-divide-by-zero": lambda c: ["compile", c.ckpt, "-o", c.dir / "OUT",
                                                    "--preprocess", "pixel_scale=1/0"],
    "compile-preprocess-json-null": lambda c: ["compile", c.ckpt, "-o", c.dir / "OUT",
                                               "--preprocess", '{"pixel_scale": null}'],
    "compile-preprocess-json-scalar": lambda c: ["compile", c.ckpt, "-o", c.dir / "OUT",
                                                 "--preprocess", '{"mean": 0.5, "std": 0.5}'],
    "compile-preprocess-json-list": lambda c: ["compile", c.ckpt, "-o", c.dir / "OUT",
                                               "--preprocess", '{"pixel_scale": [1, 2]}'],
    "compile-preprocess-nan": lambda c: ["compile", c.ckpt, "-o", c.dir / "OUT",
                                         "--preprocess", "pixel_scale=nan"],
    "compile-preprocess-zero-std": lambda c: ["compile", c.ckpt, "-o", c.dir / "OUT",
                                              "--preprocess", "mean=0.5,std=0"],
    "compile-preprocess-pad-fraction": lambda c: ["compile", c.ckpt, "-o", c.dir / "OUT",
                                                  "--preprocess", '{"pad": 1.5}'],
    "compile-out-parent-is-file": lambda c: ["compile", c.ckpt, "-o",
                                             c.file("afile", "x") / "OUT"],
    "compile-torchscript-untrusted": lambda c: ["compile", _torchscript_payload(c), "-o",
                                                c.dir / "OUT"],
    "compile-nan-weight": lambda c: ["compile", _ckpt(c, mutate=_state_edit(_nan_weight)), "-o",
                                     c.dir / "OUT"],
    "compile-T-100000": lambda c: _limited(c, ["compile", c.ckpt, "-T", "100000", "-o",
                                               c.dir / "OUT"]),
    "compile-data-truncated-npz": lambda c: ["compile", c.ckpt, "-o", c.dir / "OUT", "--data",
                                             _truncate(_npz(c))],
    "compile-data-labels-out-of-range": lambda c: [
        "compile", c.ckpt, "-o", c.dir / "OUT", "--data", _npz(c, labels=np.array([0, 1, 2, 15]))],
    "compile-limit-zero": lambda c: ["compile", c.ckpt, "-o", c.dir / "OUT", "--data", c.data,
                                     "--limit", "0"],
    "compile-calib-pickled-npz": lambda c: ["compile", c.ckpt, "-o", c.dir / "OUT", "--calib",
                                            _npz_pickle(c)],
    # --- simulate: .spkc integrity
    "simulate-spkc-flipped-arrays": lambda c: ["simulate", _flip_out(c, "arrays"), "--data",
                                               c.data],
    "simulate-spkc-flipped-header": lambda c: ["simulate", _flip_out(c, "header"), "--data",
                                               c.data],
    "simulate-spkc-truncated": lambda c: ["simulate", _trunc_out(c), "--data", c.data],
    "simulate-spkc-empty": lambda c: ["simulate", _empty_out(c), "--data", c.data],
    "simulate-spkc-negative-offset": lambda c: [
        "simulate", _edit_compiled(c, lambda h: _first_blob(h).update(offset=-64)), "--data",
        c.data],
    "simulate-spkc-offset-out-of-range": lambda c: [
        "simulate", _edit_compiled(c, lambda h: _first_blob(h).update(offset=1 << 40)), "--data",
        c.data],
    "simulate-spkc-nbytes-wrong": lambda c: [
        "simulate", _edit_compiled(c, lambda h: _first_blob(h).update(nbytes=3)), "--data", c.data],
    "simulate-spkc-timesteps-string": lambda c: [
        "simulate", _edit_compiled(c, lambda h: h.update(timesteps="two")), "--data", c.data],
    "simulate-spkc-ops-not-list": lambda c: [
        "simulate", _edit_compiled(c, lambda h: h.update(ops={"a": 1})), "--data", c.data],
    "simulate-spkc-meta-list": lambda c: [
        "simulate", _edit_compiled(c, lambda h: h.update(meta=[1, 2])), "--data", c.data],
    "simulate-spkc-object-dtype": lambda c: [
        "simulate", _edit_compiled(c, _object_dtype), "--data", c.data],
    "simulate-spkc-bad-shape": lambda c: [
        "simulate", _edit_compiled(c, _bad_shape), "--data", c.data],
    "simulate-spkc-unknown-op": lambda c: [
        "simulate", _edit_compiled(c, lambda h: h["ops"][0].update(op="os.system")), "--data",
        c.data],
    "simulate-spkc-extra-field": lambda c: [
        "simulate", _edit_compiled(c, lambda h: h["ops"][0].update(evil=1)), "--data", c.data],
    "simulate-spkc-100000-steps": lambda c: _limited(c, [
        "simulate", _edit_compiled(c, lambda h: h.update(timesteps=100_000)), "--data", c.data]),
    "simulate-out-missing": lambda c: ["simulate", c.dir / "nothing", "--data", c.data],
    "simulate-out-is-file": lambda c: ["simulate", c.file("f", "x"), "--data", c.data],
    # --- simulate: data files
    "simulate-data-missing": lambda c: ["simulate", c.out(), "--data", c.dir / "none.npz"],
    "simulate-data-not-npz": lambda c: ["simulate", c.out(), "--data", c.file("x.npz", "hello")],
    "simulate-data-truncated": lambda c: ["simulate", c.out(), "--data", _truncate(_npz(c), 0.7)],
    "simulate-data-pickled-objects": lambda c: ["simulate", c.out(), "--data", _npz_pickle(c)],
    "simulate-data-float-images": lambda c: [
        "simulate", c.out(), "--data", _npz(c, images=np.zeros((4, 1, 8, 8), np.float32))],
    "simulate-data-wrong-shape": lambda c: [
        "simulate", c.out(), "--data", _npz(c, images=np.zeros((4, 3, 8, 8), np.uint8))],
    "simulate-data-no-labels": lambda c: ["simulate", c.out(), "--data", _npz(c, labels=False)],
    "simulate-data-labels-beyond-classes": lambda c: [
        "simulate", c.out(), "--data", _npz(c, labels=np.array([0, 1, 2, 12]))],
    "simulate-data-classes-not-int": lambda c: [
        "simulate", c.out(), "--data", _npz(c, classes=np.array("ten"))],
    "simulate-data-bomb": lambda c: ["simulate", c.out(), "--data", _npz_bomb(c)],
    "simulate-limit-zero": lambda c: ["simulate", c.out(), "--data", c.data, "--limit", "0"],
    "simulate-limit-negative": lambda c: ["simulate", c.out(), "--data", c.data, "--limit", "-3"],
    "simulate-batch-zero": lambda c: ["simulate", c.out(), "--data", c.data, "--batch-size", "0"],
    # --- validate --against trace
    "validate-trace-missing": lambda c: ["validate", c.out(), "--against", "trace",
                                         c.dir / "none.npz"],
    "validate-trace-garbage": lambda c: _trace(c, raw=os.urandom(2000)),
    "validate-trace-truncated": lambda c: _truncated_trace(c),
    "validate-trace-meta-not-json": lambda c: _trace(c, meta="{not json"),
    "validate-trace-meta-list": lambda c: _trace(c, meta=[1, 2, 3]),
    "validate-trace-samples-string": lambda c: _trace(c, meta={**_good_trace_meta(c),
                                                               "samples": "many"}),
    "validate-trace-layers-not-list": lambda c: _trace(c, meta={**_good_trace_meta(c),
                                                                "layers": 7}),
    "validate-trace-pickled-array": lambda c: _trace(
        c, meta=_good_trace_meta(c), arrays={"inputs/x": np.array([Payload(c.marker)], object)}),
    "validate-trace-other-bundle": lambda c: _trace(c, meta={**_good_trace_meta(c),
                                                             "bundle_hash": "0" * 64}),
    # --- estimate
    "estimate-rate-nan": lambda c: ["estimate", c.out(), "--rate", "nan"],
    "estimate-rate-negative": lambda c: ["estimate", c.out(), "--rate", "-1"],
    "estimate-rate-above-one": lambda c: ["estimate", c.out(), "--rate", "5"],
    "estimate-rate-inf": lambda c: ["estimate", c.out(), "--rate", "inf"],
    "estimate-limit-zero": lambda c: ["estimate", c.out(), "--data", c.data, "--limit", "0"],
    "estimate-chips-zero": lambda c: ["estimate", c.out(), "--chips", "0"],
    "estimate-profile-embedded-cpus-zero": lambda c: [
        "estimate", c.out(), "--profile", _profile(c, _set_toml("capacity", "embedded_cpus", '{ value = 0, source = "test" }'))],
    "estimate-profile-energy-nan": lambda c: [
        "estimate", c.out(), "--profile", _profile(c, _set_toml("energy", _energy_key(c), "nan"))],
    "estimate-profile-energy-inf": lambda c: [
        "estimate", c.out(), "--profile", _profile(c, _set_toml("energy", _energy_key(c), "inf"))],
    "estimate-profile-energy-negative": lambda c: [
        "estimate", c.out(), "--profile", _profile(c, _set_toml("energy", _energy_key(c), "-1.0"))],
    "estimate-profile-energy-string": lambda c: [
        "estimate", c.out(), "--profile", _profile(c, _set_toml("energy", _energy_key(c), '"x"'))],
    "estimate-profile-not-utf8": lambda c: [
        "estimate", c.out(), "--profile", _profile(c, raw=b"[profile]\nname = \"\xff\xfe\"\n")],
    "estimate-profile-binary": lambda c: [
        "estimate", c.out(), "--profile", _profile(c, raw=os.urandom(3000))],
    "estimate-profile-cores-string": lambda c: [
        "estimate", c.out(), "--profile", _profile(c, lambda t: t.replace(
            'cores_per_chip = { value = 128', 'cores_per_chip = { value = "128"'))],
    "estimate-profile-profile-not-table": lambda c: [
        "estimate", c.out(), "--profile", c.file("p.toml", "profile = 3\n")],
    "estimate-profile-directory": lambda c: ["estimate", c.out(), "--profile",
                                             _model_dir_file(c) / "x.toml"],
    "estimate-sweep-nan": lambda c: ["estimate", c.out(), "--sweep",
                                     f"energy.{_energy_key(c)}=nan,1"],
    "estimate-report-not-utf8": lambda c: ["estimate", _report(c, b'{"a": "\xff\xfe"}')],
    "estimate-report-list": lambda c: ["estimate", _report(c, "[1, 2, 3]")],
    "estimate-report-lava-string": lambda c: ["estimate", _report(c, '{"lava": "x"}')],
    "estimate-spkc-flipped": lambda c: ["estimate", _flip_out(c, "arrays"), "--no-save"],
    "estimate-torchscript-untrusted": lambda c: ["estimate", _torchscript_payload(c)],
    "estimate-data-pickled": lambda c: ["estimate", c.out(), "--data", _npz_pickle(c)],
    # --- report
    "report-missing-json": lambda c: ["report", _no_report(c)],
    "report-not-utf8": lambda c: ["report", _report(c, b"\xff\xfe\x00{")],
    "report-list": lambda c: ["report", _report(c, "[]")],
    "report-layers-string": lambda c: ["report", _report(c, '{"layers": "abc"}')],
    "report-estimate-number": lambda c: ["report", _report(c, '{"estimate": 5}')],
    "report-accuracy-string": lambda c: ["report", _report(c, '{"accuracy": {"float": "x"}}')],
    "report-html-is-directory": lambda c: ["report", _html_dir(c)],
    "report-out-is-file": lambda c: ["report", c.file("f", "x")],
    # --- lava-bundle
    "lava-bundle-corrupt-spkc": lambda c: ["lava-bundle", _flip_out(c, "arrays")],
}

if not IS_ROOT:  # root ignores permissions: a read-only folder is writable for it
    CASES["compile-out-read-only"] = lambda c: ["compile", c.ckpt, "-o", _read_only(c) / "OUT"]

# The same commands and file edits on good values must succeed: a hostile case then fails
# because of its one hostile change, not because the builder broke the file some other way.
CONTROLS = {
    "inspect": lambda c: ["inspect", c.ckpt],
    "compile": lambda c: ["compile", c.ckpt, "-o", c.dir / "OUT", "--data", c.data, "--limit",
                          "2", "--preprocess", "pixel_scale=1/255"],
    "simulate-resigned-spkc": lambda c: ["simulate", _edit_compiled(c, lambda h: None), "--data",
                                         c.data],
    "simulate-npz": lambda c: ["simulate", c.out(), "--data", _npz(c), "--limit", "2"],
    "estimate": lambda c: ["estimate", c.out(), "--rate", "0.5"],
    "estimate-data": lambda c: ["estimate", c.out(), "--data", c.data, "--limit", "2"],
    "estimate-edited-profile": lambda c: [
        "estimate", c.out(), "--no-save", "--profile",
        _profile(c, _set_toml("energy", _energy_key(c), "1.5"))],
    "profiles-dir": lambda c: _profiles_dir(
        c, (REPO / "hardware_profiles" / "loihi2.toml").read_bytes()),
    "report": lambda c: ["report", c.out()],
}


def _limited(c: Ctx, args: list, limit: str = "1G") -> list:
    """Run with a memory budget of ``limit`` (the guards refuse as they would on a small
    machine, without this test allocating anything)."""
    c.env["SPIKEC_MEMORY_LIMIT"] = limit
    return args


def _profiles_dir(c: Ctx, content: bytes) -> list:
    d = c.dir / "profiles"
    d.mkdir()
    (d / "chip.toml").write_bytes(content)
    c.env["SPIKEC_PROFILES_DIR"] = str(d)
    return ["profiles"]


def _read_only(c: Ctx) -> Path:
    d = c.dir / "ro"
    d.mkdir()
    d.chmod(0o555)
    return d


def _flip_out(c: Ctx, where: str) -> Path:
    out = c.out()
    _flip(out / "compiled.spkc", where)
    return out


def _trunc_out(c: Ctx) -> Path:
    out = c.out()
    _truncate(out / "compiled.spkc", 0.6)
    return out


def _empty_out(c: Ctx) -> Path:
    out = c.out()
    (out / "compiled.spkc").write_bytes(b"")
    return out


def _no_report(c: Ctx) -> Path:
    out = c.out()
    (out / "report.json").unlink()
    return out


def _html_dir(c: Ctx) -> Path:
    out = c.out()
    (out / "report.html").mkdir()
    return out


def _first_array(v, key: str, value) -> bool:
    """Set ``key`` of the first ``$array`` header met in ``v`` to ``value``; whether one was."""
    if isinstance(v, dict):
        if "$array" in v:
            v[key] = value
            return True
        return any(_first_array(x, key, value) for x in v.values())
    if isinstance(v, list):
        return any(_first_array(x, key, value) for x in v)
    return False


def _object_dtype(h: dict) -> None:
    _first_array(h["ops"], "dtype", "|O")


def _bad_shape(h: dict) -> None:
    _first_array(h["ops"], "shape", [-1, "x"])


def _truncated_trace(c: Ctx) -> list:
    args = _trace(c, meta=_good_trace_meta(c), arrays={"x": np.arange(10000)})
    _truncate(Path(args[-1]), 0.5)
    return args


# ----------------------------------------------------------------------------- running
@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    problems: list
    seconds: float = 0.0


def run_control(name: str, base: Path, root: Path) -> Result:
    """Run a control: exit 0 and no traceback expected."""
    ctx = Ctx(base=base, dir=root / ("control-" + name))
    ctx.dir.mkdir(parents=True)
    args = [str(a) for a in CONTROLS[name](ctx)]
    env = {**os.environ, "PYTHONPATH": str(REPO), **ctx.env}
    r = subprocess.run([sys.executable, "-m", "spikec.cli", *args], capture_output=True,
                       text=True, timeout=300, env=env, cwd=ctx.dir)
    problems = [] if r.returncode == 0 and "Traceback" not in r.stderr else \
        [f"control failed: exit {r.returncode}"]
    return Result(r.returncode, r.stdout, r.stderr, problems)


def run_case(name: str, base: Path, root: Path) -> Result:
    ctx = Ctx(base=base, dir=root / name)
    ctx.dir.mkdir(parents=True)
    try:
        args = [str(a) for a in CASES[name](ctx)]
    except Exception as e:  # noqa: BLE001 - a builder that fails is a broken case, reported
        return Result(-1, "", "", [f"case builder failed: {type(e).__name__}: {e}"])
    before = _tree(ctx.dir)
    env = {**os.environ, "PYTHONPATH": str(REPO), **ctx.env}
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "spikec.cli", *args], capture_output=True,
                           text=True, timeout=120, env=env, cwd=ctx.dir)
    except subprocess.TimeoutExpired:
        return Result(-1, "", "", ["timeout after 120 s (no early refusal)"])
    problems = []
    lines = r.stderr.splitlines()
    if "Traceback" in r.stderr:
        problems.append("traceback")
    if r.returncode == 0:
        problems.append("silent: exit 0")
    elif r.returncode not in (2, 3):
        problems.append(f"exit {r.returncode}")
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr")
    if ctx.marker.exists() or PAYLOAD_TEXT in r.stdout + r.stderr:
        problems.append("code execution")
    after = _tree(ctx.dir)
    if after != before:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        problems.append(f"files changed: {changed[:4]}")
    return Result(r.returncode, r.stdout, r.stderr, problems, time.perf_counter() - t0)


@pytest.fixture(scope="session")
def results(base, tmp_path_factory) -> dict[str, Result]:
    root = tmp_path_factory.mktemp("hostile-cases")
    shared = _tree(base)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {n: pool.submit(run_case, n, base, root) for n in CASES}
        futures.update({"control:" + n: pool.submit(run_control, n, base, root)
                        for n in CONTROLS})
        res = {n: f.result() for n, f in futures.items()}
    res["<shared fixtures>"] = Result(0, "", "", [] if _tree(base) == shared else
                                      ["a case changed the shared fixtures"])
    return res


def test_the_corpus_is_large_and_covers_every_command():
    commands = {name.split("-")[0] for name in CASES}
    assert len(CASES) >= 60
    assert {"inspect", "compile", "simulate", "validate", "estimate", "report", "profiles",
            "models"} <= commands


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_fails_cleanly(name, results):
    r = results[name]
    assert not r.problems, f"{name}: {r.problems}; exit {r.code}; stderr: {r.stderr[-1500:]}"


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_control_on_good_input_succeeds(name, results):
    r = results["control:" + name]
    assert not r.problems, f"control {name}: exit {r.code}; stderr: {r.stderr[-1500:]}"


def test_no_case_changed_the_shared_fixtures(results):
    assert not results["<shared fixtures>"].problems
