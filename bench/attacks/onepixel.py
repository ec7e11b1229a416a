"""One-pixel attack (Su, Vargas, Sakurai, "One pixel attack for fooling deep neural
networks", IEEE Transactions on Evolutionary Computation 23(5), 2019,
https://arxiv.org/abs/1710.08864), on a regression score: a score-based black-box attack.

Threat model: L-inf, eps in /255 units on [0, 1] images, AND at most `pixels` pixel
locations changed per image. Differential evolution (Storn & Price) searches the changed
pixels: a candidate is, per pixel, its position and a value per channel; each generation
proposes mutants, and a mutant replaces its parent where it raises the objective more.
Queries only (`needs_gradients=False`): no gradient, so no defense can mask one.

The budget, honestly: in the paper a changed pixel may take any colour (an L0 attack, its
change unbounded in L-inf). That is another threat model than this benchmark's, and its
results would not be comparable with the other attacks' at the same eps. So here a changed
pixel moves by at most eps per channel: torchattacks searches each channel's value on [0, 1]
and we read that value v as the offset eps * (2 v - 1) from the clean pixel (clipped to
[0, 1]): the same search, over the pixel's part of the eps-ball. A few pixels moved by 8/255
rarely move a score much; the attack measures how local a model's sensitivity is.

Adapted from torchattacks.OnePixel, which runs the algorithm (its copy of scipy's
differential evolution, strategy best1bin, dithered mutation 0.5 to 1, crossover 1, random
initialisation, the population evaluated in one batch): its loss, the true class's
probability, is replaced by the negated score gain, and its early stop (the predicted class
changed) never fires, so every image spends all its generations (the differential
evolution's own convergence test, its values' spread below 1% of their mean less 1, cannot
pass while score gains stay below 100). Its differential evolution
draws from numpy's global generator, which nothing seeds: we seed it from torch's (which the
runner seeds per cell) for the attack and restore numpy's state afterwards. An image whose
best candidate does not beat the clean score is returned clean.

Defaults from the paper: pixels=1, steps=100 (generations), popsize=400 (candidates per
generation; torchattacks rounds it down to a multiple of the search vector's length, 5 per
pixel: 400 for one pixel), i.e. 40,400 queries per image; the standard suite runs far fewer
(see its toml).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from bench.api import Attack, AttackInfo, Field, Params, register_attack
from bench.attacks import _torchattacks


def _candidates(x: Tensor, eps: float, delta: np.ndarray, pixels: int) -> Tensor:
    """(n, 2 + C) * pixels search vectors -> n copies of the image x (1, C, H, W) with each
    vector's pixels moved by eps * (2 v - 1) per channel (clipped to [0, 1])."""
    delta = np.atleast_2d(np.asarray(delta, dtype=np.float64))
    out = x.repeat(len(delta), 1, 1, 1)
    h, w = x.shape[-2:]
    for i, vector in enumerate(delta):
        for pixel in vector.reshape(pixels, -1):
            r, c = min(int(pixel[0]), h - 1), min(int(pixel[1]), w - 1)
            offset = torch.as_tensor(eps * (2 * pixel[2:] - 1), dtype=x.dtype, device=x.device)
            out[i, :, r, c] = (x[0, :, r, c] + offset).clamp(0, 1)
    return out


@register_attack
class OnePixel(Attack):
    info = AttackInfo(
        name="one-pixel",
        norm="Linf",
        needs_gradients=False,
        reference="https://arxiv.org/abs/1710.08864",
        description="Differential evolution over a few pixels, each moved by at most eps per channel (black-box).",
    )

    class Params(Params):
        pixels: int = Field(1, ge=1, description="pixel locations changed per image")
        steps: int = Field(100, ge=1, description="generations of differential evolution")
        popsize: int = Field(400, ge=1, description="candidates per generation (about; see the module docstring)")

    @torch.no_grad()
    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        """Differential evolution per image; numpy's global generator seeded from torch's meanwhile."""
        import torchattacks

        p = self.params
        pixels = int(p["pixels"])
        model = _torchattacks.ScoreAsLogits(objective, x)
        atk = torchattacks.OnePixel(model, pixels=pixels, steps=int(p["steps"]), popsize=int(p["popsize"]))
        clean = model.ref
        current: dict[str, Tensor] = {}

        def perturb_one(image: Tensor, delta: np.ndarray) -> Tensor:
            return _candidates(image, eps, delta, pixels)

        def loss(image: Tensor, _label: Tensor, delta: np.ndarray) -> np.ndarray:
            i = current["index"]
            gain = objective(perturb_one(image, delta)) - clean[i]
            return (-gain).double().cpu().numpy()  # differential evolution minimises

        atk._perturb = perturb_one
        atk._loss = loss
        atk._attack_success = lambda *_: False  # regression: nothing to stop at
        state = np.random.get_state()
        np.random.seed(int(torch.randint(0, 2**31 - 1, (1,))))
        try:
            out = []
            for i in range(len(x)):  # torchattacks loops over images too; we need the index for the clean score
                current["index"] = i
                out.append(atk(x[i : i + 1], _torchattacks.labels_for(x[i : i + 1])))
            x_adv = torch.cat(out)
        finally:
            np.random.set_state(state)
        better = objective(x_adv) > clean
        return torch.where(better.view(-1, 1, 1, 1), x_adv, x)
