"""What models trained here from scratch share, beside the training loop: the targets
standardised with the scale folded back into the last layer, the loss by name (L1, or the
scale-blind norm-in-norm followed by an affine fit on the train split), and the random
views of a batch that keep each image's quality (turns, mirrors, crops). Exported by `bench.api`,
so a model plugin uses them with `train_loop(..., augment=...)`.

Why: the embedded train split holds 13 reference scenes. A network that starts far from
the targets' scale, or sees the same pixels every epoch, learns the scenes instead of the
damage (issue 15: the ResNet-18 regressor and WaDIQaM-NR ranked the test split at clean
SROCC 0.08 and -0.28 before these).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn


def views_field() -> bool:
    """A model's `views` parameter: whether its fit adds the dataset's training views
    (`FitContext.with_views`): on for a network trained from scratch, which needs scenes."""
    return Field(True, description="train also on the dataset's training views of the train references (the "
                 "embedded set's random crops of its full-size photographs, freshly distorted and scored), where "
                 "it makes them")


class Standardized:
    """The targets' mean and spread: a model trains on `z(targets)` (mean 0, spread 1,
    whatever its score range), so that its last layer starts at the right scale, and
    `fold` puts the scale back into that layer afterwards, exactly: the trained model
    scores on its declared range with no extra parameter (its state_dict keeps the
    published weights' keys)."""

    def __init__(self, targets: Tensor) -> None:
        spread = targets.float().std()
        if not (torch.isfinite(spread) and spread > 0):
            raise ValueError("training needs targets that vary (constant or non-finite targets)")
        self.mean, self.std = targets.float().mean(), spread

    def z(self, targets: Tensor) -> Tensor:
        return (targets - self.mean.to(targets.device)) / self.std.to(targets.device)

    @torch.no_grad()
    def fold(self, last: nn.Linear) -> None:
        """Make `last` output `mean + std * output`. Exact where the score is an affine
        function of this layer's output with weights summing to one (the output itself,
        or a weighted average of patch scores)."""
        last.weight.mul_(self.std.to(last.weight.device))
        last.bias.mul_(self.std.to(last.bias.device)).add_(self.mean.to(last.bias.device))


LOSS_HELP = ("training loss: LinearityIQA's norm-in-norm (Li, Jiang & Ming, ACM MM 2020; pyiqa's NiNLoss, p=1, "
             "q=2: each batch's scores and targets centred and L2-normalised, then their L1 distance; the scale and "
             "offset fitted afterwards on the train split) or 'l1', the L1 distance to the standardised targets")


def regression_loss(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss a model trained here names: "l1", or "norm-in-norm", which is blind to the
    scores' scale and offset (follow it with `fit_affine`) and, the paper shows, converges
    faster than L1: what a from-scratch network needs at a CPU's few epochs."""
    if name == "l1":
        return F.l1_loss
    if name != "norm-in-norm":
        raise ValueError(f"unknown training loss {name!r}: 'norm-in-norm' or 'l1'")
    from pyiqa.losses.iqa_losses import NiNLoss  # lazily: pyiqa is slow to import

    return NiNLoss()


@torch.no_grad()
def fit_affine(model: nn.Module, last: nn.Linear, images: Tensor, targets: Tensor, device: torch.device,
               batch_size: int = 64) -> tuple[float, float]:
    """Make `last` output a + b * output, with a and b the least-squares fit of `targets`
    on `model`'s scores of `images` (eval mode): after a loss blind to the scores' scale
    and offset (norm-in-norm), the model's scores are put back on the targets' scale. b
    keeps its sign: a model that ranks the train images backwards keeps doing so, visibly.
    Returns (a, b)."""
    model.eval()
    scores = torch.cat([model(images[i:i + batch_size].to(device)).reshape(-1).double().cpu()
                        for i in range(0, len(images), batch_size)])
    design = torch.stack((torch.ones_like(scores), scores), 1)
    a, b = torch.linalg.lstsq(design, targets.double().cpu().reshape(-1, 1)).solution.reshape(-1).tolist()
    last.weight.mul_(b)
    last.bias.mul_(b).add_(a)
    return a, b


def dihedral(x: Tensor, g: torch.Generator) -> Tensor:
    """The batch turned by a random multiple of 90 degrees, then each image mirrored
    left-right with probability 1/2, drawn from `g`: no distortion's severity depends on
    the orientation, but the scene looks new to the network."""
    x = torch.rot90(x, int(torch.randint(0, 4, (1,), generator=g)), dims=(-2, -1))
    flip = torch.rand(len(x), generator=g) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def random_crops(x: Tensor, side: int, n: int, g: torch.Generator) -> Tensor:
    """`n` random `side`-px crops of each image (the whole image where it is smaller),
    each at its own place, image-major: (B * n, C, side, side), drawn from `g`."""
    b, _, h, w = x.shape
    ch, cw = min(side, h), min(side, w)
    top = torch.randint(0, h - ch + 1, (b, n), generator=g).tolist()
    left = torch.randint(0, w - cw + 1, (b, n), generator=g).tolist()
    return torch.stack([x[k, :, i : i + ch, j : j + cw] for k in range(b)
                        for i, j in zip(top[k], left[k], strict=True)])
