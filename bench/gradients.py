"""How attacks see a model and a defense: the adaptive views.

Attacks differentiate an `AttackView`, built by the executor from declared metadata only:
- a defense that is not differentiable is crossed with BPDA (Athalye et al., ICML 2018,
  https://arxiv.org/abs/1802.00420): its real output on the forward pass, its declared
  surrogate (often the identity) on the backward pass;
- a randomized defense is attacked with EOT: the view averages the score over N draws,
  so its gradient is the average gradient;
- a model whose forward pass has no useful gradient differentiates its
  `gradient_forward` (e.g. straight-through rounding, below).
Evaluation never uses the view: attacked images are scored by the real defended model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.checkpoint import checkpoint

_ROUNDING = {torch.round, torch.Tensor.round, torch.floor, torch.Tensor.floor, torch.ceil, torch.Tensor.ceil}


class StraightThroughRounding(TorchFunctionMode):
    """Inside this context, rounding keeps its value but passes the gradient unchanged.

    Metrics such as PIQE round the input to 8 bits first, which makes their input
    gradient exactly zero; this is the straight-through estimator (Bengio et al., 2013)
    applied to those calls only, without editing the metric's code.
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _ROUNDING and not kwargs and len(args) == 1 and isinstance(args[0], Tensor):
            x = args[0]
            if x.requires_grad:
                return x + (out - x).detach()
        return out


def bpda(x: Tensor, forward: Any, surrogate: Any) -> Tensor:
    """Value of `forward(x)`, gradient of `surrogate(x)`."""
    with torch.no_grad():
        y = forward(x)
    s = surrogate(x)
    return s + (y - s).detach()


class DefendedModel(nn.Module):
    """The model behind its defense, as it is evaluated: purify, then score."""

    def __init__(self, model: nn.Module, defense: Any) -> None:
        super().__init__()
        self.model = model
        self.defense = defense

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self.defense.purify(x))


class AttackView(nn.Module):
    """The differentiable function that attacks optimise against."""

    def __init__(self, defended: DefendedModel, eot_samples: int = 8) -> None:
        super().__init__()
        self.defended = defended
        d, m = defended.defense.info, defended.model.info
        self.draws = eot_samples if d.randomized else 1
        parts = []
        if not d.differentiable:
            parts.append(f"bpda({d.surrogate})")
        if d.randomized:
            parts.append(f"eot({self.draws})")
        if not m.differentiable:
            parts.append(f"model:{m.gradient_surrogate or 'none'}")
        self.summary = "+".join(parts) or "direct"
        self.description = {
            "summary": self.summary,
            "bpda_surrogate": d.surrogate if not d.differentiable else None,
            "eot_samples": self.draws if d.randomized else None,
            "model_gradient": m.gradient_surrogate if not m.differentiable else "autograd",
        }

    def forward(self, x: Tensor) -> Tensor:
        if self.draws == 1:
            return self._draw(x)
        # Each draw is checkpointed: the backward pass recomputes it from the same RNG state
        # (same noise, same crop: the same gradient) instead of keeping N graphs alive at
        # once. Without this, PGD with 8 draws on randomized smoothing (8 copies a draw)
        # held 64 CNNIQA graphs, several GB; it costs one more forward pass a draw.
        total = 0.0
        for _ in range(self.draws):
            if torch.is_grad_enabled() and x.requires_grad:
                total = total + checkpoint(self._draw, x, use_reentrant=False, preserve_rng_state=True)
            else:
                total = total + self._draw(x)
        return total / self.draws

    def _draw(self, x: Tensor) -> Tensor:
        defense, model = self.defended.defense, self.defended.model
        z = defense.purify(x) if defense.info.differentiable else bpda(x, defense.purify, defense.surrogate)
        return model.gradient_forward(z)


def gradient_flags(view: AttackView, x: Tensor, bs: int, dev: torch.device,
                   norms: list[Tensor] | None = None) -> list[str]:
    """AutoAttack-style checks on the attack's view of the clean images `x`: images whose
    input gradient is zero everywhere, or not finite somewhere (flags in every cell).
    `norms`, where given, gets each batch's per-image (L1, L2) norms of that gradient: the
    layer profile's input sensitivity, at no cost beyond this pass (a norm does not depend
    on the score's sign, so the direction attacks push in needs no flip here)."""
    zero = nonfinite = 0
    for i in range(0, len(x), bs):
        xb = x[i : i + bs].to(dev).requires_grad_(True)
        try:
            (g,) = torch.autograd.grad(view(xb).sum(), xb)
        except RuntimeError:  # no graph at all: every gradient is zero (counted below)
            g = torch.zeros_like(xb)
        flat = g.flatten(1)
        if norms is not None:
            norms.append(torch.stack([flat.abs().sum(1), flat.norm(dim=1)], 1).detach().double().cpu())
        nonfinite += int((~torch.isfinite(flat)).any(1).sum())
        zero += int((flat == 0).all(1).sum())
    flags = []
    if zero:
        flags.append(f"zero-gradients({zero}/{len(x)})")
    if nonfinite:
        flags.append(f"nonfinite-gradients({nonfinite}/{len(x)})")
    return flags
