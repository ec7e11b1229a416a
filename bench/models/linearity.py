"""LinearityIQA (Li, Jiang, Jiang, "Norm-in-Norm Loss with Faster Convergence and Better
Performance for Image Quality Assessment", ACM MM 2020), one of the five models the
orthogonal-flow paper was published on, written from the paper: a ResNeXt-101 (32x8d) body
whose last two stages are each average-pooled and reduced by a fully connected stack
(1024, 256, 64 units, batch normalisation), a score from each stage and one from both; the
score is the last, mapped onto the MOS scale by the linear fit (k, b) the release stores
beside the weights. Trained on KonIQ-10k; the user supplies the release's checkpoint.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.api import CheckpointError, Field, IQAModel, ModelInfo, Params, read_checkpoint, register_model

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
STAGES = (6, 7)  # indices of the body's last two stages (layer3, layer4) among its blocks
REDUCE = (1024, 256, 64)


def reduction(width: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for units in REDUCE:
        layers += [nn.Linear(width, units), nn.BatchNorm1d(units)]
        width = units
    return nn.Sequential(*layers, nn.ReLU())


@register_model
class LinearityIQA(IQAModel):
    info = ModelInfo(
        name="linearityiqa",
        lower_better=False,
        score_range=(0.0, 100.0),
        kind="learned",
        differentiable=True,
        min_size=32,
        weights="the LinearityIQA release's checkpoint (p1q2.pth, trained on KonIQ-10k: a dict with 'model', "
                "the state_dict, and 'k', 'b', the linear map onto the MOS scale), given as --weights PATH or "
                "`weights` in the matrix",
        reference="https://doi.org/10.1145/3394171.3413804",
        description="LinearityIQA: ResNeXt-101 32x8d, two pooled stages reduced to 64 features each, "
                    "Norm-in-Norm trained (KonIQ-10k).",
    )

    class Params(Params):
        weights: str = Field("", description="the LinearityIQA checkpoint (read weights_only)")
        arch: str = Field("resnext101_32x8d", pattern=r"^(resnet(18|34|50|101|152)|resnext101_32x8d)$",
                          description="torchvision body the checkpoint was trained with (the release: resnext101_32x8d)")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        import torchvision

        arch = self.params["arch"]
        body = getattr(torchvision.models, arch)(weights=None)
        self.features = nn.Sequential(*list(body.children())[:-2])
        small = arch in ("resnet18", "resnet34")
        widths = (256, 512) if small else (1024, 2048)
        self.dr6, self.dr7 = reduction(widths[0]), reduction(widths[1])
        self.regr6, self.regr7 = nn.Linear(REDUCE[-1], 1), nn.Linear(REDUCE[-1], 1)
        self.regression = nn.Linear(2 * REDUCE[-1], 1)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("k", torch.ones(()), persistent=False)  # onto the MOS scale: score * k + b
        self.register_buffer("b", torch.zeros(()), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        x = (x - self.mean) / self.std
        reduced = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i in STAGES:
                pooled = x.mean(dim=(2, 3))
                reduced.append(self.dr6(pooled) if i == STAGES[0] else self.dr7(pooled))
        return (self.regression(torch.cat(reduced, dim=1)).reshape(-1) * self.k + self.b)

    def load_weights(self, path: str) -> None:
        """The release's checkpoint: the state_dict under 'model', the MOS map under 'k', 'b'
        (one value per score; the last is the one used)."""
        raw = read_checkpoint(path)
        if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
            raise CheckpointError(f"checkpoint '{path}' is not LinearityIQA's release layout (a dict with 'model')")
        self.load_state_dict({k.removeprefix("module."): v for k, v in raw["model"].items()})
        for name in ("k", "b"):
            if name in raw:
                value = torch.as_tensor(raw[name], dtype=torch.float32).reshape(-1)[-1]
                getattr(self, name).copy_(value)
