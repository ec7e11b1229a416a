"""Runs a matrix: cells grouped by (model, defense, dataset), each group sharing its
data, models and clean scores; every finished cell written at once to the store.

matrix -> cells -> defended model -> attacks -> measures -> results store
"""

from __future__ import annotations

import io
import math
import os
import time
import traceback
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from bench import provenance
from bench.api import ATTACKS, DATASETS, DEFENSES, MODELS, NotApplicable
from bench.gradients import AttackView, DefendedModel
from bench.guard import cell_limits
from bench.matrix import Cell, Matrix
from bench.measures import Fidelity, cell_metrics
from bench.store import EXPORT_COLUMNS, ResultsStore
from bench.workbench import StageError, Workbench, check_finite, score_batched, stage


@dataclass
class Summary:
    total: int = 0
    cached: int = 0
    status: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    retried: int = 0  # cells whose earlier record was an error

    def line(self) -> str:
        st = ", ".join(f"{v} {k}" for k, v in sorted(self.status.items()))
        again = f" ({self.retried} retried after an earlier error)" if self.retried else ""
        return (f"{self.total} cells: {self.cached} already in the store, {st or 'none computed'}{again} "
                f"({self.seconds:.1f} s)")


@dataclass(frozen=True)
class Limits:
    """Per-cell limits (see bench.guard): a group's shared set-up gets the same ones."""

    seconds: float | None = 3600.0
    max_rss_gb: float | None = None


def group_key(c: Cell) -> tuple[str, str, str]:
    return (c.model.name + repr(sorted(c.model.params.items())), c.defense.name + repr(sorted(c.defense.params.items())),
            c.dataset.name + repr(sorted(c.dataset.params.items())))


class Runner:
    def __init__(self, matrix: Matrix, store: ResultsStore, *, device: str = "cpu", log: Callable[[str], None] = print,
                 progress: bool = True, limits: Limits | None = None, reuse: bool = True) -> None:
        self.matrix, self.store, self.device, self.log, self.progress = matrix, store, device, log, progress
        self.limits = limits or Limits()
        # reuse=False shares nothing between cells (data, models, fitted defenses, clean
        # scores): only `bench perf` turns it off, to measure what sharing saves
        self.reuse = reuse
        self.bench = self._workbench()
        self._fidelity: Fidelity | None = None
        self._prepared: OrderedDict[tuple, dict[str, Any]] = OrderedDict()  # recent groups' set-ups
        self.model_seconds = 0.0  # time inside model forward/backward passes (bench perf)

    def _workbench(self) -> Workbench:
        return Workbench(self.matrix.seed, self.device, self.matrix.batch_size, self.log, cache_defended=self.reuse)

    def pending(self) -> list[Cell]:
        """Cells without a record, and cells whose last try failed (a fixed plugin, a
        raised limit or a freed disk gets them computed on the next run)."""
        return [c for c in self.matrix.cells() if (r := self.store.get(c.key)) is None or r.get("status") == "error"]

    @contextmanager
    def _model_time(self) -> Iterator[None]:
        """Counts time in model forward/backward passes (and the attack's own steps), so
        that `bench perf` can say how much of a run is everything else."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.model_seconds += time.perf_counter() - t

    def groups(self, cells: list[Cell]) -> list[list[Cell]]:
        """Cells that share data, models and clean scores; one cell each without reuse."""
        if not self.reuse:
            return [[c] for c in cells]
        groups: dict[tuple, list[Cell]] = defaultdict(list)
        for c in cells:
            groups[group_key(c)].append(c)
        return list(groups.values())

    def run(self, jobs: int = 1, backend: str = "local", scheduler: str | None = None) -> Summary:
        """Every pending cell: in this process (jobs 1), on a local process pool (jobs N)
        or on an existing Dask cluster (backend "dask"); all write to the same store."""
        t0 = time.perf_counter()
        cells = self.matrix.cells()
        todo = self.pending()
        summary = Summary(total=len(cells), cached=len(cells) - len(todo))
        summary.retried = sum(1 for c in todo if self.store.path(c.key).exists())
        groups = self.groups(todo)
        bar = _bar(len(todo), self.progress)

        def done(records: list[dict[str, Any]]) -> None:
            for r in records:
                summary.status[r["status"]] += 1
                if r["status"] == "error":
                    summary.errors.append(f"{_label(r)}: {r['message']}")
            bar.update(len(records))

        if backend == "dask" or (jobs > 1 and len(todo) > 1):
            from bench.parallel import WorkerOptions, run_groups, run_groups_dask

            opts = WorkerOptions(self.matrix.path, self.store.root, self.device, self.limits, self.reuse)
            tasks = _balanced(groups, 4 * max(jobs, 2))
            if backend == "dask":
                self.pretrain(todo)  # here: the cluster's workers share the cache, not this process's memory
                run_groups_dask(opts, tasks, scheduler, done)
            else:
                run_groups(opts, tasks, jobs, done)
        else:
            for group in groups:
                if not self.reuse:
                    self.bench = self._workbench()
                done(self.run_group(group))
        bar.close()
        summary.seconds = time.perf_counter() - t0
        return summary

    def pretrain(self, cells: list[Cell]) -> None:
        """Train missing base models and fit training defenses before the cells run (with
        all the cores, on one worker or here), so that no two workers train or fit the same one."""
        ok = [c for c in cells if not {c.model.name, c.defense.name, c.dataset.name} & set(self.matrix.broken)]
        for c in {group_key(c): c for c in ok}.values():
            try:
                self.bench.base_model(c.model, c.dataset)
                if self.reuse and DEFENSES.get(c.defense.name).trains():
                    defense = DEFENSES.create(c.defense.name, **c.defense.params)
                    self.bench.defended(c.defense, defense, c.model, c.dataset)
            except Exception:  # noqa: BLE001 - the group reports it in its own cells
                pass

    # ------------------------------------------------------------------ one group
    def run_group(self, cells: list[Cell]) -> list[dict[str, Any]]:
        first = cells[0]
        t0 = time.perf_counter()
        gkey = group_key(first)
        if gkey in self._prepared:  # another part of this group ran in this process before
            self._prepared.move_to_end(gkey)
            return [self._attack_cell(c, self._prepared[gkey]) for c in cells]
        broken = [n for n in (first.model.name, first.defense.name, first.dataset.name) if n in self.matrix.broken]
        try:
            if broken:
                raise StageError(f"'{broken[0]}' is not registered; {self.matrix.broken[broken[0]]}")
            what = f"set-up of {first.model.name}/{first.defense.name}/{first.dataset.name}"
            # data and the base model are shared by many groups and may take long (a
            # dataset build, a model's training): only the memory limit applies to them
            with cell_limits(what, None, self.limits.max_rss_gb):
                self.bench.split(first.dataset)
                self.bench.base_model(first.model, first.dataset)
            with cell_limits(what, self.limits.seconds, self.limits.max_rss_gb):
                prepared = self._prepare(first)
        except NotApplicable as e:
            return [self._write(c, "skipped", str(e), setup_s=time.perf_counter() - t0) for c in cells]
        except Exception as e:
            return [self._write(c, "error", _message(e), setup_s=time.perf_counter() - t0) for c in cells]
        prepared["setup_seconds"] = time.perf_counter() - t0
        if self.reuse:
            self._prepared[gkey] = prepared
            while len(self._prepared) > 2:  # a defended model each: keep memory bounded
                self._prepared.popitem(last=False)
        return [self._attack_cell(c, prepared) for c in cells]

    def _prepare(self, c: Cell) -> dict[str, Any]:
        _, test = self.bench.split(c.dataset)
        if len(test) == 0:
            raise StageError(f"dataset '{c.dataset.name}': the test split is empty")
        base, source = self.bench.base_model(c.model, c.dataset)
        _check_size(base, test.images[0:1])
        with stage("defense", c.defense.name):
            defense = DEFENSES.create(c.defense.name, **c.defense.params)
        model, fit_record = self.bench.defended(c.defense, defense, c.model, c.dataset)
        defended = DefendedModel(model, defense).eval()
        view = AttackView(defended, self.matrix.eot_samples)
        bs, dev = self.matrix.batch_size, self.bench.device
        torch.manual_seed(self.matrix.seed)
        with stage("defense", c.defense.name), self._model_time():
            clean = score_batched(defended, test.images, bs, dev)
            check_finite(clean, f"model '{c.model.name}' behind defense '{c.defense.name}'")
            again = score_batched(defended, test.images, bs, dev)
        flags = []
        if not torch.equal(clean, again):
            flags.append("randomized-forward")
        with self._model_time():
            flags += _gradient_flags(view, test.images, bs, dev)
        return {"test": test, "defended": defended, "view": view, "clean": clean, "flags": flags,
                "weights": source, "fit": fit_record}

    def _attack_cell(self, c: Cell, p: dict[str, Any]) -> dict[str, Any]:
        """Attack the test split batch by batch: images are never all in memory, and each
        batch is attacked, scored and measured before the next is loaded."""
        t0 = time.perf_counter()
        try:
            with cell_limits(f"cell {c.label}", self.limits.seconds, self.limits.max_rss_gb):
                result = self._attack(c, p)
        except Exception as e:
            return self._write(c, "error", _message(e), prepared=p, seconds=time.perf_counter() - t0)
        # written outside the limits: a record is never cut short by them
        return self._write(c, "ok", "", prepared=p, seconds=time.perf_counter() - t0, **result)

    def _attack(self, c: Cell, p: dict[str, Any]) -> dict[str, Any]:
        test, defended, view, clean = p["test"], p["defended"], p["view"], p["clean"]
        lower_better = defended.model.info.lower_better
        bs, dev = self.matrix.batch_size, self.bench.device
        attack = ATTACKS.create(c.attack.name, **c.attack.params)
        torch.manual_seed((self.matrix.seed * 1_000_003 + int(c.key[:8], 16)) % 2**63)
        eps = c.eps / 255
        if attack.learns():
            train = self.bench.train_split(c.dataset)
            with stage("attack", c.attack.name):
                attack.prepare(view, _OnDevice(train.images, dev), eps, lower_better)
        if self._fidelity is None:
            self._fidelity = Fidelity()
        attacked, linf, psnr, ssim, cert = [], 0.0, 0.0, 0.0, []
        example = _Example(clean, lower_better)
        for i in range(0, len(test), bs):
            xb = test.images[i : i + bs]
            with stage("attack", c.attack.name), self._model_time():
                adv = attack(view, xb.to(dev), eps, lower_better).cpu()
            linf = max(linf, float((adv - xb).abs().max()))
            if linf > eps + 1e-6:
                raise StageError(f"attack '{c.attack.name}' left its budget: L-inf {linf:.5f} > eps {eps:.5f}")
            with stage("defense", c.defense.name), self._model_time():
                scores = score_batched(defended, adv, bs, dev)
                check_finite(scores, f"model '{c.model.name}' behind defense '{c.defense.name}' on attacked images")
                bounds = defended.defense.certify(defended.model, xb.to(dev), eps)
            if bounds is not None:
                cert.append(bounds.detach().reshape(-1, 2).float().cpu())
            b_psnr, b_ssim = self._fidelity(adv, xb)
            psnr, ssim = psnr + b_psnr * len(xb), ssim + b_ssim * len(xb)
            attacked.append(scores)
            example.offer(i, xb, adv, scores)
        attacked_t = torch.cat(attacked)
        metrics = cell_metrics(test.mos.numpy(), clean.numpy(), attacked_t.numpy(), lower_better,
                               psnr / len(test), ssim / len(test))
        if cert:
            metrics.update(_certified(torch.cat(cert), attacked_t))
        flags = list(p["flags"])
        if torch.equal(attacked_t, clean):
            flags.append("no-score-change")
        per_image = {"names": test.names, "mos": test.mos.tolist(), "clean": clean.tolist(),
                     "attacked": attacked_t.tolist()}
        shown = example.save(self.store, c.key, test.names, eps)
        return {"metrics": metrics, "flags": flags, "per_image": per_image, "linf": linf, "example": shown}

    # ------------------------------------------------------------------ records
    def _write(self, c: Cell, status: str, message: str, *, metrics: dict[str, float] | None = None,
               flags: list[str] | None = None, per_image: dict[str, list] | None = None,
               prepared: dict[str, Any] | None = None, seconds: float | None = None, setup_s: float = 0.0,
               linf: float | None = None, example: dict[str, Any] | None = None) -> dict[str, Any]:
        seconds = 0.0 if seconds is None else seconds
        # every measure an ok cell has, NaN where this one has none: records stay uniform
        m: dict[str, Any] = {k: math.nan for k in EXPORT_COLUMNS[EXPORT_COLUMNS.index("srocc_clean"):]}
        m["n_images"] = 0
        m.update(metrics or {})
        m["seconds"] = seconds  # this cell's own attack and measures
        # the (model, defense, dataset) group's shared set-up: data, training, clean scores
        m["setup_seconds"] = prepared["setup_seconds"] if prepared else setup_s
        m["linf"] = linf if linf is not None else math.nan
        view = prepared["view"].description if prepared else {}
        record = {
            "key": c.key,
            "cell": c.as_dict(),
            "config": {"model": c.model.ident(), "defense": c.defense.ident(), "attack": c.attack.ident(),
                       "dataset": c.dataset.ident(), "eps_255": c.eps, "seed": c.seed, "eot_samples": c.eot_samples},
            "meta": _meta(c),
            "weights": prepared["weights"] if prepared else {},
            "fit": prepared["fit"] if prepared else {},
            "view": view,
            "data": prepared["test"].notes if prepared else {},
            "example": example or {},
            "status": status,
            "message": message,
            "metrics": m,
            "flags": flags or [],
            "per_image": per_image or {},
            "provenance": {**provenance.environment(self.device), "seed": c.seed, "matrix": self.matrix.name,
                           "matrix_sha256": self.matrix.sha256, "suite": self.matrix.suite,
                           "date": provenance.now(), "duration_s": seconds},
        }
        self.store.put(record)
        return record


def _meta(c: Cell) -> dict[str, Any]:
    out = {}
    for kind, reg, spec in (("model", MODELS, c.model), ("defense", DEFENSES, c.defense),
                            ("attack", ATTACKS, c.attack), ("dataset", DATASETS, c.dataset)):
        out[kind] = reg.get(spec.name).info.to_dict() if spec.name in reg else {"name": spec.name}
    return out


class _OnDevice:
    """The train images as an attack that learns sees them: sliced batches on the device."""

    def __init__(self, images: Any, device: torch.device) -> None:
        self.images, self.device = images, device

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: Any) -> Tensor:
        return self.images[idx].to(self.device)


class _Example:
    """The image of a cell whose score the attack moved most, kept for the site: the
    clean image, the attacked one and the perturbation amplified to the full range."""

    def __init__(self, clean: Tensor, lower_better: bool) -> None:
        self.clean, self.sign = clean, -1.0 if lower_better else 1.0
        self.best: tuple[float, int, Tensor, Tensor, float] | None = None

    def offer(self, start: int, x: Tensor, adv: Tensor, scores: Tensor) -> None:
        shift = self.sign * (scores - self.clean[start : start + len(x)])
        j = int(torch.argmax(shift))
        if self.best is None or float(shift[j]) > self.best[0]:
            self.best = (float(shift[j]), start + j, x[j].clone(), adv[j].clone(), float(scores[j]))

    def save(self, store: Any, key: str, names: list[str], eps: float) -> dict[str, Any]:
        if self.best is None:
            return {}
        _, idx, x, adv, score = self.best
        amplified = (0.5 + (adv - x) / (2 * eps)).clamp(0, 1)
        files = {}
        for part, img in (("clean", x), ("attacked", adv), ("perturbation", amplified)):
            arr = (img.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype("uint8")
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")
            files[part] = store.put_asset(key, f"{part}.png", buf.getvalue())
        return {"name": names[idx], "index": idx, "clean_score": float(self.clean[idx]), "attacked_score": score,
                "files": files}


def _certified(bounds: Tensor, attacked: Tensor) -> dict[str, float]:
    """What a certified defense guarantees at this eps, beside what the attack reached.
    An interval with an infinite end guarantees nothing: it is counted as vacuous, and
    the means are over the finite (informative) intervals only (NaN where none is)."""
    lo, hi = bounds[:, 0], bounds[:, 1]
    finite = torch.isfinite(lo) & torch.isfinite(hi)
    inside = ((attacked >= lo - 1e-6) & (attacked <= hi + 1e-6)).float()

    def mean(t: Tensor) -> float:
        return float(t[finite].mean()) if finite.any() else math.nan

    return {"cert_vacuous": float((~finite).float().mean()), "cert_lo_mean": mean(lo), "cert_hi_mean": mean(hi),
            "cert_width_mean": mean(hi - lo), "cert_attacked_inside": float(inside.mean())}


def _gradient_flags(view: AttackView, x: Tensor, bs: int, dev: torch.device) -> list[str]:
    """AutoAttack-style checks on the attack's view: zero or non-finite input gradients."""
    zero = nonfinite = 0
    for i in range(0, len(x), bs):
        xb = x[i : i + bs].to(dev).requires_grad_(True)
        try:
            (g,) = torch.autograd.grad(view(xb).sum(), xb)
        except RuntimeError:  # no graph at all: every gradient is zero
            zero += len(xb)
            continue
        flat = g.flatten(1)
        nonfinite += int((~torch.isfinite(flat)).any(1).sum())
        zero += int((flat == 0).all(1).sum())
    flags = []
    if zero:
        flags.append(f"zero-gradients({zero}/{len(x)})")
    if nonfinite:
        flags.append(f"nonfinite-gradients({nonfinite}/{len(x)})")
    return flags


def _check_size(model: Any, images: Tensor) -> None:
    need = model.info.min_size
    if min(images.shape[-2:]) < need:
        raise StageError(f"model '{model.info.name}' needs images of at least {need}x{need} pixels; "
                         f"got {tuple(images.shape[-2:])}")


def _message(e: BaseException) -> str:
    if isinstance(e, (StageError, NotApplicable)):
        return str(e)
    tb = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    where = f" at {os.path.basename(tb.filename)}:{tb.lineno}" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


def _balanced(groups: list[list[Cell]], n_tasks: int) -> list[list[Cell]]:
    """Groups cut into about `n_tasks` tasks of similar size, so that workers stay busy
    to the end; a worker that gets several parts of one group sets it up once."""
    total = sum(len(g) for g in groups)
    size = max(1, -(-total // n_tasks))
    return [g[i : i + size] for g in groups for i in range(0, len(g), size)]


def _label(r: dict[str, Any]) -> str:
    c = r["cell"]
    return f"{c['model']}/{c['defense']}/{c['attack']}@{c['eps']:g}/{c['dataset']}"


def _bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="cell", disable=not enabled or total == 0, dynamic_ncols=True)

