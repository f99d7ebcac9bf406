"""Input encodings of the first layer (``--input-encoding``; docs/compiler.md, "Input encodings")."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spikec import interp
from spikec.errors import FormatError, UnsupportedOpError
from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.pipeline import CompileOptions, compile_graph
from spikec.quantize import resolve_input_encoding
from spikec.target.profile import load_profile

from test_estimate import conv_net
from test_passes import _Builder, random_images

V2 = Path(__file__).resolve().parents[1] / "examples" / "checkpoints" / "spikformer_v2_fmnist.pt"


def test_auto_is_graded_with_graded_spikes_else_bitplane_and_rate_is_refused():
    assert resolve_input_encoding("auto", load_profile("loihi2")) == "graded"
    assert resolve_input_encoding("auto", load_profile("loihi")) == "bitplane"
    assert resolve_input_encoding("host", load_profile("loihi")) == "host"
    with pytest.raises(FormatError, match="rate.*not exact"):
        resolve_input_encoding("rate", load_profile("loihi2"))
    with pytest.raises(FormatError, match="input_encoding must be one of"):
        CompileOptions(input_encoding="planes")


def conv_snn(T: int = 4, seed: int = 0) -> Graph:
    """Raw 1x12x12 images -> conv -> LIF -> maxpool -> conv -> LIF -> token mean -> head: no
    count-valued inputs, so it compiles for loihi (no graded spikes) once the input does."""
    b = _Builder(np.random.default_rng(seed))
    x = b.add(O.Input("image", (), shape=(1, 12, 12), pixel_scale=1 / 255))
    s = b.lif(b.conv(x, 1, 8), 0.5)
    s = b.add(O.MaxPool2d(b.name("maxpool"), (s,), kernel=(2, 2), stride=(2, 2)))
    s = b.lif(b.conv(s, 8, 8), 0.5)
    s = b.add(O.Reshape(b.name("reshape"), (s,), shape=(8, 36)))
    m = b.add(O.Mean(b.name("mean"), (s,), axes=(1,)))
    m = b.add(O.TimeMean(b.name("time_mean"), (m,)))
    b.add(O.Output("logits", (b.linear(m, 8, 3, axis=-1, name="head"),)))
    return Graph(b.ops, timesteps=T)


def test_loihi_takes_the_real_valued_input_as_bitplanes_or_on_the_host():
    """What used to be refused (real-valued input on a chip without graded spikes) compiles; the
    host encoding runs the same integer network as graded (loihi2), so it simulates the same."""
    from spikec.sim import Simulator

    g = conv_snn()
    images = random_images(4, (1, 12, 12))
    with pytest.raises(FormatError, match="consumes real-valued input.*--input-encoding"):
        compile_graph(g, "loihi", options=CompileOptions(input_encoding="graded"))
    runs = {}
    for enc in ("auto", "bitplane", "host"):
        res = compile_graph(g, "loihi", options=CompileOptions(input_encoding=enc))
        want = "bitplane" if enc == "auto" else enc
        assert res.fixed.meta["input_encoding"] == want
        assert res.notes["real_valued_input"]["encoding"] == want
        assert res.notes["options"]["input_encoding"] == want
        runs[enc] = Simulator(res.fixed).run(images).logits
    assert np.array_equal(runs["auto"], runs["bitplane"])
    graded = compile_graph(g, "loihi2").fixed
    assert np.array_equal(Simulator(graded).run(images).logits, runs["host"])


def _first_synapse(fixed):
    return next(op for op in fixed.ops if isinstance(op, F.ConvSynapse)
                and isinstance(fixed.op(op.inputs[0]), F.GradedInput))


@pytest.fixture(scope="module")
def v2_compiles():
    from spikec import data
    from spikec.frontends import LoadOptions, load_model

    graph = load_model(V2, LoadOptions())
    images = data.load("fashion-mnist:test", 6).images
    out = {}
    for enc in ("graded", "bitplane"):
        for mwe in (None, 0):
            opts = CompileOptions(input_encoding=enc, min_weight_exp=mwe)
            out[enc, mwe] = compile_graph(graph, "loihi2", calib=images, options=opts).fixed
    return out, data.load("fashion-mnist:test", 8).images


def test_bitplane_equals_graded_on_the_shipped_v2(v2_compiles):
    """With the same integer network (the first layer's exponents >= 0 in both), the bitplane
    input gives the graded run's values in every layer, and the first synapse's output equals
    the sum over the 8 planes, plane k through the same mantissas with exponent e + k."""
    from spikec.sim import Simulator

    fixed, images = v2_compiles
    graded, planes = fixed["graded", 0], fixed["bitplane", 0]
    assert planes.meta["input_encoding"] == "bitplane" and "input_encoding" not in graded.meta
    for a, b in zip(graded.ops, planes.ops):
        assert a.name == b.name
        for attr in ("weight", "weight_exp", "vth", "bias_mant"):
            if hasattr(a, attr):
                assert np.array_equal(getattr(a, attr), getattr(b, attr)), (a.name, attr)
    rg = Simulator(graded).run(images, record="all")
    rb = Simulator(planes).run(images, record="all")
    assert np.array_equal(rg.logits, rb.logits)
    for name, v in rg.values.items():
        assert np.array_equal(v, rb.values[name]), name
    syn = _first_synapse(planes)
    e = syn.weight_exp.astype(np.int64)
    assert e.min() >= 0 and e.max() + 7 <= load_profile("loihi2").formats.weight_exp_max
    x = images.astype(np.int64)
    acc = np.zeros_like(rb.values[syn.name][0], dtype=np.int64)
    for k in range(8):
        plane = ((x >> k) & 1).astype(np.float64)
        s = interp.conv2d(plane, syn.weight.astype(np.float64), None, syn.stride, syn.padding,
                          syn.dilation, syn.groups).astype(np.int64)
        acc += s << (e + k).reshape(1, -1, 1, 1)
    assert np.any(acc != 0)
    assert np.array_equal(acc, rb.values[syn.name][0].astype(np.int64))


def test_bitplane_changes_only_the_first_synapses_exponents(v2_compiles):
    fixed, _ = v2_compiles
    graded, planes = fixed["graded", None], fixed["bitplane", None]
    first = _first_synapse(planes).name
    assert _first_synapse(graded).weight_exp.min() < 0      # graded shifts right here ...
    assert _first_synapse(planes).weight_exp.min() == 0     # ... bitplane may not
    for a, b in zip(graded.ops, planes.ops):
        if a.name != first and hasattr(a, "weight"):
            assert np.array_equal(a.weight, b.weight) and np.array_equal(a.weight_exp, b.weight_exp)


def _estimate(graph, profile):
    from spikec.estimate import estimate

    return estimate(graph, load_profile(profile)).to_json()


def _with_encoding(graph, enc):
    return graph.with_ops(graph.ops, meta=dict(graph.meta, input_encoding=enc))


@pytest.mark.parametrize("profile", ["loihi", "loihi2"])
def test_bitplane_input_is_eight_binary_sources_of_the_first_layer(profile):
    g = conv_net()
    gj, bj = _estimate(g, profile), _estimate(_with_encoding(g, "bitplane"), profile)
    assert [h["name"] for h in bj["host"]] == [f"x.plane{k}" for k in range(8)]
    assert all(h["kind"] == "bitplane_input" and h["where"] == "host" for h in bj["host"])
    # every plane sends every pixel each step under the assumed rate: 8x the graded input's
    assert sum(h["events_sent"] for h in bj["host"]) == 8 * gj["host"][0]["events_sent"]
    first_g, first_b = gj["layers"][0], bj["layers"][0]
    assert first_b["first_layer"] and first_g["first_layer"]
    assert first_b["synapses"] == 8 * first_g["synapses"]
    assert first_b["synaptic_events"] == 8 * first_g["synaptic_events"]
    if profile == "loihi":  # no weight sharing: every plane's synapses are stored
        assert first_b["synaptic_memory_bytes"] > first_g["synaptic_memory_bytes"]
    assert [e["name"] for e in bj["layers"][1:]] == [e["name"] for e in gj["layers"][1:]]


def test_host_input_moves_the_first_layer_off_the_cores():
    g = conv_net(c=4, hw=8)
    gj, hj = _estimate(g, "loihi"), _estimate(_with_encoding(g, "host"), "loihi")
    assert "l1" in [e["name"] for e in gj["layers"]]
    assert "l1" not in [e["name"] for e in hj["layers"]]
    (unit,) = hj["host"]
    assert (unit["name"], unit["kind"], unit["where"]) == ("l1", "host_layer", "host")
    assert unit["host_macs_per_step"] == 4 * 8 * 8 * 9      # every neuron, every 3x3 tap
    assert unit["events_sent"] == pytest.approx(4 * 8 * 8 * 0.1 * g.timesteps)  # LIF spikes
    assert hj["totals"]["neurons"] == gj["totals"]["neurons"] - 4 * 8 * 8
    assert hj["cores"] <= gj["cores"]
    assert hj["pipeline_depth"] == gj["pipeline_depth"] - 1
    # the papers' formula charges the first layer as MACs wherever it runs
    assert hj["energy"]["paper_45nm"]["first_layer_macs"] == \
        gj["energy"]["paper_45nm"]["first_layer_macs"] > 0


def test_lava_plans_take_bitplane_and_host_inputs_and_nir_refuses_them():
    """The Lava plan of a bitplane graph has one binary input per plane (the first synapse once
    per plane, exponent e + k); a host graph's input is its first LIF's spikes. The quantized NIR
    export still writes a graded input only."""
    from backends.lava import encodings
    from backends.lava.bundle import build_plan
    from backends.lava.samples import pixel_chain
    from backends.nir.quantized import to_nir_quantized

    fixed = {enc: compile_graph(pixel_chain(), "loihi2",
                                options=CompileOptions(input_encoding=enc)).fixed
             for enc in ("graded", "bitplane", "host")}
    plans = {enc: build_plan(g)[0] for enc, g in fixed.items()}
    assert "input_encoding" not in plans["graded"]
    assert [i["value"] for i in plans["bitplane"]["inputs"]] == [f"x.plane{k}" for k in range(8)]
    e = _first_synapse(fixed["bitplane"]).weight_exp
    exps = sorted(p["weight_exp"] for p in plans["bitplane"]["processes"]
                  if p["name"].startswith("l1_syn"))
    assert sorted({x for x in exps}) == sorted({int(v) + k for v in e for k in range(8)})
    (inp,) = plans["host"]["inputs"]
    assert (inp["value"], inp["reads"], inp["encoding"]) == ("l1", "x", "sequence")
    assert plans["host"]["depth"] == plans["graded"]["depth"] - 1
    # the runner's arrays: bit planes of the pixels, summed back exactly for a trace
    x = random_images(3, (1, 8, 8))
    feed = encodings.bundle_inputs(plans["bitplane"], {"x": x})
    assert set(feed) == {f"x.plane{k}" for k in range(8)}
    assert all(v.dtype == np.uint8 and v.max() <= 1 for v in feed.values())
    assert np.array_equal(encodings.graph_inputs(plans["bitplane"], feed)["x"], x)
    with pytest.raises(Exception, match="first layer.*missing"):
        encodings.bundle_inputs(plans["host"], {"x": x})
    assert encodings.graph_inputs(plans["host"], {"l1": np.zeros((3, 4, 4, 8, 8))}) is None
    with pytest.raises(UnsupportedOpError, match="input-encoding bitplane"):
        to_nir_quantized(fixed["bitplane"])
    # a graded graph relabelled bitplane: its negative first exponents would floor each plane
    assert _first_synapse(fixed["graded"]).weight_exp.min() < 0
    with pytest.raises(UnsupportedOpError, match="'stem'.*needs weight exponents in \\[0, 0\\]"):
        build_plan(_with_encoding(fixed["graded"], "bitplane"))


def test_a_host_first_layer_that_reads_more_than_the_input_has_no_bundle(tmp_path):
    """ms_resnet_like's stem current also feeds the residual: the host encoding cannot move
    just the first LIF; the Lava plan refuses naming the layer, and compile writes the graphs
    and the report, which says why there is no bundle."""
    import spikec
    from backends.lava.bundle import build_plan
    from backends.lava.samples import ms_resnet_like, pixel_chain
    from spikec.ir import save

    g = ms_resnet_like()
    fixed = compile_graph(g, "loihi2", options=CompileOptions(input_encoding="host")).fixed
    with pytest.raises(UnsupportedOpError, match="layer 'l2'.*reads more than the input"):
        build_plan(fixed)
    save(g, tmp_path / "ms.spkc")
    rep = spikec.compile(tmp_path / "ms.spkc", input_encoding="host").report()
    assert "lava" not in rep and "reads more than the input" in rep["bundle_skipped"]
    save(pixel_chain(), tmp_path / "chain.spkc")
    rep = spikec.compile(tmp_path / "chain.spkc", input_encoding="bitplane").report()
    assert "bundle_skipped" not in rep and rep["lava"]["input_encoding"] == "bitplane"
    assert rep["lava"]["netx"]["written"] is False


def test_host_layer_sends_the_spikes_the_simulator_counts():
    from spikec.estimate import extract_network, map_network
    from spikec.estimate.events import counts_from_sim
    from spikec.sim import simulate

    prof = load_profile("loihi")
    fixed = compile_graph(conv_snn(), prof, options=CompileOptions(input_encoding="host")).fixed
    first = next(u for u in extract_network(fixed).host if u.kind == "host_layer")
    images = random_images(5, (1, 12, 12))
    res = simulate(fixed, images, record=[first.name])
    counts = counts_from_sim(res, map_network(extract_network(fixed), prof), "test")
    spikes = np.count_nonzero(res.values[first.name]) / len(images)
    assert spikes > 0 and counts.get(first.name).spikes == pytest.approx(spikes)


def test_estimate_cli_takes_the_encoding_and_checks_a_compiled_one(tmp_path, capsys):
    from spikec.cli import main
    from spikec.ir import save

    spkc = tmp_path / "net.spkc"
    save(compile_graph(conv_snn(), "loihi", options=CompileOptions(input_encoding="host")).fixed,
         spkc)
    with pytest.raises(SystemExit) as e:
        main(["estimate", str(spkc), "--profile", "loihi", "--input-encoding", "bitplane"])
    assert e.value.code != 0
    assert "compiled with input encoding 'host', not 'bitplane'" in capsys.readouterr().err
    try:
        main(["estimate", str(spkc), "--profile", "loihi", "--input-encoding", "host", "--json"])
    except SystemExit as e:
        assert not e.code
    import json
    j = json.loads(capsys.readouterr().out)
    assert [h["kind"] for h in j["host"]] == ["host_layer"]


def test_estimate_with_data_measures_the_bit_planes(tmp_path):
    """With --data, each plane sends its measured 1-bits (not every pixel every step), and the
    first layer's synaptic events are each 1-bit times its pixel's fan-out, counted here
    independently as a convolution of the plane with a kernel of ones."""
    import spikec
    from spikec.ir import save

    save(conv_snn(T=2), tmp_path / "conv.spkc")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 1, 12, 12), dtype=np.uint8)
    images[:, :, :3] //= 16                       # fewer high bits in some rows
    data = (images, rng.integers(0, 3, 5))
    bits = spikec.compile(tmp_path / "conv.spkc", target="loihi", input_encoding="bitplane")
    j = bits.estimate("loihi", data=data)
    sent = {h["name"]: h["events_sent"] for h in j["host"]}
    syn = _first_synapse(bits.fixed)
    per_plane = [((images.astype(np.int64) >> k) & 1) for k in range(8)]
    want_sent = [2 * np.count_nonzero(p) / 5 for p in per_plane]     # T = 2, repeated image
    assert [sent[f"image.plane{k}"] for k in range(8)] == pytest.approx(want_sent)
    assert want_sent[7] < want_sent[0] < 2 * images[0].size          # measured, not assumed
    ones = np.ones(syn.weight.shape)
    want_syn = sum(interp.conv2d(p.astype(np.float64), ones, None, syn.stride, syn.padding,
                                 syn.dilation, syn.groups).sum() for p in per_plane) * 2 / 5
    first = next(e for e in j["layers"] if e["first_layer"])
    assert first["synaptic_events"] == pytest.approx(want_syn)
    assert not any("plane" in n and "assumed" in n for n in j.get("notes", []))
    # a compile with the same data records what the planes sent; its estimate reads that
    bits_d = spikec.compile(tmp_path / "conv.spkc", target="loihi", input_encoding="bitplane",
                            data=data)
    assert bits_d.report()["input_planes"]["samples"] == 5
    jr = bits_d.estimate("loihi")
    assert [h["events_sent"] for h in jr["host"]] == [h["events_sent"] for h in j["host"]]
    first_r = next(e for e in jr["layers"] if e["first_layer"])
    assert first_r["synaptic_events"] == pytest.approx(want_syn)
    assert "input_planes" not in spikec.compile(tmp_path / "conv.spkc", data=data).report()
