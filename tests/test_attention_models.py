"""The spiking attentions of the Spike-driven Transformer (SDSA) and QKFormer (Q-K token attention),
from the registry's own modules, through every stage: trace (``and``, ``reduce_sum``), the float
stage against the model's float64 PyTorch forward, compile for loihi2 (each token/channel sum
becomes its LIF's unit-weight dense synapse), the bit-exact stage against the float stage.

The Spike-driven Transformer's official ImageNet/CIFAR stems (``pooling_stat`` ending in 1) max-pool
currents before a LIF over T > 1 steps, which no chip computes (tested below as what it is); its
whole model with a stem that pools spikes only (``sdt_tiny``, the shipped Fashion-MNIST example)
compiles: tests/test_sdt_compile.py. Here the attention blocks are tested in a small network whose
stem is conv -> BN -> LIF and whose residuals add spikes (SEW ADD). QKFormer's and
Meta-SpikeFormer's whole models: tests/test_whole_zoo.py.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from spikec import interp  # noqa: E402
from spikec.errors import UnsupportedOpError  # noqa: E402
from spikec.frontends.torch import input_op, trace  # noqa: E402
from spikec.models.activity import batchnorm_from_batch  # noqa: E402
from spikec.models.qkformer import TokenQKAttention, TokenSpikingTransformer  # noqa: E402
from spikec.models.sdt import MSSSAConv, SpikeDrivenTransformer  # noqa: E402
from spikec.models.zoo import lif, repeat_over_time  # noqa: E402
from spikec.pipeline import compile_graph  # noqa: E402
from spikec.sim import Simulator  # noqa: E402

SHAPE = (3, 16, 16)
CLASSES = 5
STATE_AGREEMENT = 0.9
"""Least fraction of equal spikes, bit-exact stage against float stage, of every LIF of the
attention (quantized weights move some near-threshold neurons; a wrong lowering gives ~0.5)."""


def raw_images(n: int = 16, seed: int = 0) -> np.ndarray:
    """A colour and a coarse 4x4 pattern per image (tests/test_spikingjelly.py's recipe)."""
    rng = np.random.default_rng(seed)
    colour = rng.random((n, 3, 1, 1))
    coarse = rng.random((n, 3, 4, 4)).repeat(4, 2).repeat(4, 3)
    fine = rng.random((n,) + SHAPE)
    return np.clip(255 * (0.5 * colour + 0.4 * coarse + 0.1 * fine), 0, 255).astype(np.uint8)


class SDSA(MSSSAConv):
    """The registry's ``MS_SSA_Conv`` (its parameters and ``_heads``; the SDSA lines of its
    forward as they are) ending on a spiking ``proj_lif`` instead of the membrane shortcut."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__(dim, num_heads)
        self.proj_lif = lif()

    def forward(self, x):
        T, B, C, H, W = x.shape
        x_for_qkv = x.flatten(0, 1)
        q = self._heads("q", x_for_qkv, T, B, C, H, W)
        k = self._heads("k", x_for_qkv, T, B, C, H, W)
        v = self._heads("v", x_for_qkv, T, B, C, H, W)
        kv = k.mul(v)
        kv = self.talking_heads_lif(kv.sum(dim=-2, keepdim=True))
        x = q.mul(kv)
        x = x.transpose(3, 4).reshape(T, B, C, H, W).contiguous()
        x = self.proj_bn(self.proj_conv(x.flatten(0, 1))).reshape(T, B, C, H, W).contiguous()
        return self.proj_lif(x)


class ChannelQKAttention(TokenQKAttention):
    """QKFormer's Q-K *channel* attention (the paper's other form): the registry's token
    attention with Q summed over the tokens instead of a head's channels, ``a = attn_lif(sum_N q)``
    (one spike per channel), ``out = a * k``."""

    summed_axis = 4


def _channel_block() -> nn.Module:
    block = TokenSpikingTransformer(16, 2, 2.0, ("fc1", "fc2"))
    block.tssa = ChannelQKAttention(16, 2)
    return block


class AttentionNet(nn.Module):
    """conv 3x3 stride 2 -> BN -> LIF (8x8 tokens), one attention block, token-wise head, means."""

    def __init__(self, block: nn.Module, dim: int, T: int = 2, sew: bool = True):
        super().__init__()
        self.T, self.sew = T, sew
        self.stem_conv = nn.Conv2d(3, dim, 3, stride=2, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(dim)
        self.stem_lif = lif()
        self.block = block
        self.head = nn.Linear(dim, CLASSES)

    def forward(self, img):
        x = repeat_over_time(img, self.T)
        T, B = x.shape[:2]
        x = self.stem_bn(self.stem_conv(x.flatten(0, 1)))
        x = self.stem_lif(x.reshape(T, B, *x.shape[1:]).contiguous())
        x = x + self.block(x) if self.sew else self.block(x)
        x = self.head(x.flatten(3).transpose(2, 3))     # [T, B, N, classes]
        return x.mean(2).mean(0)


def torch_logits(model: nn.Module, raw: np.ndarray) -> np.ndarray:
    model.double()
    try:
        with torch.no_grad():
            return model(torch.from_numpy(raw.astype(np.float64) / 255)).numpy()
    finally:
        model.float()


def prepared(model: nn.Module, raw: np.ndarray) -> nn.Module:
    """Random BN statistics from ``raw`` and a head bias centring the logits on ``raw``."""
    model.eval()
    with torch.no_grad():
        model.head.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(3))
    batchnorm_from_batch(model, torch.from_numpy(raw.astype(np.float32) / 255), affine_seed=1)
    with torch.no_grad():
        model.head.bias -= torch.from_numpy(torch_logits(model, raw).mean(0)).float()
    return model


BLOCKS = {
    "sdt_sdsa": (lambda: SDSA(16, 2), "talking_heads_lif"),
    "qkformer_token_qk": (lambda: TokenSpikingTransformer(16, 2, 2.0, ("fc1", "fc2")),
                          "tssa.attn_lif"),
    "qkformer_channel_qk": (_channel_block, "tssa.attn_lif"),
}


@pytest.fixture(scope="module", params=list(BLOCKS))
def stages(request):
    make, mask = BLOCKS[request.param]
    torch.manual_seed(0)
    raw = raw_images()
    model = prepared(AttentionNet(make(), 16), raw)
    graph = trace(model, input_op(SHAPE, {}), timesteps=2)
    ref = torch_logits(model, raw)
    result = compile_graph(graph, "loihi2", calib=raw)
    return dict(name=request.param, mask=f"block.{mask}", raw=raw, graph=graph, ref=ref,
                result=result)


def test_traces_to_and_and_reduce_sum(stages):
    ops = {op.OPCODE for op in stages["graph"].ops}
    assert {"and", "reduce_sum"} <= ops
    sums = [op for op in stages["graph"].ops if op.OPCODE == "reduce_sum"]
    assert all(len(op.axes) == 1 for op in sums)


def test_float_stages_equal_torch(stages):
    raw, ref = stages["raw"], stages["ref"]
    traced = interp.run(stages["graph"], raw, dtype=np.float64).logits
    np.testing.assert_allclose(traced, ref, rtol=1e-9, atol=1e-9)
    folded = interp.run(stages["result"].folded, raw, dtype=np.float64).logits
    assert np.array_equal(folded.argmax(1), ref.argmax(1))
    assert len(set(ref.argmax(1))) >= 3


def test_sums_became_unit_weight_synapses_of_exact_lifs(stages):
    fixed = stages["result"].fixed
    assert "reduce_sum" not in {op.OPCODE for op in fixed.ops}
    sums = [op for op in stages["graph"].ops if op.OPCODE == "reduce_sum"]
    for op in sums:
        dense = fixed.op(op.name)           # the sum's name now names its dense synapse
        assert dense.OPCODE == "dense_synapse" and len(np.unique(dense.weight)) == 1
    notes = stages["result"].notes["layers"][stages["mask"]]
    assert notes["exact"] and "unit-weight" in notes["reads"]


def test_bit_exact_stage_close_to_float(stages):
    raw, result = stages["raw"], stages["result"]
    lifs = [op.name for op in result.folded.ops if op.OPCODE == "lif"]
    fl = interp.run(result.folded, raw, dtype=np.float64, record=lifs)
    sim = Simulator(result.fixed).run(raw, record=lifs)
    agree = {n: float(np.mean(fl.values[n] == sim.values[n])) for n in lifs}
    bits = sim.outputs["output"]
    corr = float(np.corrcoef(bits.ravel(), fl.logits.ravel())[0, 1])
    same = float(np.mean(bits.argmax(1) == fl.logits.argmax(1)))
    print(f"{stages['name']}: state agreement {min(agree.values()):.4f} (min over {len(lifs)} "
          f"LIFs), mask {agree[stages['mask']]:.4f}, predictions {same:.2%}, logit corr {corr:.4f}")
    assert min(agree.values()) >= STATE_AGREEMENT
    assert sim.values[stages["mask"]].any()
    assert same >= 0.5 and corr >= 0.9


# ----------------------------------------------------------------------------- the whole models
def test_whole_registry_models_trace_and_float_agree_or_name_their_blocker():
    raw = raw_images(8)
    torch.manual_seed(0)
    sdt = SpikeDrivenTransformer(img_size=16, num_classes=CLASSES, embed_dim=16, depth=1,
                                 num_heads=2, T=2, pooling_stat="0011").eval()
    batchnorm_from_batch(sdt, torch.from_numpy(raw.astype(np.float32) / 255), affine_seed=1)
    graph = trace(sdt, input_op(SHAPE, {}), timesteps=2)
    assert {"and", "reduce_sum"} <= {op.OPCODE for op in graph.ops}
    np.testing.assert_allclose(interp.run(graph, raw, dtype=np.float64).logits,
                               torch_logits(sdt, raw), rtol=1e-9, atol=1e-9)
    with pytest.raises(UnsupportedOpError, match=r"proj_lif3' is driven by maxpool2d"):
        compile_graph(graph, "loihi2", calib=raw)       # the stem's max-pool of currents
    # QKFormer's whole model: tests/test_whole_zoo.py
