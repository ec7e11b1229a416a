"""Generative universal perturbation (Poursaeed, Katsman, Gao, Belongie, CVPR 2018,
"Generative adversarial perturbations", https://arxiv.org/abs/1712.02328), the
`generative-uap` of the MSU metrics robustness benchmark (Antsiferova et al., AAAI 2024,
https://arxiv.org/abs/2310.06958).

Threat model: L-inf, eps in /255 units on [0, 1] images. One perturbation for all images:
a generator network maps a fixed noise tensor to a pattern; `fit` trains the generator once
per cell on the train split against the cell's model view (the runner's `prepare`), to
maximise the mean objective of (train image + eps * pattern); `perturb` adds the kept
pattern to every test image, tiled (not resized) to other sizes as `uap` does. The attacker
never sees the test images.

Generator: z ~ U[0, 1] of shape (channels, h/8, w/8) for train images of (h, w), drawn once
from torch's global generator (the runner seeds it, as it does the layers' initialisation),
then three stride-2 transposed convolutions (channels -> 64 -> 32 -> 3, ReLU between) and a
tanh; the output is cropped to (h, w) and is the pattern, in (-1, 1), applied as x + eps P.
At each epoch's end the pattern is scored on the first train batch (one forward pass) and
the best so far is kept: on PIQE the train objective rises for a few epochs and then falls
(measured: 11 -> 0 on the embedded data at 4/255), so the last pattern alone would throw a
good one away. The kept pattern is the best on train images only.

Defaults: epochs=5, batch_size=16, lr=0.0002 (Adam, betas (0.5, 0.999): the paper's),
channels=16, max_images=256. Deviations, and why: (1) the paper's generator is a ResNet
(Johnson et al.) on image-sized noise; a few transposed convolutions keep the fit to seconds
on a CPU, as a benchmark cell needs. (2) The paper rescales the output to L-inf norm eps;
here eps * tanh bounds it by construction with a smooth gradient (a rescaling by the maximum
sends the norm's gradient through one pixel). (3) Keeping the best epoch's pattern (above).
(4) No classifier loss: the objective is the IQA score pushed the better way, as in every
attack here.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bench.api import Attack, AttackInfo, Field, Params, register_attack
from bench.attacks._universal import apply, tile_to, train_batches


def generator(channels: int) -> nn.Module:
    """Noise (1, channels, s, s) -> pattern (1, 3, 8s, 8s) in (-1, 1)."""
    return nn.Sequential(
        nn.ConvTranspose2d(channels, 64, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(32, 3, 4, stride=2, padding=1), nn.Tanh(),
    )


@register_attack
class GenerativeUAP(Attack):
    info = AttackInfo(
        name="generative-uap",
        norm="Linf",
        reference="https://arxiv.org/abs/1712.02328",
        description="Universal perturbation produced by a small generator from fixed noise, trained on the train "
                    "split (Adam); eps * tanh bounds it.",
    )

    class Params(Params):
        epochs: int = Field(5, ge=1, description="passes over the train images")
        batch_size: int = Field(16, ge=1, description="train images per Adam step")
        lr: float = Field(0.0002, gt=0, description="Adam learning rate of the generator's weights")
        channels: int = Field(16, ge=1, le=256, description="channels of the fixed noise the generator maps")
        max_images: int = Field(256, ge=1, description="train images used at most (a random subset)")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.pattern: Tensor | None = None

    def fit(self, objective, train, eps: float) -> None:
        p = self.params
        steps = max(1, -(-min(len(train), p["max_images"]) // p["batch_size"]))  # Adam steps an epoch
        net: nn.Module | None = None
        best, self.pattern = -math.inf, None
        for k, xb in enumerate(train_batches(self.info.name, train, p["epochs"], p["batch_size"], p["max_images"])):
            if net is None:
                h, w = xb.shape[-2:]
                z = torch.rand(1, p["channels"], -(-h // 8), -(-w // 8)).to(xb)
                net = generator(p["channels"]).to(xb)
                opt = torch.optim.Adam(net.parameters(), lr=p["lr"], betas=(0.5, 0.999))
                probe = xb  # the first batch: each epoch's pattern is judged on it
            loss = -objective(self._attacked(xb, net(z)[..., :h, :w], eps)).mean()
            opt.zero_grad()
            loss.backward()
            for q in net.parameters():
                if q.grad is not None:
                    q.grad.nan_to_num_(0.0, 0.0, 0.0)
            opt.step()
            if (k + 1) % steps == 0:  # an epoch's end: keep the pattern if it beats the best so far
                with torch.no_grad():
                    pattern = net(z)[..., :h, :w]
                    value = float(objective(self._attacked(probe, pattern, eps)).mean())
                if self.pattern is None or value > best:
                    best, self.pattern = value, pattern.detach()

    @staticmethod
    def _attacked(x: Tensor, pattern: Tensor, eps: float) -> Tensor:
        return (x + eps * tile_to(pattern, *x.shape[-2:])).clamp(0, 1)

    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        return apply(self.info.name, self.pattern, x, eps)
