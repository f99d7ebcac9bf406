"""The input encodings on Lava's fixed_pt models (``--input-encoding``; docs/compiler.md, "Input
encodings"): a bitplane bundle (the pixels as eight binary sources, plane k through the first
synapse with exponent e + k) and a host bundle (the first layer's spikes, computed by the
simulator, are the input) equal spikec's bit-exact simulator spike for spike."""
from __future__ import annotations

import numpy as np
import pytest
from clirun import run_cli
from lava_probes import assert_probes_equal

from spikec.backends.lava import build_plan, encodings, samples
from spikec.backends.lava.runtime import network
from spikec.pipeline import CompileOptions, compile_graph
from spikec.sim import Simulator

pytestmark = pytest.mark.lava


def _compiled(encoding: str, data):
    return compile_graph(samples.pixel_chain(), "loihi2", calib=data,
                         options=CompileOptions(input_encoding=encoding)).fixed


def _check(graph, data, **kw):
    """Run the bundle on the runner's arrays made from ``data`` and compare every probe."""
    plan, arrays, _ = build_plan(graph, **kw)
    names = [p["value"] for p in plan["probes"]]
    sim = Simulator(graph).run(data, record=names)
    host = {k: np.moveaxis(sim.values[k], 0, 1) for k in encodings.host_layers(plan)}
    res = network.run(plan, arrays, encodings.bundle_inputs(plan, {"x": data}, host))
    _, nonzero = assert_probes_equal(graph, plan, res["values"], sim.values)
    assert nonzero > 0
    return plan, sim


@pytest.mark.parametrize("conv", ["lava", "sparse"])
def test_bitplane_bundle_matches_the_simulator(conv):
    data = samples.images(3)
    fixed = _compiled("bitplane", data)
    plan, sim = _check(fixed, data, conv=conv)
    assert [i["value"] for i in plan["inputs"]] == [f"x.plane{k}" for k in range(8)]
    assert all(not i["graded"] for i in plan["inputs"])
    # the first synapse once per plane, plane k with exponent e + k (here e = 0)
    first = [p for p in plan["processes"] if p["name"].startswith("l1_syn")]
    assert sorted({p["weight_exp"] for p in first}) == list(range(8))
    assert all(p["num_message_bits"] == 0 for p in first)   # binary spikes only
    assert sim.values["l1"].any()


def test_host_bundle_takes_the_first_layers_spikes():
    data = samples.images(3)
    fixed = _compiled("host", data)
    plan, sim = _check(fixed, data)
    (inp,) = plan["inputs"]
    assert (inp["value"], inp["host_layer"], inp["reads"]) == ("l1", True, "x")
    # no process computes l1 on the chip: it is a source, and the max-pool reads it at depth 0
    assert [p["type"] for p in plan["processes"] if p["name"] == "l1"] == ["source"]
    assert not any(p["name"].startswith("l1_syn") for p in plan["processes"])
    graded = build_plan(_compiled("graded", data))[0]
    assert plan["depth"] == graded["depth"] - 1


def test_graded_equals_bitplane_on_lava():
    """The same network with graded and with bit-plane input: the same Lava spikes."""
    data = samples.images(2)
    runs = {}
    for enc in ("graded", "bitplane"):
        fixed = compile_graph(samples.pixel_chain(), "loihi2",
                              options=CompileOptions(input_encoding=enc, min_weight_exp=0)).fixed
        plan, arrays, _ = build_plan(fixed)
        runs[enc] = network.run(plan, arrays, encodings.bundle_inputs(plan, {"x": data}))["values"]
    for name, v in runs["graded"].items():
        assert np.array_equal(v, runs["bitplane"][name]), name


@pytest.mark.parametrize("encoding", ["bitplane", "host"])
def test_validate_against_lava_and_a_trace(encoding, tmp_path, capsys):
    """``spikec validate --against lava`` feeds the bundle what its encoding needs (planes, or
    the simulator's first-layer spikes); a trace of the runner script validates too (the planes
    summed back into the pixels; a host trace needs --data)."""
    import json
    import subprocess
    import sys

    from spikec.backends.lava import write_bundle
    from spikec.backends.lava.runtime.npzio import save_npz
    from spikec.ir import dumps

    x = samples.images(2)
    fixed = _compiled(encoding, x)
    out = tmp_path / "out"
    out.mkdir()
    (out / "compiled.spkc").write_bytes(dumps(fixed))
    write_bundle(fixed, out)
    data = tmp_path / "data.npz"
    np.savez(data, images=x, labels=np.zeros(len(x), np.int64))

    def cli(argv):
        return run_cli(argv, capsys)

    code, stdout, err = cli(["validate", str(out), "--against", "lava", "--data", str(data),
                             "--json"])
    assert code == 0, err
    res = json.loads(stdout)
    assert res["mismatches"] == 0 and res["samples"] == 2 and res["nonzero_compared"] > 0
    plan = json.loads((out / "lava" / "network.json").read_text())
    host = {}
    if encoding == "host":
        sim = Simulator(fixed).run(x, record=["l1"])
        host = {"l1": np.moveaxis(sim.values["l1"], 0, 1)}
    save_npz(tmp_path / "inputs.npz", encodings.bundle_inputs(plan, {"x": x}, host))
    trace = tmp_path / "trace.npz"
    r = subprocess.run([sys.executable, str(out / "lava" / "run_lava.py"), "--inputs",
                        str(tmp_path / "inputs.npz"), "--trace", str(trace)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    code, stdout, err = cli(["validate", str(out), "--against", "trace", str(trace), "--json"])
    if encoding == "host":
        assert code != 0 and "pass --data" in err
        code, stdout, err = cli(["validate", str(out), "--against", "trace", str(trace),
                                 "--data", str(data), "--json"])
    assert code == 0, err
    assert json.loads(stdout)["mismatches"] == 0
