"""The Lava bundle without Lava (main environment): files and determinism, the plan's lowering and
delay balancing, SSA sizes, the netx layout read back with h5py, the trace format and
``spikec validate --against trace`` on traces built from the simulator (a corrupted one must be
caught), and the one-line errors. Running the bundle on Lava is tests/lava/test_backend_*.py."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from clirun import run_cli

from spikec import __version__
from spikec.backends.lava import build_plan, bundle_files, samples, ssa_costs, write_bundle
from spikec.backends.lava.matrix import SynapseMatrix
from spikec.backends.lava.netx import read_netx
from spikec.backends.lava.runtime.npzio import load_npz, npz_bytes, save_npz
from spikec.ir import dumps
from spikec.ir.fixed import FIXED_DOMAIN_OPS
from spikec.sim import Simulator

SAMPLES = {
    "chain": samples.chain(),
    "add": samples.spikformer_like(residual="add"),
    "iand": samples.spikformer_like(residual="iand"),
    "and": samples.spikformer_like(residual="and"),
    "zoo": samples.matmul_zoo(),
    "reduce_sum": samples.reduce_sum_zoo(),
}


def _out(tmp_path, graph, ssa="host", conv="lava") -> Path:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    (out / "compiled.spkc").write_bytes(dumps(graph))
    write_bundle(graph, out, ssa=ssa, conv=conv)
    return out


_cli = run_cli


# ----------------------------------------------------------------------------- the bundle
def test_every_fixed_op_type_is_lowered_by_some_sample():
    seen = {type(op) for g in SAMPLES.values() for op in g.ops}
    assert FIXED_DOMAIN_OPS <= seen, sorted(t.__name__ for t in FIXED_DOMAIN_OPS - seen)
    for g in SAMPLES.values():
        for ssa in ("host", "decompose"):
            build_plan(g, ssa=ssa)


def test_bundle_layout_and_determinism(tmp_path):
    g = SAMPLES["add"]
    files1, facts = bundle_files(g, ssa="host")
    files2, _ = bundle_files(samples.spikformer_like(residual="add"), ssa="host")
    assert files1 == files2  # same graph, same bytes (npz and json written deterministically)
    assert {"network.json", "network.npz", "run_lava.py", "manifest.json", "README.md",
            "spikec_lava/network.py", "spikec_lava/procs.py"} <= set(files1)
    manifest = json.loads(files1["manifest.json"])
    assert manifest["spikec_version"] == __version__ and manifest["ssa"] == "host"
    assert set(manifest["files"]) == set(files1) - {"manifest.json"}
    out = _out(tmp_path, g)
    for rel, data in files1.items():
        assert (out / "lava" / rel).read_bytes() == data
    # the runtime imports no spikec: it is copied into bundles that run without spikec
    for rel in files1:
        if rel.endswith(".py"):
            assert not re.search(rb"(?m)^\s*(from|import) spikec[.\s]", files1[rel]), rel
    for key in ("ssa", "processes", "neurons", "synapses", "pipeline_depth", "ssa_ops",
                "ssa_totals", "netx", "bundle_hash", "probes"):
        assert key in facts


def test_npz_bytes_are_deterministic_and_readable(tmp_path):
    arrays = {"b": np.arange(5, dtype=np.int32), "a/x": np.eye(2, dtype=np.uint8)}
    assert npz_bytes(arrays) == npz_bytes(dict(reversed(list(arrays.items()))))
    save_npz(tmp_path / "x.npz", arrays)
    back = load_npz(tmp_path / "x.npz")
    assert set(back) == set(arrays) and all(np.array_equal(back[k], arrays[k]) for k in arrays)


def test_write_bundle_fills_report_and_replaces_old_bundle(tmp_path):
    report = {}
    facts = write_bundle(SAMPLES["zoo"], tmp_path, ssa="decompose", report=report)
    assert report["lava"] is facts and facts["ssa"] == "decompose"
    (tmp_path / "lava" / "stale").write_text("x")
    write_bundle(SAMPLES["zoo"], tmp_path, ssa="host")
    assert not (tmp_path / "lava" / "stale").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".lava")]


def test_synapse_matrix_helpers():
    m = SynapseMatrix.build([0, 0, 2, 1], [1, 1, 0, 2], [3, -1, 5, 0], (3, 3))
    assert m.nnz == 2 and np.array_equal(m.toarray(), [[0, 2, 0], [0, 0, 0], [5, 0, 0]])
    data, indices, indptr = m.csr()
    assert list(data) == [2, 5] and list(indices) == [1, 0] and list(indptr) == [0, 1, 1, 2]
    assert np.array_equal(m.take_rows(np.array([2, 0])).toarray(), [[5, 0, 0], [0, 2, 0]])
    assert np.array_equal(m.take_cols(np.array([1])).toarray(), [[2], [0], [0]])
    assert np.array_equal(m.mask_rows(np.array([False, True, True])).toarray()[0], [0, 0, 0])


# ----------------------------------------------------------------------------- lowering details
def _procs(plan, kind):
    return [p for p in plan["processes"] if p["type"] == kind]


def test_delay_balancing_and_depths():
    plan, arrays, facts = build_plan(SAMPLES["add"], ssa="host")
    depth = {p["value"]: p["depth"] for p in plan["probes"]}
    # conv/dense + LIF is one step; the residual join waits for its later input
    assert depth["l1"] == 1 and depth["mp"] == 2 and depth["l2"] == 3 and depth["join"] == 4
    assert depth["q"] == depth["k"] == depth["v"] == 5
    # host products answer in the step their operands arrive; v is split by threshold (two LIF
    # processes) and reaches the host process on two ports
    assert depth["kv"] == depth["qkv"] == 5
    assert plan["depth"] == facts["pipeline_depth"] == depth["readout"]
    delays = [p["delay"] for p in plan["processes"] if p["type"] in ("sparse", "dense")]
    assert max(delays) >= 1 and max(delays) <= 63           # the early shortcut is delayed
    dplan, _, dfacts = build_plan(SAMPLES["add"], ssa="decompose")
    ddepth = {p["value"]: p["depth"] for p in dplan["probes"]}
    # decompose: fan-out synapse + summing synapse (2 steps per product)
    assert ddepth["kv"] == depth["kv"] + 2 and ddepth["qkv"] == ddepth["kv"] + 2
    assert dfacts["pipeline_depth"] == facts["pipeline_depth"] + 4
    sm = [p for p in plan["processes"] if p["type"] == "spike_matmul" and p["name"] == "kv"][0]
    assert len(sm["b_parts"]) == 2 and all(q["index"] for q in sm["b_parts"])


def test_split_layers_one_lif_per_threshold_and_conv_per_exponent():
    plan, _, facts = build_plan(SAMPLES["add"], ssa="host")
    l1 = [p for p in _procs(plan, "lif") if p["ir"] == "l1"]
    assert sorted(p["vth"] for p in l1) == [40, 70]
    # c1 has exponents (0, -1, 0, -2): one Lava Conv per exponent (the runtime's CPU model
    # applies it, as the chip does); c2 (exponent 1, split input) becomes Conv per input part
    c2 = [p for p in _procs(plan, "conv") if p["name"].startswith("l2_syn")]
    assert c2 and all(p["weight_exp"] == 1 for p in c2)
    c1 = [p for p in _procs(plan, "conv") if p["name"].startswith("l1_syn")]
    assert {p["weight_exp"] for p in c1} == {0, -1, -2}
    assert not [p for p in _procs(plan, "sparse") if p["name"].startswith(("l1_syn", "q_", "k_"))]
    # proj is split by threshold and read by the head with exponent -1: gathered first (one
    # shift of the whole sum, as in the IR), one step later
    assert [p for p in plan["processes"] if p["name"].startswith("proj_gather")]
    depth = {p["value"]: p["depth"] for p in plan["probes"]}
    assert depth["readout"] == depth["proj"] + 2
    even = samples.spikformer_like(residual="add")
    even.op("head").weight[:] = even.op("head").weight & ~1   # even: every partial sum halves exactly
    eplan, _, _ = build_plan(even, ssa="host")
    assert not [p for p in eplan["processes"] if "gather" in p["name"]]
    sparse_only, _, sfacts = build_plan(SAMPLES["add"], ssa="host", conv="sparse")
    assert not _procs(sparse_only, "conv") and sfacts["synapses"] > facts["synapses"]


def test_ssa_sizes_reported_for_both_lowerings():
    _, _, facts = build_plan(SAMPLES["add"], ssa="host")
    kv, qkv = facts["ssa_ops"]
    assert kv["used"] == "host" and (kv["a_kind"], kv["b_kind"]) == ("spike", "spike")
    assert qkv["b_kind"] == "count"
    # kv: (2, 2, 16) @ (2, 16, 2): 2*2*16*2 terms
    assert kv["decompose"]["term_neurons"] == 128 and kv["decompose"]["neurons"] == 128 + 8
    assert kv["host"]["messages_to_cpu_per_step"] == 64 + 64 and kv["host"]["neurons"] == 0
    assert facts["ssa_totals"]["decompose"]["neurons"] == (128 + 8) + (128 + 64)
    c = ssa_costs((1, 3, 4), (1, 4, 5), "count", "count")
    assert c["decompose"]["term_neuron"] == "ProdNeuron" and c["host"]["cpu_macs_per_step"] == 60


def test_decompose_uses_only_standard_processes():
    plan, _, _ = build_plan(SAMPLES["zoo"], ssa="decompose")
    kinds = {p["type"] for p in plan["processes"]}
    assert "spike_matmul" not in kinds and {"gate", "prod", "lif", "graded_relay"} <= kinds


def test_unrepresentable_weights_are_refused():
    from spikec.errors import UnsupportedOpError

    g = samples.chain()
    g.op("d1").weight[0, 0] = -3          # odd mixed-sign weight: Lava would clear its low bit
    g.op("d1").weight_exp[:] = -1         # ... and a negative exponent forbids splitting it
    with pytest.raises(UnsupportedOpError, match="not exactly representable"):
        build_plan(g)
    g.op("d1").weight_exp[:] = 0          # exponent >= 0: split into +/- processes, exact
    plan, _, _ = build_plan(g)
    modes = {p["sign_mode"] for p in plan["processes"] if p["type"] == "dense"}
    assert modes == {2, 3}


# ----------------------------------------------------------------------------- netx
def test_netx_chain_read_back_in_netx_layout(tmp_path):
    g = SAMPLES["chain"]
    facts = write_bundle(g, tmp_path)
    assert facts["netx"]["written"] and facts["netx"]["file"] == "lava/netx.h5"
    layers = read_netx(str(tmp_path / "lava" / "netx.h5"))
    assert [l["type"] for l in layers] == ["input", "conv", "flatten", "dense"]
    assert list(layers[0]["shape"]) == [1, 8, 8]
    conv, dense = layers[1], layers[3]
    c1, l1, d1, l2 = g.op("c1"), g.op("l1"), g.op("d1"), g.op("l2")
    assert np.array_equal(conv["weight"], c1.weight.astype(np.int64))           # exponent 0
    assert list(conv["stride"]) == [1, 1] and list(conv["padding"]) == [1, 1]
    assert conv["neuron"]["type"] == "CUBA" and conv["neuron"]["iDecay"] == l1.du + 1
    assert conv["neuron"]["vDecay"] == l1.dv and conv["neuron"]["vThMant"] == 60
    assert np.array_equal(dense["weight"], d1.weight.astype(np.int64) << 1)    # exponent 1
    assert dense["neuron"]["vThMant"] == 30 and list(dense["shape"]) == [10]
    import h5py

    with h5py.File(tmp_path / "lava" / "netx.h5", "r") as f:   # netx's NetDict reads type[()]
        assert f["layer/1/type"][()].decode("ascii") == "conv"
    again = bundle_files(samples.chain())[0]["netx.h5"]
    assert again == (tmp_path / "lava" / "netx.h5").read_bytes()


def test_netx_not_written_for_non_chains():
    for name in ("add", "iand", "zoo"):
        _, facts = bundle_files(SAMPLES[name])
        assert not facts["netx"]["written"] and "not a straight chain" in facts["netx"]["reason"]


# ----------------------------------------------------------------------------- traces
def _trace_from_sim(out: Path, graph, x, corrupt=None) -> Path:
    """A trace in the documented format, with the simulator's values as the 'chip's'."""
    plan = json.loads((out / "lava" / "network.json").read_text())
    manifest = json.loads((out / "lava" / "manifest.json").read_text())
    names = [p["value"] for p in plan["probes"]]
    res = Simulator(graph).run(x, record=names)
    arrays, layers = {}, []
    for p in plan["probes"]:
        v = res.values[p["value"]]
        if p["kind"] == "readout":
            op = graph.op(p["value"])
            acc = np.rint((v - op.offset) / op.scale).astype(np.int32)
            arrays["readout/" + p["value"]] = acc
        else:
            arrays["spikes/" + p["value"]] = np.moveaxis(v, 0, 1).astype(
                np.uint8 if p["kind"] == "spike" else np.int32)
        layers.append({"name": p["value"], "kind": p["kind"], "shape": p["shape"]})
    if corrupt:
        key, idx = corrupt
        arrays[key][idx] = 1 - arrays[key][idx]
    arrays[f"inputs/{plan['inputs'][0]['value']}"] = x
    meta = {"format": "spikec-trace", "format_version": 1, "spikec_version": __version__,
            "bundle_hash": manifest["bundle_hash"], "samples": len(x), "layers": layers,
            "timesteps": plan["timesteps"], "seconds": {"wall": 1.0, "run": 0.5}, "steps": 9}
    arrays["meta"] = np.array(json.dumps(meta))
    path = out / "trace.npz"
    save_npz(path, arrays)
    return path


def test_validate_against_trace_identical_and_corrupted(tmp_path, capsys):
    g = SAMPLES["add"]
    out = _out(tmp_path, g)
    x = samples.images(3)
    trace = _trace_from_sim(out, g, x)
    code, stdout, _ = _cli(["validate", str(out), "--against", "trace", str(trace), "--json"], capsys)
    res = json.loads(stdout)
    assert code == 0 and res["mismatches"] == 0 and res["first_divergence"] is None
    assert res["against"] == "trace" and res["samples"] == 3 and res["spikes_compared"] > 0
    for key in ("lava_seconds", "spikec_seconds"):
        assert isinstance(res[key], float)
    # one flipped spike: caught, located
    bad = _trace_from_sim(out, g, x, corrupt=("spikes/q", (1, 2, 3, 5)))
    code, stdout, _ = _cli(["validate", str(out), "--against", "trace", str(bad)], capsys)
    assert code == 1 and "1 mismatches" in stdout
    assert "first divergence: layer q, sample 1, neuron (3, 5)" in stdout and "time step 2" in stdout
    code, stdout, _ = _cli(["validate", str(out), "--against", "trace", str(bad), "--json"], capsys)
    fd = json.loads(stdout)["first_divergence"]
    assert fd["layer"] == "q" and fd["neuron"] == [3, 5] and fd["time_step"] == 2
    assert {fd["lava"], fd["spikec"]} == {0, 1}


def test_simulator_timing_is_the_median_of_repeated_passes(tmp_path, capsys, monkeypatch):
    """The steady figure is the median of several passes over the samples (timeit-like); the
    values compared are the first pass's, the CLI names the pass count and spread."""
    from spikec.backends.lava import validate as V

    g = SAMPLES["add"]
    out = _out(tmp_path, g)
    x = samples.images(3)
    trace = _trace_from_sim(out, g, x)
    monkeypatch.setattr(V, "TIMED_SECONDS", 10.0)
    monkeypatch.setattr(V, "MAX_PASSES", 5)
    code, stdout, _ = _cli(["validate", str(out), "--against", "trace", str(trace), "--json"], capsys)
    res = json.loads(stdout)
    assert code == 0 and res["mismatches"] == 0 and res["spikec_timed_passes"] == 5
    spread = res["spikec_pass_seconds_per_sample"]
    assert 0 < spread["min"] <= spread["median"] <= spread["max"]
    assert spread["median"] == res["spikec_steady_seconds_per_sample"]
    # set-up and the compared pass only: the extra timing passes are not in spikec_seconds
    assert res["spikec_seconds"] <= res["spikec_setup_seconds"] + 3 * spread["max"] + 1e-9
    code, stdout, _ = _cli(["validate", str(out), "--against", "trace", str(trace)], capsys)
    assert code == 0 and "the median of 5 passes over the samples" in stdout
    monkeypatch.setattr(V, "TIMED_SECONDS", 0.0)
    code, stdout, _ = _cli(["validate", str(out), "--against", "trace", str(trace), "--json"], capsys)
    assert json.loads(stdout)["spikec_timed_passes"] == 1


def test_trace_with_wrong_layers_or_shapes_or_bundle(tmp_path, capsys):
    g = SAMPLES["add"]
    out = _out(tmp_path, g)
    x = samples.images(2)
    trace = _trace_from_sim(out, g, x)
    arrays = load_npz(trace)
    meta = json.loads(str(arrays["meta"]))

    def variant(name, mutate):
        a = {k: v.copy() for k, v in arrays.items()}
        m = json.loads(json.dumps(meta))
        mutate(a, m)
        a["meta"] = np.array(json.dumps(m))
        p = tmp_path / f"{name}.npz"
        save_npz(p, a)
        return p

    cases = {
        "missing": (lambda a, m: (m["layers"].pop(0), a.pop("spikes/l1")), "missing from the trace"),
        "extra": (lambda a, m: m["layers"].append({"name": "zz", "kind": "spike", "shape": [1]}),
                  "not a layer of this bundle"),
        "shape": (lambda a, m: a.__setitem__("spikes/q", a["spikes/q"][:, :, :2]), "has shape"),
        "bundle": (lambda a, m: m.__setitem__("bundle_hash", "0" * 64), "another bundle"),
        "format": (lambda a, m: m.__setitem__("format", "other"), "not a spikec-trace"),
    }
    for name, (mutate, msg) in cases.items():
        code, _, err = _cli(["validate", str(out), "--against", "trace",
                             str(variant(name, mutate))], capsys)
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, (name, err)
    code, _, err = _cli(["validate", str(out), "--against", "trace", str(tmp_path / "nope.npz")],
                        capsys)
    assert code == 2 and "not a spikec trace" in err


def test_bundle_errors(tmp_path, capsys, monkeypatch):
    g = SAMPLES["chain"]
    out = _out(tmp_path, g)
    npz = tmp_path / "d.npz"
    np.savez(npz, images=samples.images(2), labels=np.zeros(2, np.int64))
    # bundle from another spikec version
    mpath = out / "lava" / "manifest.json"
    manifest = json.loads(mpath.read_text())
    mpath.write_text(json.dumps({**manifest, "spikec_version": "0.0.1"}))
    code, _, err = _cli(["validate", str(out), "--against", "lava", "--data", str(npz)], capsys)
    assert code == 2 and "written by spikec 0.0.1" in err and len(err.strip().splitlines()) == 1
    mpath.write_text(json.dumps(manifest))
    # a bundle file changed after it was written
    (out / "lava" / "network.json").write_text("{}")
    code, _, err = _cli(["validate", str(out), "--against", "lava", "--data", str(npz)], capsys)
    assert code == 2 and "modified" in err
    # no bundle at all
    code, _, err = _cli(["validate", str(tmp_path), "--against", "lava", "--data", str(npz)], capsys)
    assert code == 2 and "no Lava bundle" in err


def test_missing_lava_environment(tmp_path, capsys, monkeypatch):
    import spikec.backends.lava.validate as V

    g = SAMPLES["chain"]
    out = _out(tmp_path, g)
    npz = tmp_path / "d.npz"
    np.savez(npz, images=samples.images(2), labels=np.zeros(2, np.int64))
    monkeypatch.setattr(V, "_candidates", lambda: [tmp_path / "no" / "python"])
    code, _, err = _cli(["validate", str(out), "--against", "lava", "--data", str(npz)], capsys)
    assert code == 2 and "no Lava environment" in err and "does not exist" in err
    monkeypatch.setattr(V, "_candidates", lambda: [Path(sys.executable)])   # Python 3.11
    code, _, err = _cli(["validate", str(out), "--against", "lava", "--data", str(npz)], capsys)
    assert code == 2 and "Lava needs 3.10" in err and len(err.strip().splitlines()) == 1
    py310 = Path("/root/.pyenv/versions/3.10.13/bin/python")
    if py310.exists():  # a Python 3.10 without lava-nc (these machines have one)
        monkeypatch.setattr(V, "_candidates", lambda: [py310])
        code, _, err = _cli(["validate", str(out), "--against", "lava", "--data", str(npz)],
                            capsys)
        assert code == 2 and "lava-nc is not installed" in err


def test_data_shape_mismatch_and_lava_bundle_command(tmp_path, capsys):
    g = SAMPLES["chain"]
    out = _out(tmp_path, g)
    npz = tmp_path / "d.npz"
    np.savez(npz, images=np.zeros((2, 1, 5, 5), np.uint8), labels=np.zeros(2, np.int64))
    import spikec.backends.lava.validate as V

    with pytest.raises(Exception, match=r"takes \(1, 8, 8\)"):
        V.validate_lava(out, str(npz), python="unused")
    code, stdout, _ = _cli(["lava-bundle", str(out), "--ssa", "decompose", "--json"], capsys)
    assert code == 0 and json.loads(stdout)["ssa"] == "decompose"
    code, _, err = _cli(["lava-bundle", str(tmp_path / "empty")], capsys)
    assert code == 2 and "no compiled.spkc" in err


def test_netx_refuses_chains_it_cannot_express():
    g = samples.chain()
    g.op("c1").weight_exp[:] = -1
    _, facts = bundle_files(g)
    assert not facts["netx"]["written"] and "negative weight exponent" in facts["netx"]["reason"]
    g = samples.chain()
    g.op("l2").vth[::2] = 31
    _, facts = bundle_files(g)
    assert "2 thresholds" in facts["netx"]["reason"]


def test_validate_runs_the_installed_runner_not_a_script_from_out(tmp_path, monkeypatch):
    """The Lava subprocess gets this spikec's runtime and OUT's bundle directory as data only."""
    import subprocess

    import spikec.backends.lava.validate as V

    out = _out(tmp_path, SAMPLES["chain"])
    npz = tmp_path / "d.npz"
    np.savez(npz, images=samples.images(2), labels=np.zeros(2, np.int64))
    seen = []

    def fake_run(cmd, **kw):
        seen.append((cmd, kw))
        return subprocess.CompletedProcess(cmd, 1, "", "stopped here")
    monkeypatch.setattr(V.subprocess, "run", fake_run)
    with pytest.raises(Exception, match="stopped here"):
        V.validate_lava(out, str(npz), python="python3.10")
    (cmd, kw), = seen
    assert cmd[:2] == ["python3.10", "-c"] and cmd[3] == str(V.RUNTIME_DIR)
    assert Path(cmd[3], "runner.py").is_file() and (out / "lava") not in Path(cmd[3]).parents
    code_and_runtime = cmd[2:4]
    assert not any(str(out) in c for c in code_and_runtime)
    bundle = cmd[cmd.index("--bundle") + 1]
    assert bundle == str((out / "lava").resolve())
    assert not any(c.endswith("run_lava.py") or "spikec_lava/" in c for c in cmd)
    assert str(out) not in str(kw.get("cwd"))

# ----------------------------------------------------------------------------- memory
def _conv_net(size=32, channels=8):
    from spikec.ir import fixed as F
    from spikec.ir import ops as O
    from spikec.ir.graph import Graph

    rng = np.random.default_rng(3)
    shape = (channels, size, size)
    return Graph([
        F.GradedInput("x", (), shape=(1, size, size), payload_bits=8),
        F.ConvSynapse("stem", ("x",),
                      weight=(2 * rng.integers(-9, 10, (channels, 1, 3, 3))).astype(np.int16),
                      weight_exp=np.full(channels, -2, np.int8), padding=(1, 1)),
        F.CubaLIF("lif", ("stem",), du=4095, dv=2048, vth=np.full(shape, 40, np.int32),
                  bias_mant=np.zeros(shape, np.int16), bias_exp=np.zeros(shape, np.int8)),
        O.Output("out", ("lif",)),
    ], timesteps=2, domain="fixed")


def test_weight_shared_conv_stores_the_kernel_once_in_int8():
    plan, arrays, facts = build_plan(_conv_net(), ssa="host")
    (conv,) = [p for p in plan["processes"] if p["type"] == "conv"]
    w = arrays[conv["weight"][1:]]
    assert w.dtype == np.int8 and w.shape == (8, 3, 3, 1) and conv["weight_exp"] == -2
    assert facts["synapses"] == np.count_nonzero(w)
    _, sarrays, sfacts = build_plan(_conv_net(), ssa="host", conv="sparse")
    assert sfacts["synapses"] > 500 * facts["synapses"]
    unrolled = sum(a.nbytes for k, a in sarrays.items() if ".w_" in k)
    assert w.nbytes == 72 and unrolled > 5000 * w.nbytes


def test_memory_guard_names_the_layer_bytes_and_option(monkeypatch, tmp_path, capsys):
    from spikec.memory import MemoryBudgetError

    # the unrolled stem: 8 * 32 * 32 * 9 synapses (about 5 MiB while built); the Conv: 72 bytes
    monkeypatch.setenv("SPIKEC_MEMORY_LIMIT", "1M")
    build_plan(_conv_net(), ssa="host", conv="lava")
    with pytest.raises(MemoryBudgetError, match=r"conv synapse 'stem'.* needs 5\.1 MiB.*"
                                                 r"1\.0 MiB.*--conv lava"):
        build_plan(_conv_net(), ssa="host", conv="sparse")
    monkeypatch.setenv("SPIKEC_MEMORY_LIMIT", "10K")
    build_plan(SAMPLES["zoo"], ssa="host")
    with pytest.raises(MemoryBudgetError, match=r"spike_matmul 'mm_ss'.*--ssa host"):
        build_plan(SAMPLES["zoo"], ssa="decompose")
    monkeypatch.setenv("SPIKEC_MEMORY_LIMIT", "1M")
    out = tmp_path / "out"
    out.mkdir()
    (out / "compiled.spkc").write_bytes(dumps(_conv_net()))
    code, _, err = _cli(["lava-bundle", str(out), "--conv", "sparse"], capsys)
    assert code == 3 and len(err.strip().splitlines()) == 1 and "'stem'" in err
    assert not (out / "lava").exists()
    assert _cli(["lava-bundle", str(out)], capsys)[0] == 0 and (out / "lava").is_dir()
