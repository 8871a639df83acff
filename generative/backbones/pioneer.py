"""Pioneer and Balanced Pioneer: progressively growing generative autoencoders (thesis 3.2.2-3.2.3).

Latents are ``(B, D)`` (D = 512 by default) on the unit sphere. Phase ``p`` works at resolution
``4 * 2**p``; during the fade-in of phase ``p`` (``alpha < 1``) the new block is blended with the
previous resolution's skip path:

* decoder: ``(1 - a) up(toRGB[p-1](h)) + a toRGB[p](block_p(up(h)))`` (toRGB is 1x1 and the upsampling
  nearest, so ``up(toRGB(h)) == toRGB(up(h))``);
* encoder: ``(1 - a) fromRGB[p-1](avgpool(x)) + a block_p(fromRGB[p](x))`` (``block_p`` ends in avgpool).

Variants (``PioneerConfig.variant``):

* ``"pioneer"`` (Publication I): spectral norm in the encoder; equalized lr + PixelNorm in the decoder.
* ``"balanced"`` (Publication II): spectral norm in both networks, no PixelNorm.

Architecture (notes/backbones.md 3.1): decoder block 0 is conv4x4 (pad 3) on the 1x1 latent, then
conv3x3; later blocks nearest-upsample then [conv3x3 -> (PixelNorm) -> LReLU 0.2] x 2; a 1x1 toRGB
per resolution and no output tanh. The encoder mirrors it: a 1x1 fromRGB per resolution, blocks
[conv3x3 -> LReLU] x 2 + avgpool, and the final conv3x3 -> LReLU -> conv4x4 (valid) -> L2 normalise.
Unlike the original Pioneer code there is *no* LReLU between the last conv and the normalisation
(thesis errata).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generative.backbones.registry import available_resolutions, check_resolution, register_backbone, restore_backbone, weights_fingerprint
from generative.backbones.checkpoint import export_safetensors, read_checkpoint, restore_autoencoder_weights
from generative.backbones.configs import ConfigDict
from generative.backbones.layers import EqualConv2d, PixelNorm, frozen_spectral_norm, leaky_relu, spectral_norm, upsample

__all__ = ["GrowingConfig", "GrowingAutoencoder", "PioneerConfig", "Encoder", "Decoder", "PioneerAutoencoder", "KIND_OF_VARIANT"]

KIND_OF_VARIANT = {"pioneer": "pioneer", "balanced": "balanced_pioneer"}


class GrowingConfig(ConfigDict):
    """What the configs of our progressively grown autoencoders share (dataclass fields ``resolution``,
    ``latent_dim``, ``channel_base``, ``max_channels``, ``min_channels``)."""

    def _check_widths(self) -> None:
        name = type(self).__name__
        for field_name in ("latent_dim", "channel_base", "max_channels", "min_channels"):
            if int(getattr(self, field_name)) < 1:
                raise ValueError(f"{name}.{field_name} must be a positive integer, got {getattr(self, field_name)}")
        if self.min_channels > self.max_channels:
            raise ValueError(f"min_channels ({self.min_channels}) exceeds max_channels ({self.max_channels})")

    @property
    def max_phase(self) -> int:
        return available_resolutions(self.resolution).index(self.resolution)

    def channels(self, resolution: int) -> int:
        return int(max(self.min_channels, min(self.max_channels, self.channel_base // resolution)))


@dataclass
class PioneerConfig(GrowingConfig):
    """Model description (everything needed to rebuild the networks).

    ``channels(r) = clamp(channel_base // r, min_channels, max_channels)``; the defaults give the
    paper's 512, 512, 512, 512, 256, 128, 64, 32, 16 for r = 4 ... 1024. Tests use tiny widths
    (e.g. ``channel_base=256, max_channels=32``).
    """

    variant: str = "balanced"
    resolution: int = 64
    latent_dim: int = 512
    channel_base: int = 16384
    max_channels: int = 512
    min_channels: int = 1

    def __post_init__(self) -> None:
        if self.variant not in KIND_OF_VARIANT:
            raise ValueError(f"unknown Pioneer variant '{self.variant}'; choose one of {', '.join(KIND_OF_VARIANT)}")
        check_resolution(self.resolution, 1024, what="Pioneer architecture (4 ... 1024 px)")
        self._check_widths()

    @property
    def kind(self) -> str:
        return KIND_OF_VARIANT[self.variant]


def _conv(cin: int, cout: int, k: int, pad: int, norm: str) -> nn.Module:
    if norm == "eqlr":
        return EqualConv2d(cin, cout, k, padding=pad)
    if norm == "spectral":
        conv = nn.Conv2d(cin, cout, k, padding=pad)
        # Zero bias (as the original): with LReLU the bias-free stack is positively homogeneous, so the
        # encoder's final L2 normalisation removes the (tiny) overall scale of spectrally normalised
        # activations instead of letting initial biases dominate the code.
        nn.init.kaiming_normal_(conv.weight, a=0.2)
        nn.init.zeros_(conv.bias)
        return spectral_norm(conv)
    raise ValueError(f"unknown conv normalisation '{norm}'")


def _res(phase: int) -> int:
    return 4 * 2**phase


def _check_phase(phase: int, alpha: float, max_phase: int) -> None:
    if not 0 <= phase <= max_phase:
        raise ValueError(f"phase {phase} is outside 0 ... {max_phase} (resolutions 4 ... {_res(max_phase)})")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


class Decoder(nn.Module):
    """``z (B, D)`` -> images ``(B, 3, 4 * 2**phase, same)``; ``norm`` is ``"eqlr"`` (+ PixelNorm) or
    ``"spectral"``."""

    def __init__(self, config: PioneerConfig, norm: str, pixel_norm: bool) -> None:
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList()
        self.to_rgb = nn.ModuleList()
        act = leaky_relu

        def post() -> list[nn.Module]:
            return ([PixelNorm()] if pixel_norm else []) + [act()]

        c4 = config.channels(4)
        self.blocks.append(nn.Sequential(_conv(config.latent_dim, c4, 4, 3, norm), *post(), _conv(c4, c4, 3, 1, norm), *post()))
        self.to_rgb.append(nn.Conv2d(c4, 3, 1))
        for p in range(1, config.max_phase + 1):
            cin, cout = config.channels(_res(p - 1)), config.channels(_res(p))
            self.blocks.append(nn.Sequential(_conv(cin, cout, 3, 1, norm), *post(), _conv(cout, cout, 3, 1, norm), *post()))
            self.to_rgb.append(nn.Conv2d(cout, 3, 1))

    def forward(self, z: Tensor, phase: int, alpha: float = 1.0) -> Tensor:
        _check_phase(phase, alpha, self.config.max_phase)
        h = self.blocks[0](z.reshape(z.shape[0], -1, 1, 1))
        for p in range(1, phase + 1):
            skip = h
            h = self.blocks[p](upsample(h))
        out = self.to_rgb[phase](h)
        if phase > 0 and alpha < 1.0:
            out = (1.0 - alpha) * upsample(self.to_rgb[phase - 1](skip)) + alpha * out
        return out


class Encoder(nn.Module):
    """Images ``(B, 3, 4 * 2**phase, same)`` -> unit-norm latents ``(B, D)``; spectral norm on every
    3x3 / 4x4 convolution (fromRGB is a plain 1x1 conv, as in the original)."""

    def __init__(self, config: PioneerConfig) -> None:
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList()
        self.from_rgb = nn.ModuleList()
        c4 = config.channels(4)
        self.blocks.append(
            nn.Sequential(_conv(c4, c4, 3, 1, "spectral"), leaky_relu(), _conv(c4, config.latent_dim, 4, 0, "spectral"))
        )
        self.from_rgb.append(nn.Conv2d(3, c4, 1))
        for p in range(1, config.max_phase + 1):
            cin, cout = config.channels(_res(p)), config.channels(_res(p - 1))
            self.blocks.append(
                nn.Sequential(
                    _conv(cin, cout, 3, 1, "spectral"), leaky_relu(), _conv(cout, cout, 3, 1, "spectral"), leaky_relu(), nn.AvgPool2d(2)
                )
            )
            self.from_rgb.append(nn.Conv2d(3, cin, 1))

    def forward(self, x: Tensor, phase: int, alpha: float = 1.0) -> Tensor:
        _check_phase(phase, alpha, self.config.max_phase)
        r = _res(phase)
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != r or x.shape[3] != r:
            raise ValueError(f"encoder at phase {phase} expects images (B, 3, {r}, {r}), got {tuple(x.shape)}")
        h = self.from_rgb[phase](x)
        for p in range(phase, 0, -1):
            h = self.blocks[p](h)
            if p == phase and alpha < 1.0:
                h = alpha * h + (1.0 - alpha) * self.from_rgb[p - 1](F.avg_pool2d(x, 2))
        z = self.blocks[0](h).flatten(1)
        return F.normalize(z, dim=1)


class GrowingAutoencoder(nn.Module):
    """What our progressively grown sphere-latent autoencoders share (Pioneer, Balanced Pioneer,
    automodulator): ``config`` (a :class:`GrowingConfig`), ``encoder``, ``decoder``, ``decoder_ema`` and
    the current ``phase`` / ``alpha``. :meth:`encode` uses the encoder with spectral-norm power iteration
    frozen; subclasses decode with the EMA decoder and name their ``config_class`` and ``model_name``
    (for :meth:`from_payload`).
    """

    latent_geometry = "sphere"
    has_encoder = True
    config_class: type
    model_name: str

    # -------------------------------------------------------------------------- description
    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def resolution(self) -> int:
        return _res(self.phase)

    @property
    def max_resolution(self) -> int:
        return self.config.resolution

    @property
    def latent_shape(self) -> tuple:
        return (self.config.latent_dim,)

    def set_phase(self, phase: int, alpha: float = 1.0) -> None:
        _check_phase(phase, alpha, self.config.max_phase)
        self.phase, self.alpha = int(phase), float(alpha)

    def set_resolution(self, resolution: int) -> None:
        """Work at a lower resolution of the grown model (alpha = 1); the model must have reached it."""
        phase = check_resolution(resolution, self.resolution, what=f"{self.kind} model (trained up to {self.resolution} px)")
        self.set_phase(phase, 1.0)

    # -------------------------------------------------------------------------- Backbone
    def sample_prior(self, n: int, generator: Optional[torch.Generator] = None, device=None) -> Tensor:
        """``n`` latents uniform on the unit sphere: normalised N(0, I) draws, ``(n, D)``."""
        device = device if device is not None else next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=device)
        return F.normalize(z, dim=1)

    def encode(self, x: Tensor) -> Tensor:
        """``(B, 3, resolution, resolution)`` in [-1, 1] -> unit-norm ``(B, D)``."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
            raise ValueError(f"encode expects images (B, 3, H, W) with H = W, got {tuple(x.shape)}")
        r = x.shape[-1]
        if r != self.resolution:
            have = available_resolutions(self.resolution)
            hint = (f"resize the images or load the model with resolution={r}" if r in have
                    else f"it has no {r}x{r} resolution (it has {', '.join(map(str, have))}); resize the images")
            raise ValueError(f"encode got {r}x{r} images but the {self.kind} model encodes "
                             f"{self.resolution}x{self.resolution}; {hint}")
        with frozen_spectral_norm(self.encoder):
            return self.encoder(x, self.phase, self.alpha)

    def generate(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """``n`` random images ``(n, 3, r, r)`` from the prior."""
        return self.decode(self.sample_prior(n, generator))

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    # -------------------------------------------------------------------------- persistence
    def payload(self) -> dict:
        """The model part of a checkpoint: kind, config, full state dict (EMA and ``u`` included)."""
        return {
            "kind": self.kind,
            "config": self.config.to_dict(),
            "model_state": self.state_dict(),
            "phase": self.phase,
            "alpha": self.alpha,
        }

    def inference_tensors(self) -> dict[str, Tensor]:
        """Encoder + EMA decoder weights (with spectral-norm ``u``), the shipped part of the model."""
        out = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        out.update({f"decoder_ema.{k}": v for k, v in self.decoder_ema.state_dict().items()})
        return out

    def fingerprint(self) -> str:
        """Short hex digest of the weights (:func:`generative.backbones.registry.weights_fingerprint`)."""
        return weights_fingerprint(self)

    def restore_weights(self, payload: dict, source: str) -> None:
        """Fill the networks and the phase from a checkpoint payload (training state or export)."""
        restore_autoencoder_weights(self, payload, self.config.max_phase, source, self.kind)

    @classmethod
    def from_payload(cls, payload: dict, device: Union[str, torch.device] = "cpu", source: str = "checkpoint") -> "GrowingAutoencoder":
        """Rebuild from a checkpoint payload (see :func:`generative.backbones.registry.restore_backbone`)."""
        return restore_backbone(cls, payload, cls.config_class, cls.model_name, device, source)

    def export(self, path: Union[str, os.PathLike], dtype: Optional[torch.dtype] = None) -> None:
        """Write the inference weights to a ``.safetensors`` file that :func:`generative.load` reads
        (``dtype=torch.float16`` halves the file)."""
        export_safetensors(path, self.kind, self.config.to_dict(), self.inference_tensors(), self.phase, self.alpha, dtype)

    @classmethod
    def from_checkpoint(cls, path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu"):
        """Restore from a training checkpoint or an inference export, in eval mode."""
        return cls.from_payload(read_checkpoint(path), device=device, source=str(path)).eval()


@register_backbone("pioneer", "balanced_pioneer")
class PioneerAutoencoder(GrowingAutoencoder):
    """Encoder + decoder + EMA decoder of a (Balanced) Pioneer model; a :class:`~generative.backbones.registry.Backbone`.

    ``phase``/``alpha`` say how far the model has grown. :meth:`encode` uses the encoder and
    :meth:`decode` the EMA decoder (the weights that are evaluated and shipped), both at the current
    phase and alpha (1 for a finished model), with spectral-norm power iteration frozen.
    """

    config_class = PioneerConfig
    model_name = "Pioneer"

    def __init__(self, config: PioneerConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        if config.variant == "pioneer":
            self.decoder = Decoder(config, norm="eqlr", pixel_norm=True)
        else:
            self.decoder = Decoder(config, norm="spectral", pixel_norm=False)
        self.decoder_ema = copy.deepcopy(self.decoder)
        self.decoder_ema.requires_grad_(False)
        self.phase = config.max_phase
        self.alpha = 1.0

    # -------------------------------------------------------------------------- Backbone
    def decode(self, z: Tensor, resolution: Optional[int] = None) -> Tensor:
        """``(B, D)`` latents (projected onto the unit sphere first) -> ``(B, 3, r, r)`` with ``r`` the
        model's resolution, or a lower ``resolution`` it has grown through."""
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"decode expects latents (B, {self.config.latent_dim}), got {tuple(z.shape)}")
        phase, alpha = self.phase, self.alpha
        if resolution is not None and resolution != self.resolution:
            phase, alpha = check_resolution(resolution, self.resolution, what=f"{self.kind} model"), 1.0
        with frozen_spectral_norm(self.decoder_ema):
            return self.decoder_ema(F.normalize(z, dim=1), phase, alpha)
