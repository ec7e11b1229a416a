"""DnCNN, the learned Gaussian denoiser that `dncnn` (purification) and `denoised-smoothing`
(certified) put in front of the model (not a plugin: discovery skips `_` modules).

Zhang, Zuo, Chen, Meng and Zhang, "Beyond a Gaussian Denoiser: Residual Learning of Deep
CNN for Image Denoising", IEEE TIP 26(7), 2017, https://arxiv.org/abs/1608.03981.
Written from the paper: a first 3x3 convolution with ReLU, depth - 2 blocks of 3x3
convolution, batch normalization and ReLU, a last 3x3 convolution back to the image's
channels; residual learning: the network estimates the noise v = y - x of a noisy image y
and the denoiser returns y - R(y), trained with the mean squared error between R(y) and v.
As in the authors' own PyTorch code (github.com/cszn/DnCNN, TrainingCodes/dncnn_pytorch):
orthogonal initialization, no bias in the convolutions that feed batch normalization or
the output, batch normalization's epsilon 1e-4, Adam at lr 1e-3, 40 px patches augmented
by the eight turns and mirrors.

Deviations, and why: depth 5 and width 24 by default (the paper: 17 or 20 layers of 64
channels) and 4 epochs of one patch per train image in batches of 16 (the paper: 50 epochs
on 400 to 4,744 images, batches of 128), so that a fit on the embedded train split (793
images, 96 px) takes under a minute on 2 CPU cores (55 s measured, the cores shared) and an
attack through it stays affordable: every step of every attack, and under smoothing every
noisy copy, differentiates through the denoiser. The last convolution starts at zero, so
the denoiser starts as the identity: with the authors' orthogonal initialization
throughout, 75 steps left it worse than the identity on train images (MSE 0.0038 against
the noisy images' 0.0033), with this start better (0.0018). The loss is the mean, not half
the sum, of squared errors (Adam is insensitive to that scale); noisy images are clipped to [0, 1], since that is the domain the
denoiser sees at evaluation (attacked images are clipped), and the residual target is
the clipped noise; batch normalization keeps torch's momentum (the authors use 0.95).
Both depth and width are parameters.

A published denoiser loads through the defense's `weights` parameter: a state_dict of this
DnCNN at the same depth and width (torch.save or safetensors, read weights_only), loaded in
`fit` instead of training, its path and sha256 recorded in the fit's record. bench/ has no
`--weights` mechanism for defenses (the command line's `--weights` is a model's), so this is
the way in; other architectures have their own module (Real-ESRGAN's RRDBNet: `_rrdbnet.py`).
The fit is cached by the defense's parameters, path included, not by the file's content:
give a changed file a new path.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.api import (
    CheckpointError,
    Field,
    FitContext,
    IQAModel,
    Params,
    dihedral,
    file_sha256,
    random_crops,
    read_checkpoint,
    train_loop,
)


class DenoiserParams(Params):
    """The denoiser's architecture and its fit, shared by the defenses that use it."""

    depth: int = Field(5, ge=2, le=30, description="convolution layers (the paper: 17, or 20 for blind denoising)")
    width: int = Field(24, ge=1, le=256, description="feature channels of the hidden layers (the paper: 64)")
    epochs: int = Field(4, ge=1, description="passes over the train split, one random patch of each image a pass")
    lr: float = Field(1e-3, gt=0, le=0.1, description="Adam learning rate (the authors' PyTorch code: 1e-3)")
    batch_size: int = Field(16, ge=2, description="patches per training step (the paper: 128)")
    patch: int = Field(40, ge=8, description="side of the random training patches, px (the paper: 40)")
    weights: str = Field("", description="a state_dict of this DnCNN (same depth and width) to load instead of "
                         "training it; '': trained here on the train split")


class DnCNN(nn.Module):
    """Residual-learning denoiser: y - R(y), R estimating the noise of y."""

    def __init__(self, depth: int, width: int, channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width, eps=1e-4), nn.ReLU()]
        layers.append(nn.Conv2d(width, channels, 3, padding=1, bias=False))
        self.body = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' initialization (orthogonal convolutions, zero biases, BN at identity)
        but the last convolution at zero: the denoiser starts as the identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.orthogonal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
        nn.init.zeros_(self.body[-1].weight)

    def forward(self, y: Tensor) -> Tensor:
        return y - self.body(y)


def new_denoiser(depth: int, width: int) -> DnCNN:
    """A DnCNN initialized from a fixed seed, leaving the caller's random state alone: a
    defense's `transform` is deterministic and draws nothing from the run's generator (its
    fit re-initializes it from the run's seed anyway). In eval mode: batch normalization on
    its running statistics wherever it is used before a fit switches it to training."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return DnCNN(depth, width).eval()


class DenoisedModel(IQAModel):
    """The base model behind the denoiser, clipped to [0, 1] between them: the base model's
    metadata; differentiable wherever the base model is (attacks go through the denoiser)."""

    def __init__(self, base: IQAModel, denoiser: DnCNN) -> None:
        super().__init__()
        self.base, self.denoiser = base, denoiser
        self.info = base.info  # direction, score range, sizes: the base model's
        self.params = base.params

    def forward(self, x: Tensor) -> Tensor:
        return self.base(self.denoiser(x).clamp(0, 1))

    def gradient_forward(self, x: Tensor) -> Tensor:
        return self.base.gradient_forward(self.denoiser(x).clamp(0, 1))


def denoiser_of(model: nn.Module) -> DnCNN:
    """The DnCNN inside a model a denoising defense's `transform` returned."""
    found = next((m for m in model.modules() if isinstance(m, DnCNN)), None)
    if found is None:
        raise TypeError(f"{type(model).__name__} holds no DnCNN: fit the model the defense's transform returned")
    return found


def noisy(x: Tensor, sigma: float, blind: bool) -> Tensor:
    """x with Gaussian noise of standard deviation sigma (blind: drawn uniformly in [0, sigma]
    per image, as the paper's blind DnCNN-B is trained), clipped to [0, 1]; draws from
    torch's global generator, which the training loop seeds."""
    s = sigma * (torch.rand(len(x), 1, 1, 1, device=x.device, dtype=x.dtype) if blind else 1.0)
    return (x + s * torch.randn_like(x)).clamp(0, 1)


def fit_denoiser(denoiser: DnCNN, ctx: FitContext, *, name: str, sigma: float, blind: bool, p: dict[str, Any]) -> None:
    """Train `denoiser` on random patches of ctx.train's images (its targets are not used)
    with the noise `noisy` adds, through the one training loop; or load `p["weights"]`.
    Deterministic given ctx.seed: the initialization, patch draws and noise all come from it.
    Records the denoising error against the identity on the first 32 train images."""
    ctx.record.update(sigma=sigma, blind=blind, depth=p["depth"], width=p["width"], patch=p["patch"])
    if p["weights"]:
        load_denoiser(denoiser, p["weights"], name)
        ctx.record.update(source="local file", path=p["weights"], sha256=file_sha256(p["weights"]))
    else:
        devices = [ctx.device.index or 0] if ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(ctx.seed)
            denoiser.reset_parameters()

        def augment(x: Tensor, g: torch.Generator) -> Tensor:
            return dihedral(random_crops(x, p["patch"], 1, g), g)

        def loss(x: Tensor, _targets: Tensor) -> Tensor:
            y = noisy(x, sigma, blind)
            return F.mse_loss(denoiser.body(y), y - x)

        train_loop(denoiser, ctx, loss, kind="defense", name=name, epochs=p["epochs"], lr=p["lr"],
                   batch_size=p["batch_size"], augment=augment, freeze_bn=False)
        ctx.record["source"] = "trained here"
    ctx.record.update(denoising_mse(denoiser, ctx.train.images[:32], sigma, blind, ctx.seed))


@torch.no_grad()
def denoising_mse(denoiser: DnCNN, x: Tensor, sigma: float, blind: bool, seed: int) -> dict[str, float]:
    """Mean squared error to the clean images of the noisy images and of their denoised
    version, one fixed noise draw (seeded, the caller's random state kept). Leaves the
    denoiser in eval mode (batch normalization on its running statistics, left unchanged)."""
    denoiser.eval()
    device = next(denoiser.parameters()).device
    x = x.to(device)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed + 1)
        y = noisy(x, sigma, blind)
    return {"mse_noisy": float(F.mse_loss(y, x)), "mse_denoised": float(F.mse_loss(denoiser(y).clamp(0, 1), x))}


def load_denoiser(denoiser: DnCNN, path: str, name: str) -> None:
    """A state_dict of this DnCNN, read weights_only (or from safetensors)."""
    state = read_checkpoint(path)
    for key in ("params", "state_dict", "model"):  # the usual wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"defense '{name}': weights '{path}' are not a state_dict")
    try:
        denoiser.load_state_dict({k.removeprefix("module."): v for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"defense '{name}': weights '{path}' do not fit DnCNN(depth, width) as given "
                              f"({first[:200]})") from None
