"""The layer profile in a run: what the executor calls, once per (model, defense, dataset,
seed) group at set-up and per batch of each cell (bench/profile.py has the mathematics,
bench/profile_store.py the files).

Profiling reads the model and changes no measure: its passes start from their own random
state and give the caller's back, its hooks on the run's own scoring pass return nothing,
and where it fails (a layer it cannot read) the failure is written into the profile and the
cells run on as they would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from bench import opnorm, profile_store
from bench.profile import DIGITS, NORMED, PROFILE_VERSION, Probe, floats, random_like
from bench.store import digest

if TYPE_CHECKING:
    from bench.matrix import Cell


class GroupProfile:
    """A group's profile: its layers and their operator norms, its input-gradient norms
    (written at once), and a `CellProfile` per cell."""

    seconds = 0.0  # what profiling cost this process, all groups together (the 10% check)

    def __init__(self, root: str | Path, c: Cell, defended: nn.Module, first: Tensor, clean: Tensor,
                 grad_norms: Tensor, names: list[str], flags: list[str]) -> None:
        t0 = time.perf_counter()
        self.root, self.defended, self.error = root, defended, ""
        # the run's scoring pass can be read only where the same images give the same outputs
        self.deterministic = not defended.defense.info.randomized and "randomized-forward" not in flags
        self.group = digest({"model": c.model.ident(), "defense": c.defense.ident(), "dataset": c.dataset.ident(),
                             "seed": c.seed, "split": getattr(c, "split_seed", None), "eot": c.eot_samples,
                             "profile": PROFILE_VERSION})[:24]
        self.probe = Probe(defended.model, defended, c.seed)
        try:
            layers = self._layers(first)
        except Exception as e:  # noqa: BLE001 - recorded in the profile; the cells do not depend on it
            layers, self.error = [], _message(e)
        self.layer_names = [lay["name"] for lay in layers]
        profile_store.write(root, self.group, profile_store.GROUP_FILE, {
            "profile_version": PROFILE_VERSION, "seed": c.seed, "error": self.error,
            "cell": {"model": c.model.name, "defense": c.defense.name, "dataset": c.dataset.name},
            "config": {"model": c.model.ident(), "defense": c.defense.ident(), "dataset": c.dataset.ident()},
            "layers": layers, "names": list(names), "clean_range": [float(clean.min()), float(clean.max())],
            "gradients": {"l1": floats(grad_norms[:, 0]), "l2": floats(grad_norms[:, 1])}})
        GroupProfile.seconds += time.perf_counter() - t0

    def _layers(self, first: Tensor) -> list[dict[str, Any]]:
        """The layers in the order they run, from one pass over the first images, each with
        its operator norm at the input it saw there."""
        self.probe.clean(first, -1)  # -1: not a slice of the split, so never kept
        modules, layers = dict(self.defended.model.named_modules()), []
        for depth, name in enumerate(self.probe.order):
            kind, x = self.probe.kinds[name], self.probe.inputs.get(name)
            norm, how = opnorm.spectral_norm(modules[name], x) if kind in NORMED and x is not None else (None, "")
            layers.append({"depth": depth, "name": name, "kind": kind, "opnorm_method": how,
                           "input_shape": list(x.shape[1:]) if x is not None else [],
                           "opnorm": None if norm is None else float(f"{norm:.{DIGITS}g}")})
        return layers

    def cell(self, c: Cell) -> CellProfile:
        return CellProfile(self, c)


class CellProfile:
    """One cell's amplifications, batch by batch; saved before the cell's record."""

    def __init__(self, group: GroupProfile, c: Cell) -> None:
        self.group, self.c, self.error = group, c, group.error
        self.parts: list[Tensor] = []  # (2, layers, batch) each: adversarial, random
        self.adversarial: dict[int, Tensor] = {}  # read off the run's scoring pass, by batch

    @contextmanager
    def scoring(self, x: Tensor, adv: Tensor, start: int) -> Iterator[None]:
        """Around the run's scoring of the attacked batch `adv` (of the clean `x`, the
        split's images from `start`): its layers are read there instead of in a pass of
        the profile's own, for a deterministic defended model."""
        t0, hooks = time.perf_counter(), self.group.probe.hook_seconds
        watch = found = None
        if not self.error and self.group.deterministic:
            try:
                watch = self.group.probe.watching(x, adv, start)
                found = watch.__enter__()
            except Exception as e:  # noqa: BLE001 - recorded in the profile; the cell does not depend on it
                watch, self.error = None, _message(e)
        setup = time.perf_counter() - t0
        try:
            yield
        finally:
            t1 = time.perf_counter()
            if watch is not None:
                watch.__exit__(None, None, None)
                if found:
                    self.adversarial[start] = found[0]
            GroupProfile.seconds += setup + time.perf_counter() - t1 + self.group.probe.hook_seconds - hooks

    def observe(self, x: Tensor, adv: Tensor, start: int) -> None:
        """The batch of images from index `start` and their attacked versions (on the
        model's device): the random control's pass, and the attacked images' where the
        scoring pass could not be read."""
        if self.error:
            return
        t0 = time.perf_counter()
        seed = (self.group.probe.seed * 1_000_003 + int(self.c.key[:8], 16) + start) % 2**63  # the control's draw
        try:
            control = random_like(adv - x, x, seed)
            if start in self.adversarial:
                (rnd,) = self.group.probe.run(x, [control], start)
                self.parts.append(torch.stack([self.adversarial.pop(start), rnd]))
            else:
                self.parts.append(self.group.probe.run(x, [adv, control], start))
        except Exception as e:  # noqa: BLE001 - recorded in the profile; the cell does not depend on it
            self.error = _message(e)
        GroupProfile.seconds += time.perf_counter() - t0

    def save(self) -> None:
        ratios = torch.cat(self.parts, dim=2) if self.parts and not self.error else None
        profile_store.write(self.group.root, self.group.group, self.c.key, {
            "profile_version": PROFILE_VERSION, "key": self.c.key, "attack": self.c.attack.name, "eps": self.c.eps,
            "error": self.error, "layers": self.group.layer_names if ratios is not None else [],
            "adversarial": floats(ratios[0]) if ratios is not None else [],
            "random": floats(ratios[1]) if ratios is not None else []})


class NoProfile:
    """A cell's profile where the matrix turns it off: every call does nothing."""

    @contextmanager
    def scoring(self, x: Tensor, adv: Tensor, start: int) -> Iterator[None]:
        yield

    def observe(self, x: Tensor, adv: Tensor, start: int) -> None:
        pass

    def save(self) -> None:
        pass


def _message(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"
