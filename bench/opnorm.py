"""Spectral norms of a network's layers, each read as a linear operator at the input size
it saw: what the layer could amplify a perturbation by at most (||L d|| <= ||L||_2 ||d||),
so that the amplification profile (bench/profile.py) can be read against it.

- `nn.Linear`: exact, torch's matrix 2-norm of the weight (the bias cancels in a difference).
- `nn.Conv2d` with zero padding: power iteration on W^T W, with `F.conv2d` as the operator
  and `F.conv_transpose2d` as its adjoint at the layer's input size (a conv's norm depends
  on the grid through its borders, so no size-free formula holds).
- A layer that knows its norm exactly reports it: a module with a method
  `operator_norm() -> float` (an orthogonal block returns its |scale|). This is the whole
  protocol; it needs no import of the benchmark, so torch-only layer libraries can offer it.
- Any other layer with parameters of its own (a custom or circular conv, a normalisation):
  power iteration on its Jacobian at the clean input it saw (autograd's vector-Jacobian
  product as the adjoint, forward mode for the Jacobian-vector product). For a linear
  layer this is its operator norm; for another, the local gain at the clean point.

Power iteration converges to the largest singular value from below; the draw is seeded,
so the same layer always gives the same number.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAX_ITERS = 100  # CNNIQA's 7x7 conv at 384 px: ~0.02 s an iteration; most layers settle in 20-60
REL_TOL = 1e-5  # stop when an iteration moves the estimate by less than this, relatively
SEED = 0


def self_reported(module: nn.Module) -> bool:
    """True where the layer reports its own exact norm (`operator_norm()`)."""
    return callable(getattr(module, "operator_norm", None))


_KNOWN: dict[str, tuple[float, str]] = {}  # by layer, weights and input: groups of one run share layers


def spectral_norm(module: nn.Module, x: Tensor, *, iters: int = MAX_ITERS, tol: float = REL_TOL) -> tuple[float, str]:
    """(||module||_2, how it was found) at `x`, one input of the shape the layer saw
    (batch of one). NaN with the reason where the layer's norm cannot be had this way.
    Kept for the process: the same layer with the same weights (an undefended model's
    layers behind each input purification) is measured once."""
    linear = self_reported(module) or isinstance(module, (nn.Linear, nn.Conv2d))
    key = _key(module, x, linear, iters, tol)
    if key not in _KNOWN:
        _KNOWN[key] = _spectral_norm(module, x, iters=iters, tol=tol)
    return _KNOWN[key]


def _key(module: nn.Module, x: Tensor, linear: bool, iters: int, tol: float) -> str:
    """The layer's class, configuration and state, the input's shape (and, where the norm
    is the Jacobian's at x, the input itself)."""
    h = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}({module.extra_repr()}) "
                       f"{tuple(x.shape)} {x.dtype} {iters} {tol}".encode())
    for t in [*module.state_dict().values(), *([] if linear else [x])]:
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _spectral_norm(module: nn.Module, x: Tensor, *, iters: int, tol: float) -> tuple[float, str]:
    try:
        with torch.no_grad():
            if self_reported(module):
                return float(module.operator_norm()), "self-reported"
            if isinstance(module, nn.Linear):
                return float(torch.linalg.matrix_norm(module.weight.detach().double(), ord=2)), "exact"
            if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros" and isinstance(module.padding, tuple):
                return conv2d_norm(module, tuple(x.shape[1:]), iters=iters, tol=tol), "power-iteration"
        return jacobian_norm(module, x, iters=iters, tol=tol), "power-iteration (Jacobian at the clean input)"
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as e:
        return math.nan, f"unavailable: {type(e).__name__}"


def conv2d_norm(conv: nn.Conv2d, in_shape: tuple[int, ...], *, iters: int = MAX_ITERS, tol: float = REL_TOL) -> float:
    """Largest singular value of the zero-padded convolution `conv` (bias aside) on inputs
    of shape `in_shape` (C, H, W)."""
    w = conv.weight.detach()
    kw = {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation, "groups": conv.groups}
    out_hw = F.conv2d(torch.zeros((1, *in_shape), dtype=w.dtype, device=w.device), w, **kw).shape[-2:]
    # conv_transpose2d's output size is ambiguous when stride > 1: output_padding picks the input's
    extra = [n - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
             for n, o, s, p, d, k in zip(in_shape[1:], out_hw, conv.stride, conv.padding, conv.dilation,
                                         w.shape[-2:], strict=True)]

    def forward(v: Tensor) -> Tensor:
        return F.conv2d(v, w, **kw)

    def adjoint(u: Tensor) -> Tensor:
        return F.conv_transpose2d(u, w, stride=conv.stride, padding=conv.padding, output_padding=tuple(extra),
                                  groups=conv.groups, dilation=conv.dilation)

    return power_iteration(forward, adjoint, in_shape, w, iters=iters, tol=tol)


def jacobian_norm(module: nn.Module, x: Tensor, *, iters: int = MAX_ITERS, tol: float = REL_TOL) -> float:
    """Largest singular value of the module's Jacobian at `x` (its operator norm where the
    module is linear)."""
    x = x.detach()
    with torch.enable_grad():
        z = x.clone().requires_grad_(True)
        out = _tensor(module(z))

        def forward(v: Tensor) -> Tensor:
            return _tensor(torch.func.jvp(lambda t: _tensor(module(t)), (x,), (v,))[1]).detach()

        def adjoint(u: Tensor) -> Tensor:
            (g,) = torch.autograd.grad(out, z, u, retain_graph=True)
            return g

        return power_iteration(forward, adjoint, tuple(x.shape[1:]), x, iters=iters, tol=tol)


def power_iteration(forward: Callable[[Tensor], Tensor], adjoint: Callable[[Tensor], Tensor], shape: tuple[int, ...],
                    like: Tensor, *, iters: int = MAX_ITERS, tol: float = REL_TOL) -> float:
    """sqrt of the largest eigenvalue of adjoint(forward(.)) on inputs of `shape`, from a
    seeded Gaussian start: the estimate ||A v|| of unit v only grows towards ||A||_2."""
    gen = torch.Generator().manual_seed(SEED)
    v = torch.randn((1, *shape), generator=gen, dtype=torch.float64).to(like.device, like.dtype)
    v = v / v.norm()
    sigma = 0.0
    for _ in range(iters):
        u = forward(v)
        new = float(u.norm())
        back = adjoint(u)
        size = back.norm()
        if new == 0 or size == 0:
            return 0.0
        v = back / size
        if abs(new - sigma) <= tol * new:
            return new
        sigma = new
    return sigma


def first_tensor(out: object) -> Tensor | None:
    """A module's output, or its first tensor where it returns several; None without one."""
    if isinstance(out, Tensor):
        return out
    return next((t for t in out if isinstance(t, Tensor)), None) if isinstance(out, (tuple, list)) else None


def _tensor(out: object) -> Tensor:
    if (t := first_tensor(out)) is None:
        raise TypeError(f"the layer returned {type(out).__name__}, not a tensor")
    return t
