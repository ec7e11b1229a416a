"""Orthogonal convolution layers, with no dependency on the benchmark (torch only), so
that they can be reused in any model.

Both are C -> C convolutions that start as the identity, so that inserting one after a
trained layer leaves the trained model unchanged until fine-tuning moves it:

- `CayleyConv2d` is exactly orthogonal (norm-preserving) on the input's H x W grid;
- `RKOConv2d` is cheaper but only bounded (Lipschitz constant at most k |scale|).

`BLOCKS` names them for configuration; `BLOCK_TYPES` is the same for `isinstance`.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BLOCKS", "BLOCK_TYPES", "CayleyConv2d", "RKOConv2d"]


# ----------------------------------------------------------------------------- Cayley conv
class CayleyConv2d(nn.Module):
    """A C -> C convolution that is exactly orthogonal on the input's H x W grid.

    Trockman & Kolter, "Orthogonalizing Convolutional Layers with the Cayley Transform",
    ICLR 2021 (https://arxiv.org/abs/2104.07167): a (circular) convolution is diagonal in
    the Fourier domain, one C x C matrix per frequency; making each of those unitary with
    the Cayley transform Q = (I + A)^-1 (I - A) of the skew-Hermitian A = V - V^H makes the
    whole map orthogonal. Because the kernel is real, Q at frequency -f is conj(Q at f),
    so the half spectrum of `rfft2` is enough and the output is real.

    V starts at zero, so Q = I and the block is the identity when inserted into a trained
    model; `scale` (a learnable scalar, 1.0 at start) lets fine-tuning rescale the output,
    so the layer is norm-preserving up to |scale|.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.channels, self.kernel_size = channels, kernel_size
        self.weight = nn.Parameter(torch.zeros(channels, channels, kernel_size, kernel_size))
        self.scale = nn.Parameter(torch.ones(()))
        self._cache: tuple[tuple, Tensor] | None = None  # see _operator

    def cayley_system(self, h: int, w: int, dtype: torch.dtype) -> Tensor:
        """I + A, with A = V_f - V_f^H at each frequency of the half spectrum, (h, w // 2 + 1, C, C).

        V_f is the DFT of the kernel zero-padded to h x w (what rfft2 with s=(h, w) gives;
        a kernel larger than the grid wraps around). It is written as two real matmuls with
        a k*k-term Fourier basis, and the skew-Hermitian part is taken on the small kernel
        before them: Re A = DFT_cos(V - V^T), Im A = -DFT_sin(V + V^T), transposing the
        channel axes. For a small kernel this is much cheaper than C*C padded FFTs,
        forward and backward. The identity rides on tap (0, 0), whose basis is 1 + 0i.
        """
        c, k = self.channels, self.kernel_size
        cos, sin = _fourier_basis(h, w, k, dtype, self.weight.device)  # (h * w', k * k)
        v = self.weight.to(dtype)
        skew, sym = v - v.transpose(0, 1), v + v.transpose(0, 1)
        tap0 = torch.zeros(k, k, dtype=dtype, device=v.device)
        tap0[0, 0] = 1
        skew = skew + torch.eye(c, dtype=dtype, device=v.device)[:, :, None, None] * tap0
        real = cos @ skew.reshape(c * c, k * k).T
        imag = sin @ sym.reshape(c * c, k * k).T
        return torch.complex(real, imag.neg_()).reshape(h, w // 2 + 1, c, c)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        dtype = torch.promote_types(x.dtype, torch.float32)  # FFTs of half tensors are limited
        # (h, w', C, B), contiguous: a batched matmul or solve on the permuted view copies
        # matrix by matrix, ~3x slower forward and backward
        xf = torch.fft.rfft2(x.to(dtype)).permute(2, 3, 1, 0).contiguous()
        # (I + A)^-1 (I - A) = 2 (I + A)^-1 - I: one solve against the input instead of
        # forming Q, several times cheaper (forward and backward) when B < C.
        if self.training and self.weight.requires_grad:
            out = 2 * torch.linalg.solve(self.cayley_system(h, w, dtype), xf) - xf
        else:  # the real form of Q xf: see _operator
            stacked = self._operator(h, w, dtype) @ torch.cat((xf.real, xf.imag), dim=-2)
            out = torch.complex(*stacked.split(self.channels, dim=-2))
        y = torch.fft.irfft2(out.permute(3, 2, 0, 1), s=(h, w))
        return (self.scale * y).to(x.dtype)

    def _operator(self, h: int, w: int, dtype: torch.dtype) -> Tensor:
        """Q = 2 (I + A)^-1 - I at every frequency, kept between eval-mode calls: an
        attack differentiates only with respect to the input, and a batched matmul with Q
        is ~1.7x faster (forward and backward) than solving against I + A each step. Hence
        V gets no gradient in eval mode, nor while it is held (requires_grad False, as in
        the fine-tune stages before the block's own): train it in train mode (fit does).
        Kept as the real 2C x 2C matrix [[Re Q, -Im Q], [Im Q, Re Q]]: the backward pass of
        a complex batched matmul multiplies by the conjugate transpose, which torch copies
        matrix by matrix on the CPU; the real one is a plain transposed BLAS call."""
        wt = self.weight
        key = (h, w, dtype, wt.device, wt.data_ptr(), wt._version)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                system = self.cayley_system(h, w, dtype)
                eye = torch.eye(self.channels, dtype=system.dtype, device=system.device)
                q = 2 * torch.linalg.inv(system) - eye
                real = torch.cat((torch.cat((q.real, -q.imag), -1), torch.cat((q.imag, q.real), -1)), -2)
                self._cache = (key, real.contiguous())
        return self._cache[1]

    def operator_norm(self) -> float:
        """The layer's exact spectral norm, |scale| (Q is orthogonal on every grid): the
        layer profile reads it instead of estimating it (CONTRIBUTING.md)."""
        return abs(float(self.scale))

    def train(self, mode: bool = True) -> CayleyConv2d:
        self._cache = None
        return super().train(mode)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}"


class RKOConv2d(nn.Module):
    """A C -> C convolution whose reshaped kernel, a C x (C k k) matrix, has orthonormal rows.

    Reshaped Kernel Orthogonalization (Cisse et al., "Parseval Networks", ICML 2017; the
    RKO baseline of Li et al., "Preventing Gradient Attenuation in Lipschitz Constrained
    Convolutional Networks", NeurIPS 2019): cheaper than the Cayley block and exactly
    orthogonal for a 1 x 1 kernel, but for k > 1 only bounded, its Lipschitz constant at
    most k |scale| (Tsuzuku et al., 2018), so it is not norm-preserving. The row
    orthogonality is torch's own parametrization (`parametrizations.orthogonal`). The
    kernel starts as the identity at its centre tap, so insertion leaves the trained model
    unchanged; circular padding, like the Cayley block's.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"RKO block: kernel_size {kernel_size} must be odd (the identity sits at the centre)")
        self.channels, self.kernel_size = channels, kernel_size
        eye = torch.zeros(channels, channels, kernel_size, kernel_size)
        eye[torch.arange(channels), torch.arange(channels), kernel_size // 2, kernel_size // 2] = 1
        self.weight = nn.Parameter(eye.reshape(channels, -1))
        self.scale = nn.Parameter(torch.ones(()))
        nn.utils.parametrizations.orthogonal(self, "weight")  # keeps the orthogonal start as it is

    def forward(self, x: Tensor) -> Tensor:
        c, k = self.channels, self.kernel_size
        padded = F.pad(x, [k // 2] * 4, mode="circular")
        return self.scale * F.conv2d(padded, self.weight.reshape(c, c, k, k))

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}"


BLOCKS: dict[str, type[nn.Module]] = {"cayley": CayleyConv2d, "rko": RKOConv2d}
BLOCK_TYPES: tuple[type[nn.Module], ...] = tuple(BLOCKS.values())  # for isinstance


@functools.lru_cache(maxsize=16)
def _fourier_basis(h: int, w: int, k: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """cos and sin of 2 pi (f_h p / h + f_w q / w) for the half spectrum (f_h, f_w) and the
    kernel taps (p, q): the real and (minus) imaginary parts of the DFT as a matrix."""
    fh = torch.arange(h, dtype=torch.float64).reshape(h, 1, 1, 1) / h
    fw = torch.arange(w // 2 + 1, dtype=torch.float64).reshape(1, -1, 1, 1) / w
    taps = torch.arange(k, dtype=torch.float64)
    phase = 2 * torch.pi * (fh * taps.reshape(1, 1, k, 1) + fw * taps.reshape(1, 1, 1, k))
    phase = phase.reshape(h * (w // 2 + 1), k * k)
    return phase.cos().to(device, dtype), phase.sin().to(device, dtype)
