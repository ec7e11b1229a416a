"""The fine-tuning loop that training defenses share, exported through `bench.api`.

Why one loop: every defense that trains a model here (the orthogonal-flow variants,
adversarial training, gradient-norm regularization) must behave the same way where it
matters for honest comparison — same batching and seeding, BatchNorm statistics frozen
or not by the same rule, and a divergence (non-finite loss) that stops the fit with an
error naming the defense, so that the workbench never caches a broken model. Only the
per-batch loss differs between them, so that is what a defense passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from bench.errors import NotApplicable

if TYPE_CHECKING:  # bench.api imports this module
    from bench.api import FitContext

BatchLoss = Callable[[Tensor, Tensor], Tensor]  # (images, targets) on ctx.device -> scalar loss


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


def finetune(model: nn.Module, ctx: FitContext, batch_loss: BatchLoss, *, name: str, epochs: int, lr: float,
             batch_size: int, freeze_bn: bool = True, frozen: Sequence[Tensor] = ()) -> list[float]:
    """Adam over every floating-point parameter of `model` but `frozen`, on `ctx.train` /
    `ctx.targets`.

    Parameters frozen in the model are trained too (their flags are restored afterwards):
    a defense fine-tunes the whole changed network, not only what it added. Those in
    `frozen` get requires_grad False for the duration, so a layer can tell (a staged
    fine-tune holds a block not yet "inserted" at its initial value). BatchNorm running
    statistics stay frozen when `freeze_bn`: a few hundred images in small batches would
    overwrite a pretrained backbone's means with noise. The order of batches and dropout
    draws depend only on `ctx.seed`, and the caller's RNG state is left as it was.
    Returns the mean loss per epoch and records it in `ctx.record`; raises RuntimeError
    on a non-finite loss (the workbench then writes no checkpoint).
    """
    if epochs < 0 or batch_size < 1 or not lr > 0:
        raise ValueError(f"defense '{name}': epochs must be >= 0, batch_size >= 1 and lr > 0; "
                         f"got {epochs}, {batch_size}, {lr}")
    images, targets = ctx.train.images, ctx.targets.reshape(-1)
    n = len(images)
    if n == 0 or n != len(targets):
        raise ValueError(f"defense '{name}': fine-tuning needs images and as many targets; got {n} and {len(targets)}")
    held = {id(t) for t in frozen}
    everything = [t for t in model.parameters() if t.is_floating_point()]
    params = [t for t in everything if id(t) not in held]
    was_trainable = [t.requires_grad for t in everything]
    ends = list(range(batch_size, n, batch_size)) + [n]
    if len(ends) > 1 and ends[-1] - ends[-2] == 1:
        del ends[-2]  # fold a last batch of one into the one before: BatchNorm in train mode refuses it
    losses: list[float] = []
    devices = [ctx.device.index or 0] if ctx.device.type == "cuda" else []
    try:
        for t in everything:
            t.requires_grad_(id(t) not in held)
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(ctx.seed)
            order_rng = torch.Generator().manual_seed(ctx.seed)
            opt = torch.optim.Adam(params, lr=lr)
            _train_mode(model, freeze_bn)
            for epoch in range(epochs):
                order, start, total = torch.randperm(n, generator=order_rng), 0, 0.0
                for step, end in enumerate(ends):
                    idx = order[start:end]
                    start = end
                    loss = batch_loss(images[idx].to(ctx.device), targets[idx].to(ctx.device))
                    if not torch.isfinite(loss):
                        raise RuntimeError(f"defense '{name}': fine-tune diverged (loss {loss.item()}) at epoch "
                                           f"{epoch} step {step}; lower lr or check the model")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += loss.item() * len(idx)
                losses.append(total / n)
                ctx.log(f"{name}: epoch {epoch + 1}/{epochs} loss {losses[-1]:.5f}")
    finally:
        for t, flag in zip(everything, was_trainable):
            t.requires_grad_(flag)
        model.eval()
    ctx.record.update(epochs=epochs, lr=lr, batch_size=batch_size,
                      final_loss=losses[-1] if losses else None, loss_per_epoch=losses)
    return losses


def _train_mode(model: nn.Module, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
