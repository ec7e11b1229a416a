"""Classic no-reference metrics, computed by pyiqa's own implementations."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.api import CheckpointError, IQAModel, ModelInfo, StraightThroughRounding, WeightsMissingError, register_model


def pyiqa_net(name: str):  # -> torch.nn.Module
    """The network behind `pyiqa.create_metric(name)`: the same code path pyiqa scores with,
    minus its no-grad wrapper, so that attacks get gradients."""
    import pyiqa  # heavy (about 3 s): imported only when a model is built

    return pyiqa.create_metric(name, device="cpu").net


@register_model
class PIQE(IQAModel):
    info = ModelInfo(
        name="piqe",
        lower_better=True,
        score_range=(0.0, 100.0),
        kind="classic",
        differentiable=False,
        gradient_surrogate="straight-through rounding",
        min_size=16,
        weights="none needed",
        reference="https://doi.org/10.1109/NCC.2015.7084843",
        description=(
            "PIQE (Venkatanath et al., NCC 2015), pyiqa's implementation. Its first step rounds the "
            "image to 8 bits, so its input gradient is exactly zero: attacks differentiate it with the "
            "rounding made straight-through (BPDA on the model itself)."
        ),
    )

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.net = pyiqa_net("piqe")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).reshape(-1)

    def gradient_forward(self, x: Tensor) -> Tensor:
        with StraightThroughRounding():
            return self.net(x).reshape(-1)


# ----------------------------------------------------------------------------- NIQE, BRISQUE
DATA = Path(__file__).resolve().parent.parent / "data"


@register_model
class NIQE(IQAModel):
    info = ModelInfo(
        name="niqe",
        lower_better=True,
        score_range=(0.0, 100.0),
        kind="classic",
        differentiable=True,
        min_size=96,  # NIQE works on 96x96 blocks: a smaller image has none
        weights="pristine parameters from basicsr 1.4.2 (Apache-2.0), shipped in bench/data",
        reference="https://doi.org/10.1109/LSP.2012.2227726",
        description=(
            "NIQE (Mittal et al., IEEE SPL 2013), pyiqa's implementation fed with the pristine MVG "
            "parameters of the original NIQE release as shipped in basicsr 1.4.2 "
            "(bench/data/niqe_pris_params.npz; never downloaded). pyiqa rounds the image to 8 bits "
            "with its own straight-through rounding (x - x.detach() + x.round()), so autograd already "
            "gives a usable input gradient."
        ),
    )

    def __init__(self, **params) -> None:
        super().__init__(**params)
        import scipy.io
        from pyiqa.archs.niqe_arch import NIQE as PyiqaNIQE

        with np.load(DATA / "niqe_pris_params.npz", allow_pickle=False) as p:
            mat = {"mu_prisparam": p["mu_pris_param"], "cov_prisparam": p["cov_pris_param"]}
        # pyiqa's own option for a local model file (read with scipy.io.loadmat, which takes a
        # file object): the parameters go in through it and nothing is downloaded.
        buf = io.BytesIO()
        scipy.io.savemat(buf, mat)
        buf.seek(0)
        self.net = PyiqaNIQE(test_y_channel=True, pretrained_model_path=buf)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).reshape(-1).to(x.dtype)


def _brisque_features(x: Tensor) -> Tensor:
    """pyiqa's BRISQUE features ('original' version): 18 NSS features at two scales, (B, 36)."""
    from pyiqa.archs.brisque_arch import natural_scene_statistics
    from pyiqa.matlab_utils import imresize
    from pyiqa.utils.color_util import to_y_channel

    y = to_y_channel(x, 255.0)
    feats = []
    for _ in range(2):
        feats.append(natural_scene_statistics(y, 7, 7 / 6))
        y = imresize(y, scale=0.5, antialiasing=True)
    return torch.cat(feats, dim=-1)


def read_libsvm_rbf_svr(path: Path) -> dict:
    """A libsvm text model (epsilon-SVR, RBF kernel) as dense arrays; nothing is executed."""
    header: dict[str, str] = {}
    coef, rows = [], []
    with open(path) as f:
        for line in f:
            if line.strip() == "SV":
                break
            key, _, value = line.strip().partition(" ")
            header[key] = value
        if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
            raise ValueError(f"{path}: expected an epsilon_svr model with an rbf kernel, got {header}")
        for line in f:
            if not line.strip():
                continue
            first, *pairs = line.split()
            coef.append(float(first))
            rows.append({int(k): float(v) for k, v in (p.split(":") for p in pairs)})
    dim = max(max(r) for r in rows)
    sv = np.zeros((len(rows), dim))
    for i, r in enumerate(rows):
        for k, v in r.items():
            sv[i, k - 1] = v  # libsvm indices are 1-based; absent entries are zero
    if len(rows) != int(header["total_sv"]):
        raise ValueError(f"{path}: {len(rows)} support vectors, header says {header['total_sv']}")
    return {"sv": sv, "coef": np.asarray(coef), "gamma": float(header["gamma"]), "rho": float(header["rho"])}


@register_model
class BrisqueLiveLibsvm(IQAModel):
    info = ModelInfo(
        name="brisque-live-libsvm",
        lower_better=True,
        score_range=(0.0, 150.0),
        kind="classic",
        differentiable=True,
        min_size=16,
        weights="LIVE-trained libsvm model of the `brisque` 0.2.0 wheel (Apache-2.0), shipped in bench/data",
        reference="https://doi.org/10.1109/TIP.2012.2214050",
        description=(
            "BRISQUE features (Mittal et al., IEEE TIP 2012) computed by pyiqa's code, scored by the "
            "LIVE-trained epsilon-SVR (RBF, 770 support vectors) of the `brisque` 0.2.0 Python package "
            "with that package's own feature min/max normalisation. NOT the official BRISQUE model: its "
            "scores differ from MATLAB's brisque (see model 'brisque' for the official one)."
        ),
    )

    def __init__(self, **params) -> None:
        super().__init__(**params)
        m = read_libsvm_rbf_svr(DATA / "brisque_live_svm.txt")
        norm = json.loads((DATA / "brisque_live_normalize.json").read_text())
        self.gamma, self.rho = m["gamma"], m["rho"]
        self.register_buffer("sv", torch.from_numpy(m["sv"]))
        self.register_buffer("coef", torch.from_numpy(m["coef"]))
        self.register_buffer("fmin", torch.tensor(norm["min_"], dtype=torch.float64))
        self.register_buffer("fmax", torch.tensor(norm["max_"], dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        f = _brisque_features(x.to(torch.float64))
        f = -1 + 2 * (f - self.fmin) / (self.fmax - self.fmin)
        k = torch.exp(-self.gamma * (f[:, None, :] - self.sv[None]).pow(2).sum(-1))
        return (k @ self.coef - self.rho).to(x.dtype)


BRISQUE_WEIGHTS = "brisque_svm_weights.pth"


def pyiqa_cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "pyiqa"


@register_model
class Brisque(IQAModel):
    info = ModelInfo(
        name="brisque",
        lower_better=True,
        score_range=(0.0, 150.0),
        kind="classic",
        differentiable=True,
        min_size=16,
        weights=f"official BRISQUE SVR from pyiqa's cache ({BRISQUE_WEIGHTS}); never downloaded",
        reference="https://doi.org/10.1109/TIP.2012.2214050",
        description=(
            "BRISQUE (Mittal et al., IEEE TIP 2012), pyiqa's implementation with the official "
            "LIVE-trained SVR (pyiqa's brisque_svm_weights.pth, gamma 0.05, rho -153.591). The weights "
            "must already be in pyiqa's cache; they are read as plain tensors (no pickled code)."
        ),
    )
    GAMMA, RHO = 0.05, -153.591  # pyiqa's BRISQUE 'original' hyper-parameters

    @classmethod
    def pretrained_weights(cls) -> str | None:
        p = pyiqa_cache_dir() / BRISQUE_WEIGHTS
        return str(p) if p.is_file() else None

    def __init__(self, **params) -> None:
        super().__init__(**params)
        path = self.pretrained_weights()
        if path is None:
            raise WeightsMissingError(
                f"model 'brisque' has no weights here: {BRISQUE_WEIGHTS} is not in pyiqa's cache "
                f"{pyiqa_cache_dir()}. Copy it there from a machine with internet (it is what "
                "`pyiqa.create_metric('brisque')` downloads); nothing is downloaded here. Offline, "
                "use model 'brisque-live-libsvm' (not the official model)."
            )
        try:
            sv_coef, sv = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, ValueError, TypeError) as e:
            raise CheckpointError(f"'{path}' is not pyiqa's BRISQUE weights (sv_coef, sv): {e}") from None
        self.register_buffer("sv_coef", sv_coef.to(torch.float64))
        self.register_buffer("sv", sv.to(torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        from pyiqa.archs.brisque_arch import brisque

        s = brisque(x.to(torch.float64), sv_coef=self.sv_coef, sv=self.sv, gamma=self.GAMMA, rho=self.RHO)
        return s.reshape(-1).to(x.dtype)
