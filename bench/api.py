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

from typing import TYPE_CHECKING, Any

from bench import registry
from bench.augment import (  # what models trained from scratch share
    LOSS_HELP,
    Standardized,
    dihedral,
    fit_affine,
    random_crops,
    regression_loss,
    views_field,
)

# Every module imported here must not import a plugin (nor bench.api at import time):
# plugins import this module, so that would be a cycle. The file-dataset helpers live in
# bench.datasets and import this module: they are imported on first use (`__getattr__`).
from bench.components import (  # the base classes, defined there
    Attack,
    Defense,
    FitContext,
    IQADataset,
    IQAModel,
    IQASplit,
    ScoreFn,  # noqa: F401 - the objective attacks get, Callable[[Tensor], Tensor]; was defined here
)
from bench.download import download
from bench.errors import BenchError, CheckpointError, NotApplicable, WeightsMissingError, quoted, warn
from bench.gradients import StraightThroughRounding
from bench.images import MIN_SIDE, ImageError, LazyImages, check_image, load_image
from bench.meta import AttackInfo, DatasetInfo, DefenseInfo, ModelInfo
from bench.params import Field, Odd, ParamError, Params, model_validator
from bench.progress import note, progress, training_step
from bench.registry import Registry
from bench.store import atomic_write
from bench.training import finetune, probe_input, require_trainable, train_loop  # the one training loop
from bench.weights import cache_dir, digest_files, file_sha256, read_checkpoint, refusal

if TYPE_CHECKING:
    from bench.datasets.files import (
        FileDataset,
        FileIndex,
        Layout,
        ScoreFileError,
        numbers,
        official_sides,
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
    "LOSS_HELP",  # augment: the description of a model's `loss` parameter (regression_loss's names)
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
    "Standardized",  # targets at mean 0, spread 1 for training; fold() puts the scale back into the last layer
    "StraightThroughRounding",  # torch function mode: rounding keeps its value, passes the gradient
    "WeightsMissingError",  # a learned model's weights are not here (it is never run with random ones)
    "atomic_write",  # write a (cache) file whole or not at all: temporary file, fsync, rename
    "cache_dir",  # the cache folder for built data and fitted things: $BENCH_CACHE (~/.cache/iqa-bench)
    "check_image",  # open (and decode) one file: the conversion load_image applies, or ImageError
    "create_attack",
    "create_dataset",
    "create_defense",
    "create_model",
    "digest_files",  # one sha256 for a model's published files (the file's own when there is one)
    "dihedral",  # augment: a batch turned by k*90 degrees and mirrored at random (quality kept)
    "download",  # a published file into its cache folder (progress, atomic), or why not
    "env_var",  # the environment variable holding a dataset's root: BENCH_DATA_<NAME>
    "file_sha256",  # a file's sha256, recorded with every weights file a cell used
    "find_root",  # (root, where it was configured) for a dataset name; (None, places looked)
    "finetune",
    "fit_affine",  # augment: a last layer refitted so the scores match targets by least squares
    "load_image",
    "model_validator",  # pydantic's: a rule on several parameters, raising ValueError with one line
    "note",  # ctx.log(message) while progress bars are on screen, without breaking them
    "numbers",  # scores as float64; the first that is not a number is reported with its line
    "official_sides",  # a release's own train/val/test column, checked, for `table(official=...)`
    "present",  # the first alternative of a layout's need ("a/|b/") present under a root
    "probe_input",  # a few images a component can be run on before the real work (checks up front)
    "progress",  # a progress bar for a long step (data build, training): tqdm, off with --no-progress
    "pyiqa_fr",  # the Layout of pyiqa's meta-info CSV for a full-reference set
    "pyiqa_nr",  # the Layout of pyiqa's meta-info CSV for a no-reference set
    "quoted",  # a name from a file or the command line, quoted for a one-line message
    "random_crops",  # n random side-px crops of each image, image-major
    "read_checkpoint",  # what a checkpoint holds, read weights_only (a file with pickled objects is refused)
    "read_csv",  # pandas.read_csv; a bad file or a missing column reported by dataset and path
    "read_excel",  # pandas.read_excel (openpyxl), errors reported like read_csv's
    "read_mat",  # one variable of a MATLAB file, reported by name when absent
    "refusal",  # the one-line reason a checkpoint carrying pickled objects is not loaded, with the fix
    "register_attack",
    "register_dataset",
    "register_defense",
    "register_model",
    "regression_loss",  # augment: "norm-in-norm" (pyiqa's NiNLoss; then fit_affine) or "l1", by name
    "require_trainable",  # a fit checks the model runs in training mode first (else the cell is skipped, with why)
    "split_groups",  # the test side's mask: whole groups (references) drawn with the seed
    "stratified",  # one image from each of n equal-count MOS strata (keeps the score spread)
    "table",  # the readers' common table: name, image, mos, ref, ref_image (and official, where given)
    "train_loop",  # the one training loop of models (fit) and defenses (finetune is its defense form)
    "training_step",  # the name of a model's training bar: "model 'x': training, epoch 1/2"
    "views_field",  # augment: a model's `views` parameter (FitContext.with_views: the dataset's training views)
    "warn",  # one `warning: ...` line on stderr, for something worked around (a file skipped)
]

# Imported on first use, from modules that import this one (see `__getattr__`).
_LAZY = {
    "bench.datasets.files": ("FileDataset", "FileIndex", "Layout", "ScoreFileError", "numbers", "official_sides",
                             "present",
                             "pyiqa_fr", "pyiqa_nr", "read_csv", "read_excel", "read_mat", "table"),
    "bench.datasets.roots": ("DataRootError", "env_var", "find_root"),
    "bench.datasets.sampling": ("split_groups", "stratified"),
}


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
