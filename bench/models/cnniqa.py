"""CNNIQA (Kang et al., CVPR 2014) in pyiqa's architecture (RGB input, whole-image
max-min pooling), with the published KonIQ-10k weights where pyiqa's cache has them,
else trained here by `bench train` / `bench run`, and labelled so."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.api import FitContext, IQAModel, ModelInfo, register_model

PUBLISHED_FILE = "CNNIQA_koniq10k-e6f14c91.pth"


@register_model
class CNNIQA(IQAModel):
    info = ModelInfo(
        name="cnniqa",
        lower_better=False,
        score_range=(0.0, 1.0),
        kind="learned",
        differentiable=True,
        min_size=7,
        weights=f"pyiqa cache ({PUBLISHED_FILE}), or --weights PATH, or trained here with `bench train`",
        reference="https://doi.org/10.1109/CVPR.2014.224",
        description="CNNIQA: one 7x7 conv layer (50 kernels), max-min pooling, two 800-unit FC layers.",
    )
    defaults = {"weights": "", "epochs": 20, "lr": 2e-3, "batch_size": 32}

    def __init__(self, **params) -> None:
        super().__init__(**params)
        from pyiqa.archs.cnniqa_arch import CNNIQA as Net

        self.net = Net(pretrained=None)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).reshape(-1)

    @classmethod
    def pretrained_weights(cls) -> str | None:
        p = Path(torch.hub.get_dir()) / "pyiqa" / PUBLISHED_FILE
        return str(p) if p.is_file() else None

    def fit(self, ctx: FitContext) -> None:
        """Adam on the L1 loss, as in the CNNIQA paper (which trains on patches; pyiqa's
        variant scores the whole image, so we train on whole images)."""
        g = torch.Generator().manual_seed(ctx.seed)
        opt = torch.optim.Adam(self.parameters(), lr=self.params["lr"])
        x_all, y_all = ctx.train.images, ctx.targets
        bs = self.params["batch_size"]
        self.train()
        for epoch in range(self.params["epochs"]):
            order = torch.randperm(len(x_all), generator=g)
            total = 0.0
            for i in range(0, len(order), bs):
                idx = order[i : i + bs]
                loss = F.l1_loss(self(x_all[idx].to(ctx.device)), y_all[idx].to(ctx.device))
                if not torch.isfinite(loss):
                    raise RuntimeError(f"cnniqa training diverged (loss {loss.item()}) at epoch {epoch}")
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            ctx.record["final_train_l1"] = total / len(x_all)
        ctx.record["epochs"] = self.params["epochs"]
        self.eval()
