"""The reference interpreter against PyTorch: op kernels against torch.nn.functional, and whole
traced Spikformers (V1 ImageNet, V1 CIFAR, V2, V2 IAND; T = 1 and 4) against the torch models.
torch and numpy sum in different orders, so spikes are compared with tests/floatcheck.py: a flip
only where the membrane is within the stated epsilon of the threshold (at most ``MAX_ROOTS``) or
downstream of such a flip; logits within 1e-4 relative and the same predictions on every sample
without a flip."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import spikec.models as models  # noqa: E402
from spikec import interp  # noqa: E402
from spikec.frontends.torch import input_op, trace  # noqa: E402
from spikec.ir import ops as O  # noqa: E402
from spikec.models.lif import MultiStepLIF  # noqa: E402

# Small configs of each family: a few ms per interpreter run on 2 cores.
SMALL = {
    "v1_imagenet": ("spikformer_8_384", dict(img_size=32, embed_dim=64, depth=1, num_heads=4,
                                             num_classes=10)),  # 4 max-pools: 2x2 tokens
    "v1_cifar": ("spikformer_cifar_4_384", dict(img_size=16, embed_dim=64, depth=1, num_heads=4)),
    "v2": ("spikformer_v2_tiny", dict(img_size=16)),  # 2 SCS stages, depth 2: 4x4 tokens
    "v2_iand": ("spikformer_v2_tiny_iand", dict(img_size=16)),
}
MAX_ROOTS = 2
MAX_LOGIT_ERROR = 1e-4


def _traced(family: str, T: int, calibrate, images):
    name, overrides = SMALL[family]
    torch.manual_seed(0)
    model = models.create(name, T=T, **overrides)
    cfg = model.spikec_config
    shape = (cfg["in_channels"], cfg["img_size"], cfg["img_size"])
    raw = images(shape)
    calibrate(model, torch.from_numpy(raw.astype(np.float32) / 255))
    return trace(model, input_op(shape, {}), timesteps=T), model, raw


@pytest.mark.parametrize("T", [1, 4])
@pytest.mark.parametrize("family", list(SMALL))
def test_interpreter_matches_torch(family, T, calibrate, agreement, images):
    graph, model, raw = _traced(family, T, calibrate, images)
    assert graph.timesteps == T
    a = agreement(graph, model, raw, max_roots=MAX_ROOTS)
    print(f"{family} T={T}: {a.flips}, logit rel. error {a.logit_rel_error:.1e}, "
          f"{a.neurons} LIF ops")
    assert a.neurons >= 10 and a.spikes > 0
    a.assert_same_logits(MAX_LOGIT_ERROR)
    lifs = [op.name for op in graph.ops if isinstance(op, O.LIF)]
    trace_ = interp.run(graph, raw, record=lifs)
    rates = [trace_.values[n].mean() for n in lifs]
    assert 0.01 < float(np.mean(rates)) < 0.6  # the comparison is not of silent networks


def test_float64_is_exact_too(calibrate, agreement, images):
    """In float64 (torch model .double(), interpreter dtype float64): flips only within
    floatcheck.EPS64 of a threshold (none expected), logits within 1e-12 relative."""
    graph, model, raw = _traced("v1_imagenet", 4, calibrate, images)
    a = agreement(graph, model, raw, dtype=np.float64, max_roots=MAX_ROOTS)
    print(f"float64: {a.flips}, logit rel. error {a.logit_rel_error:.1e}")
    a.assert_same_logits(1e-12)


# ----------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("stride, padding, dilation, groups",
                         [(1, 1, 1, 1), (2, 0, 1, 1), (2, 1, 2, 1), (1, 1, 1, 2)])
def test_conv2d_kernel(stride, padding, dilation, groups):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 9, 8, generator=gen)
    w = torch.randn(6, 4 // groups, 3, 3, generator=gen)
    b = torch.randn(6, generator=gen)
    want = F.conv2d(x, w, b, stride, padding, dilation, groups).numpy()
    got = interp.conv2d(x.numpy(), w.numpy(), b.numpy(), (stride,) * 2, (padding,) * 2,
                        (dilation,) * 2, groups)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_pool_linear_batchnorm_kernels():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 7, 7, generator=gen)
    mp = O.MaxPool2d("m", ("x",), kernel=(3, 3), stride=(2, 2), padding=(1, 1))
    np.testing.assert_array_equal(interp.KERNELS[O.MaxPool2d](mp, x.numpy()),
                                  F.max_pool2d(x, 3, 2, 1).numpy())
    ap = O.AvgPool2d("a", ("x",), kernel=(2, 2), stride=(2, 2), padding=(1, 1))
    np.testing.assert_allclose(interp.KERNELS[O.AvgPool2d](ap, x.numpy()),
                               F.avg_pool2d(x, 2, 2, 1).numpy(), rtol=1e-5, atol=1e-6)
    w, b = torch.randn(5, 3, generator=gen), torch.randn(5, generator=gen)
    tokens = x.flatten(2)  # [2, C=3, N=49]: Conv1d(k=1) == Linear on axis 0
    np.testing.assert_allclose(interp.linear(tokens.numpy(), w.numpy(), b.numpy(), axis=0),
                               F.conv1d(tokens, w[:, :, None], b).numpy(), rtol=1e-5, atol=1e-6)
    mean, var = torch.randn(3, generator=gen), torch.rand(3, generator=gen) + 0.5
    g, beta = torch.randn(3, generator=gen), torch.randn(3, generator=gen)
    bn = O.BatchNorm("b", ("x",), mean=mean.numpy(), var=var.numpy(), gamma=g.numpy(),
                     beta=beta.numpy(), eps=1e-5, axis=0)
    np.testing.assert_allclose(interp.KERNELS[O.BatchNorm](bn, x.numpy()),
                               F.batch_norm(x, mean, var, g, beta, eps=1e-5).numpy(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("v_reset, decay_input, v_th", [(0.0, True, 1.0), (None, True, 1.0),
                                                        (0.0, False, 0.5), (-0.3, True, 0.7)])
def test_lif_kernel_is_spikec_lif(v_reset, decay_input, v_th):
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(6, 2, 50, generator=gen) * 3 - 0.5
    x[0, 0, :2] = torch.tensor([2 * v_th, 2 * v_th])  # exactly at threshold after the charge
    lif = MultiStepLIF(tau=2.0, v_threshold=v_th, v_reset=v_reset, decay_input=decay_input)
    op = O.LIF("l", ("x",), tau=2.0, v_threshold=v_th, v_reset=v_reset, decay_input=decay_input)
    np.testing.assert_array_equal(interp.lif_float(op, x.numpy()), lif(x).numpy())
