"""Runs a matrix: cells grouped by (model, defense, dataset), each group sharing its
data, models and clean scores; every finished cell written at once to the store.

matrix -> cells -> defended model -> attacks -> measures -> results store
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from bench import provenance
from bench.api import ATTACKS, DATASETS, DEFENSES, MODELS, NotApplicable
from bench.gradients import AttackView, DefendedModel
from bench.matrix import Cell, Matrix
from bench.measures import Fidelity, cell_metrics
from bench.store import ResultsStore
from bench.workbench import StageError, Workbench, check_finite, score_batched, stage


@dataclass
class Summary:
    total: int = 0
    cached: int = 0
    status: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        st = ", ".join(f"{v} {k}" for k, v in sorted(self.status.items()))
        return f"{self.total} cells: {self.cached} already in the store, {st or 'none computed'} ({self.seconds:.1f} s)"


def group_key(c: Cell) -> tuple[str, str, str]:
    return (c.model.name + repr(sorted(c.model.params.items())), c.defense.name + repr(sorted(c.defense.params.items())),
            c.dataset.name + repr(sorted(c.dataset.params.items())))


class Runner:
    def __init__(self, matrix: Matrix, store: ResultsStore, *, device: str = "cpu", log: Callable[[str], None] = print,
                 progress: bool = True) -> None:
        self.matrix, self.store, self.device, self.log, self.progress = matrix, store, device, log, progress
        self.bench = Workbench(matrix.seed, device, matrix.batch_size, log)
        self._fidelity: Fidelity | None = None

    def pending(self) -> list[Cell]:
        return [c for c in self.matrix.cells() if self.store.get(c.key) is None]

    def run(self, jobs: int = 1) -> Summary:
        t0 = time.perf_counter()
        cells = self.matrix.cells()
        todo = self.pending()
        summary = Summary(total=len(cells), cached=len(cells) - len(todo))
        groups: dict[tuple, list[Cell]] = defaultdict(list)
        for c in todo:
            groups[group_key(c)].append(c)
        bar = _bar(len(todo), self.progress)

        def done(records: list[dict[str, Any]]) -> None:
            for r in records:
                summary.status[r["status"]] += 1
                if r["status"] == "error":
                    summary.errors.append(f"{_label(r)}: {r['message']}")
            bar.update(len(records))

        if jobs > 1 and len(groups) > 1:
            self._pretrain(todo)
            from bench.parallel import run_groups

            run_groups(self.matrix, self.store.root, list(groups.values()), jobs, self.device, done)
        else:
            for group in groups.values():
                done(self.run_group(group))
        bar.close()
        summary.seconds = time.perf_counter() - t0
        return summary

    def _pretrain(self, cells: list[Cell]) -> None:
        """Train missing base models before workers start, so no two train the same one."""
        pairs = {(repr(c.model), repr(c.dataset)): (c.model, c.dataset) for c in cells
                 if c.model.name not in self.matrix.broken and c.dataset.name not in self.matrix.broken}
        for m, ds in pairs.values():
            try:
                self.bench.base_model(m, ds)
            except Exception:
                pass  # the group reports it in its own cells

    # ------------------------------------------------------------------ one group
    def run_group(self, cells: list[Cell]) -> list[dict[str, Any]]:
        first = cells[0]
        t0 = time.perf_counter()
        broken = [n for n in (first.model.name, first.defense.name, first.dataset.name) if n in self.matrix.broken]
        try:
            if broken:
                raise StageError(f"'{broken[0]}' is not registered; {self.matrix.broken[broken[0]]}")
            prepared = self._prepare(first)
        except NotApplicable as e:
            return [self._write(c, "skipped", str(e), setup_s=time.perf_counter() - t0) for c in cells]
        except Exception as e:
            return [self._write(c, "error", _message(e), setup_s=time.perf_counter() - t0) for c in cells]
        prepared["setup_seconds"] = time.perf_counter() - t0
        return [self._attack_cell(c, prepared) for c in cells]

    def _prepare(self, c: Cell) -> dict[str, Any]:
        _, test = self.bench.split(c.dataset)
        if len(test) == 0:
            raise StageError(f"dataset '{c.dataset.name}': the test split is empty")
        base, source = self.bench.base_model(c.model, c.dataset)
        _check_size(base, test.images)
        with stage("defense", c.defense.name):
            defense = DEFENSES.create(c.defense.name, **c.defense.params)
        model, fit_record = self.bench.defended(c.defense, defense, c.model, c.dataset)
        defended = DefendedModel(model, defense).eval()
        view = AttackView(defended, self.matrix.eot_samples)
        bs, dev = self.matrix.batch_size, self.bench.device
        torch.manual_seed(self.matrix.seed)
        with stage("defense", c.defense.name):
            clean = score_batched(defended, test.images, bs, dev)
            check_finite(clean, f"model '{c.model.name}' behind defense '{c.defense.name}'")
            again = score_batched(defended, test.images, bs, dev)
        flags = []
        if not torch.equal(clean, again):
            flags.append("randomized-forward")
        flags += _gradient_flags(view, test.images, bs, dev)
        return {"test": test, "defended": defended, "view": view, "clean": clean, "flags": flags,
                "weights": source, "fit": fit_record}

    def _attack_cell(self, c: Cell, p: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        test, defended, view, clean = p["test"], p["defended"], p["view"], p["clean"]
        lower_better = defended.model.info.lower_better
        bs, dev = self.matrix.batch_size, self.bench.device
        try:
            attack = ATTACKS.create(c.attack.name, **c.attack.params)
            torch.manual_seed((self.matrix.seed * 1_000_003 + int(c.key[:8], 16)) % 2**63)
            eps = c.eps / 255
            try:
                x_adv = torch.cat([attack(view, test.images[i : i + bs].to(dev), eps, lower_better).cpu()
                                   for i in range(0, len(test), bs)])
            except Exception as e:
                raise StageError(f"attack '{c.attack.name}' ({ATTACKS.origin(c.attack.name)}): "
                                 f"{type(e).__name__}: {e}") from e
            linf = float((x_adv - test.images).abs().max())
            if linf > eps + 1e-6:
                raise StageError(f"attack '{c.attack.name}' left its budget: L-inf {linf:.5f} > eps {eps:.5f}")
            torch.manual_seed(self.matrix.seed)
            with stage("defense", c.defense.name):
                attacked = score_batched(defended, x_adv, bs, dev)
                check_finite(attacked, f"model '{c.model.name}' behind defense '{c.defense.name}' on attacked images")
            if self._fidelity is None:
                self._fidelity = Fidelity()
            psnr, ssim = self._fidelity(x_adv, test.images)
            metrics = cell_metrics(test.mos.numpy(), clean.numpy(), attacked.numpy(), lower_better, psnr, ssim)
            flags = list(p["flags"])
            if torch.equal(attacked, clean):
                flags.append("no-score-change")
            per_image = {"names": test.names, "mos": test.mos.tolist(), "clean": clean.tolist(),
                         "attacked": attacked.tolist()}
            return self._write(c, "ok", "", metrics=metrics, flags=flags, per_image=per_image, prepared=p,
                               seconds=time.perf_counter() - t0, linf=linf)
        except Exception as e:
            return self._write(c, "error", _message(e), prepared=p, seconds=time.perf_counter() - t0)

    # ------------------------------------------------------------------ records
    def _write(self, c: Cell, status: str, message: str, *, metrics: dict[str, float] | None = None,
               flags: list[str] | None = None, per_image: dict[str, list] | None = None,
               prepared: dict[str, Any] | None = None, seconds: float | None = None, setup_s: float = 0.0,
               linf: float | None = None) -> dict[str, Any]:
        seconds = 0.0 if seconds is None else seconds
        m: dict[str, Any] = {k: math.nan for k in ("srocc_clean", "srocc_attacked", "plcc_clean", "plcc_attacked",
                                                   "abs_gain", "rel_gain", "psnr", "ssim")}
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
    if isinstance(e, StageError) or isinstance(e, NotApplicable):
        return str(e)
    tb = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    where = f" at {os.path.basename(tb.filename)}:{tb.lineno}" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


def _label(r: dict[str, Any]) -> str:
    c = r["cell"]
    return f"{c['model']}/{c['defense']}/{c['attack']}@{c['eps']:g}/{c['dataset']}"


def _bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="cell", disable=not enabled or total == 0, dynamic_ncols=True)

