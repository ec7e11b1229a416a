"""Universal adversarial perturbation (Shumitskaya, Antsiferova, Vatolin, BMVC 2022,
"Universal perturbation attack on differentiable no-reference image- and video-quality
metrics", https://arxiv.org/abs/2211.00366).

Threat model: L-inf, eps in /255 units on [0, 1] images. One perturbation for all
images: `fit` trains it once per cell on the train split of the cell's dataset against
the cell's model view (what the runner's `prepare` passes), and `perturb` adds it to
every test image unchanged - the attacker never sees the test images.

Training: a pattern P in [-1, 1] (unit L-inf), Adam on mean objective(x + eps P) over
shuffled batches of the train images, P clipped to [-1, 1] after each step; `perturb`
returns x + eps P, so the amplitude is the cell's eps (the paper varies an amplitude in
the same way). The pattern has the train images' size; for an image of another size it
is tiled (repeated, then cropped at the top-left), not resized: resizing would change
its spatial frequencies, which are what the model responds to. (The paper trains at
256 x 256 and applies the perturbation to Full-HD video frames.)

Arguments: epochs=5, batch_size=16, lr=0.05 (Adam, pattern units), max_images=256
(train images used, a random subset; keeps the fit's cost bounded).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.api import Attack, AttackInfo, Field, Params, register_attack
from bench.attacks._universal import tile_to  # shared with cumulative-uap and generative-uap


@register_attack
class UAP(Attack):
    info = AttackInfo(
        name="uap",
        norm="Linf",
        reference="https://arxiv.org/abs/2211.00366",
        description="Universal perturbation trained on the train split (Adam), added to every test image.",
    )

    class Params(Params):
        epochs: int = Field(5, ge=1, description="passes over the train images")
        batch_size: int = Field(16, ge=1, description="train images per Adam step")
        lr: float = Field(0.05, gt=0, description="Adam learning rate, in units of the pattern (its L-inf norm is 1)")
        max_images: int = Field(256, ge=1, description="train images used at most (a random subset)")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.pattern: Tensor | None = None

    def fit(self, objective, train: Tensor, eps: float) -> None:
        p = self.params
        n = len(train)
        if n == 0:
            raise ValueError("attack 'uap': the train split is empty; a universal perturbation needs train images")
        bs = int(p["batch_size"])
        first = train[0:1]
        pattern = torch.zeros_like(first[:1], requires_grad=True)
        opt = torch.optim.Adam([pattern], lr=p["lr"])
        order = torch.randperm(n)[: min(n, int(p["max_images"]))]
        for _ in range(int(p["epochs"])):
            order = order[torch.randperm(len(order))]
            for i in range(0, len(order), bs):
                idx = order[i : i + bs].tolist()
                xb = torch.cat([train[j : j + 1] for j in idx]).to(first.device)
                loss = -objective((xb + eps * tile_to(pattern, *xb.shape[-2:])).clamp(0, 1)).mean()
                opt.zero_grad()
                loss.backward()
                if pattern.grad is not None:
                    pattern.grad.nan_to_num_(0.0, 0.0, 0.0)
                opt.step()
                with torch.no_grad():
                    pattern.clamp_(-1, 1)
        self.pattern = pattern.detach()

    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        if self.pattern is None:
            raise RuntimeError("attack 'uap' has no trained perturbation: call prepare(score, train, eps, "
                               "lower_better) on the train split before attacking (the runner does)")
        return x + eps * tile_to(self.pattern.to(x), *x.shape[-2:])
