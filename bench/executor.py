"""Runs one (model, defense, dataset) group of cells: builds the defended model, scores
the clean test images, attacks them at every budget, measures, and writes each cell's
record to the store as soon as it is finished (defended model -> attacks -> measures ->
results store). Where groups run is bench.scheduler's and bench.parallel's business.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bench import provenance
from bench.api import ATTACKS, DATASETS, DEFENSES, MODELS, IQASplit, NotApplicable
from bench.defense_measures import Fidelity, FidelityTally, defense_measures
from bench.examples import ExampleImage
from bench.gradients import AttackView, DefendedModel, gradient_flags
from bench.guard import Limits, cell_limits, check_interrupt
from bench.matrix import Cell, Matrix
from bench.measures import cell_metrics, certified
from bench.profile_run import GroupProfile, NoProfile
from bench.record import MEASURES, AttackViewInfo, CellRecord, CellRef, Config, DataNotes, Example, PerImage, Provenance
from bench.store import ResultsStore
from bench.workbench import OnDevice, StageError, Workbench, check_finite, check_size, score_batched, stage


def group_key(c: Cell) -> tuple[str, str, str, int, int | None]:
    """Cells with the same key share data, base model, defended model and clean scores."""
    return (c.model.name + repr(sorted(c.model.params.items())), c.defense.name + repr(sorted(c.defense.params.items())),
            c.dataset.name + repr(sorted(c.dataset.params.items())), c.seed, c.split_seed)


@dataclass
class Prepared:
    """A group's shared set-up: what each of its cells attacks and records."""

    test: IQASplit
    defended: DefendedModel
    view: AttackView
    clean: Tensor  # the defended model's scores of the clean test images
    undefended: Tensor  # the base model's, without the defense (bench.defense_measures)
    flags: list[str]  # seen on the clean images: a randomized forward pass, zero or non-finite gradients
    weights: dict[str, Any]  # where the base model's parameters came from
    fit: dict[str, Any]  # the defense's fit ({} where it does not train)
    data: DataNotes  # what loading did to both splits
    setup_seconds: float = 0.0
    profile: GroupProfile | None = None  # the layer profile (bench/profile_run.py), unless the matrix turns it off


@dataclass
class Outcome:  # what attacking and measuring one cell gave
    metrics: dict[str, float]
    flags: list[str]
    per_image: PerImage
    linf: float  # the L-inf distance the attack actually used
    example: Example | None


class Executor:
    def __init__(self, matrix: Matrix, store: ResultsStore, *, device: str = "cpu",
                 log: Callable[[str], None] = print, limits: Limits | None = None, reuse: bool = True) -> None:
        self.matrix, self.store, self.device, self.log = matrix, store, device, log
        self.limits = limits or Limits()
        self.reuse = reuse  # False: cells share nothing (`bench perf` measures what sharing saves)
        self.benches: dict[tuple[int, int | None], Workbench] = {}  # one per (seed, split seed)
        self._fidelity: Fidelity | None = None
        self._prepared: OrderedDict[tuple, Prepared] = OrderedDict()  # recent groups' set-ups
        self.model_seconds = 0.0  # time inside model forward/backward passes (bench perf)

    def fresh(self) -> None:
        """New, empty workbenches: without reuse, each group gets its own."""
        self.benches.clear()

    def bench(self, c: Cell) -> Workbench:
        """The workbench of the cell's seed: its split, its trained models, its fits."""
        key = (c.seed, c.split_seed)
        if key not in self.benches:
            self.benches[key] = Workbench(c.seed, self.device, self.matrix.batch_size, self.log,
                                          cache_defended=self.reuse, split_seed=c.split_seed)
        return self.benches[key]

    @contextmanager
    def _model_time(self) -> Iterator[None]:
        """Time in model passes and attack steps: `bench perf` tells the rest of a run from it."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.model_seconds += time.perf_counter() - t

    def pretrain(self, cells: list[Cell]) -> dict[tuple, str]:
        """Train missing base models and fit training defenses before the cells run (with
        all the cores, on one worker or here), so that no two workers train or fit the same
        one. Under the same limits as a group's set-up (training: memory; a fit: time and
        memory), so a fit that hangs or grows without bound fails only its own group.
        Returns the groups whose set-up failed, with the message their cells get."""
        ok = [c for c in cells if not {c.model.name, c.defense.name, c.dataset.name} & set(self.matrix.broken)]
        failed: dict[tuple, str] = {}
        for gkey, c in {group_key(c): c for c in ok}.items():
            what = f"set-up of {c.model.name}/{c.defense.name}/{c.dataset.name}"
            try:
                with cell_limits(what, None, self.limits.max_rss_gb):
                    self.bench(c).base_model(c.model, c.dataset)
                if self.reuse and DEFENSES.get(c.defense.name).trains():
                    with cell_limits(what, self.limits.seconds, self.limits.max_rss_gb):
                        with stage("defense", c.defense.name):
                            defense = DEFENSES.create(c.defense.name, **c.defense.params)
                        self.bench(c).defended(c.defense, defense, c.model, c.dataset)
            except NotApplicable:  # the group records its cells as skipped, with the reason
                pass
            except Exception as e:  # noqa: BLE001 - reported in the group's own cells
                check_interrupt()  # Ctrl-C turned into an exception by a library: not a failure
                failed[gkey] = message(e)
        return failed

    def fail(self, cells: list[Cell], why: str, status: str = "error") -> list[CellRecord]:
        """Record cells without running them: errors (set-up failed elsewhere) or skipped."""
        return [self._record(c, status, why) for c in cells]

    # ------------------------------------------------------------------ one group
    def run_group(self, cells: list[Cell]) -> list[CellRecord]:
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
                self.bench(first).split(first.dataset)
                self.bench(first).base_model(first.model, first.dataset)
            with cell_limits(what, self.limits.seconds, self.limits.max_rss_gb):
                prepared = self._prepare(first)
        except NotApplicable as e:
            return [self._record(c, "skipped", str(e), setup_s=time.perf_counter() - t0) for c in cells]
        except Exception as e:  # noqa: BLE001 - a failed set-up fails its own group's cells
            check_interrupt()  # Ctrl-C turned into an exception by a library: not a failure
            return [self._record(c, "error", message(e), setup_s=time.perf_counter() - t0) for c in cells]
        prepared.setup_seconds = time.perf_counter() - t0
        if self.reuse:
            self._prepared[gkey] = prepared
            while len(self._prepared) > 2:  # a defended model each: keep memory bounded
                self._prepared.popitem(last=False)
        return [self._attack_cell(c, prepared) for c in cells]

    def _prepare(self, c: Cell) -> Prepared:
        bench = self.bench(c)
        train, test = bench.split(c.dataset)
        if len(test) == 0:
            raise StageError(f"dataset '{c.dataset.name}': the test split is empty")
        base, source = bench.base_model(c.model, c.dataset)
        check_size(base, test.images[0:1])
        with stage("defense", c.defense.name):
            defense = DEFENSES.create(c.defense.name, **c.defense.params)
        model, fit_record = bench.defended(c.defense, defense, c.model, c.dataset)
        defended = DefendedModel(model, defense).eval()
        view = AttackView(defended, self.matrix.eot_samples)
        bs, dev = self.matrix.batch_size, bench.device
        torch.manual_seed(c.seed)
        with stage("defense", c.defense.name), self._model_time():
            clean = score_batched(defended, test.images, bs, dev)
            check_finite(clean, f"model '{c.model.name}' behind defense '{c.defense.name}'")
            again = score_batched(defended, test.images, bs, dev)
            undefended = clean if defense.info.kind == "none" else score_batched(base, test.images, bs, dev)
        flags = []
        if not torch.equal(clean, again):
            flags.append("randomized-forward")
        grads: list[Tensor] = []  # per-image input-gradient norms, from the same pass
        with self._model_time():
            flags += gradient_flags(view, test.images, bs, dev, grads)
        profile = GroupProfile(self.store.root, c, defended, test.images[0:2].to(dev), clean, torch.cat(grads),
                               test.names, flags) if self.matrix.profile else None
        return Prepared(test, defended, view, clean, undefended, flags, source, fit_record,
                        DataNotes(test=test.notes, train=train.notes), profile=profile)

    def _attack_cell(self, c: Cell, p: Prepared) -> CellRecord:
        t0 = time.perf_counter()
        try:
            with cell_limits(f"cell {c.label}", self.limits.seconds, self.limits.max_rss_gb):
                out = self._attack(c, p)
        except Exception as e:  # noqa: BLE001 - a failed cell is recorded, the run goes on
            check_interrupt()  # Ctrl-C turned into an exception by a library: not a failure
            return self._record(c, "error", message(e), p, seconds=time.perf_counter() - t0)
        # written outside the limits: a record is never cut short by them
        return self._record(c, "ok", "", p, out, seconds=time.perf_counter() - t0)

    def _attack(self, c: Cell, p: Prepared) -> Outcome:
        """Attack the test split batch by batch: images are never all in memory, and each
        batch is attacked, scored and measured before the next is loaded."""
        test, defended, view, clean = p.test, p.defended, p.view, p.clean
        lower_better, bs, dev = defended.model.info.lower_better, self.matrix.batch_size, self.bench(c).device
        attack = ATTACKS.create(c.attack.name, **c.attack.params)
        torch.manual_seed((c.seed * 1_000_003 + int(c.key[:8], 16)) % 2**63)
        flow = attack.info.norm == "flow"  # eps: the largest displacement in pixels (no L-inf ball, no certificate)
        eps = c.eps if flow else c.eps / 255
        if attack.learns():
            train = self.bench(c).train_split(c.dataset)
            with stage("attack", c.attack.name):
                attack.prepare(view, OnDevice(train.images, dev), eps, lower_better)
        self._fidelity = self._fidelity or Fidelity()  # built once: it loads SSIM's and PSNR's metrics
        attacked, linf, used, cert, tally = [], 0.0, 0.0, [], FidelityTally(self._fidelity)
        example = ExampleImage(clean, lower_better)
        profile = p.profile.cell(c) if p.profile else NoProfile()
        for i in range(0, len(test), bs):
            xb = test.images[i : i + bs]
            with stage("attack", c.attack.name), self._model_time():
                adv = attack(view, xb.to(dev), eps, lower_better).cpu()
            linf = max(linf, float((adv - xb).abs().max()))
            used = max(used, attack.displacement if flow else linf)  # the attack's own unit: px or image units
            if used > eps + 1e-6:
                raise StageError(f"attack '{c.attack.name}' left its budget: {attack.info.norm} {used:.5g} > {eps:.5g}")
            with stage("defense", c.defense.name), self._model_time():
                with profile.scoring(xb.to(dev), adv.to(dev), i):  # the profile reads this pass's layers
                    scores = score_batched(defended, adv, bs, dev)
                check_finite(scores, f"model '{c.model.name}' behind defense '{c.defense.name}' on attacked images")
                bounds = None if flow else defended.defense.certify(defended.model, xb.to(dev), eps)  # L-inf only
            if bounds is not None:
                cert.append(bounds.detach().reshape(-1, 2).float().cpu())
            with self._model_time():  # forward passes: not the runner's overhead (bench perf)
                profile.observe(xb.to(dev), adv.to(dev), i)
            with torch.no_grad(), torch.random.fork_rng(devices=[]):  # the attack's own draws stay as they were
                tally.add(xb, adv, defended.defense.purify(adv.to(dev)).cpu())
            attacked.append(scores)
            example.offer(i, xb, adv, scores)
        attacked_t = torch.cat(attacked)
        metrics = cell_metrics(test.mos.numpy(), clean.numpy(), attacked_t.numpy(), lower_better, *tally.means(),
                               mos_lower_better=DATASETS.get(c.dataset.name).info.mos_lower_better)
        metrics.update(defense_measures(p.undefended.numpy(), attacked_t.numpy(), tally.similarity))
        if cert:
            metrics.update(certified(torch.cat(cert), attacked_t))
        flags = list(p.flags)
        if torch.equal(attacked_t, clean):
            flags.append("no-score-change")
        per_image = PerImage(names=test.names, mos=test.mos.tolist(), clean=clean.tolist(),
                             attacked=attacked_t.tolist(),
                             extra={"undefended": p.undefended.tolist(), "similarity": tally.similarity})
        profile.save()  # before the record, as the example: a record implies its files
        shown = max(linf, 1 / 255) if flow else eps  # the example amplifies the change by 1 / (2 shown)
        return Outcome(metrics, flags, per_image, linf, example.save(self.store, c.key, test.names, shown))

    # ------------------------------------------------------------------ records
    def _record(self, c: Cell, status: str, msg: str, p: Prepared | None = None, out: Outcome | None = None, *,
                seconds: float = 0.0, setup_s: float = 0.0) -> CellRecord:
        """The cell's record, written to the store; every measure is there (NaN where it has none)."""
        m: dict[str, Any] = {**dict.fromkeys(MEASURES, math.nan), "n_images": 0}
        m.update(out.metrics if out else {})
        m["seconds"] = seconds  # this cell's own attack and measures
        # the (model, defense, dataset) group's shared set-up: data, training, clean scores
        m["setup_seconds"] = p.setup_seconds if p else setup_s
        m["linf"] = out.linf if out else math.nan
        record = CellRecord(
            key=c.key, cell=CellRef(**c.as_dict()), status=status, message=msg, metrics=m,
            config=Config(model=c.model.ident(), defense=c.defense.ident(), attack=c.attack.ident(),
                          dataset=c.dataset.ident(), eps_255=c.eps, seed=c.seed, eot_samples=c.eot_samples),
            meta=_meta(c), weights=p.weights if p else {}, fit=p.fit if p else {},
            view=AttackViewInfo.from_dict(p.view.description, "view") if p else None,
            data=p.data if p else None, example=out.example if out else None, flags=out.flags if out else [],
            per_image=out.per_image if out else None,
            provenance=Provenance.from_dict({  # claim: the matrix's roles, what the site's claim page reads
                **provenance.environment(self.device), "seed": c.seed, "matrix": self.matrix.name,
                "matrix_sha256": self.matrix.sha256, "suite": self.matrix.suite, "claim": self.matrix.claim,
                "date": provenance.now(), "duration_s": seconds}, "provenance"),
        )
        self.store.put(record)
        return record


def _meta(c: Cell) -> dict[str, Any]:
    """Each component's declared metadata and its origin (built-in, entry point with its
    distribution and version, or plugin file with its sha256): which code made the cell."""
    out = {}
    for kind, reg, spec in (("model", MODELS, c.model), ("defense", DEFENSES, c.defense),
                            ("attack", ATTACKS, c.attack), ("dataset", DATASETS, c.dataset)):
        out[kind] = reg.get(spec.name).info.to_dict() if spec.name in reg else {"name": spec.name}
        out[kind]["origin"] = reg.origin_record(spec.name)
    return out


def message(e: BaseException) -> str:
    """What a failed cell's record says: a stage's own words, or the exception and where it arose."""
    if isinstance(e, (StageError, NotApplicable)):
        return str(e)
    tb = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    where = f" at {os.path.basename(tb.filename)}:{tb.lineno}" if tb else ""
    return f"{type(e).__name__}: {e}{where}"
