"""Building blocks shared by every generative backbone.

Images are ``(B, C, H, W)`` feature maps; latents are ``(B, D)``.

* :class:`EqualConv2d` / :class:`EqualLinear`: equalized learning rate (ProGAN): weights are stored as
  N(0, 1) / lr_mul and scaled at run time by ``gain * lr_mul / sqrt(fan_in)`` (He scaling), so that
  Adam's per-parameter step size means the same thing in every layer.
* :class:`PixelNorm`: ``a / sqrt(mean_c a^2 + 1e-8)`` per pixel (thesis 3.2.2).
* :func:`spectral_norm`: weight / sigma_max(weight) with one power iteration per training forward.
  The power-iteration vector ``u`` is a *buffer* (it lands in ``state_dict`` and in checkpoints) and
  it is frozen in eval mode or when :func:`set_spectral_norm_frozen` says so. The original
  automodulator code kept iterating during evaluation, which made the weights collapse after the
  first decoding run; re-estimating ``u`` after loading also made runs non-reproducible.
* :class:`Blur`, :class:`NoiseInjection`, :class:`AdaIN` (thesis eq. 3.4), :func:`minibatch_stddev`,
  :func:`upsample`, :func:`downsample`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = [
    "EqualConv2d",
    "EqualLinear",
    "PixelNorm",
    "SpectralNormParametrization",
    "spectral_norm",
    "set_spectral_norm_frozen",
    "frozen_spectral_norm",
    "spectral_norm_modules",
    "Blur",
    "NoiseInjection",
    "AdaIN",
    "adain",
    "minibatch_stddev",
    "upsample",
    "downsample",
    "leaky_relu",
]

HE_GAIN = math.sqrt(2.0)


def leaky_relu() -> nn.LeakyReLU:
    """The LReLU(0.2) used throughout the progressive-growing models."""
    return nn.LeakyReLU(0.2)


# ------------------------------------------------------------------------------ equalized lr
class EqualConv2d(nn.Module):
    """2-D convolution with equalized learning rate.

    ``weight`` is initialised N(0, 1) / lr_mul and multiplied at run time by
    ``gain * lr_mul / sqrt(in_channels * k * k)``; the bias is multiplied by ``lr_mul``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        lr_mul: float = 1.0,
        gain: float = HE_GAIN,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain * lr_mul / math.sqrt(in_channels * kernel_size * kernel_size)
        self.lr_mul = lr_mul
        self.stride = stride
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return F.conv2d(x, self.weight * self.scale, bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}, lr_mul={self.lr_mul}"


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate (see :class:`EqualConv2d`); ``bias_init`` is the
    effective initial bias (StyleGAN's style layers start at 1)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        gain: float = HE_GAIN,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), bias_init / lr_mul)) if bias else None
        self.scale = gain * lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"{i}, {o}, lr_mul={self.lr_mul}"


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit RMS over channels: ``(B, C, H, W) -> same``."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


# ------------------------------------------------------------------------------ spectral norm
class SpectralNormParametrization(nn.Module):
    """``W -> W / sigma`` where ``sigma`` estimates the largest singular value of ``W`` viewed as an
    ``(out, in * k * k)`` matrix.

    Only ``u`` (left singular vector estimate, a buffer) is stored; ``v = normalise(W^T u)`` is derived
    from it, so ``sigma = u^T W v = ||W^T u||`` with ``u`` held constant (gradients flow through ``W``
    only, as in Miyato et al. 2018). While the owning module is in training mode and not frozen, each
    forward runs ``n_power_iterations`` power iterations and writes ``u`` back.
    """

    def __init__(self, weight: Tensor, n_power_iterations: int = 1, eps: float = 1e-12) -> None:
        super().__init__()
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
        rows = weight.shape[0]
        u = torch.randn(rows, dtype=weight.dtype, device=weight.device)
        self.register_buffer("u", F.normalize(u, dim=0, eps=eps))
        self.n_power_iterations = n_power_iterations
        self.eps = eps
        self.frozen = False

    def forward(self, weight: Tensor) -> Tensor:
        mat = weight.flatten(1)
        if self.training and not self.frozen:
            with torch.no_grad():
                u = self.u
                for _ in range(self.n_power_iterations):
                    v = F.normalize(mat.t() @ u, dim=0, eps=self.eps)
                    u = F.normalize(mat @ v, dim=0, eps=self.eps)
                self.u.copy_(u)
        # clone: later in-place updates of the buffer (a second forward in the same step) must not
        # invalidate this graph.
        u = self.u.clone()
        sigma = torch.linalg.vector_norm(mat.t() @ u).clamp_min(self.eps)
        return weight / sigma


def spectral_norm(module: nn.Module, name: str = "weight", n_power_iterations: int = 1) -> nn.Module:
    """Register spectral normalisation on ``module.<name>`` (in place) and return the module.

    The raw weight becomes ``module.parametrizations.<name>.original`` and ``u`` is
    ``module.parametrizations.<name>.0.u`` in the state dict.
    """
    weight = getattr(module, name)
    parametrize.register_parametrization(module, name, SpectralNormParametrization(weight, n_power_iterations))
    return module


def spectral_norm_modules(model: nn.Module) -> list[SpectralNormParametrization]:
    """All spectral-norm parametrizations inside ``model``."""
    return [m for m in model.modules() if isinstance(m, SpectralNormParametrization)]


def set_spectral_norm_frozen(model: nn.Module, frozen: bool = True) -> None:
    """Stop (or restart) the power-iteration updates of ``u`` in every spectral-norm layer of ``model``,
    independently of train/eval mode (eval mode always freezes)."""
    for m in spectral_norm_modules(model):
        m.frozen = frozen


# ------------------------------------------------------------------------------ StyleGAN-style parts
class Blur(nn.Module):
    """Depthwise blur with the fixed separable [1, 2, 1] / 4 filter; keeps ``(B, C, H, W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k = torch.outer(k, k)
        k = k / k.sum()
        self.register_buffer("kernel", k.expand(channels, 1, 3, 3).clone(), persistent=False)
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.kernel.to(x.dtype), padding=1, groups=self.channels)


class NoiseInjection(nn.Module):
    """``x + scale_c * n`` with ``n ~ N(0, 1)`` of shape ``(B, 1, H, W)`` shared over channels and a
    learned per-channel ``scale`` initialised to zero (so a fresh layer is the identity)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor, noise: Optional[Tensor] = None, generator: Optional[torch.Generator] = None) -> Tensor:
        if noise is None:
            b, _, h, w = x.shape
            noise = torch.randn(b, 1, h, w, device=x.device, dtype=x.dtype, generator=generator)
        return x + self.weight * noise


def adain(x: Tensor, scale: Tensor, shift: Tensor, eps: float = 1e-8) -> Tensor:
    """Adaptive instance normalisation (thesis eq. 3.4).

    Each channel of each sample of ``x (B, C, H, W)`` is normalised to zero mean and unit (biased)
    standard deviation over ``H x W`` and then given standard deviation ``scale (B, C)`` and mean
    ``shift (B, C)``.
    """
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = (x.var(dim=(2, 3), unbiased=False, keepdim=True) + eps).sqrt()
    return scale[:, :, None, None] * (x - mean) / std + shift[:, :, None, None]


class AdaIN(nn.Module):
    """AdaIN with its own affine map ``g: z (B, D) -> (scale, shift) (B, C) each`` (thesis eq. 3.4).

    The affine map is a Linear(D -> 2C) with Xavier-normal weights; its bias starts at ``scale_bias``
    for the scale half and ``shift_bias`` for the shift half. (The automodulator code fills both halves
    with 1; the thesis form is scale 1, shift 0, the default here.)
    """

    def __init__(self, channels: int, latent_dim: int, scale_bias: float = 1.0, shift_bias: float = 0.0) -> None:
        super().__init__()
        self.affine = nn.Linear(latent_dim, 2 * channels)
        nn.init.xavier_normal_(self.affine.weight)
        with torch.no_grad():
            self.affine.bias[:channels].fill_(scale_bias)
            self.affine.bias[channels:].fill_(shift_bias)
        self.channels = channels

    def style(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, D) -> (scale (B, C), shift (B, C))``."""
        scale, shift = self.affine(z).chunk(2, dim=1)
        return scale, shift

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        scale, shift = self.style(z)
        return adain(x, scale, shift)


# ------------------------------------------------------------------------------ helpers
def minibatch_stddev(x: Tensor, group_size: int = 4, eps: float = 1e-8) -> Tensor:
    """ProGAN's minibatch standard-deviation feature: ``(B, C, H, W) -> (B, C + 1, H, W)``.

    Samples are split into groups of ``min(group_size, B)`` (``B`` must be divisible by it); the extra
    channel holds, for every member of a group, the mean over features and pixels of the per-feature
    standard deviation within the group.
    """
    b, c, h, w = x.shape
    g = min(group_size, b)
    if b % g != 0:
        raise ValueError(f"minibatch_stddev: batch size {b} is not divisible by the group size {g}")
    y = x.reshape(g, b // g, c, h, w)
    y = (y.var(dim=0, unbiased=False) + eps).sqrt()  # (B/g, C, H, W)
    y = y.mean(dim=(1, 2, 3))  # (B/g,)
    y = y.repeat(g).reshape(b, 1, 1, 1).expand(b, 1, h, w)
    return torch.cat([x, y], dim=1)


def upsample(x: Tensor, factor: int = 2) -> Tensor:
    """Nearest-neighbour upsampling ``(B, C, H, W) -> (B, C, factor H, factor W)``."""
    return F.interpolate(x, scale_factor=factor, mode="nearest")


def downsample(x: Tensor, factor: int = 2) -> Tensor:
    """Average pooling ``(B, C, H, W) -> (B, C, H / factor, W / factor)``."""
    return F.avg_pool2d(x, factor)


class frozen_spectral_norm:
    """Context manager: no power-iteration updates inside ``model`` for the duration (restores the
    previous per-layer flags on exit). ``with frozen_spectral_norm(net): y = net(x)``."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = spectral_norm_modules(model)
        self.previous: list[bool] = []

    def __enter__(self) -> "frozen_spectral_norm":
        self.previous = [m.frozen for m in self.layers]
        for m in self.layers:
            m.frozen = True
        return self

    def __exit__(self, *exc) -> None:
        for m, was in zip(self.layers, self.previous):
            m.frozen = was
