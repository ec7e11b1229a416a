"""A ResNet-18 quality regressor (LinearityIQA-style: ResNet backbone, global average
pooling, linear head), the backbone family the orthogonal-flow defense paper attacks.

pyiqa's HyperIQA (ResNet-50) is not used: its architecture calls
timm.create_model(..., pretrained=True) unconditionally (an ImageNet download), and a
ResNet-50 is too slow to train on a CPU here. Offline, no ImageNet weights are available
either, so this backbone is torchvision's resnet18 built with weights=None and the whole
network is trained from scratch here; no published weights exist for it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.api import FitContext, IQAModel, ModelInfo, register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@register_model
class ResNet18IQA(IQAModel):
    info = ModelInfo(
        name="resnet18_iqa",
        lower_better=False,
        score_range=(0.0, 1.0),  # trained here on MOS mapped onto [0, 1]
        kind="learned",
        differentiable=True,
        min_size=32,
        weights="trained here from scratch with `bench train` (no ImageNet weights offline), or --weights PATH",
        reference="https://doi.org/10.1145/3394171.3413804",
        description=(
            "ResNet-18 regressor in the style of LinearityIQA (Li et al., ACM MM 2020): torchvision "
            "resnet18 (weights=None, ReLU activations), ImageNet input normalisation, global average "
            "pooling, linear head to one score. Trained from scratch here: not the published model, "
            "which starts from ImageNet weights that are not available offline."
        ),
    )
    defaults = {"weights": "", "epochs": 20, "lr": 1e-3, "batch_size": 32, "crop": 64, "weight_decay": 1e-4}

    def __init__(self, **params) -> None:
        super().__init__(**params)
        from torchvision.models import resnet18

        net = resnet18(weights=None)  # no download
        net.fc = nn.Linear(net.fc.in_features, 1)
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.mean) / self.std).reshape(-1)

    def fit(self, ctx: FitContext) -> None:
        """AdamW (cosine-decayed) on the L1 loss, on random `crop`-px crops (the whole image
        where it is smaller) with random horizontal flips: few reference scenes, so the
        crops keep a from-scratch network from learning the scenes instead of the damage."""
        g = torch.Generator().manual_seed(ctx.seed)
        opt = torch.optim.AdamW(self.parameters(), lr=self.params["lr"], weight_decay=self.params["weight_decay"])
        x_all, y_all = ctx.train.images, ctx.targets
        bs, epochs = self.params["batch_size"], self.params["epochs"]
        steps = epochs * ((len(x_all) + bs - 1) // bs)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
        self.train()
        for epoch in range(epochs):
            order = torch.randperm(len(x_all), generator=g)
            total = 0.0
            for i in range(0, len(order), bs):
                idx = order[i : i + bs]
                x = x_all[idx]
                h, w = x.shape[-2:]
                ch, cw = min(self.params["crop"], h), min(self.params["crop"], w)
                top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
                left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
                x = x[:, :, top : top + ch, left : left + cw]
                flip = torch.rand(len(idx), generator=g) < 0.5
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x).to(ctx.device)
                if len(idx) == 1:  # BatchNorm cannot train on a single image
                    continue
                loss = F.l1_loss(self(x), y_all[idx].to(ctx.device))
                if not torch.isfinite(loss):
                    raise RuntimeError(f"resnet18_iqa training diverged (loss {loss.item()}) at epoch {epoch}")
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
            ctx.record["final_train_l1"] = total / len(x_all)
            ctx.log(f"resnet18_iqa epoch {epoch + 1}/{epochs}: train L1 {total / len(x_all):.4f}")
        ctx.record["epochs"] = epochs
        ctx.record["init"] = "from scratch (weights=None)"
        self.eval()
