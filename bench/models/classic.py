"""Classic no-reference metrics, computed by pyiqa's own implementations."""

from __future__ import annotations

from torch import Tensor

from bench.api import IQAModel, ModelInfo, register_model
from bench.gradients import StraightThroughRounding


def pyiqa_net(name: str):  # -> torch.nn.Module
    """The network behind `pyiqa.create_metric(name)`: the same code path pyiqa scores with,
    minus its no-grad wrapper, so that attacks get gradients."""
    import pyiqa  # heavy (about 3 s): imported only when a model is built

    return pyiqa.create_metric(name, device="cpu").net


@register_model
class PIQE(IQAModel):
    info = ModelInfo(
        name="piqe",
        lower_better=True,
        score_range=(0.0, 100.0),
        kind="classic",
        differentiable=False,
        gradient_surrogate="straight-through rounding",
        min_size=16,
        weights="none needed",
        reference="https://doi.org/10.1109/NCC.2015.7084843",
        description=(
            "PIQE (Venkatanath et al., NCC 2015), pyiqa's implementation. Its first step rounds the "
            "image to 8 bits, so its input gradient is exactly zero: attacks differentiate it with the "
            "rounding made straight-through (BPDA on the model itself)."
        ),
    )

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.net = pyiqa_net("piqe")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).reshape(-1)

    def gradient_forward(self, x: Tensor) -> Tensor:
        with StraightThroughRounding():
            return self.net(x).reshape(-1)
