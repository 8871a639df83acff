"""Perceptual path length (Karras et al. 2019) of a backbone's latent space.

Ours: torchmetrics' ``perceptual_path_length`` measures only at the start of each path (``t = 0``, our
``sampling='end'``; StyleGAN's default ``'full'``, ``t ~ U(0, 1)``, is missing), wants a generator with its
own ``sample`` method that outputs [0, 255] images, resizes every image to a fixed size (64 px by default)
instead of StyleGAN's box downsampling to 256 px, has no face crop and draws latents from the generator,
not from a seed; its numbers would not be the ones described here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from generative.backbones.registry import Backbone
from generative.backbones.codec import decode_latents, lerp, sample_latents
from viewgp.sphere import slerp
from generative.metrics.batches import module_device

__all__ = ["face_crop", "PPLResult", "perceptual_path_length"]


def face_crop(x: Tensor) -> Tensor:
    """Central face region of aligned face images, rows 3c:7c and columns 2c:6c with c = H // 8 (the
    crop of StyleGAN's PPL and of the automodulator's LPIPS evaluation)."""
    c = x.shape[2] // 8
    return x[:, :, 3 * c : 7 * c, 2 * c : 6 * c]


_PPL_CHUNK = 256


@dataclass
class PPLResult:
    """``ppl``: the mean of ``distances`` between the 1st and 99th percentiles (StyleGAN's filter);
    ``distances``: every ``d(G(z_t), G(z_t+eps)) / eps^2`` (``(n,)`` float64)."""

    ppl: float
    distances: np.ndarray


def perceptual_path_length(
    backbone: Backbone,
    distance_fn: Callable[[Tensor, Tensor], Tensor],
    n: int = 1000,
    eps: float = 1e-4,
    space: str = "z",
    sampling: str = "full",
    crop: bool = False,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = False,
) -> PPLResult:
    """Perceptual path length (Karras et al. 2019) of a backbone's latent space.

    For each of ``n`` pairs of prior latents ``z0, z1`` and ``t ~ U(0, 1)`` (``sampling='full'``) or
    ``t = 0`` (``'end'``): ``d(decode(z_t), decode(z_{t+eps})) / eps^2`` with ``z_t`` on the slerp
    (sphere latents) or lerp (euclidean) path; ``distance_fn(x0, x1) -> (B,)`` is LPIPS or any image
    distance. Images larger than 256 px are box-downsampled to 256 first and ``crop=True`` takes the
    face crop, as in StyleGAN. ``space='z'`` is the only space the Backbone protocol exposes (the
    decoder's input). Seeded; the backbone runs on its own device.
    """
    from tqdm.auto import tqdm

    if space != "z":
        raise ValueError(f"PPL space must be 'z' (the backbone's decoder input), got {space!r}")
    if sampling not in ("full", "end"):
        raise ValueError(f"sampling must be 'full' or 'end', got {sampling!r}")
    if int(n) < 1 or not eps > 0:
        raise ValueError(f"need n >= 1 and eps > 0, got n={n}, eps={eps}")
    g = torch.Generator().manual_seed(int(seed))
    path = slerp if backbone.latent_geometry == "sphere" else lerp
    device = module_device(distance_fn)
    dists = []
    with tqdm(total=int(n), desc="PPL", unit="pair", disable=not progress) as bar:
        # Random numbers are drawn in fixed chunks so the result depends on the seed, not on batch_size.
        for chunk in range(0, int(n), _PPL_CHUNK):
            c = min(_PPL_CHUNK, int(n) - chunk)
            z0, z1 = sample_latents(backbone, c, g), sample_latents(backbone, c, g)
            t = torch.rand(c, generator=g) if sampling == "full" else torch.zeros(c)
            for i in range(0, c, batch_size):
                a, b, tb = z0[i : i + batch_size], z1[i : i + batch_size], t[i : i + batch_size]
                m = len(a)
                fa, fb = a.reshape(m, -1).double(), b.reshape(m, -1).double()
                za = path(fa, fb, tb.double()).float().reshape(a.shape)
                zb = path(fa, fb, tb.double() + eps).float().reshape(a.shape)
                imgs = decode_latents(backbone, torch.cat([za, zb]), batch_size=2 * m)
                if crop:
                    imgs = face_crop(imgs)
                if imgs.shape[2] > 256:
                    imgs = F.avg_pool2d(imgs, imgs.shape[2] // 256)
                with torch.no_grad():
                    d = distance_fn(imgs[:m].to(device), imgs[m:].to(device))
                dists.append(torch.as_tensor(d).reshape(m).double().cpu().numpy() / eps**2)
                bar.update(m)
    dist = np.concatenate(dists)
    lo, hi = np.percentile(dist, 1, method="lower"), np.percentile(dist, 99, method="higher")
    kept = dist[(dist >= lo) & (dist <= hi)]
    return PPLResult(float(kept.mean()), dist)
