"""CycleGAN pair of image-to-image translators (thesis 3.1.3, 4.4; SPEC 5): the networks, their config
and the trained pair for inference.

Two ResNet generators ``G_ab: A -> B`` and ``G_ba: B -> A`` and two 70x70 PatchGAN discriminators
``D_a`` (real A vs. translated B->A) and ``D_b`` (real B vs. translated A->B), trained on unpaired
images in ``[-1, 1]`` by :class:`generative.aging.cyclegan.CycleGANTrainer` (the losses and the
optimisers live there: this module does not depend on the training code).

Normalisation is instance norm without affine parameters and padding is reflection, as in the
PyTorch CycleGAN ``resnet_9blocks`` / ``n_layers=3`` models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Union

import torch
from torch import Tensor, nn

from generative.backbones.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from generative.backbones.configs import ConfigDict
from generative.backbones.layers import leaky_relu

__all__ = [
    "TranslatorConfig",
    "ResidualBlock",
    "ResnetGenerator",
    "PatchDiscriminator",
    "patchgan_receptive_field",
    "TranslatorPair",
    "Translator",
    "export_translator",
    "load_translator",
]

DIRECTIONS = ("ab", "ba")


@dataclass
class TranslatorConfig(ConfigDict):
    """Model and optimiser settings; defaults are the paper's (SPEC 5)."""

    UNKNOWN_FIELDS = "unknown translator config keys: {unknown}"

    channels: int = 3
    gen_width: int = 64  # first conv width; the trunk runs at 4x this (256)
    n_res_blocks: int = 9
    disc_width: int = 64
    disc_layers: int = 3  # stride-2 convs; 3 gives the 70x70 receptive field
    lambda_cycle: float = 10.0
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    pool_size: int = 50

    def __post_init__(self) -> None:
        for name in ("channels", "gen_width", "n_res_blocks", "disc_width", "disc_layers"):
            value = getattr(self, name)
            if int(value) != value or value < (0 if name == "n_res_blocks" else 1):
                raise ValueError(f"TranslatorConfig.{name} must be a positive integer, got {value!r}")
        if self.pool_size < 0:
            raise ValueError(f"TranslatorConfig.pool_size must be >= 0, got {self.pool_size}")


# ------------------------------------------------------------------------------ networks
def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResidualBlock(nn.Module):
    """``x + [pad1, conv3x3, IN, ReLU, pad1, conv3x3, IN](x)``; ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Johnson-style ResNet translator: ``(B, C, H, W) -> (B, C, H, W)`` in ``[-1, 1]``.

    ``H`` and ``W`` must be multiples of 4 (two stride-2 downsamplings undone by two transposed convs).
    """

    def __init__(self, channels: int = 3, width: int = 64, n_blocks: int = 9) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels, w, 7), _norm(w), nn.ReLU(inplace=True)]
        for mult in (1, 2):  # w -> 2w -> 4w at 1/2 and 1/4 resolution
            layers += [nn.Conv2d(w * mult, w * mult * 2, 3, stride=2, padding=1), _norm(w * mult * 2), nn.ReLU(inplace=True)]
        layers += [ResidualBlock(4 * w) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [
                nn.ConvTranspose2d(w * mult, w * mult // 2, 3, stride=2, padding=1, output_padding=1),
                _norm(w * mult // 2),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"translator input must be (B, C, H, W) with H, W multiples of 4, got {tuple(x.shape)}")
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``(B, C, H, W) -> (B, 1, h, w)`` raw scores (no sigmoid; LSGAN).

    ``n_layers`` stride-2 4x4 convs (the first without norm), then a stride-1 4x4 conv at up to 8x width
    and a stride-1 4x4 conv to one channel; with ``n_layers = 3`` each score sees a 70x70 patch. For
    ``n_layers = 3`` the input must be at least 32 px so the last maps have more than one pixel.
    """

    def __init__(self, channels: int = 3, width: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        self.n_layers = n_layers
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, stride=2, padding=1), leaky_relu()]
        ch = width
        for i in range(1, n_layers + 1):
            out = width * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(ch, out, 4, stride=stride, padding=1), _norm(out), leaky_relu()]
            ch = out
        layers += [nn.Conv2d(ch, 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def patchgan_receptive_field(n_layers: int = 3) -> int:
    """Side of the input patch one output score of :class:`PatchDiscriminator` sees (70 for 3 layers)."""
    strides = [2] * n_layers + [1, 1]
    rf, jump = 1, 1
    for s in strides:
        rf += 3 * jump  # kernel 4
        jump *= s
    return rf


# ------------------------------------------------------------------------------ trained translators
TRANSLATOR_KIND = "translator"


class TranslatorPair(Protocol):
    """What :func:`export_translator` reads: the config and the two generators (a trainer)."""

    config: TranslatorConfig
    g_ab: nn.Module
    g_ba: nn.Module


class Translator(nn.Module):
    """A trained pair for inference: ``translate(x, "ab")`` runs ``G_ab`` (e.g. one age step older),
    ``translate(x, "ba")`` ``G_ba``; images ``(B, C, H, W)`` in ``[-1, 1]`` at ``image_size`` (the size it
    was trained at)."""

    def __init__(self, config: TranslatorConfig, image_size: int) -> None:
        super().__init__()
        self.config = config
        self.image_size = int(image_size)
        self.g_ab = ResnetGenerator(config.channels, config.gen_width, config.n_res_blocks)
        self.g_ba = ResnetGenerator(config.channels, config.gen_width, config.n_res_blocks)

    @torch.no_grad()
    def translate(self, x: Tensor, direction: str = "ab") -> Tensor:
        """``G_ab(x)`` or ``G_ba(x)``, ``(B, C, H, W) -> (B, C, H, W)``; the size must be the trained one."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'ab' or 'ba', got {direction!r}")
        if x.ndim != 4 or x.shape[1] != self.config.channels or tuple(x.shape[-2:]) != (self.image_size,) * 2:
            raise ValueError(
                f"this translator takes (B, {self.config.channels}, {self.image_size}, {self.image_size}) images, "
                f"got {tuple(x.shape)}"
            )
        net = self.g_ab if direction == "ab" else self.g_ba
        return net.eval()(x.to(next(net.parameters()).device, torch.float32))


def export_translator(trainer: TranslatorPair, path: Union[str, os.PathLike], image_size: int) -> Path:
    """Write the two generators of ``trainer`` (and the config and image size) atomically to ``path``."""
    state = {
        "g_ab": {k: v.detach().cpu() for k, v in trainer.g_ab.state_dict().items()},
        "g_ba": {k: v.detach().cpu() for k, v in trainer.g_ba.state_dict().items()},
    }
    config = {"model": trainer.config.to_dict(), "image_size": int(image_size)}
    return write_checkpoint(path, TRANSLATOR_KIND, config, state)


def load_translator(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu") -> Translator:
    """Load a ``translator.pt`` written by :func:`export_translator` (the end of every translator run).

    ``FileNotFoundError`` names a missing file; a file of another kind or with mismatching weights raises
    :class:`~generative.backbones.checkpoint.CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"translator file not found: {path} (expected the translator.pt a translator run writes)")
    payload = read_checkpoint(path, map_location=device)
    if payload.get("kind") != TRANSLATOR_KIND:
        raise CheckpointError(f"{path} holds a '{payload.get('kind')}' checkpoint, not a trained translator")
    model = Translator(TranslatorConfig.from_dict(dict(payload["config"]["model"])), payload["config"]["image_size"])
    try:
        model.g_ab.load_state_dict(payload["model"]["g_ab"])
        model.g_ba.load_state_dict(payload["model"]["g_ba"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: translator weights do not match its recorded config ({exc})") from exc
    return model.to(device).eval()
