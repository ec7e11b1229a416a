"""Builds what cells need, once per process: dataset splits, base models (loaded or
trained), defended models (fitted or loaded from the cache). Every cell of a
(model, defense, dataset) group shares them."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from bench.api import ATTACKS, DATASETS, DEFENSES, MODELS, Defense, FitContext, IQAModel, IQASplit, NotApplicable
from bench.errors import BenchError
from bench.matrix import Spec
from bench.measures import agreement_sign, correlations
from bench.meta import DatasetInfo, ModelInfo
from bench.store import digest
from bench.weights import cache_dir, cached_checkpoint, load_into, resolve_weights, save_checkpoint

# 2: training and fine-tuning targets oriented by the dataset's and the model's directions,
# fine-tuning targets matched to the base scores' mean and spread (was a least-squares fit)
TARGETS_VERSION = 2


class StageError(BenchError):
    """An error inside one component, named so the record says which plugin failed."""


@contextmanager
def stage(kind: str, name: str) -> Iterator[None]:
    """Re-raise anything from inside one component as a StageError naming it and where
    it came from (module, entry point or plugin file)."""
    registry = {"model": MODELS, "defense": DEFENSES, "dataset": DATASETS, "attack": ATTACKS}[kind]
    origin = registry.origin(name) if name in registry else "?"
    try:
        yield
    except (StageError, NotApplicable):
        raise
    except Exception as e:
        raise StageError(f"{kind} '{name}' ({origin}): {type(e).__name__}: {e}") from e


@torch.no_grad()
def score_batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int, device: torch.device) -> Tensor:
    out = [fn(x[i : i + batch_size].to(device)).reshape(-1).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def check_finite(scores: Tensor, what: str) -> None:
    bad = (~torch.isfinite(scores)).sum().item()
    if bad:
        raise ValueError(f"{what} returned {bad} non-finite score(s) (NaN or inf)")


@dataclass
class OnDevice:
    """The train images as an attack that learns sees them: sliced batches on the device."""

    images: Any
    device: torch.device

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: Any) -> Tensor:
        return self.images[idx].to(self.device)


def check_size(model: Any, images: Tensor) -> None:
    """Refuse images smaller than the model's declared minimum, naming both sizes."""
    need = model.info.min_size
    if min(images.shape[-2:]) < need:
        raise StageError(f"model '{model.info.name}' needs images of at least {need}x{need} pixels; "
                         f"got {tuple(images.shape[-2:])}")


def _without(spec: Spec, *keys: str) -> dict[str, Any]:
    ident = spec.ident()
    ident["params"] = {k: v for k, v in spec.params.items() if k not in keys}
    return ident


class Workbench:
    def __init__(self, seed: int, device: str = "cpu", batch_size: int = 16, log: Callable[[str], None] = print,
                 allow_train: bool = True, cache_defended: bool = True, split_seed: int | None = None) -> None:
        self.seed, self.device, self.batch_size, self.log = seed, torch.device(device), batch_size, log
        # the split's draw, where it is not the seed's (several training seeds on one split);
        # part of every cache key then, so that a model trained on another split is never reused
        self.split_seed = seed if split_seed is None else split_seed
        self._seeds = {"seed": seed, **({"split_seed": self.split_seed} if self.split_seed != seed else {})}
        self.allow_train = allow_train
        self.cache_defended = cache_defended  # off only to measure what the cache saves (bench perf)
        self._splits: dict[str, tuple[IQASplit, IQASplit]] = {}
        self._models: dict[str, tuple[IQAModel, dict[str, Any]]] = {}

    # -- data
    def split(self, ds: Spec) -> tuple[IQASplit, IQASplit]:
        key = digest(ds.ident())
        if key not in self._splits:
            with stage("dataset", ds.name):
                train, test = DATASETS.create(ds.name, **ds.params).split(self.split_seed)
                for side in (train, test):
                    side.notes = {**side.notes, "split_seed": self.split_seed}
                self._splits[key] = train, test
        return self._splits[key]

    def train_split(self, ds: Spec) -> IQASplit:
        return self.split(ds)[0]

    # -- models
    def base_model(self, spec: Spec, ds: Spec | None) -> tuple[IQAModel, dict[str, Any]]:
        """The undefended model with its parameters and where they came from."""
        data_ident = _without(ds, "n_images") if ds else None
        key = digest({"model": spec.ident(), "data": data_ident, **self._seeds, "targets": TARGETS_VERSION})
        if key in self._models:
            return self._models[key]
        with stage("model", spec.name):
            # seeded first: a model trained here starts from the same initial weights whatever
            # this process ran before (other groups, other tests)
            torch.manual_seed(self.seed)
            model = MODELS.create(spec.name, **spec.params)
            if model.info.kind == "classic":
                source: dict[str, Any] = {"source": model.info.weights}
            else:
                trained_path = cache_dir() / "models" / f"{spec.name}-{key[:16]}.pt"
                train = None
                if self.allow_train and ds is not None:
                    train = lambda: self._train(model, ds)
                source = resolve_weights(model, trained_path=trained_path, train=train, log=self.log)
            model = model.to(self.device).eval()
        self._models[key] = (model, source)
        return model, source

    def _train(self, model: IQAModel, ds: Spec) -> dict[str, Any]:
        """Train `model` on the train split; its record's test SROCC/PLCC are on the WHOLE
        test split: the checkpoint's key leaves out the run's `n_images` (the same model
        serves every subset), so a figure on the run's subset would depend on which run
        trained first (before: 32 images in a matrix run, every image with `bench train`)."""
        train = self.split(ds)[0]
        test = self.split(replace(ds, params={k: v for k, v in ds.params.items() if k != "n_images"}))[1]
        ds_info = DATASETS.get(ds.name).info
        targets = mos_on_model_scale(train.mos, ds_info, model.info)

        def views() -> tuple[IQASplit, Tensor] | None:
            more = DATASETS.create(ds.name, **ds.params).training_views(train)
            return None if more is None else (more, mos_on_model_scale(more.mos, ds_info, model.info))

        ctx = FitContext(train=train, targets=targets, seed=self.seed, device=self.device, log=self.log, views=views)
        torch.manual_seed(self.seed)
        model.to(self.device)
        with fit_threads():
            model.fit(ctx)
        model.eval()
        pred = score_batched(model, test.images, self.batch_size, self.device).numpy()
        check_finite(torch.from_numpy(pred), f"model '{model.info.name}' after training")
        srocc, plcc = correlations(pred, test.mos.numpy(), model.info.lower_better, ds_info.mos_lower_better)
        return {"dataset": ds.name, "dataset_params": _without(ds, "n_images")["params"], "split": "train",
                "n_train": len(train), **self._seeds, "params": {k: v for k, v in model.params.items()},
                "test_srocc": srocc, "test_plcc": plcc, "n_test": len(test), "mos_name": ds_info.mos_name, "n_views": 0, **ctx.record}

    # -- defenses
    def defended(self, spec: Spec, defense: Defense, model_spec: Spec, ds: Spec) -> tuple[IQAModel, dict[str, Any]]:
        """Transform a copy of the base model; fit it (or load the cached fit)."""
        base, source = self.base_model(model_spec, ds)
        with stage("defense", spec.name):
            model = defense.transform(copy.deepcopy(base))
            if not defense.trains():
                return model.eval(), defense.provenance()
            key = digest({"model": model_spec.ident(), "weights": source.get("sha256") or source,
                          "defense": spec.ident(), "data": _without(ds, "n_images"), **self._seeds,
                          "targets": TARGETS_VERSION})
            path = cache_dir() / "defended" / f"{model_spec.name}-{spec.name.replace('+', '_')}-{key[:16]}.pt"
            record = cached_checkpoint(path) if self.cache_defended else None
            if record is not None:
                load_into(model, path, f"defense '{spec.name}' on model '{model_spec.name}'")
                return model.to(self.device).eval(), record
            self.log(f"defense '{spec.name}': fitting on model '{model_spec.name}' ({ds.name} train split)")
            train = self.train_split(ds)
            base_scores = score_batched(base, train.images, self.batch_size, self.device)
            check_finite(base_scores, f"model '{model_spec.name}' on the train split (before defense '{spec.name}')")
            ds_info = DATASETS.get(ds.name).info
            targets = mos_matched_to_scores(train.mos, base_scores, ds_info.mos_lower_better, base.info.lower_better)
            ctx = FitContext(train=train, targets=targets, seed=self.seed, device=self.device, log=self.log)
            torch.manual_seed(self.seed)
            model.to(self.device)
            with fit_threads():
                defense.fit(model, ctx)
            model.eval()
            for name, p in model.state_dict().items():
                if p.is_floating_point() and not torch.isfinite(p).all():
                    raise ValueError(f"fit left non-finite values in '{name}'; not cached")
            if self.cache_defended:
                save_checkpoint(model, path, {"defense": spec.name, "model": model_spec.name, **ctx.record})
            return model, ctx.record


@contextmanager
def fit_threads() -> Iterator[None]:
    """Every fit (a model trained here, a defense fitted) runs on all the cores' threads,
    wherever it runs: the serial run (whose torch default may be fewer, or OMP_NUM_THREADS),
    a --jobs worker (which pretrains with all of them) or a Dask client. oneDNN's gradient
    of a convolution's weights depends on the thread count (CNNIQA's conv1: 1 and 2 threads
    differ in the last bits), and a checkpoint is cached by a key without it, so otherwise
    which run trained first would decide every later run's numbers."""
    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def mos_on_model_scale(mos: Tensor, ds_info: DatasetInfo, model_info: ModelInfo) -> Tensor:
    """Training targets: the MOS range mapped linearly onto the model's score range, turned
    round where exactly one of the two counts quality downwards (a DMOS for a higher-better
    model, a MOS for a lower-better one), so that a model trained here learns the raters'
    order the right way up on every dataset."""
    m_lo, m_hi = ds_info.mos_range
    lo, hi = model_info.score_range
    quality = (mos.float() - m_lo) / (m_hi - m_lo)  # 0..1, in the dataset's direction
    if agreement_sign(model_info.lower_better, ds_info.mos_lower_better) < 0:
        quality = 1.0 - quality
    return lo + quality * (hi - lo)


def mos_matched_to_scores(mos: Tensor, scores: Tensor, mos_lower_better: bool, model_lower_better: bool) -> Tensor:
    """Fine-tuning targets on the defended model's own scale: the MOS, oriented by both
    score directions, standardised and given the mean and spread of the base model's scores
    on the same images. A least-squares fit would take its slope's sign from the model
    (a model that ranks the train split backwards would be taught to keep doing so) and
    shrink the spread by the correlation; this keeps both the direction and the scale."""
    quality = mos.double() * agreement_sign(model_lower_better, mos_lower_better)
    s = scores.double()
    spread = quality.std()
    if not (math.isfinite(spread.item()) and spread > 0 and math.isfinite(s.std().item())):
        raise ValueError("cannot map the MOS onto the model's scores (constant or non-finite MOS or scores)")
    return (s.mean() + (quality - quality.mean()) / spread * s.std()).float()
