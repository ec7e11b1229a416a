"""Robustness as architecture: orthogonal information flow, then pruning and fine-tuning.

The method under test is Meleshin, Chistyakova, Antsiferova & Vatolin, "Robustness as
Architecture: Designing IQA Models to Withstand Adversarial Perturbations" (2025,
https://arxiv.org/abs/2506.04951). It is applied to an already trained IQA model:

- ReLU is swapped for a smooth activation (SiLU, GELU or ELU), modules and functional
  calls alike;
- an orthogonal (norm-preserving) convolution is inserted after a trained conv layer, so
  that the block cannot amplify a perturbation beyond what the trained layer already does;
  it starts as the identity, so the trained model is unchanged at insertion;
- the conv/linear weights are pruned (global L1 unstructured, or L2 filter pruning);
- after each of these changes the whole model is fine-tuned briefly at a low learning
  rate, so that each change is recovered from before the next is made.

The swap comes first because it is the one change that cannot be held back: `transform`
builds the final architecture (the cache stores its weights), and an inserted block held
at its initial value *is* the identity, so fine-tuning with the blocks frozen is exactly
fine-tuning the model before insertion. Pruning masks are applied for their own stage.

The variants registered at the bottom (`ortho`, `ortho+act`, `ortho+act+prune`, its
L2 filter-pruning twin `ortho+act+prune-l2`, and the controls `act`, `prune`,
`finetune-only`) let the leaderboard read off what each step contributes; `finetune-only`
separates the effect of the extra training from the design.

The package splits by concern: `layers` (the orthogonal convolutions, torch only, reusable
anywhere), `surgery` (the changes made to a model, torch only) and this module (the
defense and its variants, which import only `bench.api` from the benchmark). The variants
are registered here, in the package itself, because plugin discovery imports each module
of `defenses` (this package) but not the modules inside it.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Literal, get_args

import torch.nn.functional as F
from torch import Tensor, nn

from bench.api import (
    Defense,
    DefenseInfo,
    Field,
    FitContext,
    IQAModel,
    NotApplicable,
    Params,
    model_validator,
    probe_input,
    register_defense,
    require_trainable,
    train_loop,
)

from .layers import BLOCK_TYPES, BLOCKS, CayleyConv2d, RKOConv2d
from .surgery import (
    ACTIVATIONS,
    activation_swaps,
    apply_pruning,
    blocks_run,
    insert_orthogonal,
    orthogonal_after,
    remove_pruning,
    swap_activations,
)

__all__ = [
    "BLOCKS",
    "ActOnly",
    "CayleyConv2d",
    "FinetuneOnly",
    "Ortho",
    "OrthoAct",
    "OrthoFlow",
    "OrthoFlowL2",
    "PruneOnly",
    "RKOConv2d",
    "activation_swaps",
    "insert_orthogonal",
    "orthogonal_after",
    "swap_activations",
]

PAPER = "https://arxiv.org/abs/2506.04951"


# ----------------------------------------------------------------------------- the defense
class OrthoFlowParams(Params):
    """The full method's parameters; each variant below only changes defaults."""

    insert: Literal["first", "all", "none"] = Field(
        "first", description="which Conv2d layers get an orthogonal block after them ('none': no block)")
    block: Literal["cayley", "rko"] = Field(
        "cayley", description="orthogonal block: 'cayley' (exactly orthogonal) or 'rko' (row-orthogonal kernel, "
        "Lipschitz <= kernel_size)")
    kernel_size: int = Field(3, ge=1, description="kernel side of the orthogonal block (odd for 'rko')")
    activation: Literal["silu", "gelu", "elu", "none"] = Field(
        "silu", description="what every ReLU (module or functional call) becomes ('none': ReLU kept)")
    prune: Literal["l1-unstructured", "l2-structured", "none"] = Field(
        "l1-unstructured", description="global L1 weight pruning, L2 filter pruning per layer, or none")
    amount: float = Field(0.1, ge=0, lt=1, description="share of weights (L1) or filters (L2) pruned; above 0 "
                          "unless prune is 'none'")
    epochs: int = Field(2, ge=1, description="epochs of each fine-tune, one after each change (an orthogonal "
                        "block never trained stays the identity)")
    lr: float = Field(1e-4, ge=1e-6, le=1e-4, description="Adam learning rate of the fine-tunes (the method's "
                      "range: fine-tuning only)")
    batch_size: int = Field(16, ge=1, description="images per fine-tuning step")
    loss: Literal["l1", "mse"] = Field("l1", description="regression loss of the fine-tunes")
    # a few hundred images in batches of 16 would overwrite a pretrained backbone's running means with noise
    freeze_bn: bool = Field(True, description="keep BatchNorm running statistics frozen while fine-tuning")

    @model_validator(mode="after")
    def _rules(self) -> OrthoFlowParams:
        if self.prune != "none" and self.amount == 0:
            raise ValueError(f"amount {self.amount} must be in (0, 1) when prune is {self.prune!r} (0 would prune "
                             "nothing: use prune = \"none\" for that)")
        if self.block == "rko" and self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size {self.kernel_size} must be odd for the rko block (its identity sits at "
                             "the centre tap)")
        return self


# the choices declared above are the ones the surgery and the layers implement
assert set(get_args(OrthoFlowParams.model_fields["block"].annotation)) == set(BLOCKS)
assert set(get_args(OrthoFlowParams.model_fields["activation"].annotation)) == {*ACTIVATIONS, "none"}


def _info(name: str, description: str) -> DefenseInfo:
    return DefenseInfo(
        name=name,
        kind="architectural",
        randomized=False,
        differentiable=True,
        reference=PAPER,
        description=description,
        # 2: a fine-tune after each change, not one at the end; 3: the swap reaches every ReLU
        # (the model's own forward too) and fine-tuning keeps functional dropout in train mode
        # 4: the block runs from a hook on its conv (the conv keeps its place and attributes),
        # models whose training-mode forward fails, or that bypass a block, are skipped
        version="4",
    )


@register_defense
class OrthoFlow(Defense):
    """The full method; the registered variants below switch its steps on and off."""

    info = _info(
        "ortho+act+prune",
        "Robustness as architecture (full method): an orthogonal conv after the first conv, ReLU swapped for a "
        "smooth activation, global L1 pruning, each change followed by a short low-rate fine-tune.",
    )
    Params = OrthoFlowParams

    # -- architecture
    def transform(self, model: IQAModel) -> IQAModel:
        p = self.params
        require_trainable(self.info.name, model)
        me, them = f"defense '{self.info.name}'", f"model '{getattr(model.info, 'name', '?')}'"
        has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
        if p["insert"] != "none" and not has_conv:
            raise NotApplicable(f"{me} needs a model with Conv2d layers; {them} has none")
        if p["prune"] == "l2-structured" and not has_conv:
            raise NotApplicable(f"{me} prunes conv filters; {them} has no Conv2d layers")
        if p["prune"] != "none" and not any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()):
            raise NotApplicable(f"{me} prunes Conv2d/Linear weights; {them} has none")

        model = copy.deepcopy(model)  # the runner's base model stays as it was
        if p["activation"] != "none":
            swaps = swap_activations(model, p["activation"], probe_input(model))
            if swaps["modules"] + swaps["functional"] == 0:
                raise NotApplicable(f"{me}: {them} computes with no ReLU (no nn.ReLU, no functional call in a "
                                    f"forward pass), so swapping it for {p['activation']} would change nothing")
        if p["insert"] != "none":
            insert_orthogonal(model, p["insert"], p["kernel_size"], p["block"])
            ran, inserted = blocks_run(model, probe_input(model))
            if ran < inserted:
                raise NotApplicable(f"{me}: {inserted - ran} of the {inserted} orthogonal blocks inserted after "
                                    f"{them}'s convolutions never ran (the model applies those convolutions' "
                                    "weights without calling their modules), so the variant would not be itself")
        return model

    # -- training
    def stages(self) -> list[str]:
        """The changes this variant makes, in the order made; each gets its own fine-tune
        (`finetune-only`, which changes nothing, gets one)."""
        p = self.params
        made = [("activation", p["activation"] != "none"), ("orthogonal", p["insert"] != "none"),
                ("prune", p["prune"] != "none")]
        return [stage for stage, on in made if on] or ["finetune"]

    def fit(self, model: IQAModel, ctx: FitContext) -> None:
        p, rec = self.params, ctx.record
        started = time.perf_counter()
        self._record_transform(model, rec)
        model.to(ctx.device)
        blocks = [t for m in model.modules() if isinstance(m, BLOCK_TYPES) for t in m.parameters()]
        pruned: list[tuple[nn.Module, list[str]]] = []
        stages: list[dict[str, Any]] = []
        try:
            for stage in self.stages():
                if stage == "prune":
                    pruned = apply_pruning(model, p["prune"], p["amount"])
                held = blocks if stage == "activation" else []  # not inserted yet: identity
                losses = self._finetune(model, ctx, stage, held)
                stages.append({"stage": stage, "loss_per_epoch": losses, "seconds": rec["seconds"]})
        finally:
            remove_pruning(pruned)
            model.eval()
        rec.update(stages=stages, epochs_per_stage=p["epochs"], epochs=p["epochs"] * len(stages),
                   loss_per_epoch=[x for s in stages for x in s["loss_per_epoch"]])
        rec["prune"] = p["prune"]
        if pruned:
            zeros = sum(int((m.weight == 0).sum()) for m, _ in pruned)
            rec["pruned_fraction"] = zeros / sum(m.weight.numel() for m, _ in pruned)
        rec["seconds"] = round(time.perf_counter() - started, 2)  # the whole fit, every stage

    def _record_transform(self, model: nn.Module, rec: dict[str, Any]) -> None:
        """What `transform` changed, read off the model itself (never handed over from
        `transform`): the model fitted may be a fresh `transform()` with a checkpoint loaded."""
        rec.update(insert=self.params["insert"], block=self.params["block"], activation=self.params["activation"])
        if after := orthogonal_after(model):
            rec["orthogonal_after"] = after
        if (swaps := activation_swaps(model)) is not None:
            rec["activation_swaps"] = swaps

    def _finetune(self, model: nn.Module, ctx: FitContext, stage: str, held: list[Tensor]) -> list[float]:
        """The shared loop (`bench.api.train_loop`) on the plain regression loss: the method
        fine-tunes the whole changed network, not only the new blocks."""
        p = self.params
        loss_fn = F.l1_loss if p["loss"] == "l1" else F.mse_loss

        def batch_loss(x: Tensor, y: Tensor) -> Tensor:
            pred = model(x).reshape(-1)
            return loss_fn(pred, y.to(pred.dtype))

        ctx.record["loss"] = p["loss"]
        return train_loop(model, ctx, batch_loss, kind="defense", name=f"{self.info.name} ({stage} stage)",
                          epochs=p["epochs"], lr=p["lr"], batch_size=p["batch_size"], freeze_bn=p["freeze_bn"],
                          frozen=held)


# ----------------------------------------------------------------------------- the ablation
_OFF_ACT = {"activation": "none"}
_OFF_PRUNE = {"prune": "none"}
_OFF_ORTHO = {"insert": "none"}


@register_defense
class OrthoFlowL2(OrthoFlow):
    info = _info(
        "ortho+act+prune-l2",
        "The full method with the other pruning of its experiments: conv filters by L2 norm, layer by layer, "
        "instead of global L1 weight pruning.",
    )
    Params = OrthoFlowParams.with_defaults(prune="l2-structured")


@register_defense
class Ortho(OrthoFlow):
    info = _info("ortho", "Ablation: only the orthogonal conv after the first conv, then fine-tuning.")
    Params = OrthoFlowParams.with_defaults(**_OFF_ACT, **_OFF_PRUNE)


@register_defense
class OrthoAct(OrthoFlow):
    info = _info("ortho+act", "Ablation: the orthogonal conv and the ReLU swap, no pruning, then fine-tuning.")
    Params = OrthoFlowParams.with_defaults(**_OFF_PRUNE)


@register_defense
class ActOnly(OrthoFlow):
    info = _info("act", "Control: only the ReLU swap (modules and functional calls), then fine-tuning.")
    Params = OrthoFlowParams.with_defaults(**_OFF_ORTHO, **_OFF_PRUNE)


@register_defense
class PruneOnly(OrthoFlow):
    info = _info("prune", "Control: only global L1 pruning of conv/linear weights, then fine-tuning.")
    Params = OrthoFlowParams.with_defaults(**_OFF_ORTHO, **_OFF_ACT)


@register_defense
class FinetuneOnly(OrthoFlow):
    info = _info(
        "finetune-only",
        "Control: the same fine-tuning with no architectural change, to separate training from design.",
    )
    Params = OrthoFlowParams.with_defaults(**_OFF_ORTHO, **_OFF_ACT, **_OFF_PRUNE)
