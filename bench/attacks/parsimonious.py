"""Parsimonious black-box attack (Moon, An, Song, "Parsimonious Black-Box Adversarial Attacks
via Efficient Combinatorial Optimization", ICML 2019, https://arxiv.org/abs/1905.06635; the
authors' code: github.com/snu-mllab/parsimonious-blackbox-attack, which this follows).

Threat model: L-inf, eps in /255 units on [0, 1] images; score queries only
(`needs_gradients=False`), at most `max_queries` objective evaluations per image, every one
counted (the clean image's and the starting point's included).

The paper's observation: an L-inf attack's optimum lies (almost always) on a vertex of the
eps-ball, so the perturbation is eps times a sign per pixel and channel, and the search is
over which blocks get +eps. The image is cut into square blocks per channel (first `grid`
blocks per side, a block flipping its sign as a unit), all start at -eps, and blocks are
visited in random mini-batches of `batch_size`. On a mini-batch, accelerated lazy greedy
local search, `max_iters` times: insertion (evaluate flipping each -eps block to +eps, flip
the best even if it lowers the objective, as the authors' code does; then pop candidates by
their last known gain and re-evaluate the top one: if it still beats the next one's stale
gain, flip it, or stop where flipping it would lower the objective; else push it back) and
deletion (the same, flipping +eps blocks back to -eps). After a pass over all blocks the
blocks are halved (down to one pixel) and the pass repeats, until the budget is spent. The
highest-objective point per image is returned (the clean image if nothing beat it).

Our changes, none to the search: the authors stop at misclassification (regression has no
such point: every image spends its budget); they run one image at a time, here every
image of the batch runs the same steps in lockstep, one model call per round for all of
them (each image keeps its own working set, gains and query count); they evaluate the
current image again at the start of each mini-batch, here its value is kept; the blocks'
order is one random permutation for all images (torch's generator, seeded per cell),
theirs one per image (numpy, seeded by the image's index). torchattacks has no
parsimonious attack and we found no maintained library that has, hence this module.

Defaults from the paper's code: max_queries=10000 (its ImageNet budget; 20,000 on CIFAR-10),
batch_size=64, max_iters=1, grid=8 (its initial blocks, 4 px on 32 px CIFAR-10 images and
32 px on ImageNet's 256 px noise grid, are both an eighth of the side).
"""

from __future__ import annotations

import heapq
import math

import torch
from torch import Tensor

from bench.api import Attack, AttackInfo, Field, Params, register_attack
from bench.attacks._common import BestPoint

_CHUNK = 64  # images per model call at most


class _Search:
    """Every image's signs, value, best point and query count, and batched evaluation."""

    def __init__(self, objective, x: Tensor, eps: float, budget: int) -> None:
        self.objective, self.x, self.eps, self.budget = objective, x, eps, budget
        self.queries = [0] * len(x)
        self.sign = -torch.ones_like(x)
        everyone = list(range(len(x)))
        self.best = BestPoint(x, self._call(x, everyone))
        self.value = self._call(self._image(everyone, self.sign), everyone)
        self.best.update(self._image(everyone, self.sign), self.value)

    def _image(self, rows: list[int], sign: Tensor) -> Tensor:
        return (self.x[rows] + self.eps * sign).clamp(0, 1)

    def _call(self, z: Tensor, rows: list[int]) -> Tensor:
        for r in rows:
            self.queries[r] += 1
        return torch.cat([self.objective(z[i : i + _CHUNK]) for i in range(0, len(z), _CHUNK)]).detach()

    def left(self, b: int) -> int:
        return self.budget - self.queries[b]

    def flipped_values(self, pairs: list[tuple[int, tuple]]) -> list[float]:
        """The objective with block (c, r, col, size) flipped, for each (image, block) pair."""
        out: list[float] = []
        for i in range(0, len(pairs), _CHUNK):
            part = pairs[i : i + _CHUNK]
            rows = [b for b, _ in part]
            sign = self.sign[rows].clone()
            for j, (_, block) in enumerate(part):
                _flip(sign[j], block)
            out += self._call(self._image(rows, sign), rows).tolist()
        return out

    def accept(self, b: int, block: tuple, value: float) -> None:
        _flip(self.sign[b], block)
        self.value[b] = value
        if value > float(self.best.value[b]):
            self.best.x[b] = self._image([b], self.sign[b : b + 1])[0]
            self.best.value[b] = value

    def is_plus(self, b: int, block: tuple) -> bool:
        c, r, col, _ = block
        return bool(self.sign[b, c, r, col] > 0)


def _flip(sign: Tensor, block: tuple) -> None:
    c, r, col, s = block
    sign[c, r : r + s, col : col + s] *= -1


def _blocks(channels: int, h: int, w: int, size: int) -> list[tuple]:
    return [(c, r, col, size) for r in range(0, h, size) for col in range(0, w, size) for c in range(channels)]


def _lazy_greedy(search: _Search, blocks: list[tuple], plus: bool) -> None:
    """One insertion (plus=False: flip -eps blocks to +eps) or deletion phase on a mini-batch,
    every image in lockstep: one batched call for the first gains, then one per round."""
    pairs, heaps = [], {}
    for b in range(len(search.x)):
        cands = [k for k, block in enumerate(blocks) if search.is_plus(b, block) == plus][: max(0, search.left(b))]
        pairs += [(b, k) for k in cands]
        heaps[b] = []
    values = search.flipped_values([(b, blocks[k]) for b, k in pairs])
    for (b, k), v in zip(pairs, values, strict=True):
        heapq.heappush(heaps[b], (-(v - float(search.value[b])), k, v))
    for b, heap in heaps.items():  # the best one goes in unconditionally, as in the authors' code
        if heap:
            _, k, v = heapq.heappop(heap)
            search.accept(b, blocks[k], v)
    active = [b for b, heap in heaps.items() if heap]
    while active:
        active = [b for b in active if heaps[b] and search.left(b) > 0]
        popped = {b: heapq.heappop(heaps[b])[1] for b in active}
        values = search.flipped_values([(b, blocks[k]) for b, k in popped.items()])
        still = []
        for (b, k), v in zip(popped.items(), values, strict=True):
            gain = v - float(search.value[b])
            if not heaps[b] or -gain <= heaps[b][0][0]:
                if gain < 0:
                    continue  # the best left would lower the objective: this image is done
                search.accept(b, blocks[k], v)
            else:
                heapq.heappush(heaps[b], (-gain, k, v))
            still.append(b)
        active = still


@register_attack
class Parsimonious(Attack):
    info = AttackInfo(
        name="parsimonious",
        norm="Linf",
        needs_gradients=False,
        reference="https://arxiv.org/abs/1905.06635",
        description="Lazy greedy search over the eps-ball's vertices, block by block, coarse to fine (black-box).",
    )

    class Params(Params):
        max_queries: int = Field(10000, ge=2, description="objective evaluations per image at most")
        batch_size: int = Field(64, ge=1, description="blocks per mini-batch of the local search")
        max_iters: int = Field(1, ge=1, description="insertion-deletion rounds per mini-batch")
        grid: int = Field(8, ge=1, description="blocks per image side to start with (then halved to one pixel)")

    @torch.no_grad()
    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        """Passes over ever smaller blocks until every image has spent its queries."""
        p = self.params
        search = _Search(objective, x, eps, int(p["max_queries"]))
        c, h, w = x.shape[1:]
        size = max(1, math.ceil(max(h, w) / int(p["grid"])))
        blocks = _blocks(c, h, w, size)
        while any(search.left(b) > 0 for b in range(len(x))):
            order = torch.randperm(len(blocks)).tolist()
            for i in range(0, len(order), int(p["batch_size"])):
                batch = [blocks[k] for k in order[i : i + int(p["batch_size"])]]
                for _ in range(int(p["max_iters"])):
                    _lazy_greedy(search, batch, plus=False)
                    _lazy_greedy(search, batch, plus=True)
                if not any(search.left(b) > 0 for b in range(len(x))):
                    break
            if size >= 2:
                size //= 2
                blocks = _blocks(c, h, w, size)
        return search.best.x
