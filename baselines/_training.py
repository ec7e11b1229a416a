"""What the training baselines share (not a plugin: discovery skips `_` modules): their
fine-tuning parameters, the refusal of models with nothing to train, the score's
direction, and the input gradient they both need. Each baseline only says what its
per-batch loss is; the loop itself is `bench.api.finetune`, shared with the
orthogonal-flow defense, so that every training defense is trained the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.api import Defense, FitContext, IQAModel, finetune, require_trainable

BatchLoss = Callable[[Tensor, Tensor], Tensor]
LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"l1": F.l1_loss, "mse": F.mse_loss}
TRAINING_DEFAULTS: dict[str, Any] = {
    "epochs": 3,
    "lr": 1e-4,  # fine-tuning an already trained model, as the orthogonal-flow variants do
    "batch_size": 16,
    "loss": "l1",  # "l1" | "mse": the regression loss on ctx.targets
    "freeze_bn": True,
}


class TrainingDefense(Defense):
    """Fine-tunes the model on the cell's train split with `batch_loss`; no architectural
    change, so `transform` only refuses models that have nothing to train."""

    defaults: ClassVar[dict[str, Any]] = dict(TRAINING_DEFAULTS)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["loss"] not in LOSSES:
            raise ValueError(f"defense '{self.info.name}': loss {self.params['loss']!r} not one of {tuple(LOSSES)}")

    def transform(self, model: IQAModel) -> IQAModel:
        require_trainable(self.info.name, model)
        return model

    def fit(self, model: IQAModel, ctx: FitContext) -> None:
        p = self.params
        better = -1.0 if model.info.lower_better else 1.0  # the direction attacks push the score
        finetune(model, ctx, self.batch_loss(model, ctx, better), name=self.info.name, epochs=p["epochs"],
                 lr=p["lr"], batch_size=p["batch_size"], freeze_bn=p["freeze_bn"])
        ctx.record.update({k: v for k, v in p.items() if k not in ("epochs", "lr", "batch_size")})

    def batch_loss(self, model: IQAModel, ctx: FitContext, better: float) -> BatchLoss:  # pragma: no cover
        raise NotImplementedError

    def regression(self, pred: Tensor, y: Tensor) -> Tensor:
        return LOSSES[self.params["loss"]](pred.reshape(-1), y.to(pred.dtype))


def input_gradient(model: IQAModel, x: Tensor, *, keep_graph: bool = False) -> tuple[Tensor, Tensor]:
    """Scores (B,) and their gradient with respect to the input, through the model's
    `gradient_forward` (what attacks differentiate). Parameters get no gradient here;
    with `keep_graph` the scores stay differentiable for the training loss."""
    x = x.detach().requires_grad_(True)
    scores = model.gradient_forward(x).reshape(-1)
    (grad,) = torch.autograd.grad(scores.sum(), x, retain_graph=keep_graph)
    return scores, grad
