"""Optimization-based inversion: find the latent whose decoding matches an image.

The schedule is that of the StyleGAN2 projector (NVlabs ``projector.py``, rosinality ``projector.py``;
SPEC section 4): Adam from the mean latent, learning rate ramped up over the first 5% of steps and
cosine-ramped down over the last 25%, Gaussian noise on the latent of strength
``w_std * 0.05 * max(0, 1 - t / 0.75)^2``, and, for generators with noise inputs, the per-layer noise maps
optimised jointly with an autocorrelation penalty (weight 1e5) and re-normalised after every step.
The loss is LPIPS-VGG16 on images box-downsampled to at most 256 px when perceptual weights are given
(plus ``mse`` x pixel MSE), pixel MSE otherwise.

It works for any backbone with ``decode``:

* a StyleGAN2 generator (``generative.backbones.stylegan2``) is inverted into W (one 512-vector shared by every
  layer) or W+ (one per layer); results are always returned as W+ ``(B, n_styles, 512)``, the codes the
  GP is fitted on;
* a backbone with an encoder (Pioneer, ...) can start from its own encoding (``init="encoder"``) and
  refine it with a few steps; sphere latents are re-projected onto the sphere after every step.

:func:`invert_frames` runs over a whole frame sequence in batches, writing one file per frame as soon
as it is done, so a killed run resumes where it stopped and loses at most the batch in flight.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from generative.backbones.registry import Backbone, NoiseMaps, StyleLatents, to_model_images
from generative.backbones.checkpoint import atomic_save


@dataclass
class InversionConfig:
    """Inversion settings; defaults follow the StyleGAN2 projector (1000 steps, lr 0.1, noise reg 1e5)."""

    space: str = "wplus"  # "w" (shared) or "wplus" (per layer); generators with styles only
    steps: int = 1000
    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    latent_noise: float = 0.05  # x w_std, decaying to 0 at latent_noise_ramp
    latent_noise_ramp: float = 0.75
    noise_regularize: float = 1e5
    optimize_noise: bool = True
    mse: float = 0.0  # extra pixel-MSE weight next to the perceptual loss
    perceptual_size: int = 256
    init: str = "mean"  # "mean" (generator mean latent / zeros) or "encoder"
    n_mean_latent: int = 10_000
    batch_size: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.space not in ("w", "wplus"):
            raise ValueError(f"space must be 'w' or 'wplus', got {self.space!r}")
        if self.init not in ("mean", "encoder"):
            raise ValueError(f"init must be 'mean' or 'encoder', got {self.init!r}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")


@dataclass
class InversionResult:
    """``latents`` ``(B, *latent_shape)`` (W+ for style generators), ``images`` ``(B, 3, r, r)`` decoded
    from them, ``noises`` the optimised noise maps (``[(B, 1, h, w), ...]`` or empty), ``losses`` the
    final per-image loss ``(B,)`` and ``history`` the mean loss per step."""

    latents: Tensor
    images: Tensor
    noises: list = field(default_factory=list)
    losses: Optional[Tensor] = None
    history: list = field(default_factory=list)


# ----------------------------------------------------------------------------------------- schedule
def learning_rate(t: float, base: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """The projector's learning rate at progress ``t`` in [0, 1]: linear warm-up, cosine ramp-down."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if rampup > 0:
        ramp = ramp * min(1.0, t / rampup)
    return base * ramp


def latent_noise_strength(t: float, w_std: float, strength: float = 0.05, ramp: float = 0.75) -> float:
    """Std of the Gaussian noise added to the latent at progress ``t`` (zero from ``t >= ramp``)."""
    return w_std * strength * max(0.0, 1.0 - t / ramp) ** 2


def noise_regularization(noises: Sequence[Tensor]) -> Tensor:
    """Sum over noise maps ``(B, 1, h, w)`` and their 2x pyramids down to 8 px of the squared spatial
    autocorrelation at shift 1 in x and y, per image ``(B,)``: white noise scores ~0, structure that
    the optimiser smuggles into the noise inputs scores high."""
    total = 0.0
    for noise in noises:
        while True:
            total = total + (noise * torch.roll(noise, 1, dims=3)).mean((1, 2, 3)).pow(2)
            total = total + (noise * torch.roll(noise, 1, dims=2)).mean((1, 2, 3)).pow(2)
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, 2)
    return total


@torch.no_grad()
def normalize_noises(noises: Sequence[Tensor]) -> None:
    """Re-standardise every map to zero mean and unit variance per image (in place)."""
    for n in noises:
        mean = n.mean((1, 2, 3), keepdim=True)
        std = n.std((1, 2, 3), keepdim=True).clamp_min(1e-8)
        n.sub_(mean).div_(std)


# ----------------------------------------------------------------------------------------- losses
class PerceptualLoss(torch.nn.Module):
    """LPIPS-VGG16 (``generative.metrics.LPIPS``) on images box-downsampled to at most ``size`` px.

    ``weights_dir`` holds torchvision's ``vgg16-397923af.pth`` and the ``lpips`` package's ``vgg.pth``;
    missing files raise a ``FileNotFoundError`` naming them.
    """

    def __init__(self, weights_dir: Union[str, os.PathLike], size: int = 256, device=None) -> None:
        super().__init__()
        from generative.metrics import LPIPS

        d = Path(weights_dir)
        self.net = LPIPS("vgg", d / "vgg16-397923af.pth", d / "vgg.pth", device=device)
        self.size = int(size)

    def _shrink(self, x: Tensor) -> Tensor:
        if x.shape[-1] > self.size:
            x = F.adaptive_avg_pool2d(x, self.size)  # the projector's box filter
        if x.shape[-1] < self.net.min_size:
            x = F.interpolate(x, size=self.net.min_size, mode="bilinear", align_corners=False)
        return x

    def forward(self, x: Tensor, target: Tensor) -> Tensor:
        return self.net(self._shrink(x), self._shrink(target))


def _image_loss(x: Tensor, target: Tensor, perceptual: Optional[torch.nn.Module], mse_weight: float) -> Tensor:
    """Per-image loss ``(B,)``."""
    mse = (x - target).pow(2).mean((1, 2, 3))
    if perceptual is None:
        return mse
    return perceptual(x, target) + mse_weight * mse


# ----------------------------------------------------------------------------------------- latents
def style_mean(backbone: Backbone, config: InversionConfig) -> Optional[tuple[Tensor, float]]:
    """``(w_mean, w_std)`` of a style generator (``config.n_mean_latent`` mapped draws), else ``None``.
    Computed once per sequence by :func:`invert_frames`, not once per batch."""
    if not isinstance(backbone, StyleLatents):
        return None
    with torch.no_grad():
        return backbone.mean_latent(config.n_mean_latent, seed=config.seed)


def _start_latent(backbone: Backbone, images: Tensor, config: InversionConfig, init: Optional[Tensor],
                  w_stats: Optional[tuple[Tensor, float]] = None) -> tuple[Tensor, float]:
    """The starting latent (in the optimised space) and the latent spread used for the latent noise."""
    B = images.shape[0]
    if init is not None:
        lat = torch.as_tensor(init, dtype=torch.float32, device=images.device).clone()
        if lat.shape[0] != B:
            raise ValueError(f"init holds {lat.shape[0]} latents for {B} images")
        spread = float(lat.std()) if lat.numel() > 1 else 1.0
        return lat, spread
    if config.init == "encoder":
        if not backbone.has_encoder:
            raise ValueError(f"backbone of kind {backbone.kind!r} has no encoder to initialise from")
        with torch.no_grad():
            lat = backbone.encode(images).float()
        return lat, float(lat.std())
    if isinstance(backbone, StyleLatents):
        w_mean, w_std = w_stats if w_stats is not None else style_mean(backbone, config)
        w = w_mean.to(images.device).float().expand(B, -1)
        if config.space == "wplus":
            w = w[:, None, :].expand(B, backbone.n_styles, -1)
        return w.clone(), float(w_std)
    shape = tuple(backbone.latent_shape)
    if not shape:
        raise ValueError("backbone declares no latent_shape; pass init=")
    return torch.zeros((B,) + shape, device=images.device), 1.0


def _as_model_latent(backbone: Backbone, lat: Tensor, config: InversionConfig) -> Tensor:
    """What ``decode`` takes: W is broadcast to every style for generators with styles."""
    if isinstance(backbone, StyleLatents) and lat.ndim == 2:
        return lat[:, None, :].expand(-1, backbone.n_styles, -1)
    return lat


def _decode(backbone: Backbone, lat: Tensor, noises: list) -> Tensor:
    return backbone.decode(lat, noise=noises) if noises else backbone.decode(lat)


# ----------------------------------------------------------------------------------------- inversion
def invert(
    backbone: Backbone,
    images: Tensor,
    config: InversionConfig = InversionConfig(),
    perceptual: Optional[torch.nn.Module] = None,
    init: Optional[Tensor] = None,
    progress: bool = False,
    image_ids: Optional[Sequence[int]] = None,
    w_stats: Optional[tuple[Tensor, float]] = None,
) -> InversionResult:
    """Invert ``images`` ``(B, 3, r, r)`` in [-1, 1] (the backbone's resolution) into latents.

    Every image has its own latent, noise maps and random stream (seeded by ``config.seed`` and its
    ``image_ids`` entry, default its position), so a frame's result does not depend on which batch it
    was in; the batch only shares the arithmetic. ``init`` overrides the starting latent; ``w_stats``
    passes a precomputed :func:`style_mean` so a sequence of calls maps the 10k mean draws only once.
    """
    from tqdm.auto import tqdm

    res = int(backbone.resolution)
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != res or images.shape[-2] != res:
        raise ValueError(f"expected images of shape (B, 3, {res}, {res}) in [-1, 1], got {tuple(images.shape)}")
    for p in backbone.parameters():
        p.requires_grad_(False)
    ids = list(range(images.shape[0])) if image_ids is None else [int(i) for i in image_ids]
    gens = [torch.Generator(device="cpu").manual_seed(config.seed * 1_000_003 + i) for i in ids]
    lat, spread = _start_latent(backbone, images, config, init, w_stats)
    lat.requires_grad_(True)
    sphere = backbone.latent_geometry == "sphere"
    noises: list = []
    if config.optimize_noise and isinstance(backbone, NoiseMaps):
        per_image = [backbone.make_noise(1, generator=gi) for gi in gens]
        noises = [torch.cat(maps).to(images.device).requires_grad_(True) for maps in zip(*per_image)]
    opt = torch.optim.Adam([lat] + noises, lr=config.lr, betas=(0.9, 0.999))
    history = []
    steps = config.steps
    for i in tqdm(range(steps), desc="invert", unit="step", disable=not progress, leave=False):
        t = i / max(1, steps)
        for group in opt.param_groups:
            group["lr"] = learning_rate(t, config.lr, config.lr_rampup, config.lr_rampdown)
        sigma = latent_noise_strength(t, spread, config.latent_noise, config.latent_noise_ramp)
        jitter = torch.stack([torch.randn(lat.shape[1:], generator=gi) for gi in gens]).to(lat.device) * sigma
        x = _decode(backbone, _as_model_latent(backbone, lat + jitter, config), noises)
        loss = _image_loss(x, images, perceptual, config.mse)
        if noises:
            loss = loss + config.noise_regularize * noise_regularization(noises)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # per-image losses are independent: the sum gives each its own gradient
        opt.step()
        if noises:
            normalize_noises(noises)
        if sphere:
            with torch.no_grad():
                lat.copy_(F.normalize(lat, dim=-1))
        history.append(float(loss.detach().mean()))
    with torch.no_grad():
        final = _as_model_latent(backbone, lat.detach(), config).clone()
        x = _decode(backbone, final, [n.detach() for n in noises])
        losses = _image_loss(x, images, perceptual, config.mse)
    return InversionResult(final, x, [n.detach() for n in noises], losses, history)


def invert_frames(
    backbone: Backbone,
    frames,
    out_dir: Union[str, os.PathLike],
    config: InversionConfig = InversionConfig(),
    perceptual: Optional[torch.nn.Module] = None,
    indices: Optional[Sequence[int]] = None,
    device: Union[str, torch.device] = "cpu",
    progress: bool = True,
) -> Tensor:
    """Invert uint8 RGB frames ``(N, H, W, 3)`` (or a lazy frame source), resumably.

    Frame ``i`` is written to ``out_dir/frame_{i:06d}.pt`` (latent, final loss, config) as soon as its
    batch finishes; frames whose file exists are skipped, so re-running after a kill continues.
    ``indices`` restricts the work to those frames (e.g. keyframes). Returns the latents of the
    requested frames ``(len(indices), *latent_shape)`` in order.
    """
    from tqdm.auto import tqdm

    from generative.images.geometry import square_resize

    from generative.images.fileio import remove_stale_temporaries

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)  # what a kill in the middle of writing a frame left
    idx = list(range(len(frames))) if indices is None else [int(i) for i in indices]
    todo = [i for i in idx if not (out / f"frame_{i:06d}.pt").exists()]
    res = int(backbone.resolution)
    w_stats = style_mean(backbone, config) if todo and config.init == "mean" else None
    bar = tqdm(total=len(idx), initial=len(idx) - len(todo), desc="invert frames", unit="frame", disable=not progress)
    for s in range(0, len(todo), config.batch_size):
        chunk = todo[s : s + config.batch_size]
        x = to_model_images(np.stack([square_resize(np.asarray(frames[i]), res) for i in chunk]), device)
        r = invert(backbone, x, config, perceptual, image_ids=chunk, w_stats=w_stats)
        for j, i in enumerate(chunk):
            atomic_save({"latent": r.latents[j].cpu(), "loss": float(r.losses[j]), "config": asdict(config)},
                        out / f"frame_{i:06d}.pt")
        bar.update(len(chunk))
    bar.close()
    return torch.stack([load_frame_latent(out / f"frame_{i:06d}.pt") for i in idx])


def load_frame_latent(path: Union[str, os.PathLike]) -> Tensor:
    """The latent stored by :func:`invert_frames` for one frame (clear error on a corrupt file)."""
    from generative.backbones.checkpoint import CheckpointError, load_error_reason

    try:
        return torch.load(path, map_location="cpu", weights_only=True)["latent"]
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated / foreign file
        raise CheckpointError(f"{path}: not an inversion result ({load_error_reason(exc)}); delete it to redo that frame") from exc
