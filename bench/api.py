"""The public contract of the benchmark: everything a plugin may import.

A plugin (a model, attack, defense or dataset) subclasses one of the base classes here,
declares its metadata in `info` and its parameters in a nested `Params` (each with its
type, range or choices, default and a one-line help; see `bench.params`), and registers
itself with the matching decorator. Plugins never import the runner, the store or the site.

    from bench.api import Defense, DefenseInfo, Field, Params, register_defense

    @register_defense
    class Blur(Defense):
        info = DefenseInfo(name="blur", kind="purification", reference="https://...")

        class Params(Params):
            sigma: float = Field(1.0, gt=0, le=10, description="standard deviation of the blur, px")

        def purify(self, x):
            ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from bench import registry

# Every module imported here must not import a plugin (nor bench.api at import time):
# plugins import this module, so that would be a cycle. The file-dataset helpers live in
# bench.datasets and import this module: they are imported on first use (`__getattr__`).
from bench.errors import BenchError, CheckpointError, NotApplicable, WeightsMissingError, quoted, warn
from bench.gradients import StraightThroughRounding
from bench.images import MIN_SIDE, ImageError, LazyImages, check_image, load_image
from bench.meta import AttackInfo, DatasetInfo, DefenseInfo, ModelInfo
from bench.params import Field, Odd, ParamError, Parametrized, Params, check, model_validator
from bench.progress import note, progress, training_step
from bench.registry import Registry
from bench.store import atomic_write
from bench.training import finetune, require_trainable, train_loop  # the one training loop
from bench.weights import cache_dir

if TYPE_CHECKING:
    from bench.datasets.files import (
        FileDataset,
        FileIndex,
        Layout,
        ScoreFileError,
        numbers,
        present,
        pyiqa_fr,
        pyiqa_nr,
        read_csv,
        read_excel,
        read_mat,
        table,
    )
    from bench.datasets.roots import DataRootError, env_var, find_root
    from bench.datasets.sampling import split_groups, stratified

# The names with a comment are what built-in plugins use beyond the base classes: a plugin,
# built in or third-party, imports nothing from the project but this module. The file-
# dataset helpers among them (from bench.datasets, listed in `_LAZY`) are imported on first
# use, see `__getattr__`.
__all__ = [
    "ATTACKS",
    "DATASETS",
    "DEFENSES",
    "MIN_SIDE",  # the smallest image side (px) a dataset uses; smaller files are skipped
    "MODELS",
    "Attack",
    "AttackInfo",
    "BenchError",  # an error shown as one line, `error: ...`, with its `exit_code`: subclass it
    "CheckpointError",  # a weights file that cannot be loaded safely or does not fit the model
    "DataRootError",  # a data root missing, malformed or not holding the dataset; exit 2
    "DatasetInfo",
    "Defense",
    "DefenseInfo",
    "Field",  # pydantic's Field: a parameter's default, range (ge, gt, le, lt) and description (help)
    "FileDataset",  # base of datasets read from files under a root: declare `layouts`
    "FileIndex",  # the files under folders, found by relative path or base name, case-insensitively
    "FitContext",
    "IQADataset",
    "IQAModel",
    "IQASplit",
    "ImageError",  # a file that cannot be used as an image (named in the message)
    "Layout",  # one way a dataset lies under its root: the paths it needs, a reader to a table
    "LazyImages",
    "ModelInfo",
    "NotApplicable",
    "Odd",  # Annotated[int, Odd]: a parameter that must be odd (a kernel size with a centre tap)
    "ParamError",  # a parameter refused by its declaration (one line; a MatrixError and a ValueError)
    "Params",  # base of a component's nested parameter declaration (pydantic, strict, no unknown keys)
    "ScoreFileError",  # a score file (or the images it lists) not in the official format; exit 2
    "StraightThroughRounding",  # torch function mode: rounding keeps its value, passes the gradient
    "WeightsMissingError",  # a learned model's weights are not here (it is never run with random ones)
    "atomic_write",  # write a (cache) file whole or not at all: temporary file, fsync, rename
    "cache_dir",  # the cache folder for built data and fitted things: $BENCH_CACHE (~/.cache/iqa-bench)
    "check_image",  # open (and decode) one file: the conversion load_image applies, or ImageError
    "create_attack",
    "create_dataset",
    "create_defense",
    "create_model",
    "env_var",  # the environment variable holding a dataset's root: BENCH_DATA_<NAME>
    "find_root",  # (root, where it was configured) for a dataset name; (None, places looked)
    "finetune",
    "load_image",
    "model_validator",  # pydantic's: a rule on several parameters, raising ValueError with one line
    "note",  # ctx.log(message) while progress bars are on screen, without breaking them
    "numbers",  # scores as float64; the first that is not a number is reported with its line
    "present",  # the first alternative of a layout's need ("a/|b/") present under a root
    "progress",  # a progress bar for a long step (data build, training): tqdm, off with --no-progress
    "pyiqa_fr",  # the Layout of pyiqa's meta-info CSV for a full-reference set
    "pyiqa_nr",  # the Layout of pyiqa's meta-info CSV for a no-reference set
    "quoted",  # a name from a file or the command line, quoted for a one-line message
    "read_csv",  # pandas.read_csv; a bad file or a missing column reported by dataset and path
    "read_excel",  # pandas.read_excel (openpyxl), errors reported like read_csv's
    "read_mat",  # one variable of a MATLAB file, reported by name when absent
    "register_attack",
    "register_dataset",
    "register_defense",
    "register_model",
    "require_trainable",
    "split_groups",  # the test side's mask: whole groups (references) drawn with the seed
    "stratified",  # one image from each of n equal-count MOS strata (keeps the score spread)
    "table",  # the readers' common table: name, image, mos, ref, ref_image
    "train_loop",  # the one training loop of models (fit) and defenses (finetune is its defense form)
    "training_step",  # the name of a model's training bar: "model 'x': training, epoch 1/2"
    "warn",  # one `warning: ...` line on stderr, for something worked around (a file skipped)
]

# Imported on first use, from modules that import this one (see `__getattr__`).
_LAZY = {
    "bench.datasets.files": ("FileDataset", "FileIndex", "Layout", "ScoreFileError", "numbers", "present",
                             "pyiqa_fr", "pyiqa_nr", "read_csv", "read_excel", "read_mat", "table"),
    "bench.datasets.roots": ("DataRootError", "env_var", "find_root"),
    "bench.datasets.sampling": ("split_groups", "stratified"),
}

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
    """An attack pushes scores in the model's "better" direction within an L-inf ball.

    Subclasses implement `perturb(objective, x, eps)`, where `objective(x)` is, per
    image, the quantity to raise (the score, sign-flipped for lower-better models).
    The base class owns the chores: direction, clamping, checking the budget.
    """

    info: ClassVar[AttackInfo]
    defaults: ClassVar[dict[str, Any]] = {}  # derived from `Params` where a attack declares it

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
        if not 0 < eps <= 1:
            raise ValueError(f"attack '{self.info.name}': eps {eps} must be in (0, 1] (image units)")
        sign = -1.0 if lower_better else 1.0
        x = x.detach()

        def objective(z: Tensor) -> Tensor:
            return sign * score(z)

        x_adv = self.perturb(objective, x, eps).detach()
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


# ----------------------------------------------------------------------------- registries
MODELS: Registry[type[IQAModel]] = registry.MODELS  # defined in bench.registry (see there)
ATTACKS: Registry[type[Attack]] = registry.ATTACKS
DEFENSES: Registry[type[Defense]] = registry.DEFENSES
DATASETS: Registry[type[IQADataset]] = registry.DATASETS

register_model = MODELS.register
register_attack = ATTACKS.register
register_defense = DEFENSES.register
register_dataset = DATASETS.register


def _loaded() -> None:
    from bench.plugins import load_plugins  # late: the plugins it loads import this module

    load_plugins()


def create_model(name: str, **params: Any) -> IQAModel:
    _loaded()
    return MODELS.create(name, **params)


def create_attack(name: str, **params: Any) -> Attack:
    _loaded()
    return ATTACKS.create(name, **params)


def create_defense(name: str, **params: Any) -> Defense:
    _loaded()
    return DEFENSES.create(name, **params)


def create_dataset(name: str, **params: Any) -> IQADataset:
    _loaded()
    return DATASETS.create(name, **params)


def __getattr__(name: str) -> Any:
    """The file-dataset names, imported on first use: their modules import bench.api (and
    pandas), so importing them here at the top would be a cycle (PEP 562)."""
    import importlib

    for module, names in _LAZY.items():
        if name in names:
            value = getattr(importlib.import_module(module), name)
            globals()[name] = value
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
