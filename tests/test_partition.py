"""The Lava bundle's ``placement.json``: the mapper's placement written down for a target of
several chips. On a model that needs several chips (the shipped V2 on a system of 8 chips of 16
cores), its chips, cores, per-chip totals and inter-chip traffic equal what ``spikec estimate``
reports for the same profile; every neuron of every layer sits on exactly one core; the file is
deterministic; a one-chip bundle has none and the Lava network is the same either way."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from spikec.backends.lava import bundle_files, samples
from spikec.backends.lava.partition import PLACEMENT_FORMAT, placement, placement_bytes
from spikec.cli import main
from spikec.estimate import extract_network, map_network
from spikec.target.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_V2 = ROOT / "examples" / "checkpoints" / "spikformer_v2_fmnist.pt"
CORES_PER_CHIP = 16


def small_profile(tmp: Path, cores: int = CORES_PER_CHIP, name: str = "loihi2_small") -> Path:
    """loihi2 with ``cores`` cores per chip, a system of 8 chips in a 4 x 2 mesh."""
    src = load_profile("loihi2").path.read_text()
    for old in ("cores_per_chip = { value = 128,", 'name = "loihi2"',
                "chips = { value = 1,", "chip_mesh = { value = [1, 1],"):
        assert src.count(old) == 1, old
    path = tmp / f"{name}.toml"
    path.write_text(src.replace("cores_per_chip = { value = 128,",
                                f"cores_per_chip = {{ value = {cores},")
                    .replace('name = "loihi2"', f'name = "{name}"')
                    .replace("chips = { value = 1,", "chips = { value = 8,")
                    .replace("chip_mesh = { value = [1, 1],", "chip_mesh = { value = [4, 2],"))
    return path


@pytest.fixture(scope="module")
def multi_chip(tmp_path_factory):
    """The shipped V2 compiled for a 16-core chip: (OUT, its placement.json)."""
    tmp = tmp_path_factory.mktemp("multi")
    out = tmp / "OUT"
    main(["compile", str(SHIPPED_V2), "--target", "loihi2", "--profile", str(small_profile(tmp)),
          "-o", str(out)])
    return out, json.loads((out / "lava" / "placement.json").read_text())


@pytest.fixture(scope="module")
def estimate_json(multi_chip):
    """``spikec estimate OUT --profile <the same> --json``."""
    out, _ = multi_chip
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["estimate", str(out), "--profile", str(small_profile(out.parent)), "--json",
              "--no-save"])
    return json.loads(buf.getvalue())


def test_manifest_totals_equal_the_estimate(multi_chip, estimate_json):
    _, p = multi_chip
    est = estimate_json
    assert p["format"] == PLACEMENT_FORMAT and p["profile"] == est["profile"] == "loihi2_small"
    assert p["chips"] == est["chips"] > 1 and p["fits"] is True
    assert p["cores"] == est["cores"] == sum(c["cores"] for c in p["chip_list"])
    assert (p["fits"], p["reason"], p["chips_available"]) == (est["fits"], est["reason"],
                                                             est["chips_available"])
    assert p["cores_per_chip"] == est["cores_per_chip"] == CORES_PER_CHIP
    for pc, ec in zip(p["chip_list"], est["per_chip"], strict=True):
        assert (pc["chip"], pc["cores"], pc["neurons"], pc["synapses"]) == \
            (ec["chip"], ec["cores"], ec["neurons"], ec["synapses"])
        assert -(-pc["synaptic_memory_bits"] // 8) == ec["synaptic_memory_bytes"]
        assert pc["cores"] <= CORES_PER_CHIP
    for pl, el in zip(p["layers"], est["layers"], strict=True):
        assert (pl["name"], pl["cores"], pl["chips"], pl["synapses"], pl["tile"]) == \
            (el["name"], el["cores"], el["chips"], el["synapses"], el["tile"])
    assert p["totals"]["synapses"] == est["totals"]["synapses"]
    assert p["totals"]["neurons"] == est["totals"]["neurons"]


def test_inter_chip_traffic_equals_the_estimates_chip_hops(multi_chip, estimate_json):
    """The estimate's chip hops are messages x chip hops; each connection's messages are its
    axons x its source's events per element: summed over the manifest's connections they give
    the estimate's figure."""
    _, p = multi_chip
    est = estimate_json
    rate = {e["name"]: e["spikes"] / e["neurons"] for e in est["layers"]}
    rate.update({u["name"]: u["events_sent"] / u["elements"] for u in est["host"]})
    links = p["inter_chip"]
    assert any(x["source_chip"] >= 0 and x["destination_chip"] >= 0 for x in links)
    assert all(x["source_chip"] != x["destination_chip"] for x in links)
    hops = sum(x["chip_hops"] * (est["timesteps"] if x["partial_sums"] else rate[x["source"]])
               for x in links)
    assert est["totals"]["chip_hops"] > 0
    assert hops == pytest.approx(est["totals"]["chip_hops"], rel=1e-9)
    assert p["totals"]["inter_chip_axons"] == sum(x["axons"] for x in links)


def test_every_neuron_on_exactly_one_core(multi_chip):
    _, p = multi_chip
    cores = [c for chip in p["chip_list"] for c in chip["core_list"]]
    assert sorted(c["core"] for c in cores) == list(range(p["cores"]))
    for layer in p["layers"]:
        mine = [c for c in cores if c["layer"] == layer["name"]]
        assert len(mine) == layer["cores"]
        shape = [n * t for n, t in zip(layer["grid"], layer["tile"])]
        covered = np.zeros(shape, np.int64)
        for c in mine:
            c0, c1, h0, h1, w0, w1 = c["neurons"]
            covered[c0:c1, h0:h1, w0:w1] += 1
            assert c["neuron_count"] == (c1 - c0) * (h1 - h0) * (w1 - w0)
        assert covered.sum() == layer["neurons"] and covered.max() == 1
        assert layer["lava_processes"], layer["name"]
    for chip in p["chip_list"]:
        assert [c["local"] for c in chip["core_list"]] == list(range(chip["cores"]))


def test_bundle_lists_placement_and_the_lava_network_is_unchanged(multi_chip):
    out, p = multi_chip
    manifest = json.loads((out / "lava" / "manifest.json").read_text())
    assert "placement.json" in manifest["files"]
    # the graph's hash, streamed without serialising it again, is the file's
    assert manifest["graph_sha256"] == hashlib.sha256((out / "compiled.spkc").read_bytes()
                                                      ).hexdigest()
    report = json.loads((out / "report.json").read_text())
    assert report["lava"]["placement"] == {"file": "lava/placement.json", "profile": "loihi2_small",
                                           "fits": True, "chips": p["chips"],
                                           "cores": p["cores"]}
    # the placement changes nothing else: a one-chip loihi2 bundle has none and the same network
    from spikec.ir import load

    files, facts = bundle_files(load(out / "compiled.spkc"), profile="loihi2")
    assert "placement.json" not in files and "placement" not in facts
    for name in ("network.json", "network.npz"):
        assert files[name] == (out / "lava" / name).read_bytes()


def test_rewrite_keeps_the_placement_of_a_named_system(tmp_path):
    from spikec.backends.lava.validate import rewrite_bundle
    from spikec.ir import dumps

    out = tmp_path / "OUT"
    out.mkdir()
    (out / "compiled.spkc").write_bytes(dumps(samples.chain()))
    (out / "report.json").write_text(json.dumps({"profile": "kapoho-point"}))
    facts = rewrite_bundle(out)
    assert facts["placement"]["profile"] == "kapoho-point"
    assert json.loads((out / "lava" / "placement.json").read_text())["chips_available"] == 8
    (out / "report.json").write_text(json.dumps({"profile": "no-such-profile"}))
    assert "placement" not in rewrite_bundle(out)
    assert not (out / "lava" / "placement.json").exists()


def test_placement_is_deterministic_and_matches_the_mapper():
    graph = samples.spikformer_like(residual="add")
    prof = load_profile("loihi2")
    a = placement_bytes(placement(graph, prof, "host"))
    b = placement_bytes(placement(graph, prof, "host"))
    assert a == b
    doc = json.loads(a)
    m = map_network(extract_network(graph, "host"), prof)
    assert doc["cores"] == m.total_cores and doc["chips"] == m.placement.chips_used
    decomposed = json.loads(placement_bytes(placement(graph, prof, "decompose")))
    assert decomposed["ssa"] == "decompose"
    assert decomposed["cores"] == map_network(extract_network(graph, "decompose"),
                                              prof).total_cores


def test_a_layer_no_core_can_hold_is_recorded_not_raised(tmp_path):
    src = load_profile("loihi2").path.read_text()
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(src.replace("synaptic_memory_bits_per_core = { value = 1572864,",
                                "synaptic_memory_bits_per_core = { value = 1,")
                    .replace('name = "loihi2"', 'name = "tiny"'))
    doc = placement(samples.chain(), load_profile(tiny), "host")
    assert doc["fits"] is False and doc["chips"] is None and "layer" in doc["reason"]
    json.loads(placement_bytes(doc))


def test_spkc_built_in_place_equals_header_plus_arrays_with_checksum():
    """``dumps`` writes the checksum into its one buffer: the same bytes as ``pack`` of its
    header and array region, and ``graph_sha256`` is their hash."""
    from spikec.ir import dumps, loads
    from spikec.ir import serialize as S

    for graph in (samples.chain(), samples.spikformer_like(residual="add")):
        data = dumps(graph)
        n = int.from_bytes(data[8:16], "little")
        head, body = data[S.HEADER_START:S.HEADER_START + n], data[S.HEADER_START + n:]
        assert data == S.pack(head, body) and dumps(loads(data)) == data
        assert S.graph_sha256(graph) == hashlib.sha256(data).hexdigest()
