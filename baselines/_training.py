"""What the training baselines share (not a plugin: discovery skips `_` modules): their
fine-tuning parameters, the refusal of models with nothing to train, the score's
direction, and the input gradient they both need. Each baseline only says what its
per-batch loss is; the loop itself is `bench.api.train_loop`, shared with the
orthogonal-flow defense and the models trained here, so that everything that trains is
trained the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.api import Defense, Field, FitContext, IQAModel, Params, require_trainable, train_loop

BatchLoss = Callable[[Tensor, Tensor], Tensor]
LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"l1": F.l1_loss, "mse": F.mse_loss}


class TrainingParams(Params):
    """The fine-tuning parameters every training baseline has (each adds its own)."""

    epochs: int = Field(3, ge=1, description="passes over the train split")
    # fine-tuning an already trained model, as the orthogonal-flow variants do
    lr: float = Field(1e-4, gt=0, le=0.1, description="Adam learning rate")
    batch_size: int = Field(16, ge=1, description="images per training step")
    loss: Literal["l1", "mse"] = Field("l1", description="regression loss on the targets (the MOS on the model's scale)")
    freeze_bn: bool = Field(True, description="keep BatchNorm running statistics as trained")


TRAINING_DEFAULTS: dict[str, Any] = TrainingParams.field_defaults()


class TrainingDefense(Defense):
    """Fine-tunes the model on the cell's train split with `batch_loss`; no architectural
    change, so `transform` only refuses models that have nothing to train."""

    Params = TrainingParams

    def transform(self, model: IQAModel) -> IQAModel:
        require_trainable(self.info.name, model)
        return model

    def fit(self, model: IQAModel, ctx: FitContext) -> None:
        p = self.params
        better = -1.0 if model.info.lower_better else 1.0  # the direction attacks push the score
        train_loop(model, ctx, self.batch_loss(model, ctx, better), kind="defense", name=self.info.name,
                   epochs=p["epochs"], lr=p["lr"], batch_size=p["batch_size"], freeze_bn=p["freeze_bn"])
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
