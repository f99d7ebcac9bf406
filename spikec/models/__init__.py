"""Reference models (the torch side of spikec) and their registry: Spikformer V1/V2 and the model
zoo of the spiking transformers and conv SNNs that followed (``docs/models.md``).

The registry itself is plain data: ``names()`` and ``config()`` work without torch. ``create()`` and
``describe(params=True)`` import torch. ``spikec/__init__.py`` never imports this package, so the
core (IR, passes, simulator, backends) runs where torch is absent.

Config keys (a name resolves the common keys and its family's; ``create`` accepts any of them as an
override):

``family``          fixed per name, selects the builder: ``"v1_imagenet"`` (SPS + Conv1d/Conv2d
                    blocks), ``"v1_cifar"`` (SPS + Linear blocks) or ``"v2"`` (SCS + Conv1d/Conv2d
                    blocks) for Spikformer; ``"sdt"``, ``"meta_spikeformer"``, ``"qkformer"``,
                    ``"spikingformer"``, ``"sew_resnet"`` for the zoo (:data:`MODEL_FAMILY` names
                    the paper family of each)
``img_size``        input side in pixels (square images)
``in_channels``     input channels
``num_classes``     logits
``embed_dim``       D, token channels
``depth``           encoder blocks
``num_heads``       attention heads (d = D / heads)
``mlp_ratio``       hidden width of the block MLP over D
``T``               time steps (the image is repeated T times)
``residual``        ``"add"`` (Spikformer) or ``"iand"`` (SEW IAND, a purely binary network)
``pool_stages``     V1 only: which of SPS's four conv blocks are followed by a max-pool
``stem_stages``     V2 only: SCS stages (each halves H and W; 4 for 224 px, 2 for 28-32 px)
``stem_mlp_ratio``  V2 only: conv-MLP expansion of each SCS stage
``stem_residual``   V2 only: whether each SCS stage joins its conv-MLP to its input
``variant``         QKFormer/Spikingformer: ``"imagenet"`` or ``"cifar"`` (the two official codes)
``pooling_stat``    Spike-driven Transformer: which of the four stem stages max-pool (``"1111"``)
``dvs_mode``        Spike-driven Transformer: the DVS variant's extra max-pools in the attention
``embed_dims``      Meta-SpikeFormer: channels of its four stages (a list of 4)
``kd``              Meta-SpikeFormer: the distillation head ``head_kd`` of its fine-tuned checkpoints
``layers``          SEW-ResNet: BasicBlocks per stage (``[2, 2, 2, 2]`` = 18, ``[3, 4, 6, 3]`` = 34)
``cnf``             SEW-ResNet: the residual join, ``"ADD"``, ``"AND"`` or ``"IAND"``
``neuron``          SEW-ResNet: ``"if"`` (the paper's) or ``"lif"``
"""
from __future__ import annotations

from spikec.errors import CheckpointError, require
from spikec.ir.types import Word

FAMILIES = ("v1_imagenet", "v1_cifar", "v2", "sdt", "meta_spikeformer", "qkformer", "spikingformer",
            "sew_resnet")
MODEL_FAMILY = {"v1_imagenet": "Spikformer", "v1_cifar": "Spikformer", "v2": "Spikformer",
                "sdt": "Spike-driven Transformer", "meta_spikeformer": "Meta-SpikeFormer",
                "qkformer": "QKFormer", "spikingformer": "Spikingformer", "sew_resnet": "SEW-ResNet"}
"""The paper family of each config family (the ``family`` column of ``spikec models``)."""
ZOO_CHOICES = {"variant": ("imagenet", "cifar"), "cnf": ("ADD", "AND", "IAND"),
               "neuron": ("if", "lif")}
"""The closed sets of the zoo's string config keys (the model modules import them from here)."""
_FOUR_INTS = ("embed_dims", "layers")


class ResidualJoin(Word):
    """How a block joins its shortcut ``a`` and its branch ``s`` (SEW ResNet's residual functions):
    ``add`` (``a + s``, a count) or ``iand`` (``(1 - a) * s``, spikes). Not the quantizer's
    lowering of counts (``spikec.quantize.options.ResidualLowering``)."""

    ADD = "add"
    IAND = "iand"


#: The model config's ``residual`` values, as strings.
RESIDUAL_JOINS = ResidualJoin.values()

_COMMON = dict(img_size=224, in_channels=3, num_classes=1000, mlp_ratio=4.0, T=4, residual="add")
_V1_IMAGENET = dict(_COMMON, family="v1_imagenet", pool_stages=[0, 1, 2, 3])
_V1_CIFAR = dict(_COMMON, family="v1_cifar", img_size=32, num_classes=10, pool_stages=[2, 3])
_V2 = dict(_COMMON, family="v2", stem_stages=4, stem_mlp_ratio=4.0, stem_residual=True)
_IMAGENET = dict(img_size=224, in_channels=3, num_classes=1000)
_CIFAR = dict(img_size=32, in_channels=3, num_classes=10)
_SDT = dict(_IMAGENET, family="sdt", mlp_ratio=4.0, T=4, num_heads=8, pooling_stat="1111",
            dvs_mode=False)
_META = dict(_IMAGENET, family="meta_spikeformer", num_heads=8, mlp_ratio=4, T=1, kd=False)
_QK = dict(_IMAGENET, family="qkformer", variant="imagenet", depth=10, mlp_ratio=4.0, T=4)
_SF = dict(_IMAGENET, family="spikingformer", variant="imagenet", depth=8, num_heads=8,
           mlp_ratio=4.0, T=4)
_SEW = dict(_IMAGENET, family="sew_resnet", neuron="if", T=4)

# name -> (config, paper's parameter count in millions or None)
_REGISTRY: dict[str, tuple[dict, float | None]] = {
    "spikformer_8_384": (dict(_V1_IMAGENET, embed_dim=384, depth=8, num_heads=12), 16.81),
    "spikformer_6_512": (dict(_V1_IMAGENET, embed_dim=512, depth=6, num_heads=8), 23.37),
    "spikformer_8_512": (dict(_V1_IMAGENET, embed_dim=512, depth=8, num_heads=8), 29.68),
    "spikformer_10_512": (dict(_V1_IMAGENET, embed_dim=512, depth=10, num_heads=8), 36.01),
    "spikformer_8_768": (dict(_V1_IMAGENET, embed_dim=768, depth=8, num_heads=12), 66.34),
    "spikformer_cifar_4_384": (dict(_V1_CIFAR, embed_dim=384, depth=4, num_heads=12), 9.32),
    "spikformer_cifar_2_384": (dict(_V1_CIFAR, embed_dim=384, depth=2, num_heads=12), 5.76),
    "spikformer_cifar_4_256": (dict(_V1_CIFAR, embed_dim=256, depth=4, num_heads=8), 4.15),
    "spikformer_v2_8_384": (dict(_V2, embed_dim=384, depth=8, num_heads=12), 29.11),
    "spikformer_v2_8_512": (dict(_V2, embed_dim=512, depth=8, num_heads=8), 51.55),
    "spikformer_v2_8_512_iand": (dict(_V2, embed_dim=512, depth=8, num_heads=8, T=1,
                                      residual="iand"), 51.55),
    "spikformer_v2_12_512": (dict(_V2, embed_dim=512, depth=12, num_heads=8), 64.18),
    "spikformer_v2_12_768": (dict(_V2, embed_dim=768, depth=12, num_heads=12), 143.89),
    "spikformer_v2_16_768": (dict(_V2, embed_dim=768, depth=16, num_heads=12), 172.28),
    # small models for 28x28 grayscale (MNIST, Fashion-MNIST): 7x7 tokens
    "spikformer_v2_tiny": (dict(_V2, img_size=28, in_channels=1, num_classes=10, embed_dim=64,
                                depth=2, num_heads=4, stem_stages=2), None),
    "spikformer_v2_tiny_iand": (dict(_V2, img_size=28, in_channels=1, num_classes=10, embed_dim=64,
                                     depth=2, num_heads=4, stem_stages=2, residual="iand"), None),
    "spikformer_cifar_tiny": (dict(_V1_CIFAR, img_size=28, in_channels=1, embed_dim=64, depth=1,
                                   num_heads=4), None),
    # ---- the zoo (docs/models.md says where each paper count comes from)
    "sdt_8_384": (dict(_SDT, embed_dim=384, depth=8), 16.81),
    "sdt_6_512": (dict(_SDT, embed_dim=512, depth=6), 23.37),
    "sdt_8_512": (dict(_SDT, embed_dim=512, depth=8), 29.68),
    "sdt_10_512": (dict(_SDT, embed_dim=512, depth=10), 36.01),
    "sdt_8_768": (dict(_SDT, embed_dim=768, depth=8), 66.34),
    "sdt_cifar_2_512": (dict(_SDT, **_CIFAR, embed_dim=512, depth=2, pooling_stat="0011"), 10.28),
    # 28x28 grayscale, 7x7 tokens; the stem pools spikes only (after stages 1 and 2), never the
    # currents before a neuron, so every stage maps to a chip (docs/models.md)
    "sdt_tiny": (dict(_SDT, img_size=28, in_channels=1, num_classes=10, embed_dim=64, depth=2,
                      num_heads=4, pooling_stat="0110"), None),
    "metaspikformer_15m": (dict(_META, embed_dims=[64, 128, 256, 360]), 15.1),
    "metaspikformer_8_384": (dict(_META, embed_dims=[96, 192, 384, 480]), 31.3),
    "metaspikformer_8_512": (dict(_META, embed_dims=[128, 256, 512, 640]), 55.4),
    "metaspikformer_8_768": (dict(_META, embed_dims=[192, 384, 768, 960]), None),
    "qkformer_10_384": (dict(_QK, embed_dim=384, num_heads=6), 16.47),
    "qkformer_10_512": (dict(_QK, embed_dim=512, num_heads=8), 29.08),
    "qkformer_10_768": (dict(_QK, embed_dim=768, num_heads=12), 64.96),
    "qkformer_cifar_4_384": (dict(_QK, **_CIFAR, variant="cifar", embed_dim=384, depth=4,
                                  num_heads=8), 6.74),
    "spikingformer_8_384": (dict(_SF, embed_dim=384), 16.81),
    "spikingformer_8_512": (dict(_SF, embed_dim=512), 29.68),
    "spikingformer_8_768": (dict(_SF, embed_dim=768), 66.34),
    "spikingformer_cifar_4_384": (dict(_SF, **_CIFAR, variant="cifar", embed_dim=384, depth=4,
                                       num_heads=12), 9.32),
    "sew_resnet18_add": (dict(_SEW, layers=[2, 2, 2, 2], cnf="ADD"), 11.69),
    "sew_resnet18_iand": (dict(_SEW, layers=[2, 2, 2, 2], cnf="IAND"), 11.69),
    "sew_resnet34_add": (dict(_SEW, layers=[3, 4, 6, 3], cnf="ADD"), 21.79),
    "sew_resnet34_iand": (dict(_SEW, layers=[3, 4, 6, 3], cnf="IAND"), 21.79),
}

def names() -> list[str]:
    """Registered architecture names, in registry order."""
    return list(_REGISTRY)


def _lookup(name: str) -> tuple[dict, float | None]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CheckpointError(
            f"unknown model architecture {name!r}; known: {', '.join(_REGISTRY)}") from None


def config(name: str) -> dict:
    """The resolved config of ``name`` (a fresh dict of plain values: str, int, float, bool, list)."""
    cfg, _ = _lookup(name)
    return {k: list(v) if isinstance(v, list) else v for k, v in cfg.items()}


def model_family(name: str) -> str:
    """The paper family of ``name`` (``"Spikformer"``, ``"QKFormer"``, ...; see :data:`MODEL_FAMILY`)."""
    return MODEL_FAMILY[_lookup(name)[0]["family"]]


def paper_params(name: str) -> float | None:
    """The parameter count (millions) the papers give for ``name``, or None for spikec's own models."""
    return _lookup(name)[1]


def resolve(name: str, **overrides) -> dict:
    """``config(name)`` with ``overrides`` applied and checked.

    Raises
    ------
    CheckpointError
        Unknown name, a key the family does not have, or a value of the wrong kind.
    """
    cfg = config(name)
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise CheckpointError(f"model {name!r} has no config key(s) {unknown}; "
                              f"keys: {', '.join(sorted(cfg))}")
    if overrides.get("family", cfg["family"]) != cfg["family"]:
        raise CheckpointError(f"model {name!r} is of family {cfg['family']!r}, "
                              f"not {overrides['family']!r}")
    cfg.update({k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()})
    if "residual" in cfg and not ResidualJoin.has(cfg["residual"]):
        raise CheckpointError(
            f"model {name!r}: residual must be one of {RESIDUAL_JOINS}, got {cfg['residual']!r}")
    for key, allowed in ZOO_CHOICES.items():
        if key in cfg and cfg[key] not in allowed:
            raise CheckpointError(f"model {name!r}: {key} must be one of {allowed}, got {cfg[key]!r}")
    for key in _FOUR_INTS:
        value = cfg.get(key, [1, 1, 1, 1])
        if (not isinstance(value, list) or len(value) != 4
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
            raise CheckpointError(f"model {name!r}: {key} must be 4 positive integers, got {value!r}")
    stat = cfg.get("pooling_stat", "1111")
    if not isinstance(stat, str) or len(stat) != 4 or set(stat) - {"0", "1"}:
        raise CheckpointError(f"model {name!r}: pooling_stat must be four 0/1 characters, "
                              f"got {stat!r}")
    for key in ("img_size", "in_channels", "num_classes", "embed_dim", "depth", "num_heads", "T"):
        if key not in cfg:
            continue
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < 1:
            raise CheckpointError(f"model {name!r}: {key} must be a positive integer, got {cfg[key]!r}")
    return cfg


def create(name: str, **overrides):
    """Build the model ``name`` (random weights), with config ``overrides``.

    Returns
    -------
    torch.nn.Module
        A :class:`spikec.models.spikformer.Spikformer` or the zoo family's model class
        (``SpikeDrivenTransformer``, ``MetaSpikeFormer``, ``QKFormer``, ``Spikingformer``,
        ``SEWResNet``), in training mode, as torch builds it. ``model.spikec_arch`` holds ``name`` and
        ``model.spikec_config`` the resolved config, for :func:`spikec.models.checkpoint.save_checkpoint`.
        Input ``[B, in_channels, img_size, img_size]``, output logits ``[B, num_classes]``.

    Raises
    ------
    CheckpointError
        Unknown name or config key (the message lists the known ones).
    ShapeError
        A config whose shapes do not fit (``embed_dim`` not divisible by ``num_heads``, ...).
    """
    cfg = resolve(name, **overrides)
    family = cfg["family"]
    if family in _ZOO_BUILDERS:
        model = _ZOO_BUILDERS[family](cfg)
        model.spikec_arch = name
        model.spikec_config = cfg
        return model
    from spikec.models.spikformer import Spikformer

    kwargs = {k: cfg[k] for k in ("img_size", "in_channels", "num_classes", "embed_dim", "depth",
                                  "num_heads", "mlp_ratio", "T", "residual")}
    if family == "v2":
        kwargs.update(stem="scs", stem_stages=cfg["stem_stages"],
                      stem_mlp_ratio=cfg["stem_mlp_ratio"], stem_residual=cfg["stem_residual"])
    else:
        kwargs.update(stem="sps", pool_stages=tuple(cfg["pool_stages"]),
                      linear_blocks=family == "v1_cifar")
    model = Spikformer(**kwargs)
    model.spikec_arch = name
    model.spikec_config = cfg
    return model


def _kwargs(cfg: dict, *keys: str) -> dict:
    return {k: cfg[k] for k in keys}


def _build_sdt(cfg: dict):
    from spikec.models.sdt import SpikeDrivenTransformer
    return SpikeDrivenTransformer(**_kwargs(cfg, "img_size", "in_channels", "num_classes",
                                            "embed_dim", "depth", "num_heads", "mlp_ratio", "T",
                                            "pooling_stat", "dvs_mode"))


def _build_meta(cfg: dict):
    from spikec.models.meta_spikeformer import MetaSpikeFormer
    return MetaSpikeFormer(embed_dim=list(cfg["embed_dims"]),
                           **_kwargs(cfg, "img_size", "in_channels", "num_classes", "num_heads",
                                     "mlp_ratio", "T", "kd"))


def _build_qkformer(cfg: dict):
    from spikec.models.qkformer import QKFormer
    return QKFormer(**_kwargs(cfg, "img_size", "in_channels", "num_classes", "embed_dim", "depth",
                              "num_heads", "mlp_ratio", "T", "variant"))


def _build_spikingformer(cfg: dict):
    from spikec.models.spikingformer import Spikingformer
    return Spikingformer(**_kwargs(cfg, "img_size", "in_channels", "num_classes", "embed_dim",
                                   "depth", "num_heads", "mlp_ratio", "T", "variant"))


def _build_sew(cfg: dict):
    from spikec.models.sew_resnet import SEWResNet
    return SEWResNet(layers=list(cfg["layers"]),
                     **_kwargs(cfg, "img_size", "in_channels", "num_classes", "cnf", "neuron", "T"))


_ZOO_BUILDERS = {"sdt": _build_sdt, "meta_spikeformer": _build_meta, "qkformer": _build_qkformer,
                 "spikingformer": _build_spikingformer, "sew_resnet": _build_sew}


def summary(name: str) -> str:
    """A short architecture string: ``D=512 depth=8 heads=8`` or, for SEW-ResNet, ``ResNet-18 ADD``."""
    cfg = _lookup(name)[0]
    if cfg["family"] == "sew_resnet":
        depth = 2 + 2 * sum(cfg["layers"])
        return f"ResNet-{depth} {cfg['cnf']} {cfg['neuron'].upper()}"
    dims = cfg.get("embed_dims")
    width = "D=" + ("/".join(map(str, dims)) if dims else str(cfg["embed_dim"]))
    depth = f" depth={cfg['depth']}" if "depth" in cfg else ""
    return f"{width}{depth} heads={cfg['num_heads']}"


def describe(params: bool = True) -> str:
    """One line per registered model: family, input, D, depth, heads, T, residual and (with
    ``params``) the parameter count next to the paper's (models built on torch's meta device)."""
    lines = []
    for name in _REGISTRY:
        cfg, paper = _REGISTRY[name]
        line = (f"{name:26s} {MODEL_FAMILY[cfg['family']]:24s} "
                f"{cfg['in_channels']}x{cfg['img_size']}x{cfg['img_size']:<4d} {summary(name):28s}"
                f" T={cfg['T']} {cfg.get('residual', '')}").rstrip()
        if params:
            n = count_parameters(name)
            line += f"  {n / 1e6:8.2f}M" + (f" (paper {paper:.2f}M)" if paper is not None else "")
        lines.append(line)
    return "\n".join(lines)


def count_parameters(name: str, **overrides) -> int:
    """Parameter count of ``name`` as the papers count it (see
    :func:`spikec.models.spikformer.count_parameters`), built on the meta device (no memory)."""
    torch = require("torch", "counting parameters", extra="torch")
    if _lookup(name)[0]["family"] in _ZOO_BUILDERS:
        from spikec.models.zoo import count_parameters as count
    else:
        from spikec.models.spikformer import count_parameters as count

    with torch.device("meta"):
        return count(create(name, **overrides))
