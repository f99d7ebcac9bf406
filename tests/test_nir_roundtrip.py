"""NIR closes the loop: a Spikformer V2 exported with ``--ssa decompose`` imports and compiles
again, predicting as the original; NIR files written by spikingjelly's own exporter import."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

nir = pytest.importorskip("nir")
torch = pytest.importorskip("torch")

from floatcheck import assert_close_where_unflipped, check_spikes  # noqa: E402
from spikec import interp  # noqa: E402
from spikec.errors import UnsupportedOpError  # noqa: E402
from spikec.frontends import LoadOptions, load_model  # noqa: E402
from spikec.ir import ops as O  # noqa: E402
from spikec.pipeline import compile_graph, run_float_passes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
V2 = ROOT / "examples" / "checkpoints" / "spikformer_v2_fmnist.pt"
N_IMAGES = 100


@pytest.fixture(scope="module")
def v2_decomposed(tmp_path_factory):
    from spikec.backends.nir import export

    graph = load_model(V2)
    out = tmp_path_factory.mktemp("v2nir")
    export(graph, out, ssa="decompose")
    return graph, out / "model.nir"


def _images(n):
    from spikec.data import load

    return load("fashion-mnist:test", n)


def test_decomposed_v2_reimports_with_the_same_folded_predictions(v2_decomposed):
    original, path = v2_decomposed
    back = load_model(path)
    assert not any(op.name.endswith((".and_kv", ".gate")) for op in back.ops), \
        "the AND/gate units came back as neurons instead of the recorded product"
    assert sum(isinstance(op, O.SpikeMatmul) for op in back.ops) == \
        sum(isinstance(op, O.SpikeMatmul) for op in original.ops) == 4
    fa, fb = run_float_passes(original), run_float_passes(back)
    # every compute op carries the very same float32 parameters
    wa = {op.name: op for op in fa.ops if isinstance(op, (O.Conv2d, O.Linear, O.LIF))}
    wb = {op.name: op for op in fb.ops if isinstance(op, (O.Conv2d, O.Linear, O.LIF))}
    assert wa.keys() == wb.keys()
    for name, op in wa.items():
        if isinstance(op, O.LIF):
            assert (op.tau, op.v_threshold, op.fire_on) == (wb[name].tau, wb[name].v_threshold,
                                                            wb[name].fire_on), name
        else:
            assert np.array_equal(np.asarray(op.weight), np.asarray(wb[name].weight)), name
    ds = _images(N_IMAGES)
    lifs = [n for n, op in wa.items() if isinstance(op, O.LIF)]
    ta = interp.run(fa, ds.images, record="all")
    tb = interp.run(fb, ds.images, record=lifs)
    # The same ops and parameters, but a (C, N) value may be carried as its (C, H, W) grid, so a
    # product may run as another BLAS call: spikes may differ only within float rounding of a
    # threshold (tests/floatcheck.py); predictions agree wherever no spike flipped.
    flips = check_spikes(fa, ta, {n: tb.values[n] for n in lifs})
    assert_close_where_unflipped(tb.logits, ta.logits, flips, rtol=1e-4, atol=1e-5)


def test_decomposed_v2_compiles_again_for_loihi2(v2_decomposed):
    _, path = v2_decomposed
    result = compile_graph(load_model(path), "loihi2")
    assert result.fixed.domain == "fixed"
    assert sum(isinstance(op, O.SpikeMatmul) for op in result.fixed.ops) == 4


def _rewrite_metadata(src: Path, dst: Path, edit) -> Path:
    from spikec.backends.nir.build import META_KEY

    g = nir.read(src)
    meta = json.loads(g.metadata[META_KEY])
    edit(meta)
    g.metadata = {META_KEY: json.dumps(meta, sort_keys=True)}
    nir.write(dst, g)
    return dst


def test_a_region_whose_recorded_node_is_missing_is_one_clear_error(v2_decomposed, tmp_path):
    _, path = v2_decomposed

    def edit(meta):
        meta["regions"][0]["nodes"].append("block.0.attn.no_such_node")
    bad = _rewrite_metadata(path, tmp_path / "bad.nir", edit)
    with pytest.raises(UnsupportedOpError, match="lacks its node 'block.0.attn.no_such_node'"):
        load_model(bad)


def test_a_node_listed_as_a_unit_must_be_one(v2_decomposed, tmp_path):
    _, path = v2_decomposed

    def edit(meta):   # claim a LIF of the model as an attention unit
        meta["regions"][0]["nodes"].insert(0, "block.0.attn.q_lif")
    bad = _rewrite_metadata(path, tmp_path / "bad.nir", edit)
    with pytest.raises(UnsupportedOpError, match="is listed as a unit of attention region"):
        load_model(bad)


# ----------------------------------------------------------------------------- spikingjelly's NIR
def _spikingjelly_net():
    sj = pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import functional, layer, neuron

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        layer.Conv2d(1, 6, 3, padding=1, bias=False), neuron.LIFNode(tau=2.0),
        layer.Conv2d(6, 8, 3, stride=2, padding=1), neuron.LIFNode(tau=4.0, decay_input=False),
        layer.AvgPool2d(2), layer.Flatten(), layer.Linear(8 * 7 * 7, 10), neuron.IFNode())
    with torch.no_grad():   # inputs that make every layer fire a fair share
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(3.0)
        net[6].weight.mul_(4.0)
    functional.set_step_mode(net, "m")
    return sj, net


def test_spikingjelly_nir_export_imports_and_runs_as_spikingjelly_does(tmp_path):
    sj, net = _spikingjelly_net()
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    T, B = 4, 8
    rng = np.random.default_rng(0)
    x = rng.random((B, 1, 28, 28)).astype(np.float32)
    xt = torch.from_numpy(np.repeat(x[None], T, axis=0))
    path = tmp_path / "sj.nir"
    export_to_nir(net, xt, save_path=path)     # spikingjelly's default dt = 1e-4 s
    functional.reset_net(net)
    graph = load_model(path, LoadOptions(timesteps=T, overrides={"dt": 1e-4}))
    lifs = [op.name for op in graph.ops if isinstance(op, O.LIF)]
    assert len(lifs) == 3
    ours = interp.run(graph, x, record=lifs)
    # spikingjelly's own forward, layer by layer
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.detach().numpy()))
             for m in net if isinstance(m, sj.neuron.BaseNode)]
    with torch.no_grad():
        net(xt)
    for h in hooks:
        h.remove()
    for name, theirs in zip(lifs, seen):
        mine = ours.values[name] != 0
        # spikingjelly fires on v >= v_th, NIR (and so the import) on v > v_th: they differ only
        # where v lands on the threshold, and float32 sums in another order may move v by an ulp
        flips = int((mine != (theirs != 0)).sum())
        assert flips <= 1e-3 * mine.size, (name, flips, mine.size)
        assert 0.01 < mine.mean() < 0.9, (name, mine.mean())
    assert compile_graph(graph, "loihi2").fixed.domain == "fixed"


def test_non_finite_weights_in_a_nir_file_are_one_clear_error(tmp_path):
    from spikec.errors import CheckpointError

    w = np.ones((3, 4), np.float32)
    w[1, 2] = np.nan
    g = nir.NIRGraph.from_list(nir.Input(input_type=np.array([4])),
                               nir.Affine(weight=w, bias=np.zeros(3, np.float32)),
                               nir.Output(output_type=np.array([3])))
    path = tmp_path / "nan.nir"
    nir.write(path, g)
    with pytest.raises(CheckpointError, match=r"has 1 non-finite value\(s\) in 'weight'"):
        load_model(path)
