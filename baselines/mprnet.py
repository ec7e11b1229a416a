"""MPRNet as input purification: the image is restored by the published MPRNet (Zamir et al.,
"Multi-Stage Progressive Image Restoration", CVPR 2021, https://arxiv.org/abs/2102.02808;
the network is baselines/_mprnet.py), its released denoising model by default. It is one of
the learned purifiers of the MSU defenses benchmark (Gushchin et al., ICML 2025,
https://arxiv.org/abs/2408.01541, "MPRNet").

Threat model: white-box and adaptive. The network is deterministic and differentiable and so
are the padding, crop and clipping, so attacks differentiate straight through the purification
and the model (no BPDA, no EOT); the attacker knows the weights. What it buys: a perturbation
must survive a network trained to remove real noise (or blur, or rain streaks: `task`), to
which a small high-frequency perturbation may look like noise.

What is computed, as the official test code does: the image reflect-padded on the bottom and
right to sides that are multiples of 8 (replicate-padded where a side is too small to reflect),
MPRNet run on it, the last stage's restored image kept (the network also returns stage 2's and
stage 1's, which only its training loss reads), cropped back to the input's size, clipped to [0, 1].
Deviations from the benchmark: none in what is computed. Its code (metrics/defences/mprnet/
run.py) runs the Denoising MPRNet (widths 80/48/32) with `mprnet_denoise.pth` from its own
server, and pads, keeps output [0], clips and crops the same way; the default here is the same
network with the authors' released model_denoising.pth, which that file is presumably a copy of
(not checked: neither file could be read here). It calls the network without torch.no_grad, so
its attacks can differentiate it too; whether they do was not checked.

Weights: none are trained here, and the network is never run with random ones. `weights` is
required: a local file or an http(s) URL, downloaded once into BENCH_CACHE/downloads/
(baselines/_published.py, shared with `real-esrgan`). The releases are Google Drive pages, not
direct links: download the file by hand and give its path (or a mirror's URL). The constructor,
which the matrix's loading calls, reads it before any work: no weights, a missing file or a
failed download is ONE line naming the defense, the file it needs, where it is published and
how to give it; a sha256 that is not `sha256`, a file that carries pickled code (read
weights_only: refused, never run) or one that does not fit the network (strict loading: the
missing and unexpected keys named) is a CheckpointError, one line too. `provenance` records the
file (path, URL, sha256 read at this run's load) as the cells' fit part. A cell's key holds the
parameters, the path among them, not the file's content: pin `sha256` or give a changed file a
new path.

Not in the full matrix (bench/matrices/full.toml): its weights cannot be had offline. Its info
says so (`needs_weights`), which the full matrix's coverage test reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor

from baselines._mprnet import MULTIPLE, MPRNet, load_mprnet, task_widths
from baselines._published import WeightsParams, checked_sha256, weights_file, weights_record
from baselines._purification import MSU_BENCHMARK, Purification
from bench.api import DefenseInfo, Field, model_validator, register_defense

NAME = "mprnet"
# the authors' releases (github.com/swz30/MPRNet, {Task}/pretrained_models/README.md): Google Drive pages
PUBLISHED = {
    "denoising": ("model_denoising.pth", "https://drive.google.com/file/d/1LODPt9kYmxwU98g96UrRA0_Eh5HYcsRw/view"),
    "deblurring": ("model_deblurring.pth", "https://drive.google.com/file/d/1QwQUVbk6YVOJViCsOKYNykCsdJSVGRtb/view"),
    "deraining": ("model_deraining.pth", "https://drive.google.com/file/d/1O3WEJbcat7eTY6doXWeorAbQ1l_WmMnM/view"),
}


def needed(task: str) -> str:
    """The file this defense needs for `task` and how to give it, for its one-line errors."""
    file, url = PUBLISHED[task]
    return (f"it needs {file} (MPRNet's {task} model, published at {url}, a Google Drive page: download it "
            f'there): give it in the matrix as {NAME} = {{ weights = "PATH or URL" }}')


@register_defense
class MPRNetPurification(Purification):
    info = DefenseInfo(
        name=NAME,
        kind="purification",
        reference="https://arxiv.org/abs/2102.02808",
        description="Restore with the published MPRNet (denoising by default; user-supplied weights), clip to "
        "[0, 1]; attacked through it (MSU defenses benchmark: " + MSU_BENCHMARK + ").",
        needs_weights=f"{PUBLISHED['denoising'][0]} ({PUBLISHED['denoising'][1]}), or model_deblurring.pth / "
        "model_deraining.pth with task = \"deblurring\" / \"deraining\": weights = \"PATH or URL\"",
    )

    class Params(WeightsParams):
        task: Literal["denoising", "deblurring", "deraining"] = Field(
            "denoising", description="which released model: its widths and file (denoising: model_denoising.pth, "
            "80/48/32 channels; deblurring: 96/48/32; deraining: 40/20/16)")
        n_feat: int = Field(0, ge=0, le=256, description="feature channels (0: the task's released width)")
        scale_unetfeats: int = Field(0, ge=0, le=256, description="channels each U-Net scale adds (0: the task's)")
        scale_orsnetfeats: int = Field(0, ge=0, le=256, description="channels stage 3 adds (0: the task's)")
        num_cab: int = Field(8, ge=1, le=16, description="channel attention blocks in each stage-3 block (released: 8)")
        @model_validator(mode="after")
        def _check(self) -> MPRNetPurification.Params:
            if 0 < self.n_feat < 4:  # channel attention squeezes by 4
                raise ValueError(f"parameter 'n_feat' must be 0 (the task's) or at least 4, got {self.n_feat}")
            return self

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        # before any work (the matrix's loading builds each defense): the file is here, has the
        # sha256 asked for and fits the network, or one line says why not
        p = self.params
        self.path: Path = weights_file(p["weights"], NAME, needed(p["task"]))
        self.sha256: str = checked_sha256(self.path, p["sha256"], NAME)
        config = task_widths(p["task"], p["n_feat"], p["scale_unetfeats"], p["scale_orsnetfeats"])
        self.net: MPRNet = load_mprnet(str(self.path), f"defense '{NAME}'", **config, num_cab=p["num_cab"])

    def provenance(self) -> dict[str, Any]:
        """Nothing is trained: the published weights, loaded when the defense was built, are
        recorded (path, URL, sha256 read at that load) as the cells' fit part."""
        return {**weights_record(self.params["weights"], self.path, self.sha256), "task": self.params["task"]}

    def purify(self, x: Tensor) -> Tensor:
        """Pad to multiples of 8, the network's last stage, crop, clip to [0, 1]: every step
        differentiable, so the attack's gradient is the real one (module docstring)."""
        net = self.net
        if next(net.parameters()).device != x.device:
            net.to(x.device)
        h, w = x.shape[-2:]
        ph, pw = -h % MULTIPLE, -w % MULTIPLE
        mode = "reflect" if ph < h and pw < w else "replicate"  # reflecting needs a pad shorter than the side
        padded = F.pad(x.float(), (0, pw, 0, ph), mode=mode) if ph or pw else x.float()
        return net(padded)[0][..., :h, :w].clamp(0, 1).to(x.dtype)
