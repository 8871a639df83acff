"""StyleGAN2 generator in plain PyTorch that reads and writes rosinality-format checkpoints (SPEC section 4).

Architecture (Karras et al. 2020, config F; notes/aging_inversion.md B.5), top to bottom:

* mapping ``z (B, D) -> w (B, D)``: PixelNorm, then ``n_mlp`` equalized-lr linear layers (lr_mul 0.01)
  each followed by the fused leaky ReLU ``lrelu(x + b, 0.2) * sqrt(2)``;
* synthesis: a learned constant ``4x4`` input, then per resolution ``r = 8 ... resolution`` an upsampling
  modulated 3x3 conv and a plain one, each followed by noise injection (``x + weight * noise``, a scalar
  weight and one ``(B, 1, r, r)`` noise map per layer) and the fused leaky ReLU; the image is the sum of
  1x1 modulated (not demodulated) "toRGB" outputs of every resolution, the running sum upsampled
  (zero insertion + [1, 3, 3, 1] FIR filter) on the way.
* modulated conv: ``w'_oikl = w_oikl * s_i / sqrt(fan_in)`` with the style ``s = A(w)`` (an affine
  EqualLinear initialised to bias 1), demodulated by ``1 / sqrt(sum_ikl w'^2 + 1e-8)`` per output channel;
  upsampling convs are a stride-2 transposed conv followed by the FIR blur.

Latents: ``n_styles = 2 log2(resolution) - 2`` style vectors (18 at 1024 px): style 0 drives ``conv1``,
1 ``to_rgb1``, and per later resolution ``k`` styles ``2k+1, 2k+2`` its two convs and ``2k+3`` its toRGB.
``decode`` takes W ``(B, D)`` (the same vector for every layer) or W+ ``(B, n_styles, D)``.

Module and parameter names follow rosinality/stylegan2-pytorch ``model.py`` exactly (``style.1.weight``,
``input.input``, ``conv1.conv.modulation.weight``, ``convs.0.conv.blur.kernel``, ``noises.noise_0``, ...), so
the ``g_ema`` state dict of a rosinality ``.pt`` (training checkpoint or ``convert_weight.py`` output) loads
as is: :meth:`StyleGAN2Generator.from_rosinality`. Our own files are the usual viewgp exports
(:meth:`StyleGAN2Generator.export`, read back by :func:`generative.load`). The FIR filtering
("upfirdn2d") is done with ``F.pad`` + depthwise ``conv2d``: no custom CUDA ops, runs on CPU.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generative.backbones.registry import register_backbone, restore_backbone, weights_fingerprint
from generative.backbones.checkpoint import CheckpointError, atomic_save, export_safetensors, load_torch_file, read_checkpoint
from generative.backbones.configs import ConfigDict
from generative.backbones.layers import EqualLinear, PixelNorm

__all__ = [
    "StyleGAN2Config",
    "StyleGAN2Generator",
    "n_styles_for",
    "upfirdn2d",
    "make_kernel",
    "fused_leaky_relu",
    "ModulatedConv2d",
]

KIND = "stylegan2"
BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)
NOISE_MODES = ("const", "random", "none")


def n_styles_for(resolution: int) -> int:
    """Number of style vectors of a generator at ``resolution`` px: ``2 log2(resolution) - 2``."""
    return 2 * int(round(math.log2(resolution))) - 2


def _check_power_of_two(resolution: int) -> int:
    r = int(resolution)
    if r != resolution or r < 8 or r > 1024 or r & (r - 1):
        raise ValueError(f"StyleGAN2 resolution must be a power of two from 8 to 1024, got {resolution}")
    return r


@dataclass
class StyleGAN2Config(ConfigDict):
    """Everything needed to rebuild the networks.

    Channel widths follow rosinality's table: 512 up to 32 px, then 256 / 128 / 64 / 32 / 16 times
    ``channel_multiplier`` at 64 ... 1024 px, *not* capped at 512 (config F is ``channel_multiplier=2``;
    with 3 or more the 64 px layers are wider than the 32 px ones). ``max_channels`` other than 512 only
    makes small test models: ``min(max_channels, 16384 * channel_multiplier // r)`` at every resolution.
    """

    resolution: int = 256
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    lr_mlp: float = 0.01
    max_channels: int = 512

    def __post_init__(self) -> None:
        _check_power_of_two(self.resolution)
        for name in ("style_dim", "n_mlp", "channel_multiplier", "max_channels"):
            value = getattr(self, name)
            if int(value) != value or int(value) < 1:
                raise ValueError(f"StyleGAN2Config.{name} must be a positive integer, got {value}")
        if not self.lr_mlp > 0:
            raise ValueError(f"StyleGAN2Config.lr_mlp must be positive, got {self.lr_mlp}")

    @property
    def kind(self) -> str:
        return KIND

    @property
    def log_size(self) -> int:
        return int(round(math.log2(self.resolution)))

    @property
    def n_styles(self) -> int:
        return n_styles_for(self.resolution)

    @property
    def num_layers(self) -> int:
        """Styled convs = noise maps: ``conv1`` plus two per resolution 8 ... ``resolution``."""
        return (self.log_size - 2) * 2 + 1

    def channels(self, r: int) -> int:
        width = 16384 * self.channel_multiplier // r
        if self.max_channels == 512:  # rosinality's table: 512 up to 32 px, uncapped above
            return 512 if r <= 32 else int(width)
        return int(min(self.max_channels, width))

    def noise_size(self, layer: int) -> int:
        """Side of noise map ``layer`` (rosinality: ``2 ** ((layer + 5) // 2)``)."""
        return 2 ** ((layer + 5) // 2)


# ----------------------------------------------------------------------------------------- primitives
def make_kernel(taps: Sequence[float] = BLUR_TAPS) -> Tensor:
    """Separable 2-D FIR kernel ``outer(taps, taps) / sum``: ``(len, len)``, summing to 1."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Upsample by zero insertion (each sample followed by ``up - 1`` zeros), pad ``pad = (before, after)``
    on both axes, then convolve (true convolution: the kernel is flipped) every channel with ``kernel``.

    ``(B, C, H, W) -> (B, C, H*up + p0 + p1 - kh + 1, same for W)``; rosinality's ``upfirdn2d`` with
    ``down=1``, written with ``F.pad`` + a depthwise ``conv2d`` so it runs anywhere.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(b, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1)).reshape(b, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    k = torch.flip(kernel, (0, 1)).to(x.dtype)
    return F.conv2d(x, k[None, None].expand(c, 1, *k.shape), groups=c)


def fused_leaky_relu(x: Tensor, bias: Tensor, negative_slope: float = 0.2, scale: float = math.sqrt(2.0)) -> Tensor:
    """``leaky_relu(x + bias, 0.2) * sqrt(2)`` with ``bias (C,)`` added along dim 1 of ``x``."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), negative_slope) * scale


class MappingLinear(EqualLinear):
    """A mapping-network layer: equalized-lr linear + fused leaky ReLU, the bias scaled by ``lr_mul``
    (rosinality ``EqualLinear(..., activation="fused_lrelu")``, i.e. :class:`~generative.backbones.layers.EqualLinear`
    with gain 1 and the bias added inside the activation)."""

    def __init__(self, dim: int, lr_mul: float) -> None:
        super().__init__(dim, dim, bias=True, bias_init=0.0, lr_mul=lr_mul, gain=1.0)

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)


class FusedLeakyReLU(nn.Module):
    """Per-channel bias + leaky ReLU(0.2) x sqrt(2); parameter ``bias (C,)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias)


class Blur(nn.Module):
    """FIR low-pass after a transposed conv: buffer ``kernel (4, 4)`` (x ``factor^2`` to keep the gain of
    the zero-inserted signal), fixed padding."""

    def __init__(self, pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel() * upsample_factor**2)
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, up=1, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling of the toRGB skip: ``(B, C, H, W) -> (B, C, 2H, 2W)``; buffer ``kernel (4, 4)``."""

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel() * factor**2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Style-modulated conv: ``(B, C_in, H, W), w (B, D) -> (B, C_out, H', W')`` (``H' = 2H`` when
    ``upsample``). Parameters ``weight (1, C_out, C_in, k, k)`` and ``modulation`` (EqualLinear D -> C_in,
    bias initialised to 1).

    Computed as "modulate the input, convolve with the shared weight, scale the output by the
    demodulation coefficients", which equals convolving each sample with its own modulated, demodulated
    weight (the demodulation is per output channel, so it commutes with the conv and the blur) without
    building ``B`` weight tensors.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, demodulate: bool = True, upsample: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.upsample = demodulate, upsample
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0, gain=1.0)
        if upsample:
            # transposed conv gives 2H + k - 2 samples; the 4-tap blur brings them back to 2H
            factor = 2
            p = (len(BLUR_TAPS) - factor) - (kernel_size - 1)
            self.blur = Blur(pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        b = x.shape[0]
        s = self.modulation(w)  # (B, C_in)
        weight = self.weight[0] * self.scale  # (C_out, C_in, k, k)
        x = x * s.view(b, -1, 1, 1)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # sum_{i,k,l} (w_oikl s_i)^2 = sum_i s_i^2 sum_kl w_oikl^2
            d = torch.rsqrt(s.square() @ weight.square().sum((2, 3)).t() + 1e-8)  # (B, C_out)
            out = out * d.view(b, -1, 1, 1)
        return out

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, demodulate={self.demodulate}, upsample={self.upsample}"


class NoiseInjection(nn.Module):
    """``x + weight * noise`` with a scalar ``weight (1,)`` and ``noise (B or 1, 1, H, W)``."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Optional[Tensor]) -> Tensor:
        return x if noise is None else x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned ``input (1, C, 4, 4)`` repeated over the batch."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv -> noise injection -> fused leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: Tensor, w: Tensor, noise: Optional[Tensor]) -> Tensor:
        return self.activate(self.noise(self.conv(x, w), noise))


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) + ``bias (1, 3, 1, 1)``, plus the upsampled running image."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, w: Tensor, skip: Optional[Tensor] = None) -> Tensor:
        out = self.conv(x, w) + self.bias
        return out if skip is None else out + self.upsample(skip)


class _Noises(nn.Module):
    """Holds the fixed noise maps as buffers ``noise_0 ... noise_{L-1}`` (rosinality's ``noises``)."""


# ----------------------------------------------------------------------------------------- generator
@register_backbone(KIND)
class StyleGAN2Generator(nn.Module):
    """StyleGAN2 generator; a :class:`~generative.backbones.registry.Backbone` without encoder (invert images with
    :mod:`generative.latents.invert`). Latents are W+ ``(B, n_styles, style_dim)`` in Euclidean space.

    ``latent_avg`` (buffer, ``(style_dim,)``) is the mean W used for truncation; a rosinality file without
    one gets it estimated from the mapping network (:meth:`mean_latent`).
    """

    kind = KIND
    latent_geometry = "euclidean"
    has_encoder = False

    def __init__(
        self,
        resolution: Union[int, StyleGAN2Config] = 256,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        lr_mlp: float = 0.01,
        max_channels: int = 512,
    ) -> None:
        super().__init__()
        if isinstance(resolution, StyleGAN2Config):
            config = resolution
        else:
            config = StyleGAN2Config(resolution, style_dim, n_mlp, channel_multiplier, lr_mlp, max_channels)
        self.config = config
        d, ch = config.style_dim, config.channels
        self.style = nn.Sequential(PixelNorm(), *[MappingLinear(d, config.lr_mlp) for _ in range(config.n_mlp)])
        self.input = ConstantInput(ch(4))
        self.conv1 = StyledConv(ch(4), ch(4), d)
        self.to_rgb1 = ToRGB(ch(4), d, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        c_in = ch(4)
        for log_r in range(3, config.log_size + 1):
            c_out = ch(2**log_r)
            self.convs.append(StyledConv(c_in, c_out, d, upsample=True))
            self.convs.append(StyledConv(c_out, c_out, d))
            self.to_rgbs.append(ToRGB(c_out, d))
            c_in = c_out
        self.noises = _Noises()
        for i in range(config.num_layers):
            s = config.noise_size(i)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, s, s))
        self.register_buffer("latent_avg", torch.zeros(d))

    # -------------------------------------------------------------------------- description
    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def style_dim(self) -> int:
        return self.config.style_dim

    @property
    def n_styles(self) -> int:
        return self.config.n_styles

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def latent_shape(self) -> tuple:
        return (self.n_styles, self.style_dim)

    def set_resolution(self, resolution: int) -> None:
        """Only the generator's own resolution is available (``ValueError`` otherwise)."""
        if int(resolution) != self.resolution:
            raise ValueError(
                f"this StyleGAN2 generator decodes {self.resolution}x{self.resolution} images only, not {resolution}; "
                "resize the frames instead"
            )

    @property
    def _device(self) -> torch.device:
        return self.input.input.device

    # -------------------------------------------------------------------------- mapping, latents, noise
    def mapping(self, z: Tensor) -> Tensor:
        """``z (B, style_dim) -> w (B, style_dim)``."""
        if z.ndim != 2 or z.shape[1] != self.style_dim:
            raise ValueError(f"mapping expects z of shape (B, {self.style_dim}), got {tuple(z.shape)}")
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 10_000, seed: int = 0, chunk: int = 4096) -> tuple[Tensor, float]:
        """Mean and spread of W over ``n`` seeded draws ``z ~ N(0, I)`` (drawn on the CPU, so the same on any
        device): ``(mean (style_dim,), std)`` with ``std = sqrt(sum_j |w_j - mean|^2 / n)`` as the
        StyleGAN2 projector defines it."""
        if n < 1:
            raise ValueError(f"mean_latent needs n >= 1 draws, got {n}")
        gen = torch.Generator().manual_seed(int(seed))
        ws = torch.cat([
            self.style(torch.randn(min(chunk, n - s), self.style_dim, generator=gen).to(self._device)).float()
            for s in range(0, n, chunk)
        ])
        mean = ws.mean(0)
        return mean, float((ws - mean).square().sum() / n) ** 0.5

    def sample_w(self, n: int, generator: Optional[torch.Generator] = None, truncation: float = 1.0) -> Tensor:
        """``n`` W latents ``(n, style_dim)`` from ``z ~ N(0, I)`` (drawn on the CPU when ``generator``
        is a CPU generator), truncated towards ``latent_avg`` by ``truncation``."""
        z = torch.randn(n, self.style_dim, generator=generator, device=generator.device if generator is not None else "cpu")
        return self.truncate(self.mapping(z.to(self._device)), truncation)

    def sample_prior(self, n: int, generator: Optional[torch.Generator] = None, device=None) -> Tensor:
        """``n`` W+ latents ``(n, n_styles, style_dim)`` (one mapped W repeated over the styles)."""
        w = self.sample_w(n, generator)
        w = w[:, None, :].expand(-1, self.n_styles, -1).contiguous()
        return w.to(device) if device is not None else w

    def truncate(self, w: Tensor, truncation: float = 1.0) -> Tensor:
        """``latent_avg + truncation * (w - latent_avg)`` (any shape ending in ``style_dim``)."""
        if truncation == 1.0:
            return w
        return torch.lerp(self.latent_avg.to(w.dtype), w, float(truncation))

    def make_noise(self, batch: int = 1, generator: Optional[torch.Generator] = None, device=None) -> list[Tensor]:
        """Fresh N(0, 1) noise maps, one per styled conv: ``[(batch, 1, s_i, s_i)]`` with ``s`` = 4, 8, 8,
        16, 16, ...; pass them to :meth:`decode` (e.g. to optimise them during inversion)."""
        device = device if device is not None else self._device
        gdev = generator.device if generator is not None else device
        return [
            torch.randn(batch, 1, s, s, generator=generator, device=gdev).to(device)
            for s in map(self.config.noise_size, range(self.num_layers))
        ]

    def const_noise(self) -> list[Tensor]:
        """The stored noise maps ``noises.noise_i`` ``[(1, 1, s_i, s_i)]`` (the ``'const'`` noise mode)."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def _noise_list(self, batch: int, noise: Optional[Sequence[Optional[Tensor]]], noise_mode: str, generator) -> list:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got '{noise_mode}'")
        if noise is not None:
            noise = list(noise)
            if len(noise) != self.num_layers:
                raise ValueError(f"decode needs {self.num_layers} noise maps (one per styled conv), got {len(noise)}")
        default = None
        if noise_mode == "const":
            default = self.const_noise()
        elif noise_mode == "random":
            default = self.make_noise(batch, generator=generator)
        out = []
        for i in range(self.num_layers):
            n = noise[i] if noise is not None and noise[i] is not None else (default[i] if default else None)
            s = self.config.noise_size(i)
            if n is not None and (n.ndim != 4 or n.shape[1:] != (1, s, s) or n.shape[0] not in (1, batch)):
                raise ValueError(f"noise map {i} must have shape ({batch} or 1, 1, {s}, {s}), got {tuple(n.shape)}")
            out.append(n)
        return out

    # -------------------------------------------------------------------------- Backbone
    def encode(self, x: Tensor) -> Tensor:
        """StyleGAN2 has no encoder: always a ``TypeError`` that points to optimization-based inversion."""
        raise TypeError(
            "a StyleGAN2 generator has no encoder (has_encoder is False); find latents for images with "
            "optimization-based inversion: generative.latents.invert.invert(generator, images)"
        )

    def decode(
        self,
        w: Tensor,
        noise: Optional[Sequence[Optional[Tensor]]] = None,
        noise_mode: str = "const",
        truncation: float = 1.0,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """W ``(B, style_dim)`` or W+ ``(B, n_styles, style_dim)`` -> images ``(B, 3, resolution, resolution)``,
        roughly in [-1, 1]. Differentiable in ``w`` and in the given ``noise`` maps.

        ``noise``: ``num_layers`` maps ``(B or 1, 1, s_i, s_i)`` (see :meth:`make_noise`); ``None`` entries
        (or ``noise=None``) fall back to ``noise_mode``: ``'const'`` the stored ``noises.noise_i`` (the
        default: deterministic decoding), ``'random'`` fresh draws (from ``generator`` when given),
        ``'none'`` no noise. ``truncation < 1`` pulls every style towards ``latent_avg``.
        """
        if w.ndim == 2 and w.shape[1] == self.style_dim:
            w = w[:, None, :].expand(-1, self.n_styles, -1)
        elif not (w.ndim == 3 and w.shape[1:] == (self.n_styles, self.style_dim)):
            raise ValueError(
                f"decode expects W (B, {self.style_dim}) or W+ (B, {self.n_styles}, {self.style_dim}), got {tuple(w.shape)}"
            )
        w = self.truncate(w, truncation)
        b = w.shape[0]
        noises = self._noise_list(b, noise, noise_mode, generator)
        x = self.conv1(self.input(b), w[:, 0], noises[0])
        image = self.to_rgb1(x, w[:, 1])
        for k, to_rgb in enumerate(self.to_rgbs):
            x = self.convs[2 * k](x, w[:, 2 * k + 1], noises[2 * k + 1])
            x = self.convs[2 * k + 1](x, w[:, 2 * k + 2], noises[2 * k + 2])
            image = to_rgb(x, w[:, 2 * k + 3], image)
        return image

    def forward(self, w: Tensor, **kwargs) -> Tensor:
        return self.decode(w, **kwargs)

    def generate(self, n: int, generator: Optional[torch.Generator] = None, truncation: float = 1.0, noise_mode: str = "const") -> Tensor:
        """``n`` random images ``(n, 3, r, r)``."""
        return self.decode(self.sample_w(n, generator, truncation), noise_mode=noise_mode, generator=generator)

    # -------------------------------------------------------------------------- persistence (ours)
    def payload(self) -> dict:
        """The model part of a training checkpoint (kind, config, state dict incl. noise maps and latent_avg)."""
        return {"kind": self.kind, "config": self.config.to_dict(), "model_state": self.state_dict(), "phase": 0, "alpha": 1.0}

    def export(self, path: Union[str, os.PathLike]) -> None:
        """Write the generator to a ``.safetensors`` file that :func:`generative.load` reads."""
        export_safetensors(path, self.kind, self.config.to_dict(), self.state_dict(), phase=0, alpha=1.0)

    def fingerprint(self) -> str:
        """Short hex digest of the weights (:func:`generative.backbones.registry.weights_fingerprint`)."""
        return weights_fingerprint(self)

    def restore_weights(self, payload: dict, source: str) -> None:
        """Load the state dict of one of our checkpoints or exports (``CheckpointError`` if it does not fit)."""
        try:
            self.load_state_dict(payload["model"])
        except (RuntimeError, KeyError) as exc:
            raise CheckpointError(f"{source}: weights do not fit the recorded StyleGAN2 architecture ({exc})") from exc

    @classmethod
    def from_payload(cls, payload: dict, device: Union[str, torch.device] = "cpu", source: str = "checkpoint") -> "StyleGAN2Generator":
        """Rebuild from a checkpoint payload (see :func:`generative.backbones.registry.restore_backbone`), in eval mode."""
        return restore_backbone(cls, payload, StyleGAN2Config, "StyleGAN2", device, source).eval()

    @classmethod
    def from_checkpoint(cls, path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu") -> "StyleGAN2Generator":
        """Restore from one of our own files (export or training checkpoint), in eval mode."""
        return cls.from_payload(read_checkpoint(path), device=device, source=str(path))

    # -------------------------------------------------------------------------- rosinality format
    def rosinality_state_dict(self) -> dict[str, Tensor]:
        """The ``g_ema`` state dict exactly as rosinality's ``Generator`` has it (no ``latent_avg``)."""
        return {k: v for k, v in self.state_dict().items() if k != "latent_avg"}

    def save_rosinality(self, path: Union[str, os.PathLike]) -> Path:
        """Write ``{"g_ema": state_dict, "latent_avg": (style_dim,)}`` (the layout of rosinality's converted
        weights) with ``torch.save``, atomically."""
        sd = {k: v.detach().cpu().clone() for k, v in self.rosinality_state_dict().items()}
        return atomic_save({"g_ema": sd, "latent_avg": self.latent_avg.detach().cpu().clone()}, path)

    @classmethod
    def from_rosinality(
        cls,
        path: Union[str, os.PathLike],
        resolution: Optional[int] = None,
        channel_multiplier: Optional[int] = None,
        lr_mlp: float = 0.01,
        device: Union[str, torch.device] = "cpu",
        n_mean_latent: int = 10_000,
    ) -> "StyleGAN2Generator":
        """Load the ``g_ema`` generator of a rosinality/stylegan2-pytorch ``.pt`` (a training checkpoint with
        ``g, d, g_ema, g_optim, d_optim, args`` or a ``convert_weight.py`` output with ``g_ema, latent_avg``).

        Resolution, style size, mapping depth and channel widths are read from the tensor shapes;
        ``resolution`` / ``channel_multiplier``, when given, must agree with them (``channel_multiplier``
        cannot be seen in models of 32 px or less and defaults to 2 there). ``lr_mlp`` is not stored in
        the file (rosinality's default 0.01). Without ``latent_avg`` it is estimated as the mean of
        ``n_mean_latent`` mapped draws (seed 0). Raises ``FileNotFoundError`` naming a missing file and
        :class:`~generative.backbones.checkpoint.CheckpointError` (a ``ValueError``) listing missing / unexpected /
        misshaped keys. Returns the model in eval mode on ``device``.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"StyleGAN2 generator file not found: {path} (expected a rosinality-format .pt holding 'g_ema')"
            )
        # rosinality training checkpoints pickle their argparse options; allow just that class
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = load_torch_file(path, "StyleGAN2 checkpoint")
        if not isinstance(ckpt, dict):
            raise CheckpointError(f"{path}: expected a dict with 'g_ema', got a {type(ckpt).__name__}")
        if "g_ema" in ckpt:
            state, latent_avg = ckpt["g_ema"], ckpt.get("latent_avg")
        elif "style.1.weight" in ckpt:  # a bare generator state dict
            state, latent_avg = ckpt, None
        else:
            raise CheckpointError(
                f"{path} is not a rosinality StyleGAN2 checkpoint: no 'g_ema' entry (it holds {', '.join(map(str, list(ckpt)[:12]))})"
            )
        state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
        config = _infer_config(state, resolution, channel_multiplier, lr_mlp, source=str(path))
        with torch.device("meta"):  # the expected layout, without allocating weights
            expected = {k: tuple(v.shape) for k, v in cls(config).rosinality_state_dict().items()}
        _check_keys(state, expected, source=str(path))
        with torch.random.fork_rng(devices=[]):
            model = cls(config)
        # the FIR kernels are constants some exporters leave out: keep ours then
        model.load_state_dict(state, strict=False)
        if latent_avg is not None:
            latent_avg = torch.as_tensor(latent_avg).reshape(-1)
            if latent_avg.shape != (config.style_dim,):
                raise CheckpointError(f"{path}: latent_avg has shape {tuple(latent_avg.shape)}, expected ({config.style_dim},)")
            model.latent_avg.copy_(latent_avg)
        model = model.to(device).eval()
        if latent_avg is None:
            model.latent_avg.copy_(model.mean_latent(n_mean_latent, seed=0)[0])
        return model


def _infer_config(state: dict, resolution: Optional[int], channel_multiplier: Optional[int], lr_mlp: float, source: str) -> StyleGAN2Config:
    """Architecture of a rosinality ``g_ema`` state dict from its key names and shapes."""
    need = ("style.1.weight", "conv1.conv.weight", "to_rgb1.conv.weight")
    missing = [k for k in need if k not in state]
    if missing:
        raise CheckpointError(f"{source}: not a rosinality StyleGAN2 generator state dict (missing {', '.join(missing)})")
    n_mlp = sum(1 for k in state if k.startswith("style.") and k.endswith(".weight"))
    style_dim = int(state["style.1.weight"].shape[0])
    n_blocks = sum(1 for k in state if k.startswith("to_rgbs.") and k.endswith(".conv.weight"))
    found_res = 2 ** (n_blocks + 2)
    if resolution is not None and int(resolution) != found_res:
        raise ValueError(f"{source} holds a {found_res} px generator ({n_blocks} toRGB blocks), not {resolution} px")
    try:
        _check_power_of_two(found_res)
    except ValueError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    # channel width per resolution, from the conv weights (1, C_out, C_in, 3, 3)
    widths = {4: int(state["conv1.conv.weight"].shape[1])}
    for k in range(n_blocks):
        key = f"convs.{2 * k}.conv.weight"
        if key not in state:
            raise CheckpointError(f"{source}: missing key {key}")
        widths[2 ** (k + 3)] = int(state[key].shape[1])
    max_channels = widths[4]
    # The multiplier shows where the table leaves its constant part: from 64 px in rosinality's own table
    # (whose widths may exceed 512 there), at the first narrower layer in a small test model's.
    if max_channels == 512:
        seen = [r * c / 16384 for r, c in widths.items() if r >= 64]
    else:
        seen = [r * c / 16384 for r, c in widths.items() if c < max_channels]
    multiplier = int(seen[0]) if seen and seen[0] == int(seen[0]) and seen[0] >= 1 else None
    if channel_multiplier is not None:
        if seen and multiplier != channel_multiplier:
            raise ValueError(f"{source} has channel_multiplier {seen[0]:g} (from its channel widths), not {channel_multiplier}")
        multiplier = int(channel_multiplier)
    elif multiplier is None:
        if seen:
            raise CheckpointError(f"{source}: channel widths {widths} do not follow rosinality's table")
        multiplier = 2  # no layer narrower than the 4 px width: the multiplier does not show (and does not matter)
    try:
        config = StyleGAN2Config(found_res, style_dim, n_mlp, multiplier, lr_mlp, max_channels)
    except ValueError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    expected = {r: config.channels(r) for r in widths}
    if expected != widths:
        raise CheckpointError(f"{source}: channel widths {widths} do not follow rosinality's table (expected {expected})")
    return config


def _check_keys(state: dict, expected: dict[str, tuple], source: str) -> None:
    """``CheckpointError`` listing missing, unexpected and misshaped keys (FIR kernels may be absent)."""

    def optional(k: str) -> bool:
        return k.endswith("blur.kernel") or k.endswith("upsample.kernel")

    missing = [k for k in expected if k not in state and not optional(k)]
    unexpected = [k for k in state if k not in expected]
    bad = [
        f"{k} {tuple(state[k].shape)} (expected {expected[k]})"
        for k in expected
        if k in state and tuple(torch.as_tensor(state[k]).shape) != expected[k]
    ]
    if missing or unexpected or bad:

        def show(keys: list) -> str:
            return ", ".join(keys[:10]) + (f" ... ({len(keys)} in all)" if len(keys) > 10 else "")

        parts = [f"{name}: {show(keys)}" for name, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", bad)) if keys]
        raise CheckpointError(f"{source}: the g_ema state dict does not match a rosinality StyleGAN2 generator; " + "; ".join(parts))
