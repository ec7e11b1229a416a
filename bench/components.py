"""The component base classes (models, defenses, attacks, datasets) and the data they
exchange; kept apart from `bench.api`, which re-exports them beside the registries and helpers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bench.images import LazyImages
from bench.meta import AttackInfo, DatasetInfo, DefenseInfo, ModelInfo
from bench.params import Parametrized, check

ScoreFn = Callable[[Tensor], Tensor]


# ----------------------------------------------------------------------------- data
@dataclass
class IQASplit:
    """Images in [0, 1], (N, 3, H, W), with their opinion scores. `images` is a tensor
    (small sets) or a `LazyImages` that decodes on demand (real datasets): users only
    slice it (`images[i:i+b]`, `images[idx]`) and take its len()."""

    images: Tensor | LazyImages
    mos: Tensor  # (N,), on the dataset's MOS scale
    names: list[str]
    refs: list[str]  # reference image of each distorted image: splits never share one
    # What loading did to the files, counted into every cell's record: e.g.
    # {"skipped": 2, "skipped_files": [...], "converted": {"L->RGB": 3}}.
    notes: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, idx: list[int]) -> IQASplit:
        images = self.images.take(idx) if isinstance(self.images, LazyImages) else self.images[idx]
        return IQASplit(images, self.mos[idx], [self.names[i] for i in idx], [self.refs[i] for i in idx],
                        dict(self.notes))

    def concat(self, other: IQASplit) -> IQASplit:
        """Both splits' images, this one's first (in-memory images only); notes of both."""
        if isinstance(self.images, LazyImages) or isinstance(other.images, LazyImages):
            raise TypeError("IQASplit.concat joins in-memory images only")
        return IQASplit(torch.cat([self.images, other.images]), torch.cat([self.mos, other.mos]),
                        self.names + other.names, self.refs + other.refs, {**self.notes, **other.notes})


@dataclass
class FitContext:
    """What a learned model or a training defense may use while fitting."""

    train: IQASplit
    # Training targets on the model's own score scale and direction: for a model trained
    # here, the MOS range mapped onto its score range; for a defense's fit, the MOS given
    # the undefended model's mean and spread. Both are turned round where the dataset and
    # the model count quality in opposite directions, so fitting any model needs no rescaling.
    targets: Tensor
    seed: int
    device: torch.device
    log: Callable[[str], None] = print
    record: dict[str, Any] = field(default_factory=dict)  # what the fit reports
    # The dataset's training views of the train references with their targets, drawn on
    # demand (`IQADataset.training_views`); None where the dataset makes none.
    views: Callable[[], tuple[IQASplit, Tensor] | None] | None = None

    def with_views(self) -> FitContext:
        """This context with the dataset's training views added to `train` and `targets`
        (the same record, so the fit reports into it), or itself where the dataset makes
        none. For models trained here from scratch on a few scenes (`bench.augment`);
        the record says how many views were added and which, 0 where none."""
        got = self.views() if self.views is not None else None
        if got is None:
            self.record["n_views"] = 0
            return self
        views, targets = got
        self.record.update(n_views=len(views), views=views.notes.get("views", "dataset's training views"))
        return replace(self, train=self.train.concat(views), targets=torch.cat([self.targets, targets]), views=None)


# ----------------------------------------------------------------------------- parameters
def _checked(kind: str, cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """`params` over the class's defaults, checked against its declaration (`bench.params`):
    a component built directly, not through a registry, is held to the same contract."""
    name = getattr(getattr(cls, "info", None), "name", None) or cls.__qualname__
    return check(kind, name, cls, params)


# ----------------------------------------------------------------------------- models
class IQAModel(Parametrized, nn.Module):
    """An IQA model: images in [0, 1], (B, 3, H, W) -> scores, (B,)."""

    info: ClassVar[ModelInfo]
    defaults: ClassVar[dict[str, Any]] = {}  # derived from `Params` where a model declares it

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self.params = _checked("model", type(self), params)

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def gradient_forward(self, x: Tensor) -> Tensor:
        """What attacks differentiate. Same value as forward; overridden where the
        forward pass has no useful gradient (declared in `info.gradient_surrogate`)."""
        return self(x)

    # Learned models implement these two; classic ones leave them alone.
    def fit(self, ctx: FitContext) -> None:
        raise NotImplementedError(f"model '{self.info.name}' cannot be trained here")

    @classmethod
    def pretrained_weights(cls) -> str | None:
        """Path of published weights present on this machine, if any."""
        return None

    def load_weights(self, path: str) -> None:
        """Load a checkpoint given as `weights`: a state_dict of this model (or of its `net`),
        read weights_only. Override where a release stores more than the state (e.g. a
        map onto the MOS scale beside it)."""
        from bench.weights import load_into

        load_into(self, path, f"model '{self.info.name}'")

    @classmethod
    def published_files(cls) -> list[dict[str, Any]]:
        """The published files this model reads when given no `weights` ("url", "path",
        "present", "bytes" each), known without building it: for `bench weights` and the
        check before a run. Default: none."""
        return []

    def weights_source(self) -> dict[str, Any] | None:
        """Where the parameters came from when the model loaded them itself while being
        built (pyiqa's zoo: several published files), with "source", "path", "sha256";
        None (the default): the runner gives it its weights."""
        return None


# ----------------------------------------------------------------------------- defenses
class Defense(Parametrized):
    """A defense: any of transform (architecture), fit (training), purify (input).

    The runner attacks `purify` through `surrogate` when `info.differentiable` is False
    (BPDA) and averages over draws when `info.randomized` is True (EOT).
    """

    info: ClassVar[DefenseInfo]
    defaults: ClassVar[dict[str, Any]] = {}  # derived from `Params` where a defense declares it

    def __init__(self, **params: Any) -> None:
        self.params = _checked("defense", type(self), params)

    def transform(self, model: IQAModel) -> IQAModel:
        """Change the architecture (deterministic, no data). Raise NotApplicable with a
        reason where the model cannot be transformed. Default: unchanged."""
        return model

    def fit(self, model: IQAModel, ctx: FitContext) -> None:
        """Train the transformed model in place on ctx.train. Default: nothing."""

    def provenance(self) -> dict[str, Any]:
        """What a defense that does not train read from outside (a published weights file:
        path, URL, sha256), recorded as its cells' fit part: every number traces to the
        files it used. Called once per group; a defense that trains records this in `fit`'s
        record instead. Default: nothing."""
        return {}

    def purify(self, x: Tensor) -> Tensor:
        """Input transform applied before the model at evaluation time."""
        return x

    def surrogate(self, x: Tensor) -> Tensor:
        """Differentiable stand-in for `purify` on the backward pass (BPDA)."""
        return x

    def certify(self, model: IQAModel, x: Tensor, eps: float) -> Tensor | None:
        """Certified defenses: per image, the (low, high) score interval that any
        perturbation of L-inf size `eps` is guaranteed to stay in, as a (B, 2) tensor.
        The runner records it beside the empirical result. Default: no certificate."""
        return None

    @classmethod
    def trains(cls) -> bool:
        return cls.fit is not Defense.fit


# ----------------------------------------------------------------------------- attacks
class Attack(Parametrized):
    """An attack pushes scores in the model's "better" direction within an L-inf ball
    (or, where `info.norm` is "flow", moving pixels by at most eps pixels).

    Subclasses implement `perturb(objective, x, eps)`, where `objective(x)` is, per
    image, the quantity to raise (the score, sign-flipped for lower-better models).
    The base class owns the chores: direction, clamping, checking the budget.
    """

    info: ClassVar[AttackInfo]
    defaults: ClassVar[dict[str, Any]] = {}  # derived from `Params` where a attack declares it
    # Flow attacks (info.norm == "flow") set it in `perturb`: the largest displacement they
    # applied, in pixels; `__call__` and the runner check it against eps.
    displacement: float | None = None

    def __init__(self, **params: Any) -> None:
        self.params = _checked("attack", type(self), params)

    def perturb(self, objective: ScoreFn, x: Tensor, eps: float) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def fit(self, objective: ScoreFn, train: Tensor, eps: float) -> None:
        """Attacks that learn from data (a universal perturbation) learn here, once per
        cell, from the train split of the cell's dataset, before any `perturb`.
        `train` supports len() and slicing into (B, 3, H, W) batches. Default: nothing."""

    @classmethod
    def learns(cls) -> bool:
        return cls.fit is not Attack.fit

    def prepare(self, score: ScoreFn, train: Tensor, eps: float, lower_better: bool) -> None:
        """The runner's door to `fit`: the same direction handling as `__call__`."""
        sign = -1.0 if lower_better else 1.0
        self.fit(lambda z: sign * score(z), train, eps)

    def __call__(self, score: ScoreFn, x: Tensor, eps: float, lower_better: bool) -> Tensor:
        flow = self.info.norm == "flow"  # eps in pixels of displacement, not a ball around x
        if not (0 < eps <= 1 or (flow and 0 < eps < float("inf"))):
            raise ValueError(f"attack '{self.info.name}': eps {eps} must be in (0, 1] (image units)"
                             if not flow else f"attack '{self.info.name}': eps {eps} px must be positive")
        sign = -1.0 if lower_better else 1.0
        x = x.detach()

        def objective(z: Tensor) -> Tensor:
            return sign * score(z)

        self.displacement = None
        x_adv = self.perturb(objective, x, eps).detach()
        if flow:  # its images cannot be projected onto a flow budget: the attack reports what it used
            if self.displacement is None or not self.displacement <= eps + 1e-6:
                raise ValueError(f"attack '{self.info.name}' left its budget: displacement {self.displacement} px "
                                 f"> eps {eps} px (a flow attack sets `displacement` in perturb)")
            return x_adv.clamp(0, 1)
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
        return x_adv


# ----------------------------------------------------------------------------- datasets
class IQADataset(Parametrized):
    """A dataset gives a deterministic train/test split by reference image."""

    info: ClassVar[DatasetInfo]
    defaults: ClassVar[dict[str, Any]] = {}  # derived from `Params` where a dataset declares it

    def __init__(self, **params: Any) -> None:
        self.params = _checked("dataset", type(self), params)

    def split(self, seed: int) -> tuple[IQASplit, IQASplit]:  # pragma: no cover - abstract
        raise NotImplementedError

    def training_views(self, train: IQASplit) -> IQASplit | None:
        """More training images made from `train`'s references alone (never a test one's),
        for models trained here from scratch (`FitContext.with_views`): e.g. the embedded
        set's random crops of its full-resolution photographs, freshly distorted and scored.
        None: the dataset makes none (a real dataset's train split is what it has)."""
        return None
