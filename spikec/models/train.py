"""Supervised training of a registry model on an offline dataset (CPU, deterministic).

Usage::

    python -m spikec.models.train --arch spikformer_v2_tiny --data mnist5k --epochs 10 \\
        --batch-size 64 --lr 2e-3 --seed 0 [--set embed_dim=64 ...] -o model.pt

AdamW, linear warm-up then cosine decay (per iteration), the model's own surrogate gradients,
random-crop augmentation drawn from a seeded generator, a progress bar with loss/accuracy, and at
the end the float test accuracy at T = 1, 2, 4. Optionally the first ``--epochs`` run at a smaller
``--train-T`` (cheaper) and ``--finetune-epochs`` follow at the model's own T. The checkpoint is
written with :func:`spikec.models.checkpoint.save_checkpoint` and a model card ``NAME.md`` beside it.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spikec import data as spk_data
from spikec.errors import DataError, SpikecError

DEFAULT_EVAL_T = (1, 2, 4)
DATA_NAMES = ("mnist5k", "fashion-mnist")


@dataclass
class TrainConfig:
    """Everything that determines a training run (the CLI's arguments)."""

    arch: str
    data: str = "mnist5k"
    epochs: float = 10.0
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    seed: int = 0
    overrides: dict = field(default_factory=dict)
    crop_pad: int = 2
    hflip: bool = False
    label_smoothing: float = 0.0
    train_T: int | None = None
    finetune_epochs: float = 0.0
    finetune_lr: float | None = None
    eval_T: tuple[int, ...] = DEFAULT_EVAL_T
    eval_batch_size: int = 250
    limit_train: int | None = None
    limit_test: int | None = None
    max_steps: int | None = None
    threads: int = 2
    progress: bool = True


@dataclass
class TrainResult:
    """What a run produced: per-step losses, test accuracies by T (fractions), wall times (s)."""

    model: nn.Module
    losses: list[float]
    accuracies: dict[str, float]
    train_wall_s: float
    eval_wall_s: float
    preprocess: spk_data.Preprocess
    train_cpu_s: float = 0.0


# --- progress ------------------------------------------------------------------------------------

class Progress:
    """A one-line progress bar on stderr: ``\\r`` redraws on a terminal, a line every ~10% otherwise."""

    def __init__(self, total: int, desc: str, enabled: bool = True, width: int = 24):
        self.total, self.desc, self.enabled, self.width = max(total, 1), desc, enabled, width
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last_draw = 0.0
        self._last_decile = -1

    def update(self, done: int, **metrics: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        decile = 10 * done // self.total
        final = done >= self.total
        if self.tty and not final and now - self._last_draw < 0.5:
            return
        if not self.tty and not final and decile == self._last_decile:
            return
        self._last_draw, self._last_decile = now, decile
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else 0.0
        filled = self.width * done // self.total
        bar = "#" * filled + "." * (self.width - filled)
        stats = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        line = (f"{self.desc} [{bar}] {done}/{self.total} {stats} "
                f"{rate:.2f} it/s {_hms(elapsed)}<{_hms(eta)}")
        sys.stderr.write(("\r" + line + ("\n" if final else "")) if self.tty else line + "\n")
        sys.stderr.flush()


def _hms(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


# --- pieces --------------------------------------------------------------------------------------

def parse_overrides(items: list[str]) -> dict:
    """``["embed_dim=64", "residual=iand"]`` -> ``{"embed_dim": 64, "residual": "iand"}``."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SpikecError(f"--set expects key=value, got {item!r}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        out[key.strip()] = value
    return out


def fit_preprocess(images: np.ndarray) -> spk_data.Preprocess:
    """Per-channel mean/std of the training images after scaling to [0, 1], rounded to 4 digits."""
    x = images.astype(np.float64) / 255.0
    mean = tuple(round(float(m), 4) for m in x.mean(axis=(0, 2, 3)))
    std = tuple(round(float(s), 4) for s in x.std(axis=(0, 2, 3)))
    return spk_data.Preprocess(pixel_scale=1.0 / 255.0, mean=mean, std=std, pad=0)


def random_crop(images: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad a uint8 batch [B, C, H, W] by ``pad`` and crop back at offsets drawn from ``gen``."""
    if pad <= 0:
        return images
    B, _, H, W = images.shape
    padded = nn.functional.pad(images, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (B, 2), generator=gen).tolist()
    return torch.stack([padded[i, :, dy:dy + H, dx:dx + W] for i, (dy, dx) in enumerate(offsets)])


def to_input(images_u8: torch.Tensor, pre: spk_data.Preprocess) -> torch.Tensor:
    """Raw uint8 batch -> float32 model input, by the checkpoint's :class:`Preprocess` (numpy)."""
    return torch.from_numpy(pre.apply(images_u8.numpy()))


def lr_at(step: int, total: int, warmup: int, base_lr: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on conv/linear weights only (not on BN parameters or biases)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


@contextlib.contextmanager
def time_steps(model: nn.Module, T: int | None):
    """Run ``model`` with ``T`` time steps inside the block (neurons hold no parameters)."""
    if T is None:
        yield model
        return
    if not hasattr(model, "T"):
        raise SpikecError(f"{type(model).__name__} has no attribute T; cannot change its time steps")
    old = model.T
    model.T = int(T)
    try:
        yield model
    finally:
        model.T = old


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, pre: spk_data.Preprocess,
             T: int | None = None, batch_size: int = 250, progress: bool = False) -> float:
    """Top-1 accuracy (fraction) of ``model`` on raw uint8 ``images`` at ``T`` time steps."""
    was_training = model.training
    model.eval()
    correct = 0
    n = labels.shape[0]
    bar = Progress(math.ceil(n / batch_size), f"  eval T={T}", progress)
    with time_steps(model, T):
        for i, start in enumerate(range(0, n, batch_size)):
            logits = model(to_input(images[start:start + batch_size], pre))
            correct += int((logits.argmax(1) == labels[start:start + batch_size]).sum())
            bar.update(i + 1, acc=100.0 * correct / min(start + batch_size, n))
    model.train(was_training)
    return correct / max(n, 1)


def seed_everything(seed: int, threads: int) -> torch.Generator:
    """Fix torch's seeds, thread count and deterministic kernels; return the data generator."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def _run_stage(model, opt, images, labels, pre, cfg: TrainConfig, gen, *, epochs: float, lr: float,
               warmup_epochs: float, T: int | None, label: str, losses: list[float]) -> None:
    """``epochs`` (a fraction allowed: the last epoch stops early) of AdamW steps at ``T``."""
    n = labels.shape[0]
    steps_per_epoch = max(n // cfg.batch_size, 1)  # drop the last partial batch (BN statistics)
    total = max(int(round(steps_per_epoch * epochs)), 1)
    warmup = int(round(warmup_epochs * steps_per_epoch))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    step = 0
    model.train()
    with time_steps(model, T):
        for epoch in range(math.ceil(total / steps_per_epoch)):
            order = torch.randperm(n, generator=gen)
            in_epoch = min(steps_per_epoch, total - step)
            bar = Progress(in_epoch, f"{label} epoch {epoch + 1}/{epochs:g}", cfg.progress)
            run_loss = run_correct = run_seen = 0.0
            for i in range(in_epoch):
                if cfg.max_steps is not None and len(losses) >= cfg.max_steps:
                    return
                idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
                batch = random_crop(images[idx], cfg.crop_pad, gen)
                if cfg.hflip:
                    flip = torch.rand(batch.shape[0], generator=gen) < 0.5
                    batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, total, warmup, lr)
                logits = model(to_input(batch, pre))
                loss = loss_fn(logits, labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                losses.append(loss.item())
                run_loss += losses[-1] * idx.shape[0]
                run_correct += float((logits.argmax(1) == labels[idx]).sum())
                run_seen += idx.shape[0]
                bar.update(i + 1, loss=run_loss / run_seen, acc=100.0 * run_correct / run_seen,
                           lr=opt.param_groups[0]["lr"])


def train(cfg: TrainConfig) -> TrainResult:
    """Train ``cfg.arch`` on ``cfg.data`` and evaluate it at ``cfg.eval_T``.

    Deterministic for a given seed, thread count and machine: model init from ``torch.manual_seed``,
    shuffling and augmentation from a separate seeded generator.
    """
    from spikec.models import create

    if cfg.data not in DATA_NAMES and not cfg.data.endswith(".npz"):
        raise DataError(f"--data must be one of {', '.join(DATA_NAMES)}, got {cfg.data!r}")
    gen = seed_everything(cfg.seed, cfg.threads)
    train_set = spk_data.load(f"{cfg.data}:train", cfg.limit_train)
    test_set = spk_data.load(f"{cfg.data}:test", cfg.limit_test)
    pre = fit_preprocess(train_set.images)
    C, H, W = train_set.shape
    overrides = {"img_size": H, "in_channels": C, "num_classes": train_set.classes, **cfg.overrides}
    model = create(cfg.arch, **overrides)
    images = torch.from_numpy(train_set.images)
    labels = torch.from_numpy(train_set.labels)
    losses: list[float] = []

    t0, c0 = time.perf_counter(), time.process_time()
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    _run_stage(model, opt, images, labels, pre, cfg, gen, epochs=cfg.epochs, lr=cfg.lr,
               warmup_epochs=cfg.warmup_epochs, T=cfg.train_T, label="train", losses=losses)
    if cfg.finetune_epochs > 0 and (cfg.max_steps is None or len(losses) < cfg.max_steps):
        ft_lr = cfg.finetune_lr if cfg.finetune_lr is not None else cfg.lr * 0.25
        opt = make_optimizer(model, ft_lr, cfg.weight_decay)
        _run_stage(model, opt, images, labels, pre, cfg, gen, epochs=cfg.finetune_epochs, lr=ft_lr,
                   warmup_epochs=0.0, T=None, label=f"finetune T={getattr(model, 'T', '?')}",
                   losses=losses)
    train_wall, train_cpu = time.perf_counter() - t0, time.process_time() - c0

    t1 = time.perf_counter()
    test_images = torch.from_numpy(test_set.images)
    test_labels = torch.from_numpy(test_set.labels)
    accuracies = {}
    for T in cfg.eval_T:
        accuracies[f"T{T}"] = evaluate(model, test_images, test_labels, pre, T,
                                       cfg.eval_batch_size, cfg.progress)
        if cfg.progress:
            print(f"test accuracy T={T}: {100 * accuracies[f'T{T}']:.2f}% ({len(test_set)} images)",
                  file=sys.stderr)
    return TrainResult(model, losses, accuracies, train_wall, time.perf_counter() - t1, pre, train_cpu)


# --- outputs -------------------------------------------------------------------------------------

def write_outputs(result: TrainResult, cfg: TrainConfig, out: Path, command: str) -> Path:
    """Write the checkpoint (``save_checkpoint``) and its model card ``out.with_suffix('.md')``."""
    from spikec.models.checkpoint import save_checkpoint

    extra = {
        "epochs": cfg.epochs, "finetune_epochs": cfg.finetune_epochs, "train_T": cfg.train_T,
        "seed": cfg.seed, "wall_time_s": round(result.train_wall_s, 1),
        "cpu_time_s": round(result.train_cpu_s, 1),
        "accuracies": {k: round(v, 4) for k, v in result.accuracies.items()},
        "data": {"train": f"{cfg.data}:train", "test": f"{cfg.data}:test"},
        "train_command": command, "torch_version": str(torch.__version__), "threads": cfg.threads,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(result.model, out, preprocess=result.preprocess.to_dict(), extra=extra)
    card = out.with_suffix(".md")
    card.write_text(model_card(result, cfg, out, command))
    return card


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def model_card(result: TrainResult, cfg: TrainConfig, out: Path, command: str) -> str:
    """Markdown model card: config, data, training, accuracies, the command that reproduces it."""
    model = result.model
    arch = getattr(model, "spikec_arch", cfg.arch)
    config = getattr(model, "spikec_config", cfg.overrides)
    n_params = sum(p.numel() for p in model.parameters())
    size_kb = out.stat().st_size / 1024 if out.exists() else float("nan")
    acc_rows = "\n".join(f"| {k[1:]} | {100 * v:.2f}% |" for k, v in result.accuracies.items())
    cfg_rows = "\n".join(f"| `{k}` | `{v}` |" for k, v in sorted(config.items()))
    stages = f"{cfg.epochs:g} epochs" + (f" at T={cfg.train_T}" if cfg.train_T else "")
    if cfg.finetune_epochs:
        stages += f", then {cfg.finetune_epochs:g} epoch(s) fine-tuning at T={getattr(model, 'T', '?')}"
    return f"""# {out.stem}

`{arch}` trained by `spikec.models.train` on {cfg.data} ({stages}).

## Float test accuracy

Full `{cfg.data}:test` split, float model (`torch`), static image repeated T times:

| T | top-1 |
|---|---|
{acc_rows}

## Model

| key | value |
|---|---|
{cfg_rows}

Parameters: {n_params:,} (including the unused LayerNorms). Checkpoint: {size_kb:.0f} KiB.

Input preprocessing (recorded in the checkpoint under `preprocess`; inputs are raw uint8 pixels):
`{result.preprocess.to_dict()}`

## Training

- Data: `{cfg.data}:train` ({'limit ' + str(cfg.limit_train) if cfg.limit_train else 'all images'}),
  random crop with {cfg.crop_pad} px zero padding{', horizontal flips' if cfg.hflip else ''}.
- AdamW (lr {cfg.lr}, weight decay {cfg.weight_decay} on weights), batch {cfg.batch_size},
  {cfg.warmup_epochs} warm-up epoch(s) then cosine decay; label smoothing {cfg.label_smoothing}.
- Seed {cfg.seed}, torch {torch.__version__}, {_plural(cfg.threads, "CPU thread")}.
- Training: {result.train_wall_s / 60:.1f} min wall ({result.train_wall_s:.0f} s), {result.train_cpu_s / 60:.1f} min process CPU time,
  on a {os.cpu_count() or 1}-core machine. Evaluation: {result.eval_wall_s:.0f} s.

## Reproduce

```
{command}
```

The same command, seed and thread count reproduce the accuracies to within a few tenths of a point
(torch CPU kernels are deterministic for a fixed thread count; other machines may differ slightly).
"""


# --- CLI -----------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m spikec.models.train",
                                description="Train a spikec registry model on an offline dataset (CPU).")
    p.add_argument("--arch", required=True, help="registry name, e.g. spikformer_v2_tiny")
    p.add_argument("--data", default="mnist5k", help="mnist5k or fashion-mnist")
    p.add_argument("--epochs", type=float, default=10.0, help="epochs (a fraction allowed)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="model config override (repeatable), e.g. --set embed_dim=64")
    p.add_argument("--crop-pad", type=int, default=2, help="random-crop padding in pixels (0: off)")
    p.add_argument("--hflip", action="store_true", help="random horizontal flips")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--train-T", type=int, default=None,
                   help="time steps for the --epochs stage (default: the model's T)")
    p.add_argument("--finetune-epochs", type=float, default=0.0,
                   help="epochs (a fraction allowed) at the model's own T after the --epochs stage")
    p.add_argument("--finetune-lr", type=float, default=None, help="default: lr / 4")
    p.add_argument("--eval-T", default="1,2,4", help="comma-separated time steps to evaluate")
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke runs)")
    p.add_argument("--threads", type=int, default=2,
                   help="torch CPU threads (results depend on it; on a busy shared machine 1 thread "
                        "is far faster than 2, whose OpenMP workers wait on each other)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-o", "--output", required=True, help="checkpoint path (.pt); NAME.md is written beside it")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        arch=args.arch, data=args.data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, seed=args.seed,
        overrides=parse_overrides(args.overrides), crop_pad=args.crop_pad, hflip=args.hflip,
        label_smoothing=args.label_smoothing, train_T=args.train_T,
        finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
        eval_T=tuple(int(t) for t in args.eval_T.split(",") if t.strip()),
        limit_train=args.limit_train, limit_test=args.limit_test, max_steps=args.max_steps,
        threads=args.threads, progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    command = "python -m spikec.models.train " + shlex.join(argv)
    try:
        cfg = config_from_args(args)
        result = train(cfg)
        card = write_outputs(result, cfg, Path(args.output), command)
    except SpikecError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    accs = ", ".join(f"{k} {100 * v:.2f}%" for k, v in result.accuracies.items())
    print(f"wrote {args.output} and {card} (train {result.train_wall_s / 60:.1f} min; test {accs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
