"""KonCept512 (Hosu, Lin, Sziranyi, Saupe, "KonIQ-10k: An ecologically valid database for
deep learning of blind image quality assessment", IEEE TIP 2020), one of the five models
the orthogonal-flow paper was published on, written from the paper: an Inception-ResNet-v2
body, global average pooling, and a head of fully connected layers of 2048, 1024 and 256
units (ReLU, batch normalisation, dropout 0.25, 0.25, 0.5) to one score, trained on
KonIQ-10k at 512 x 384 pixels. Its published weights are not in pyiqa: the user supplies
the PyTorch checkpoint of the KonCept512 release (`--weights` or a `weights` field).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.api import Field, IQAModel, ModelInfo, Params, register_model

# The body as the released checkpoint holds it: the network's first 15 blocks, stem to the
# last 1x1 convolution (`base.0` ... `base.14`), without its classifier.
BODY_BLOCKS = 15
HEAD = (2048, 1024, 256)
DROPOUT = (0.25, 0.25, 0.5)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@register_model
class KonCept512(IQAModel):
    info = ModelInfo(
        name="koncept512",
        lower_better=False,
        score_range=(0.0, 100.0),
        kind="learned",
        differentiable=True,
        input_size=(384, 512),
        min_size=75,
        weights="the KonCept512 release's PyTorch checkpoint (KonCept512.pth: a state_dict with base.*, fc.*; "
                "trained on KonIQ-10k, MOS 0..100), given as --weights PATH or `weights` in the matrix",
        reference="https://doi.org/10.1109/TIP.2020.2967829",
        description="KonCept512: Inception-ResNet-v2 body, average pooling, FC 2048-1024-256-1 head (KonIQ-10k).",
    )

    class Params(Params):
        weights: str = Field("", description="the KonCept512 checkpoint (a state_dict, read weights_only)")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        import timm

        body = timm.create_model("inception_resnet_v2", pretrained=False)
        self.base = nn.Sequential(*list(body.children())[:BODY_BLOCKS])
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        layers: list[nn.Module] = []
        width = body.num_features
        for units, p in zip(HEAD, DROPOUT):
            layers += [nn.Linear(width, units), nn.ReLU(inplace=True), nn.BatchNorm1d(units), nn.Dropout(p)]
            width = units
        self.fc = nn.Sequential(*layers, nn.Linear(width, 1))
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        features = self.avg_pool(self.base((x - self.mean) / self.std)).flatten(1)
        return self.fc(features).reshape(-1)
