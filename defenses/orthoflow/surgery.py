"""Model surgery for the orthogonal-flow defense: the activation swap, the insertion of
orthogonal blocks, and pruning masks (apply for a stage, then make permanent).

Each change leaves what it did readable from the model itself, so that whoever trains or
reports on a changed model (the defense's `fit`, which may receive a model rebuilt by a
fresh `transform` and loaded from a checkpoint) needs nothing handed over beside it:
`activation_swaps(model)` and `orthogonal_after(model)` read it back. Torch only: no
dependency on the benchmark.
"""

from __future__ import annotations

import types
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import prune as torch_prune
from torch.overrides import TorchFunctionMode

from .layers import BLOCK_TYPES, BLOCKS

__all__ = [
    "ACTIVATIONS",
    "ActivationSwap",
    "activation_swaps",
    "apply_pruning",
    "blocks_run",
    "insert_orthogonal",
    "orthogonal_after",
    "remove_pruning",
    "swap_activations",
]

ACTIVATIONS: dict[str, tuple[type[nn.Module], Any]] = {
    "silu": (nn.SiLU, F.silu),
    "gelu": (nn.GELU, F.gelu),
    "elu": (nn.ELU, F.elu),
}
_RELU_INPLACE = {F.relu_, torch.relu_, Tensor.relu_}
_RELU_CALLS = {F.relu, torch.relu, Tensor.relu, *_RELU_INPLACE}


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, attr, new)


# ----------------------------------------------------------------------------- activation swap
class _ReluAs(TorchFunctionMode):
    """While active, every ReLU the code computes with is computed as `fn` instead: nn.ReLU
    (which calls F.relu), F.relu, torch.relu, x.relu() and their in-place forms, wherever
    they are written, the model's own forward included. Counts what it replaced.

    A function mode rather than graph rewriting: tracing froze functional dropout in the
    mode it was traced in (off), so fine-tuning lost it, and it could not reach a ReLU in
    the top-level forward, where an IQA model's head often computes."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn, self.calls = fn, 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func not in _RELU_CALLS:
            return func(*args, **kwargs)
        self.calls += 1
        x = args[0] if args else kwargs["input"]
        if func in _RELU_INPLACE or kwargs.get("inplace") or (len(args) > 1 and args[1]):
            return x.copy_(self.fn(x.clone()))  # in place, as the caller may rely on
        return self.fn(x)


def _forward_relu_swapped(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """The model's own forward under `_ReluAs`: bound to the instance, so that a deep copy
    of the model is bound to the copy, and the state_dict is untouched."""
    with _ReluAs(ACTIVATIONS[self.relu_computed_as][1]) as mode:
        out = type(self).forward(self, *args, **kwargs)
    self.relu_calls_last_forward = mode.calls
    return out


@dataclass(frozen=True)
class ActivationSwap:
    """What `swap_activations` changed, kept on the model as `model.activation_swap`
    (a plain attribute: not in the state_dict, copied with the model). Frozen: it describes
    the architecture, which is fixed once built, and a fresh swap of the same model gives
    the same one, so a model rebuilt and reloaded from a checkpoint reports the same."""

    activation: str
    modules: int  # nn.ReLU modules replaced by the activation's module
    functional: int | None  # other ReLU calls in one probe forward pass (None: no probe)


def swap_activations(model: nn.Module, activation: str, probe: Tensor | None = None) -> dict[str, Any]:
    """Replace ReLU by `activation` in `model`, in place: nn.ReLU modules are swapped for
    the activation's module (visible in the architecture), and every other ReLU the model
    computes with is computed as the activation, by running its forward under `_ReluAs`.
    `probe` (an input) runs one forward to count those; the count is per forward pass.
    Returns the counts, which `activation_swaps(model)` reads back later."""
    module_cls, _ = ACTIVATIONS[activation]
    swapped: set[int] = set()
    for name, m in list(model.named_modules(remove_duplicate=False)):
        if isinstance(m, nn.ReLU):
            _set_submodule(model, name, module_cls())
            swapped.add(id(m))
    model.relu_computed_as = activation
    model.forward = types.MethodType(_forward_relu_swapped, model)
    functional = None
    if probe is not None:
        with torch.no_grad():
            model(probe)
        functional = model.relu_calls_last_forward
    model.activation_swap = ActivationSwap(activation, len(swapped), functional)
    return activation_swaps(model)


def activation_swaps(model: nn.Module) -> dict[str, Any] | None:
    """{"modules": ..., "functional": ...} as `swap_activations` counted them on this
    model, or None if its activations were not swapped."""
    swap = getattr(model, "activation_swap", None)
    if not isinstance(swap, ActivationSwap):
        return None
    counts = asdict(swap)
    del counts["activation"]
    return counts


# ----------------------------------------------------------------------------- orthogonal blocks
def _then_orthogonal(conv: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
    """The forward hook that makes a conv's output pass through its orthogonal block.
    Module-level, taking the conv as its argument: a deep copy of the model copies the hook
    and it then runs the copy's block."""
    return conv.orthogonal(output)


def insert_orthogonal(model: nn.Module, where: str, kernel_size: int = 3, block: str = "cayley") -> list[str]:
    """Follow the first (or every) Conv2d by an orthogonal block (`BLOCKS[block]`);
    returns the layers changed (what `orthogonal_after(model)` reads back).

    The trained conv is kept and the orthogonal block follows it, as in the method's
    experiments that insert blocks into pretrained backbones rather than replace layers.
    The block becomes the conv's child `orthogonal`, run by a forward hook on the conv:
    the conv stays where it was, as what it was, so code that reads its attributes (CLIP
    takes the network's dtype from `visual.conv1.weight`) still finds them.
    """
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if where == "first":
        convs = convs[:1]
    for _, conv in convs:
        conv.orthogonal = BLOCKS[block](conv.out_channels, kernel_size).to(conv.weight.device, conv.weight.dtype)
        conv.register_forward_hook(_then_orthogonal)
    return [n for n, _ in convs]


def orthogonal_after(model: nn.Module) -> list[str]:
    """The layers `insert_orthogonal` followed by a block, read off the structure (each
    such conv holds its block as `orthogonal`), in module order: the list insertion returned."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and isinstance(getattr(m, "orthogonal", None), BLOCK_TYPES)]


def blocks_run(model: nn.Module, probe: Tensor) -> tuple[int, int]:
    """(blocks that ran, blocks inserted) in one forward pass on `probe`: a conv whose
    weights the model applies without calling the module (a functional conv on
    `conv.weight`) never runs its hook, and then the block changes nothing."""
    blocks = [m.orthogonal for m in model.modules()
              if isinstance(m, nn.Conv2d) and isinstance(getattr(m, "orthogonal", None), BLOCK_TYPES)]
    ran: set[int] = set()
    handles = [b.register_forward_hook(lambda m, i, o: ran.add(id(m))) for b in blocks]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    return len(ran), len(blocks)


# ----------------------------------------------------------------------------- pruning
def apply_pruning(model: nn.Module, method: str, amount: float) -> list[tuple[nn.Module, list[str]]]:
    """Prune with masks (kept while fine-tuning, so pruned weights stay zero); returns each
    pruned module with its parameter names in their original order."""
    kinds = (nn.Conv2d, nn.Linear) if method == "l1-unstructured" else (nn.Conv2d,)
    pruned = [(m, list(m._parameters)) for m in model.modules() if isinstance(m, kinds)]
    if method == "l1-unstructured":
        targets = [(m, "weight") for m, _ in pruned]
        # float(): an int amount would mean a number of weights to torch's pruning
        torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=float(amount))
    else:  # l2-structured: whole filters, layer by layer
        for m, _ in pruned:
            torch_prune.ln_structured(m, "weight", amount=float(amount), n=2, dim=0)
    return pruned


def remove_pruning(pruned: list[tuple[nn.Module, list[str]]]) -> None:
    """Make the masks permanent and give back plain `weight` parameters in their original
    order, so the state_dict matches a freshly transformed model key for key."""
    for m, order in pruned:
        torch_prune.remove(m, "weight")
        for key in order:
            m._parameters[key] = m._parameters.pop(key)
