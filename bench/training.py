"""The one training loop, exported through `bench.api`: models that train here
(`IQAModel.fit`: CNNIQA, WaDIQaM-NR, the ResNet-18 regressor) and defenses that fit
(the orthogonal-flow variants, adversarial training, gradient-norm regularization) all
train through `train_loop`; `finetune` is its name for defenses, kept for them.

Why one loop: every component that trains must behave the same way where it matters for
honest comparison and for reruns: batching and seeding (the shuffle order comes from a
generator seeded by `ctx.seed`, and the global RNG, which dropout draws from, is seeded
by it and handed back to the caller as it was), BatchNorm statistics frozen or not by one
rule, one progress bar over the whole fit, a divergence (non-finite loss) that stops the
fit with one line naming the component, so that the workbench never caches a broken
model, and the same record (loss per epoch, epochs, seconds, final loss). Only what a
batch costs differs between them, so that is what a caller passes in: its loss, and
where it trains on random crops or patches, an `augment` step that draws from the loop's
seeded generator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from bench.errors import NotApplicable
from bench.progress import finetune_step, note, progress, training_step

if TYPE_CHECKING:  # bench.api imports this module
    from bench.api import FitContext

BatchLoss = Callable[[Tensor, Tensor], Tensor]  # (images, targets) on ctx.device -> scalar loss
Augment = Callable[[Tensor, torch.Generator], Tensor]  # (a batch's images, the loop's generator) -> images
Kind = Literal["model", "defense"]
BatchOfOne = Literal["fold", "keep", "skip"]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULES = ("constant", "cosine")  # cosine: annealed to 0 over every batch of the fit, stepped each batch
_STEP = {"model": training_step, "defense": finetune_step}  # the progress bar's wording per kind
_VERB = {"model": "training", "defense": "fine-tuning"}


def model_name(model: Any) -> str:
    """The registered name of a model, or its class name for a plain module."""
    return getattr(getattr(model, "info", None), "name", type(model).__name__)


def require_trainable(defense: str, model: Any) -> None:
    """Raise NotApplicable naming both sides where `defense` cannot fine-tune `model`
    (a classic metric has no parameters; something that is not a torch module has none
    either), so that the runner marks those cells `skipped` and the rest run."""
    if not isinstance(model, nn.Module):
        raise NotApplicable(f"defense '{defense}' needs a torch model; model '{model_name(model)}' is not one")
    if not any(t.is_floating_point() for t in model.parameters()):
        raise NotApplicable(f"defense '{defense}' fine-tunes the model; model '{model_name(model)}' "
                            "has no trainable parameters")
    if failure := _training_forward_fails(model):
        raise NotApplicable(f"defense '{defense}' fine-tunes the model on images; model '{model_name(model)}' "
                            f"cannot compute a training-mode forward pass on them ({failure})")


def probe_input(model: nn.Module) -> Tensor:
    """A fixed random batch of two images of the size the model declares, else of its
    smallest accepted side (at least 64): what a check runs the model on."""
    info = getattr(model, "info", None)
    h, w = getattr(info, "input_size", None) or (max(getattr(info, "min_size", 1), 64),) * 2
    device = next(iter(model.parameters())).device
    return torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)


def _training_forward_fails(model: nn.Module) -> str | None:
    """Why `model` in training mode cannot score a batch of images (None: it can), found by
    trying once, so that a fit that could never run is `skipped` up front with the reason
    rather than an error after minutes (pyiqa's MUSIQ, in training mode, expects patches its
    data loader extracted). The model is left exactly as it was: modes, BatchNorm
    statistics and the global random state are restored."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    gpus = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=gpus), torch.no_grad():
            model.train()
            model(probe_input(model))
        return None
    except Exception as e:  # noqa: BLE001 - whatever it is, the fit would meet it too
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
    finally:
        for m, mode in modes:
            m.training = mode
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


def train_loop(model: nn.Module, ctx: FitContext, batch_loss: BatchLoss, *, kind: Kind, name: str, epochs: int,
               lr: float, batch_size: int, optimizer: str = "adam", weight_decay: float = 0.0,
               schedule: str = "constant", augment: Augment | None = None, batch_of_one: BatchOfOne = "fold",
               freeze_bn: bool = True, frozen: Sequence[Tensor] = ()) -> list[float]:
    """Train every floating-point parameter of `model` but `frozen` on `ctx.train` /
    `ctx.targets` with `optimizer` ("adam" or "adamw", with `weight_decay`) at `lr` under
    `schedule`; `kind` and `name` name the component in the progress bar, the log and
    every error ("model 'cnniqa'", "defense 'adv-train'").

    Each epoch visits the images in an order drawn from a generator seeded by `ctx.seed`,
    in batches of `batch_size`; `augment(images, generator)`, where given, turns a batch
    (on the CPU) into what `batch_loss` sees, drawing from the same generator right after
    the epoch's order. A last batch of one image is folded into the one before
    (`batch_of_one="fold"`: BatchNorm in train mode refuses a batch of one), trained as it
    is ("keep"), or skipped after its augmentation ("skip"). Dropout draws come from the
    global RNG, seeded by `ctx.seed` for the fit; the caller's RNG state is left as it was.

    Parameters frozen in the model are trained too (their flags are restored afterwards):
    a defense fine-tunes the whole changed network, not only what it added. Those in
    `frozen` get requires_grad False for the duration, so a layer can tell (a staged
    fine-tune holds a block not yet "inserted" at its initial value). BatchNorm running
    statistics stay frozen when `freeze_bn`: a few hundred images in small batches would
    overwrite a pretrained backbone's means with noise; a model trained from scratch
    passes False. The model is left in eval mode.

    Returns the mean loss per epoch and records it in `ctx.record` (epochs, lr,
    batch_size, loss_per_epoch, final_loss, seconds); raises RuntimeError on a
    non-finite loss (the workbench then writes no checkpoint).
    """
    who = f"{kind} '{name}'"
    if kind not in _STEP:
        raise ValueError(f"{who}: kind must be one of {tuple(_STEP)}, got {kind!r}")
    if epochs < 0 or batch_size < 1 or not lr > 0:
        raise ValueError(f"{who}: epochs must be >= 0, batch_size >= 1 and lr > 0; got {epochs}, {batch_size}, {lr}")
    if optimizer not in OPTIMIZERS or schedule not in SCHEDULES or batch_of_one not in ("fold", "keep", "skip"):
        raise ValueError(f"{who}: optimizer {optimizer!r}, schedule {schedule!r} or batch_of_one {batch_of_one!r} "
                         f"not one of {tuple(OPTIMIZERS)}, {SCHEDULES} and ('fold', 'keep', 'skip')")
    images, targets = ctx.train.images, ctx.targets.reshape(-1)
    n = len(images)
    if n == 0 or n != len(targets):
        raise ValueError(f"{who}: {_VERB[kind]} needs images and as many targets; got {n} and {len(targets)}")
    held = {id(t) for t in frozen}
    everything = [t for t in model.parameters() if t.is_floating_point()]
    params = [t for t in everything if id(t) not in held]
    was_trainable = [t.requires_grad for t in everything]
    ends = list(range(batch_size, n, batch_size)) + [n]
    if batch_of_one == "fold" and len(ends) > 1 and ends[-1] - ends[-2] == 1:
        del ends[-2]
    losses: list[float] = []
    devices = [ctx.device.index or 0] if ctx.device.type == "cuda" else []
    started = time.perf_counter()
    try:
        for t in everything:
            t.requires_grad_(id(t) not in held)
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(ctx.seed)
            order_rng = torch.Generator().manual_seed(ctx.seed)
            opt = OPTIMIZERS[optimizer](params, lr=lr, weight_decay=weight_decay)
            sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs * len(ends), 1))
                     if schedule == "cosine" else None)
            _train_mode(model, freeze_bn)
            step_name = _STEP[kind]
            # one bar over every batch of every epoch: the time left covers the whole fit
            with progress(total=epochs * len(ends), desc=step_name(name, 1, epochs), unit="batch") as bar:
                for epoch in range(epochs):
                    bar.set_description(step_name(name, epoch + 1, epochs), refresh=False)
                    order, start, total = torch.randperm(n, generator=order_rng), 0, 0.0
                    for step, end in enumerate(ends):
                        idx = order[start:end]
                        start = end
                        x = images[idx]
                        if augment is not None:
                            x = augment(x, order_rng)
                        if batch_of_one == "skip" and len(idx) == 1:
                            bar.update(1)
                            continue
                        loss = batch_loss(x.to(ctx.device), targets[idx].to(ctx.device))
                        if not torch.isfinite(loss):
                            raise RuntimeError(f"{who}: {_VERB[kind]} diverged (loss {loss.item()}) at epoch "
                                               f"{epoch + 1}/{epochs}, batch {step + 1}/{len(ends)}; lower lr or "
                                               "check the model")
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        if sched is not None:
                            sched.step()
                        total += loss.item() * len(idx)
                        bar.update(1)
                    losses.append(total / n)
                    note(ctx.log, f"{who}: epoch {epoch + 1}/{epochs} loss {losses[-1]:.5f}")
    finally:
        for t, flag in zip(everything, was_trainable):
            t.requires_grad_(flag)
        model.eval()
    ctx.record.update(epochs=epochs, lr=lr, batch_size=batch_size, loss_per_epoch=losses,
                      final_loss=losses[-1] if losses else None, seconds=round(time.perf_counter() - started, 2))
    return losses


def finetune(model: nn.Module, ctx: FitContext, batch_loss: BatchLoss, *, name: str, epochs: int, lr: float,
             batch_size: int, freeze_bn: bool = True, frozen: Sequence[Tensor] = ()) -> list[float]:
    """`train_loop` for defense `name`: Adam at a constant `lr`, a last batch of one
    folded into the one before, BatchNorm statistics frozen unless `freeze_bn` is False."""
    return train_loop(model, ctx, batch_loss, kind="defense", name=name, epochs=epochs, lr=lr,
                      batch_size=batch_size, freeze_bn=freeze_bn, frozen=frozen)


def _train_mode(model: nn.Module, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
