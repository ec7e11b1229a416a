"""pyiqa's learned no-reference models, each a benchmark model under pyiqa's own name,
through one adapter driven by pyiqa's configuration (catalog.py) and one builder that keeps
every file it reads under our control (build.py).

What the attack sees is what a deployed model computes: pyiqa's network in eval mode, on
images in [0, 1], one score per image with gradients to the input (not pyiqa's `as_loss`,
which reduces the batch), with the network's own eval-time crops (fixed, uniform ones).
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from bench.api import (
    MODELS,
    Field,
    IQAModel,
    ModelInfo,
    NotApplicable,
    Params,
    WeightsMissingError,
    digest_files,
    register_model,
)

from .build import Built, build_network, random_weights, random_weights_on  # noqa: F401 - random_weights: for users
from .catalog import BUILT_IN, CROPS_224, ZooEntry, class_name, entries
from .manifest import files, manifest


def trained_on(entry: ZooEntry) -> str:
    """What the published weights were fitted to, as pyiqa's options name it."""
    for key in ("train_dataset", "pretrained", "regressor_dataset", "model_name", "model_type"):
        value = entry.opts.get(key)
        if isinstance(value, str):
            return value
    return "pyiqa's default (see its model card)"


class PyiqaModel(IQAModel):
    """One pyiqa network. Subclasses (one per name) only set `entry` and `info`."""

    entry: ClassVar[ZooEntry]

    class Params(Params):
        weights: str = Field("", description="a checkpoint of the whole network (a state_dict, read weights_only); "
                             "'': pyiqa's published files, from its cache or downloaded into it on first use")
        crops: int | None = Field(None, ge=1, description="eval-time crops of the networks that score 224-px crops "
                                  "(MANIQA, TReS, HyperIQA: 20, 50, 10 in pyiqa); None: pyiqa's count; others: unused")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        e = self.entry
        if e.refused:
            raise NotApplicable(f"model '{e.name}': {e.refused}")
        opts = dict(e.opts)
        if self.params["crops"] is not None and e.arch in CROPS_224:
            opts[CROPS_224[e.arch]] = self.params["crops"]
        self.built: Built = build_network(e.arch, opts, e.name, random_weights=random_weights_on() or bool(self.params["weights"]))
        self.net = self.built.net.eval()
        _detach_constants(self.net)
        if self.built.uncovered:
            raise WeightsMissingError(
                f"model '{e.name}': its published files leave {len(self.built.uncovered)} entries of the network "
                f"unset (first: {self.built.uncovered[0]}); they would be random: not run")

    def forward(self, x: Tensor) -> Tensor:
        y = self.net(x.clone())  # some networks normalise their input in place (A-FINE): not the caller's images
        if isinstance(y, (tuple, list)):
            y = y[0]
        return y.reshape(x.shape[0])

    @classmethod
    def size(cls) -> str:
        """Backbone and parameter count, from the manifest (no build)."""
        m = manifest().get(cls.entry.name, {})
        return f", {m['backbone']}, {m['parameters'] / 1e6:.1f} M parameters" if "backbone" in m else ""

    @classmethod
    def published_files(cls) -> list[dict[str, Any]]:
        return files(cls.entry.name)

    def weights_source(self) -> dict[str, Any] | None:
        files = self.built.files
        if not files or self.params["weights"] or random_weights_on():
            return None
        return {"source": "published (pyiqa)", "path": files[0]["path"], "sha256": digest_files(files),
                "files": files, "trained_on": trained_on(self.entry)}


def _detach_constants(net: nn.Module) -> None:
    """Tensors a constructor computed and kept as plain attributes (LIQE's text features,
    made by CLIP's text tower with autograd on) are constants: detached, so that the
    network can be copied (each defense transforms a copy) and nothing trains them."""
    for module in net.modules():
        for name, value in list(vars(module).items()):
            if isinstance(value, Tensor) and value.grad_fn is not None:
                setattr(module, name, value.detach())


def _register(entry: ZooEntry) -> None:
    info = ModelInfo(
        name=entry.name, lower_better=entry.lower_better, score_range=entry.score_range, kind="learned",
        differentiable=entry.refused is None, input_size=entry.input_size, unavailable=entry.refused,
        # measured when the manifest was made (`smallest_side`); 224 where it lacks the figure
        min_size=manifest().get(entry.name, {}).get("min_size") or 224,
        weights=f"published by pyiqa (trained on {trained_on(entry)}), downloaded into $TORCH_HOME/hub/pyiqa on "
                "first use; or --weights PATH",
        reference="https://github.com/chaofengc/IQA-PyTorch (pyiqa 0.1.16)",
        description=f"pyiqa's '{entry.name}' ({entry.arch})",
    )
    register_model(type(class_name(entry.name), (PyiqaModel,), {"entry": entry, "info": info,
                                                                "__module__": __name__}))


for _entry in entries():
    if _entry.name not in BUILT_IN and _entry.name not in MODELS:
        _register(_entry)
