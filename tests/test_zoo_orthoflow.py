"""The orthogonal-flow defense on the zoo's backbones, with random weights at small sizes:
a ResNet-50 model (ARNIQA) is transformed and fine-tuned briefly, a ViT (MANIQA, ViT-B/8:
the block follows its patch-embedding convolution) transformed, and a small timm ViT of the
same design transformed and fine-tuned (MANIQA's own fine-tune takes minutes here); each then
scores and differentiates; where the method cannot apply (CLIP-IQA keeps its network outside the module tree; MUSIQ's
training-mode forward expects pre-extracted patches, so it cannot be fine-tuned on images),
the cell is skipped with the reason."""

from __future__ import annotations

import pytest
import torch

from bench.api import DEFENSES, MODELS, FitContext, IQAModel, IQASplit, ModelInfo, NotApplicable
from bench.models.pyiqa_zoo.build import random_weights


def _fit(name: str, defense: str, size: int, block: str = "cayley", **model_params) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    with random_weights():
        model = MODELS.create(name, **model_params).eval()
    d = DEFENSES.create(defense, epochs=1, batch_size=2, block=block)
    defended = d.transform(model)
    split = IQASplit(torch.rand(2, 3, size, size), torch.rand(2), ["a", "b"], ["a", "b"])
    ctx = FitContext(train=split, targets=torch.tensor([0.3, 0.7]), seed=0, device=torch.device("cpu"),
                     log=lambda m: None)
    d.fit(defended, ctx)
    return defended.eval(), ctx.record


def _scores_and_gradients(model: torch.nn.Module, size: int) -> None:
    x = torch.rand(2, 3, size, size, requires_grad=True)
    s = model(x)
    (g,) = torch.autograd.grad(s.sum(), x)
    assert s.shape == (2,) and torch.isfinite(s).all() and torch.isfinite(g).all() and g.abs().sum() > 0


def test_resnet50_zoo_model_gets_blocks_swapped_activations_and_a_fit():
    model, record = _fit("arniqa", "ortho+act", 64)
    # the stem conv of torchvision's ResNet-50, which ARNIQA keeps as the first of a Sequential
    assert record["orthogonal_after"] == ["net.encoder.0"]
    assert record["activation_swaps"]["modules"] >= 17  # the stem's and every bottleneck's ReLU
    assert [s["stage"] for s in record["stages"]] == ["activation", "orthogonal"]
    assert all(torch.isfinite(torch.tensor(s["loss_per_epoch"])).all() for s in record["stages"])
    _scores_and_gradients(model, 64)


def test_vit_zoo_model_gets_a_block_after_its_patch_embedding():
    """The transform on a ViT (MANIQA, ViT-B/8): the block follows the patch embedding and
    the defended network scores and differentiates. Its fine-tune is not run here: 136 M
    parameters at 224 px took 2 to 5 minutes and gigabytes on this 2-core machine."""
    torch.manual_seed(0)
    with random_weights():
        model = MODELS.create("maniqa", crops=1).eval()
    defended = DEFENSES.create("ortho", block="rko").transform(model)
    assert [n for n, m in defended.named_modules() if n.endswith("patch_embed.proj")] == ["net.vit.patch_embed.proj"]
    from defenses.orthoflow.surgery import orthogonal_after

    assert orthogonal_after(defended) == ["net.vit.patch_embed.proj"]
    _scores_and_gradients(defended.eval(), 224)


def test_where_it_cannot_apply_the_reason_is_given():
    with random_weights():
        model = MODELS.create("clipiqa")
    with pytest.raises(NotApplicable, match="model 'clipiqa'"):
        DEFENSES.create("ortho+act+prune").transform(model)


def test_a_model_whose_training_forward_takes_no_images_is_skipped_with_the_reason():
    with random_weights():
        model = MODELS.create("musiq").eval()
    with pytest.raises(NotApplicable, match=r"defense 'ortho\+act\+prune' fine-tunes the model on images; model "
                                            r"'musiq' cannot compute a training-mode forward pass on them \(RuntimeError"):
        DEFENSES.create("ortho+act+prune").transform(model)


class TinyViT(IQAModel):
    """A ViT as MANIQA's backbone is one (timm's VisionTransformer: a conv patch embedding,
    attention blocks with GELU MLPs), small enough to fine-tune in seconds."""

    info = ModelInfo(name="tiny-vit", lower_better=False, score_range=(0.0, 1.0), kind="learned",
                     differentiable=True, min_size=32, input_size=(32, 32))

    def __init__(self, **params) -> None:
        super().__init__(**params)
        from timm.models.vision_transformer import VisionTransformer

        self.vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x).reshape(-1)


def test_a_vit_is_fine_tuned_with_its_block_after_the_patch_embedding():
    """The fit on a ViT: the block follows the patch embedding (as on MANIQA above), the
    swap finds no ReLU to change in a GELU network (so 'ortho', not '+act'), and the
    fine-tune trains the block and the attention weights."""
    torch.manual_seed(0)
    model = TinyViT().eval()
    d = DEFENSES.create("ortho", epochs=1, batch_size=2)
    defended = d.transform(model)
    before = {k: v.clone() for k, v in defended.state_dict().items()}
    split = IQASplit(torch.rand(4, 3, 32, 32), torch.rand(4), list("abcd"), list("abcd"))
    ctx = FitContext(train=split, targets=torch.tensor([0.2, 0.4, 0.6, 0.8]), seed=0, device=torch.device("cpu"),
                     log=lambda m: None)
    d.fit(defended, ctx)
    assert ctx.record["orthogonal_after"] == ["vit.patch_embed.proj"]
    after = defended.state_dict()
    assert not torch.equal(after["vit.patch_embed.proj.orthogonal.weight"],
                           before["vit.patch_embed.proj.orthogonal.weight"])
    assert not torch.equal(after["vit.blocks.0.attn.qkv.weight"], before["vit.blocks.0.attn.qkv.weight"])
    with pytest.raises(NotApplicable, match="computes with no ReLU"):
        DEFENSES.create("ortho+act").transform(model)
    _scores_and_gradients(defended.eval(), 32)
