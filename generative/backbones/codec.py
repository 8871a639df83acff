"""A backbone's latent codec, the basics every user of latents needs: encode images and decode latents
in batches on the backbone's device, per-block (style-mixed) decoding, prior samples, projection onto the
latent geometry, and linear interpolation.

Latents are ``(B, *latent_shape)``; images ``(B, 3, H, W)`` float in [-1, 1]. For a backbone whose
``latent_geometry`` is ``'sphere'`` the latent of one image is the whole ``prod(latent_shape)``-vector,
which has unit L2 norm; ``'euclidean'`` latents are unconstrained. Batched helpers run the backbone on its
own device under ``torch.no_grad`` and return float32 tensors on the CPU.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from generative.backbones.registry import Backbone

__all__ = ["GEOMETRIES", "latent_geometry", "project_latents", "sample_latents", "random_samples", "encode_images",
           "decode_latents", "decode_mixed_batched", "reconstruct", "lerp"]

GEOMETRIES = ("sphere", "euclidean")


# ---------------------------------------------------------------------------------------------- basics
def latent_geometry(backbone_or_geometry: Union[Backbone, str]) -> str:
    """``'sphere'`` or ``'euclidean'`` from a backbone (its ``latent_geometry``) or from the string."""
    g = backbone_or_geometry if isinstance(backbone_or_geometry, str) else backbone_or_geometry.latent_geometry
    if g not in GEOMETRIES:
        raise ValueError(f"latent geometry must be one of {GEOMETRIES}, got {g!r}")
    return g


def _device_of(backbone) -> torch.device:
    for p in backbone.parameters():
        return p.device
    for b in backbone.buffers():
        return b.device
    return torch.device("cpu")


def _latent_shape(backbone) -> tuple[int, ...]:
    return tuple(int(s) for s in backbone.latent_shape)


def _check_latents(backbone: Backbone, z: Tensor, what: str = "latents") -> Tensor:
    shape = _latent_shape(backbone)
    z = torch.as_tensor(z)
    if tuple(z.shape[1:]) != shape:
        raise ValueError(f"{what} must have shape (B, {', '.join(map(str, shape))}), got {tuple(z.shape)}")
    return z


def _check_images(backbone: Backbone, images: Tensor, what: str = "images") -> Tensor:
    images = torch.as_tensor(images)
    r = int(backbone.resolution)
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, r, r):
        raise ValueError(f"{what} must have shape (B, 3, {r}, {r}) for this backbone, got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{what} must be float in [-1, 1], got dtype {images.dtype}")
    return images


def _require_encoder(backbone: Backbone, task: str) -> None:
    if not backbone.has_encoder:
        raise ValueError(f"{task} needs an encoder, and this backbone (kind '{backbone.kind}') has none")


def project_latents(z: Tensor, geometry: str) -> Tensor:
    """Put ``(B, *latent_shape)`` latents in the latent space: sphere -> each sample scaled to unit
    norm (over all its latent dims); euclidean -> unchanged."""
    if latent_geometry(geometry) == "euclidean":
        return z
    flat = z.reshape(z.shape[0], -1)
    return F.normalize(flat, dim=1, eps=1e-12).reshape(z.shape)


# ------------------------------------------------------------------------------------ batched passes
@torch.no_grad()
def encode_images(backbone: Backbone, images: Tensor, batch_size: int = 16) -> Tensor:
    """``(B, 3, r, r)`` images in [-1, 1] -> ``(B, *latent_shape)`` latents (CPU float32)."""
    _require_encoder(backbone, "encoding images")
    images = _check_images(backbone, images)
    device = _device_of(backbone)
    out = [backbone.encode(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    if not out:
        return torch.empty((0,) + _latent_shape(backbone))
    return torch.cat(out)


@torch.no_grad()
def decode_latents(backbone: Backbone, z: Tensor, batch_size: int = 16) -> Tensor:
    """``(B, *latent_shape)`` latents -> ``(B, 3, r, r)`` images in [-1, 1] (CPU float32)."""
    z = _check_latents(backbone, z)
    device = _device_of(backbone)
    out = [backbone.decode(z[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(z), batch_size)]
    if not out:
        r = int(backbone.resolution)
        return torch.empty(0, 3, r, r)
    return torch.cat(out)


@torch.no_grad()
def decode_mixed_batched(backbone: Backbone, zs: Sequence[Tensor], batch_size: int = 16) -> Tensor:
    """``backbone.decode_mixed`` over per-block latents ``zs`` (one ``(B, D)`` tensor per decoder block,
    as for an automodulator) in batches -> ``(B, 3, r, r)`` images in [-1, 1] (CPU float32)."""
    device = _device_of(backbone)
    n = zs[0].shape[0]
    out = [backbone.decode_mixed([z[i : i + batch_size].to(device) for z in zs]).float().cpu() for i in range(0, n, batch_size)]
    return torch.cat(out)


def sample_latents(backbone: Backbone, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """``(n, *latent_shape)`` draws from the backbone's prior (CPU float32): sphere -> normalised
    N(0, I) (uniform on the sphere); euclidean -> N(0, I)."""
    if int(n) < 0:
        raise ValueError(f"number of samples must be >= 0, got {n}")
    z = torch.randn((int(n),) + _latent_shape(backbone), generator=generator)
    return project_latents(z, latent_geometry(backbone))


def random_samples(backbone: Backbone, n: int, generator: Optional[torch.Generator] = None, batch_size: int = 16) -> Tensor:
    """``n`` random images ``(n, 3, r, r)`` decoded from prior latents (see :func:`sample_latents`)."""
    return decode_latents(backbone, sample_latents(backbone, n, generator), batch_size)


def reconstruct(backbone: Backbone, images: Tensor, batch_size: int = 16) -> Tensor:
    """``decode(encode(images))`` for ``(B, 3, r, r)`` images in [-1, 1], batched."""
    return decode_latents(backbone, encode_images(backbone, images, batch_size), batch_size)


def _as_t(t, like: Tensor) -> Tensor:
    return torch.as_tensor(t, dtype=like.dtype, device=like.device)


def lerp(z0: Tensor, z1: Tensor, t: Union[float, Tensor]) -> Tensor:
    """``z0 + t (z1 - z0)`` for ``(..., D)`` vectors; ``t`` broadcasts against ``z0.shape[:-1]``
    (e.g. ``t`` of shape ``(T, 1)`` with ``(B, D)`` endpoints gives ``(T, B, D)``)."""
    t = _as_t(t, z0)[..., None]
    return z0 + t * (z1 - z0)
