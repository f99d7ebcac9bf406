"""The IR: verifier errors, serialization round trips for every op type, text dump, networkx view."""
import os
import stat

import numpy as np
import pytest

from spikec import ir
from spikec.errors import InputFileError, IRError, ShapeError
from spikec.ir import ops as O
from spikec.ir.fixed import FIXED_ONLY_OPS

RNG = np.random.default_rng(7)


def f32(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def i32(lo, hi, *shape):
    return RNG.integers(lo, hi, size=shape).astype(np.int32)


def float_graph() -> ir.Graph:
    """A float graph that uses every float op type at least once."""
    ops = [
        O.Input("x", (), shape=(2, 8, 8), pixel_scale=1 / 255, mean=(0.5, 0.4), std=(0.2, 0.3)),
        O.Conv2d("c1", ("x",), weight=f32(8, 2, 3, 3), bias=f32(8), padding=(1, 1)),
        O.BatchNorm("bn1", ("c1",), mean=f32(8), var=np.abs(f32(8)) + 0.1, gamma=f32(8),
                    beta=f32(8)),
        O.LIF("s1", ("bn1",)),
        O.MaxPool2d("mp", ("s1",), kernel=(3, 3), stride=(2, 2), padding=(1, 1)),
        O.AvgPool2d("ap", ("c1",), kernel=(2, 2), stride=(2, 2)),
        O.LIF("s2", ("ap",), v_threshold=0.5),
        O.Add("res", ("mp", "s2")),
        O.Reshape("tok", ("res",), shape=(8, 16)),
        O.Transpose("tokT", ("tok",), perm=(1, 0)),
        O.Linear("q", ("tokT",), weight=f32(8, 8), bias=None, axis=-1),
        O.LIF("qs", ("q",)),
        O.SpikeMatmul("kv", ("tok", "qs")),
        O.Scale("sc", ("kv",), factor=0.125),
        O.LIF("attn", ("sc",), v_threshold=0.5),
        O.IAND("iand", ("attn", "attn")),
        O.AND("and", ("iand", "attn")),
        O.ReduceSum("rs", ("and",), axes=(1,)),
        O.LIF("rsl", ("rs",), v_threshold=0.5),
        O.AND("mask", ("and", "rsl")),          # (8, 8) AND (8, 1): broadcast
        O.Mean("m", ("mask",), axes=(1,)),
        O.TimeMean("tm", ("m",)),
        O.Linear("head", ("tm",), weight=f32(3, 8), bias=f32(3)),
        O.Output("y", ("head",)),
    ]
    return ir.Graph(ops, timesteps=4, meta={"arch": "test", "config": {"dim": 8, "pair": (1, 2)}})


def fixed_graph() -> ir.Graph:
    """A fixed-point graph that uses every fixed-only op type at least once."""
    shape = (4, 8, 8)
    ops = [
        ir.GradedInput("x", (), shape=(1, 8, 8)),
        ir.ConvSynapse("c", ("x",), weight=i32(-128, 128, 4, 1, 3, 3) * 2,
                       weight_exp=np.zeros(4, np.int32), padding=(1, 1)),
        ir.CubaLIF("l", ("c",), du=4095, dv=2048, vth=np.full(shape, 100, np.int32),
                   bias_mant=i32(-50, 50, *shape), bias_exp=np.zeros(shape, np.int32)),
        O.Reshape("r", ("l",), shape=(4, 64)),
        ir.DenseSynapse("h", ("r", "r"), weight=i32(-8, 8, 3, 4), weight_exp=np.ones(3, np.int32),
                        axis=0),
        ir.Readout("ro", ("h",), scale=0.5, offset=f32(3).astype(np.float64), sum_axes=(1,)),
        O.Output("y", ("ro",)),
    ]
    return ir.Graph(ops, timesteps=2, domain="fixed")


def test_every_op_type_is_exercised_here():
    used = {type(op) for op in float_graph()} | {type(op) for op in fixed_graph()}
    missing = {cls.OPCODE for cls in ir.OP_TYPES.values()} - {cls.OPCODE for cls in used}
    assert not missing, f"op types without a serialization test: {sorted(missing)}"


@pytest.mark.parametrize("make", [float_graph, fixed_graph])
def test_serialization_round_trip_is_identical(make, tmp_path):
    g = make()
    data = ir.dumps(g)
    g2 = ir.loads(data)
    assert g2 == g
    assert ir.dumps(g2) == data
    ir.save(g, tmp_path / "g.spkc")
    assert (tmp_path / "g.spkc").read_bytes() == data
    assert ir.load(tmp_path / "g.spkc") == g


def test_round_trip_keeps_dtypes_and_none():
    g2 = ir.loads(ir.dumps(float_graph()))
    assert g2.op("q").bias is None
    assert g2.op("c1").weight.dtype == np.float32
    assert g2.op("x").mean == (0.5, 0.4)
    assert g2.meta["config"]["pair"] == (1, 2)


def test_value_kinds_and_rates():
    specs = float_graph().specs
    assert specs["x"].kind is ir.Kind.REAL
    assert specs["s1"].kind is ir.Kind.SPIKE
    assert specs["res"].kind is ir.Kind.COUNT
    assert specs["kv"].kind is ir.Kind.COUNT and specs["kv"].shape == (8, 8)
    assert specs["sc"].kind is ir.Kind.REAL
    assert specs["tm"].rate is ir.Rate.FINAL and specs["y"].shape == (3,)
    assert specs["rs"].kind is ir.Kind.COUNT and specs["rs"].shape == (8, 1)
    assert specs["mask"].kind is ir.Kind.SPIKE and specs["mask"].shape == (8, 8)
    fx = fixed_graph().specs
    assert fx["c"].kind is ir.Kind.CURRENT and fx["ro"].shape == (3,)


def _replace(g, name, new):
    return ir.Graph([new if op.name == name else op for op in g.ops], g.timesteps, g.meta, g.domain)


@pytest.mark.parametrize("bad, err, text", [
    (lambda g: _replace(g, "q", O.Linear("q", ("tokT",), weight=f32(8, 5))), ShapeError, "'q'"),
    (lambda g: _replace(g, "res", O.Add("res", ("mp", "nowhere"))), IRError, "nowhere"),
    (lambda g: _replace(g, "kv", O.SpikeMatmul("kv", ("tok", "q"))), ShapeError, "real"),
    (lambda g: _replace(g, "s2", O.LIF("s2", ("ap",), fire_on="=>")), ShapeError, "fire_on"),
    (lambda g: _replace(g, "iand", O.IAND("iand", ("attn", "sc"))), ShapeError, "spike"),
    (lambda g: _replace(g, "mask", O.AND("mask", ("and", "tok"))), ShapeError, "spike"),
    (lambda g: _replace(g, "mask", O.AND("mask", ("and", "qs"))), ShapeError, "broadcast"),
    (lambda g: _replace(g, "rs", O.ReduceSum("rs", ("and",), axes=(2,))), ShapeError, "axis 2"),
    (lambda g: _replace(g, "tok", O.Reshape("tok", ("res",), shape=(7, 16))), ShapeError, "reshape"),
    (lambda g: _replace(g, "mp", ir.CubaLIF("mp", ("s1",), vth=np.zeros(1, np.int32),
                                            bias_mant=np.zeros(1, np.int32),
                                            bias_exp=np.zeros(1, np.int32))), IRError, "fixed"),
    (lambda g: ir.Graph(g.ops[:-1], g.timesteps), IRError, "output"),
    (lambda g: ir.Graph(g.ops, 0), IRError, "timesteps"),
    (lambda g: ir.Graph(g.ops + [O.Output("y", ("head",))], 4), IRError, "twice"),
])
def test_verifier_names_the_problem(bad, err, text):
    with pytest.raises(err, match=text):
        ir.verify(bad(float_graph()))


def test_fixed_domain_rejects_float_ops():
    g = fixed_graph()
    bad = ir.Graph(g.ops[:1] + [O.Scale("s", ("x",))] + g.ops[1:], g.timesteps, domain="fixed")
    with pytest.raises(IRError, match="float op"):
        ir.verify(bad)
    assert FIXED_ONLY_OPS <= ir.FIXED_DOMAIN_OPS


def test_corrupt_files_give_one_line_errors(tmp_path):
    p = tmp_path / "bad.spkc"
    p.write_bytes(b"not a graph")
    with pytest.raises(InputFileError, match="bad.spkc"):
        ir.load(p)
    data = bytearray(ir.dumps(float_graph()))
    with pytest.raises(InputFileError, match="corrupt"):
        ir.loads(bytes(data[:40]), source="cut.spkc")
    with pytest.raises(InputFileError, match="no.spkc"):
        ir.load(tmp_path / "no.spkc")


def test_dump_and_networkx_view():
    g = float_graph()
    text = ir.dump(g)
    assert "kv = spike_matmul(tok, qs)" in text and "count[8x8]" in text
    nx_g = g.to_networkx()
    assert nx_g.number_of_nodes() == len(g.ops)
    assert nx_g.edges["tok", "kv"]["port"] == 0 and nx_g.edges["qs", "kv"]["port"] == 1
    rows = ir.summary_rows(g)
    conv = next(r for r in rows if r["name"] == "c1")
    assert conv["dense_ops"] == 8 * 8 * 8 * 2 * 9 and conv["params"] == 8 * 2 * 9 + 8


def test_atomic_write_replaces_whole_file_with_umask_permissions(tmp_path, monkeypatch):
    from spikec.atomic import write_atomic

    target = tmp_path / "sub" / "a.bin"
    old = os.umask(0o027)
    try:
        write_atomic(target, b"first")
        write_atomic(target, b"second")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"second"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["a.bin"]  # no temporary left behind

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr("spikec.atomic.os.replace", fail)
    with pytest.raises(OSError):
        write_atomic(target, b"third")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["a.bin"]


def test_require_names_what_needs_a_missing_package():
    from spikec.errors import MissingEnvironmentError, require

    assert require("json", "reading JSON").loads("1") == 1
    with pytest.raises(MissingEnvironmentError,
                       match=r"^doing X needs the 'spikec_no_such_pkg' package: pip install "
                             r"'spikec\[torch\]'$"):
        require("spikec_no_such_pkg", "doing X", extra="torch")


def _resign(data: bytes, edit) -> bytes:
    """Edit a .spkc's header and recompute its checksum (a forged, well-signed file)."""
    import json
    import struct

    from spikec.ir import serialize as S

    (n,) = struct.unpack("<Q", data[8:16])
    header = json.loads(data[S.HEADER_START:S.HEADER_START + n])
    edit(header)
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return S.pack(head, data[S.HEADER_START + n:])


def test_spkc_checksum_catches_any_flipped_byte_and_stays_deterministic():
    g = float_graph()
    data = ir.dumps(g)
    assert ir.dumps(ir.loads(data)) == data == ir.dumps(g)   # same graph, same bytes
    assert ir.loads(_resign(data, lambda h: None)) is not None
    for pos in (20, 60, len(data) // 2, len(data) - 1):  # checksum, header, arrays
        bad = bytearray(data)
        bad[pos] ^= 0x01
        with pytest.raises(InputFileError, match=r"x\.spkc: .*(checksum|header)"):
            ir.loads(bytes(bad), source="x.spkc")


@pytest.mark.parametrize("edit, field", [
    (lambda h: h["blobs"][0].update(offset=-64), r"blobs\[0\]\.offset"),
    (lambda h: h["blobs"][0].update(offset=1 << 40), r"blobs\[0\]\.offset"),
    (lambda h: h["blobs"][0].update(nbytes=3), r"blobs\[0\]\.nbytes"),
    (lambda h: h.update(timesteps="2"), "timesteps"),
    (lambda h: h.update(timesteps=True), "timesteps"),
    (lambda h: h.update(domain=3), "domain"),
    (lambda h: h.update(meta=[]), "meta"),
    (lambda h: h.update(ops={}), "ops"),
    (lambda h: h.update(blobs=None), "blobs"),
    (lambda h: h["ops"][0].update(op=7), r"ops\[0\]"),
    (lambda h: h["ops"][1].update(evil=1), r"ops\[1\]"),
    (lambda h: h["ops"][0].update(op="nope"), "unknown op type"),
])
def test_spkc_header_of_the_wrong_types_is_one_line_naming_the_field(edit, field):
    data = _resign(ir.dumps(float_graph()), edit)
    with pytest.raises(InputFileError, match=f"g.spkc: .*{field}"):
        ir.loads(data, source="g.spkc")


def test_spkc_arrays_must_be_plain_numbers_of_their_declared_size():
    def first_array(h):
        def walk(v):
            if isinstance(v, dict):
                if "$array" in v:
                    return v
                return next((r for r in map(walk, v.values()) if r), None)
            if isinstance(v, list):
                return next((r for r in map(walk, v) if r), None)
            return None
        return walk(h["ops"])

    for change, field in (({"dtype": "|O"}, "dtype"), ({"dtype": 5}, "dtype"),
                          ({"shape": [-1]}, "shape"), ({"shape": ["a"]}, "shape")):
        data = _resign(ir.dumps(float_graph()), lambda h: first_array(h).update(change))
        with pytest.raises(InputFileError, match=field):
            ir.loads(data, source="g.spkc")
