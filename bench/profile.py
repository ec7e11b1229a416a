"""Where sensitivity enters: a layer-by-layer amplification profile of a defended model.

For a clean image x, a perturbation d and each layer l along the network, in the order it
runs them,

    amplification_l = (||a_l(x + d) - a_l(x)|| / ||a_l(x)||) / (||d|| / ||x||),

the perturbation's share of the layer's output over its share of the input: about 1
where the network so far passes a perturbation on in proportion (a norm-preserving flow,
the claim of the orthogonal method), above 1 where it amplifies it. It is measured with
forward hooks, for the perturbations each cell's attack found (no second attack) and, as a
control, a random perturbation of the same L2 norm per image: an amplification that
only the adversarial direction finds is the network's weak direction, one that random
noise finds too is its gain. Operator norms (bench/opnorm.py) say what each layer could
amplify at most, and the input gradient's norms at the clean images estimate the local
Lipschitz constant without any attack. In a run: bench/profile_run.py; files:
bench/profile_store.py.

Layers are the model's modules but its root and plain containers (Sequential,
ModuleList, ModuleDict): convolutions, linear layers, other layers with parameters of
their own (an orthogonal block, a normalisation), activation modules, and blocks (a module
with such layers inside, unless it holds all of them: a wrapper), named as in the module
tree, with the model's input after the defense ("input", depth 0) and its score last. A
module called several times in one pass is measured over all its calls together; an
output without the batch as its first axis is not measured (NaN).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from bench import opnorm, profile_store

PROFILE_VERSION = "1"
INPUT, SCORE = "(input)", "(score)"  # no module can be named so: "(" never starts an attribute
NORMED = ("conv", "linear", "layer")  # the kinds whose operator norm is measured
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
DIGITS = 7  # significant digits kept in the files: far below the spread over images
PROBE_BYTES = 256 * 2**20  # layer outputs a clean pass may keep at once (CNNIQA at 384 px: ~57 MB an image)
CACHE_BYTES = 256 * 2**20  # clean passes kept for the group's next cells (the quick matrix's CNNIQA: ~100 MB)


def layer_kind(module: nn.Module) -> str | None:
    """What a module is on the profile, or None where it is not a layer of its own."""
    if opnorm.self_reported(module):
        return "layer"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, CONTAINERS):
        return None
    if any(layer_kind(m) for m in module.children()):
        return "block"
    if next(module.parameters(recurse=False), None) is not None:
        return "layer"
    return "activation" if type(module).__module__ == "torch.nn.modules.activation" else None


def select_layers(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(name, module, kind) of every profiled module, in module-tree order."""
    found = [(n, m, k) for n, m in model.named_modules() if n and "parametrizations" not in n.split(".")
             and (k := layer_kind(m))]
    atoms = {id(m) for _, m, k in found if k != "block"}
    return [(n, m, k) for n, m, k in found
            if k != "block" or not atoms <= {id(d) for d in m.modules()}]  # a wrapper of everything repeats the score


@dataclass
class Clean:
    """A clean pass over some images: each layer's outputs (one per call) and their squared
    norms per image, what every perturbed pass over the same images is compared with."""

    outputs: dict[str, list[Tensor]]
    squares: dict[str, Tensor]
    size: int  # images

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for ts in self.outputs.values() for t in ts)


class Probe:
    """Forward hooks on a model's layers, run over the defended model `forward`. The clean
    pass over a slice of images is kept (up to CACHE_BYTES) and serves every cell of the
    group; a cell's attacked images are read from the run's own scoring pass where it can
    (`watching`), so that a cell costs one pass of its own: the random control's."""

    def __init__(self, model: nn.Module, forward: Callable[[Tensor], Any], seed: int) -> None:
        self.model, self.forward, self.seed = model, forward, seed
        self.layers = select_layers(model)
        self.kinds = {INPUT: profile_store.INPUT_KIND, SCORE: profile_store.SCORE_KIND,
                      **{n: k for n, _, k in self.layers}}
        self.order: list[str] = []  # names in the order the first clean pass ran them
        self.inputs: dict[str, Tensor] = {}  # first image of each layer's first input (operator norms)
        self.bytes_per_image = 0.0  # what a clean pass keeps per image, from the first one
        self.cache: dict[int, Clean] = {}  # clean passes by the index of their first image
        self.hook_seconds = 0.0  # time inside the hooks (on `watching`'s passes: the profile's share of them)

    def run(self, x: Tensor, perturbed: list[Tensor], start: int) -> Tensor:
        """Amplification per (perturbed batch, layer of `self.order`, image) of the batch
        `x`, whose first image is the split's `start`-th, as many images a pass as fit in
        PROBE_BYTES."""
        parts = []
        for off, clean in self._cleans(x, start):
            xs = x[off : off + clean.size]
            parts.append(torch.stack([self.compare(clean, xs, p[off : off + clean.size], start + off)
                                      for p in perturbed])
                         if perturbed else torch.empty(0, len(self.order), clean.size, dtype=torch.float64))
        return torch.cat(parts, dim=2)

    @contextmanager
    def watching(self, x: Tensor, z: Tensor, start: int) -> Iterator[list[Tensor]]:
        """While the caller runs the model on z, the perturbed x (the run's own scoring of
        the attacked images), its layers are compared with x's clean pass: the list yielded
        gets z's amplification (layers, images), with no pass of its own. It stays empty
        where the clean passes of x are not kept (they would not fit): run() then."""
        found: list[Tensor] = []
        offsets = range(0, len(x), self._step(len(x)))
        kept = sum(c.nbytes for c in self.cache.values())
        if any(start + o not in self.cache for o in offsets) and kept + self.bytes_per_image * len(x) > CACHE_BYTES:
            yield found
            return
        cleans = self._cleans(x, start)
        num, visit = self._distances(cleans, len(z))
        errors: list[BaseException] = []
        handles = self._hooks(len(z), visit, errors=errors)
        try:
            yield found
        finally:
            for h in handles:
                h.remove()
        if not errors:
            squares = {n: torch.cat([c.squares[n] for _, c in cleans]) for n in self.order
                       if all(n in c.squares for _, c in cleans)}
            found.append(self._ratios(num, squares, x, z))

    def clean(self, x: Tensor, start: int) -> Clean:
        """The clean pass; the first one fixes the layers' order (the input first: the root's
        pre-hook runs before any layer; the score last: the root's hook runs after all)."""
        outputs: dict[str, list[Tensor]] = {}
        squares: dict[str, Tensor] = {}
        discover = not self.order

        def keep(name: str, flat: Tensor) -> None:
            if discover and name not in self.order:
                self.order.append(name)
            outputs.setdefault(name, []).append(flat)
            squares[name] = squares.get(name, 0) + flat.double().pow(2).sum(1)

        self._pass(x, start, keep, discover)
        out = Clean(outputs, squares, len(x))
        if discover:
            self.bytes_per_image = out.nbytes / len(x)
        return out

    def compare(self, clean: Clean, x: Tensor, z: Tensor, start: int) -> Tensor:
        """(layers, images): each layer's relative change from `clean` (the pass over x) to
        z over the input's; NaN where a layer did not run or gave no per-image output."""
        num, visit = self._distances([(0, clean)], len(z))
        self._pass(z, start, visit)
        return self._ratios(num, clean.squares, x, z)

    def _step(self, n: int) -> int:
        return max(1, int(PROBE_BYTES // self.bytes_per_image)) if self.bytes_per_image else n

    def _cleans(self, x: Tensor, start: int) -> list[tuple[int, Clean]]:
        """x's clean passes, a slice each, from the cache or run now (and kept if they fit)."""
        out = []
        for off in range(0, len(x), self._step(len(x))):
            clean = self.cache.get(start + off)
            if clean is None:
                clean = self.clean(x[off : off + self._step(len(x))], start + off)
                if sum(c.nbytes for c in self.cache.values()) + clean.nbytes <= CACHE_BYTES:
                    self.cache[start + off] = clean
            out.append((off, clean))
        return out

    def _distances(self, cleans: list[tuple[int, Clean]], b: int) -> tuple[dict[str, Tensor], Callable]:
        """A visitor adding up each image's squared distance to its clean output, per layer."""
        num: dict[str, Tensor] = {}
        calls: dict[str, int] = {}

        def distance(name: str, flat: Tensor) -> None:
            k = calls[name] = calls.get(name, -1) + 1
            for off, clean in cleans:
                ref = clean.outputs.get(name, [])
                if k < len(ref) and ref[k].shape[1:] == flat.shape[1:]:
                    part = (flat[off : off + clean.size] - ref[k]).double().pow(2).sum(1)
                    num.setdefault(name, torch.zeros(b, dtype=torch.float64, device=flat.device))
                    num[name][off : off + clean.size] += part

        return num, distance

    def _ratios(self, num: dict[str, Tensor], squares: dict[str, Tensor], x: Tensor, z: Tensor) -> Tensor:
        rel_in = (z - x).flatten(1).double().norm(dim=1) / x.flatten(1).double().norm(dim=1)
        nan = torch.full_like(rel_in, float("nan"))
        return torch.stack([(num[n] / squares[n]).sqrt() / rel_in if n in num and n in squares else nan
                            for n in self.order]).cpu()

    def _hooks(self, b: int, visit: Callable[[str, Tensor], None], discover: bool = False,
               errors: list[BaseException] | None = None) -> list[Any]:
        """Hooks handing each per-image output (batch `b` first) to `visit`. A layer's own
        output: its hook runs before any other (prepend), e.g. one that passes a conv's
        output on through a block the conv holds; the input and the score as the model's
        forward gets and gives them, after everyone else's hooks. Each returns None: a
        hook's value would replace the output. Given `errors`, a hook that fails puts its
        error there and lets the pass go on (hooks on someone else's pass); the time the
        hooks take is added to `hook_seconds`."""

        def measure(name: str, out: Any) -> None:
            t0 = time.perf_counter()
            t = opnorm.first_tensor(out)
            try:
                if t is not None and t.is_floating_point() and t.dim() > 0 and t.shape[0] == b:
                    visit(name, t.detach().reshape(b, -1))
            except Exception as e:
                if errors is None:
                    raise
                errors.append(e)
            self.hook_seconds += time.perf_counter() - t0

        def hook(name: str) -> Callable[..., None]:
            def seen(module: nn.Module, args: tuple, output: Any) -> None:
                if discover and name not in self.inputs and args and isinstance(args[0], Tensor):
                    self.inputs[name] = args[0][:1].detach()
                measure(name, output)
            return seen

        def pre_hook(module: nn.Module, args: tuple) -> None:
            measure(INPUT, args)

        handles = [self.model.register_forward_pre_hook(pre_hook),
                   self.model.register_forward_hook(lambda m, a, o: measure(SCORE, o))]
        return handles + [module.register_forward_hook(hook(name), prepend=True) for name, module, _ in self.layers]

    def _pass(self, z: Tensor, start: int, visit: Callable[[str, Tensor], None], discover: bool = False) -> None:
        """One forward pass with the hooks. It starts from a random state fixed by the
        images (the same for a clean image and its perturbed versions, so a randomized
        defense draws the same noise for both) and leaves the caller's state as it was."""
        handles = self._hooks(len(z), visit, discover)
        devices = [z.device.index or 0] if z.device.type == "cuda" else []
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                torch.manual_seed((self.seed * 1_000_003 + start) % 2**63)
                self.forward(z)
        finally:
            for h in handles:
                h.remove()


def random_like(d: Tensor, x: Tensor, seed: int) -> Tensor:
    """x plus a Gaussian direction scaled to each image's ||d||_2, kept in [0, 1] as
    attacked images are (the ratio then uses the perturbation as clamped)."""
    noise = torch.randn(d.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32).to(d)
    scale = d.flatten(1).norm(dim=1) / noise.flatten(1).norm(dim=1).clamp_min(1e-12)
    return (x + noise * scale.reshape(-1, *[1] * (d.dim() - 1))).clamp(0, 1)


def floats(t: Tensor) -> list:
    """A tensor's values as nested lists of floats with DIGITS significant digits (for the files)."""
    return [float(f"{v:.{DIGITS}g}") for v in t.tolist()] if t.dim() == 1 else [floats(r) for r in t]
