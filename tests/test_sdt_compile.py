"""The registry's Spike-driven Transformer (``sdt_tiny``: the Fashion-MNIST example's architecture)
compiles for loihi2 with random weights: its float stage equals the model's own float64 PyTorch
forward, the token-mean fold of its head (``spikec.passes.fold_mean_of_currents``) leaves every
spike of the float stage in place, and the bit-exact stage stays close to it. The trained
checkpoint is tests/test_examples.py's; Lava, tests/lava/test_sdt_head.py."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from floatcheck import assert_close_where_unflipped, check_spikes  # noqa: E402
from spikec import interp  # noqa: E402
from spikec import data as spk_data  # noqa: E402
from spikec.frontends.torch import input_op, trace  # noqa: E402
from spikec.ir import ops as O  # noqa: E402
from spikec.models import create  # noqa: E402
from spikec.models.activity import batchnorm_from_batch  # noqa: E402
from spikec.pipeline import compile_graph  # noqa: E402
from spikec.sim import Simulator  # noqa: E402
from test_attention_models import torch_logits  # noqa: E402

STATE_AGREEMENT = 0.8
"""Least fraction of equal spikes, bit-exact stage against float stage, of every LIF. A random
network near its thresholds everywhere (BN statistics of one batch) spreads each rounding
through 19 layers (measured 0.85 at the worst, 0.88 at head_lif); a wrong head gives ~0.5."""


@pytest.fixture(scope="module")
def sdt():
    raw = spk_data.load("fashion-mnist:test", limit=16).images
    torch.manual_seed(0)
    model = create("sdt_tiny").eval()
    with torch.no_grad():
        model.head.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(3))
    batchnorm_from_batch(model, torch.from_numpy(raw.astype(np.float32) / 255))
    with torch.no_grad():   # the head neurons at a useful rate, the logits centred on the batch
        model.block[-1].mlp.fc2_bn.bias.copy_(torch.linspace(-1.0, 3.0, 64))
        model.head.bias -= torch.from_numpy(torch_logits(model, raw).mean(0)).float()
    graph = trace(model, input_op((1, 28, 28), {}), timesteps=4)
    return dict(raw=raw, graph=graph, ref=torch_logits(model, raw),
                result=compile_graph(graph, "loihi2", calib=raw))


def test_float_stage_equals_torch(sdt):
    traced = interp.run(sdt["graph"], sdt["raw"], dtype=np.float64).logits
    np.testing.assert_allclose(traced, sdt["ref"], rtol=1e-9, atol=1e-9)
    assert len(set(sdt["ref"].argmax(1))) >= 3


def test_head_neuron_sums_six_terms(sdt):
    folded = sdt["result"].folded
    assert not any(isinstance(op, O.Mean) for op in folded.ops)
    notes = sdt["result"].notes["layers"]["head_lif"]
    assert notes["op"] == "membrane_sum"
    # the 1x1 terms (attn proj and mlp fc2 of both blocks) through token counts; the stem's
    # 3x3 rpe_conv and proj_conv3 as dense maps
    assert sorted(notes["terms"].values()) == sorted(
        f"mean.{n}" for n in ("block.0.attn.proj_conv", "block.0.mlp.fc2_conv",
                              "block.1.attn.proj_conv", "block.1.mlp.fc2_conv",
                              "patch_embed.rpe_conv", "patch_embed.proj_conv3"))
    counts = [op for op in folded.ops if isinstance(op, O.ReduceSum) and op.name.startswith("mean.")]
    assert len(counts) == 4


def test_folded_stage_spikes_like_the_float_stage(sdt):
    raw, graph, folded = sdt["raw"], sdt["graph"], sdt["result"].folded
    ref = interp.run(graph, raw, dtype=np.float64, record="all")
    lifs = [op.name for op in folded.ops if isinstance(op, O.LIF)]
    got = interp.run(folded, raw, dtype=np.float64, record=lifs)
    flips = check_spikes(graph, ref, {n: got.values[n] for n in lifs})
    assert_close_where_unflipped(got.logits, ref.logits, flips, rtol=1e-9, atol=1e-9)
    assert 0.05 < ref.values["head_lif"].mean() < 0.95


def test_bit_exact_stage_close_to_float(sdt):
    raw, result = sdt["raw"], sdt["result"]
    lifs = [op.name for op in result.folded.ops if isinstance(op, O.LIF)]
    fl = interp.run(result.folded, raw, dtype=np.float64, record=lifs)
    sim = Simulator(result.fixed).run(raw, record=lifs)
    agree = {n: float(np.mean(fl.values[n] == sim.values[n])) for n in lifs}
    print({n: round(a, 4) for n, a in agree.items()})
    assert min(agree.values()) >= STATE_AGREEMENT
    assert abs(float(sim.values["head_lif"].mean()) - float(fl.values["head_lif"].mean())) < 0.05
