"""WaDIQaM-NR (Bosse et al., IEEE TIP 2018) in pyiqa's architecture: a 10-layer VGG-style
network scores 32x32 patches and a second head weights them (weighted average patch
aggregation). Published KonIQ-10k weights where pyiqa's cache has them, else trained here
by `bench train` / `bench run`, and labelled so."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from bench.api import (
    LOSS_HELP,
    Field,
    FitContext,
    IQAModel,
    ModelInfo,
    Params,
    Standardized,
    dihedral,
    fit_affine,
    random_crops,
    register_model,
    regression_loss,
    train_loop,
    views_field,
)

PUBLISHED_FILE = "WaDIQaM-NR-koniq-aaffea29.pth"
PATCH = 32  # fixed by the network design (five 2x2 max-pools down to 1x1)


@register_model
class WaDIQaMNR(IQAModel):
    info = ModelInfo(
        name="wadiqam_nr",
        lower_better=False,
        # pyiqa's default_model_configs: '~-1, ~0.1' for the published KonIQ weights. A model
        # trained here is fitted to MOS mapped linearly onto this same range.
        score_range=(-1.0, 0.1),
        kind="learned",
        differentiable=True,
        min_size=PATCH + 1,  # pyiqa's test-time patching needs a side > 32
        weights=f"pyiqa cache ({PUBLISHED_FILE}), or --weights PATH, or trained here with `bench train`",
        reference="https://doi.org/10.1109/TIP.2017.2760518",
        description=(
            "WaDIQaM-NR: VGG-style 10-conv feature net on 32x32 patches, patch quality and patch "
            "weight heads, weighted-average aggregation. The whole image is scored the way pyiqa "
            "infers: non-overlapping 32x32 patches from the top-left (pyiqa's range(0, H-32, 32) "
            "grid, so a 96x96 image gives 2x2 patches)."
        ),
        # 2: standardised targets, turned and mirrored images; 3: He init, + the training views;
        # 4: the norm-in-norm loss, then an affine fit on the train split
        version="4",
    )

    class Params(Params):
        weights: str = Field("", description="checkpoint to load (a state_dict, read weights_only); '': the published "
                             "weights where present, else trained here")
        epochs: int = Field(8, ge=1, description="training epochs, when trained here (over the train split and its "
                            "training views)")
        lr: float = Field(5e-4, gt=0, description="Adam learning rate, when trained here")
        batch_size: int = Field(16, ge=1, description="images per training step")
        train_patches: int = Field(4, ge=1, description="random 32 x 32 patches per image per training step")
        views: bool = views_field()
        loss: Literal["norm-in-norm", "l1"] = Field("norm-in-norm", description=LOSS_HELP + " (the paper's, "
                                                     "version 3)")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        from pyiqa.archs.wadiqam_arch import WaDIQaM as Net

        # pretrained=False and no pretrained_model_path: nothing is downloaded or loaded.
        self.net = Net(metric_type="NR", pretrained=False, pretrained_model_path=None)
        for m in self.net.modules():  # He init: ten plain ReLU convs keep their signal's scale
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def _aggregate(self, patches: Tensor, b: int) -> Tensor:
        """(B*P, 3, 32, 32) patches, image-major -> (B,) weighted-average scores."""
        feat = self.net.features(patches).reshape(b, -1, 512)
        q = self.net.fc_q(feat)
        w = self.net.fc_w(feat) + self.net.eps
        return (torch.sum(q * w, dim=1) / torch.sum(w, dim=1)).reshape(-1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        if min(h, w) <= PATCH:
            raise ValueError(f"wadiqam_nr needs images larger than {PATCH}x{PATCH}, got {h}x{w}")
        # Same grid as pyiqa's _get_nonoverlap_patches (used at inference), always, so the
        # score is deterministic whatever the module's mode.
        patches = [x[:, :, i : i + PATCH, j : j + PATCH] for i in range(0, h - PATCH, PATCH)
                   for j in range(0, w - PATCH, PATCH)]
        return self._aggregate(torch.stack(patches, dim=1).reshape(-1, c, PATCH, PATCH), b)

    @classmethod
    def pretrained_weights(cls) -> str | None:
        p = Path(torch.hub.get_dir()) / "pyiqa" / PUBLISHED_FILE
        return str(p) if p.is_file() else None

    def fit(self, ctx: FitContext) -> None:
        """Adam (cosine-decayed) on the weighted average of each image's random 32x32
        patches, as in the paper and pyiqa's training (fewer patches per image and epochs
        here, for CPU time), the batch turned and mirrored first, on the train split and
        the dataset's training views (`views`, `FitContext.with_views`). The loss is the
        norm-in-norm (`regression_loss`), whose scale and offset are then fitted on the
        train split (`fit_affine`), or with `loss = "l1"` the paper's L1 to the standardised
        target; the scale is folded back into the patch-quality head (exact: the score is a
        weighted average of patch scores). Under L1 at rates of 5e-4 to 1e-3 the network
        scored every image near the targets' mean for 3-5 epochs and ranked the test split
        at 0.46 (median of three seeds); the norm-in-norm loss, which compares each batch's
        normalised spread, brought it to 0.60 (issue 15; README). The network starts
        from He initialisation (`__init__`): under PyTorch's default one, ten plain ReLU
        convs pass on almost no signal (test SROCC 0.04). The views are drawn from the
        training loop's seeded generator; a last batch of one image is trained as it is."""
        p = self.params
        ctx = ctx.with_views() if p["views"] else ctx
        scale = Standardized(ctx.targets)
        loss = regression_loss(p["loss"])
        train_loop(self, ctx, lambda x, y: loss(self._aggregate(x, len(y)), scale.z(y)), kind="model",
                   name=self.info.name, epochs=p["epochs"], lr=p["lr"], batch_size=p["batch_size"],
                   schedule="cosine", augment=lambda x, g: random_crops(dihedral(x, g), PATCH, p["train_patches"], g),
                   batch_of_one="keep", freeze_bn=False)
        head = self.net.fc_q[-1]
        if p["loss"] != "l1":
            fit_affine(self, head, ctx.train.images, scale.z(ctx.targets.reshape(-1)), ctx.device)
        scale.fold(head)
        ctx.record.update(final_train_l1=ctx.record["final_loss"], loss_units="standardised targets"
                          if p["loss"] == "l1" else "norm-in-norm (scale-free)")
