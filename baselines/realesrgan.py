"""Real-ESRGAN as input purification: the image is scaled down by `scale` and super-resolved
back to its own size by the published Real-ESRGAN generator (Wang, Xie, Dong and Shan, "Real-
ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data", ICCV Workshops
2021, https://arxiv.org/abs/2107.10833; its RRDBNet is ESRGAN's, baselines/_rrdbnet.py). It is
one of the learned purifiers of the MSU defenses benchmark (Gushchin et al., ICML 2025,
https://arxiv.org/abs/2408.01541, "upscale with Real-ESRGAN").

Threat model: white-box and adaptive. The generator is deterministic and differentiable and so
are the resizes, so attacks differentiate straight through the purification and the model (no
BPDA, no EOT); the attacker knows the weights. What it buys: a perturbation must survive
downscaling (which averages it away) and a generator trained to restore real degradations.

What is computed: bicubic antialiased downscaling to ceil(side / scale) px (rounded up to even
at scale 2, whose pixel-unshuffle takes 2x2 blocks), clipped to [0, 1]; the generator (x scale);
where that is not exactly the input's size, a bicubic antialiased resize to it; clipped to [0, 1].
Deviation from the benchmark, and why: its code (metrics/defences/realesrgan/run.py) runs the
generator on the full-size image and hands the metric the x4 output (its resize back to the
input's size is commented out), with the compact realesr-general-x4v3 network at denoise
strength 0.2 by default. Here the output has the input's size, as every purification's here
does (models with a fixed input size take it, and clean and attacked images are compared at
it), and the generator reads 1/scale^2 of the input's pixels (the benchmark's reads all and
writes scale^2 times as many), which keeps attacks through it affordable. The network is
RRDBNet with RealESRGAN_x4plus.pth (or RealESRGAN_x2plus.pth at scale 2), the paper's model.

Weights: none are trained here, and the generator is never run with random ones. `weights` is
required: a local file or an http(s) URL, downloaded once into BENCH_CACHE/downloads/ (bench's
download: whole or not at all; BENCH_OFFLINE=1 forbids it, BENCH_WEIGHTS_MIRROR=URL fetches it
by name from a mirror). The constructor, which the matrix's loading calls, reads it before
any work: no weights, a missing file or a failed download is ONE line naming the defense, the
file it needs and how to give it; a sha256 that is not `sha256`, a file that carries pickled
code (read weights_only: refused, never run) or one that does not fit the generator (strict
loading: the missing and unexpected keys named) is a CheckpointError, one line too. Nothing is
trained (no `fit`, nothing cached): `provenance` records the file (path, URL, the sha256 read
at this run's load) as the cells' fit part, like every weights file a cell used. A cell's key
holds the parameters, the path among them, not the file's content: pin `sha256` (checked at
every load) or give a changed file a new path, or a store keeps the old file's cells.

Not in the full matrix (bench/matrices/full.toml): its weights cannot be had offline. Its info
says so (`needs_weights`), which the full matrix's coverage test reads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor

from baselines._published import WeightsParams, checked_sha256, weights_file, weights_record
from baselines._purification import MSU_BENCHMARK, Purification
from baselines._rrdbnet import RRDBNet, load_rrdbnet
from bench.api import DefenseInfo, Field, register_defense

RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases/download"
PUBLISHED = {4: f"{RELEASES}/v0.1.0/RealESRGAN_x4plus.pth", 2: f"{RELEASES}/v0.2.1/RealESRGAN_x2plus.pth"}
NAME = "real-esrgan"


def needed(scale: int) -> str:
    """The file this defense needs at `scale` and how to give it, for its one-line errors."""
    url = PUBLISHED[scale]
    return (f"it needs {url.rsplit('/', 1)[-1]} (published at {url}): give it in the matrix as "
            f'{NAME} = {{ weights = "PATH or URL" }}')


@register_defense
class RealESRGAN(Purification):
    info = DefenseInfo(
        name=NAME,
        kind="purification",
        reference="https://arxiv.org/abs/2107.10833",
        description="Downscale by `scale` (bicubic), super-resolve back with the published Real-ESRGAN generator "
        "(RRDBNet; user-supplied weights), clip to [0, 1]; attacked through it (MSU defenses benchmark: "
        + MSU_BENCHMARK + ").",
        needs_weights=f"RealESRGAN_x4plus.pth ({PUBLISHED[4]}), or RealESRGAN_x2plus.pth ({PUBLISHED[2]}) at "
        "scale 2: weights = \"PATH or URL\"",
    )

    class Params(WeightsParams):
        num_feat: int = Field(64, ge=1, le=256, description="feature channels of the trunk (x4plus: 64)")
        num_block: int = Field(23, ge=1, le=64, description="residual-in-residual dense blocks (x4plus: 23)")
        num_grow_ch: int = Field(32, ge=1, le=256, description="channels each dense-block convolution adds (x4plus: 32)")
        scale: Literal[2, 4] = Field(4, description="down- and super-resolution factor: 4 (RealESRGAN_x4plus) or 2 "
                                     "(RealESRGAN_x2plus, pixel-unshuffle in front)")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        # before any work (the matrix's loading builds each defense): the file is here, has the
        # sha256 asked for and fits the generator, or one line says why not
        p = self.params
        self.path: Path = weights_file(p["weights"], NAME, needed(p["scale"]))
        self.sha256: str = checked_sha256(self.path, p["sha256"], NAME)
        self.net: RRDBNet = load_rrdbnet(str(self.path), f"defense '{NAME}'", num_feat=p["num_feat"],
                                         num_block=p["num_block"], num_grow_ch=p["num_grow_ch"], scale=p["scale"])

    def provenance(self) -> dict[str, Any]:
        """Nothing is trained: the published weights, loaded when the defense was built, are
        recorded (path, URL, sha256 read at that load) as the cells' fit part."""
        return {**weights_record(self.params["weights"], self.path, self.sha256), "scale": self.params["scale"]}

    # -- the purification
    def purify(self, x: Tensor) -> Tensor:
        """Down by `scale`, the generator back up, to the input's exact size, in [0, 1]: every
        step differentiable, so the attack's gradient is the real one (module docstring)."""
        net, s = self.net, self.params["scale"]
        if next(net.parameters()).device != x.device:
            net.to(x.device)
        h, w = x.shape[-2:]
        small = [_side(h, s), _side(w, s)]
        low = F.interpolate(x.float(), size=small, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        out = net(low)
        if tuple(out.shape[-2:]) != (h, w):
            out = F.interpolate(out, size=[h, w], mode="bicubic", align_corners=False, antialias=True)
        return out.clamp(0, 1).to(x.dtype)


def _side(n: int, scale: int) -> int:
    """A side of the downscaled image: n / scale rounded up (the generator's output then
    covers the input), even at scale 2 (pixel-unshuffle takes 2x2 blocks)."""
    side = max(1, math.ceil(n / scale))
    return side + side % 2 if scale == 2 else side
