"""Typed metadata that every component declares beside its code.

The runner reads it to choose how each defense is attacked (EOT, BPDA, straight-through)
and the site reads it, copied into every result record, to label the leaderboard. This
module imports nothing heavy: the site uses it without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

DEFENSE_KINDS = ("none", "architectural", "training", "purification", "certified")


@dataclass(frozen=True, kw_only=True)
class _Info:
    """What every component declares besides its own fields (always given by keyword)."""

    reference: str = ""  # the paper's link
    description: str = ""
    version: str = "1"  # bump when what the code computes changes: it is part of every cell key

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelInfo(_Info):
    name: str
    lower_better: bool
    score_range: tuple[float, float]
    kind: Literal["classic", "learned"]
    differentiable: bool
    # What stands in for the gradient where the forward pass has none (e.g. the
    # input is rounded to 8 bits): attacks differentiate `IQAModel.gradient_forward`.
    gradient_surrogate: str | None = None
    input_size: tuple[int, int] | None = None  # (H, W) it is designed for; None: any
    min_size: int = 1  # smallest side it accepts
    weights: str = "none needed"  # where the parameters come from
    # Why it cannot be run here (e.g. an LLM scored at batch size 1): listed, never silently
    # missing, and refused when a matrix names it. None: it can be run.
    unavailable: str | None = None


@dataclass(frozen=True)
class DefenseInfo(_Info):
    name: str
    kind: Literal["none", "architectural", "training", "purification", "certified"]
    randomized: bool = False
    differentiable: bool = True
    # Used on the backward pass when `differentiable` is False (BPDA): "identity" or
    # the name of what `Defense.surrogate` computes.
    surrogate: str | None = None
    # The published file a user must supply (its name, where it is published, how to give it):
    # such a defense cannot run without it, so the matrices shipped here leave it out. None: none needed.
    needs_weights: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in DEFENSE_KINDS:
            raise ValueError(f"defense {self.name!r}: kind {self.kind!r} not in {DEFENSE_KINDS}")
        if not self.differentiable and not self.surrogate:
            raise ValueError(
                f"defense {self.name!r} is not differentiable: declare `surrogate` "
                "(e.g. 'identity') so that it can be attacked with BPDA"
            )


@dataclass(frozen=True)
class AttackInfo(_Info):
    name: str
    # "flow": a spatial attack (pixels move, none is added); its eps is the largest displacement
    # in pixels, given in the matrix as is (the matrix's eps_unit is for L-inf budgets only)
    norm: Literal["Linf", "L2", "flow"] = "Linf"
    budget_unit: str = "1/255"  # eps in the matrix is in these units, on [0, 1] images ("px" for "flow")
    needs_gradients: bool = True

    def __post_init__(self) -> None:
        if (self.norm == "flow") != (self.budget_unit == "px"):
            raise ValueError(f"attack {self.name!r}: norm 'flow' and budget_unit 'px' go together "
                             f"(got norm {self.norm!r}, budget_unit {self.budget_unit!r})")


@dataclass(frozen=True)
class DatasetInfo(_Info):
    name: str
    mode: Literal["NR", "FR"] = "NR"
    mos_name: str = "MOS"  # "pseudo-MOS" where no humans rated the images
    mos_range: tuple[float, float] = (0.0, 1.0)
    mos_lower_better: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
