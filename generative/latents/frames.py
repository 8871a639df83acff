"""Frame arrays in and out of a backbone: uint8 video frames <-> latents, batched, with a cache.

The pipeline's side of :mod:`generative.latents.edit`: frames are uint8 RGB ``(N, H, W, 3)`` arrays (or lazy
frame sources with ``len`` and slicing, e.g. :class:`sequences.capture.video.VideoFrames`), centre-cropped and
area-resized to the backbone's resolution on the way in; decoded frames come back as uint8
``(N, r, r, 3)``. Backbones without an encoder get their latents by optimization-based inversion
(:func:`invert_observed`).
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from typing import Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from generative.backbones.registry import to_model_images, to_uint8
from generative.images.geometry import square_resize
from generative.backbones.codec import decode_latents, encode_images

__all__ = ["frames_to_model", "frames_fingerprint", "encode_frames", "decode_frames", "pixel_std_maps", "invert_observed"]


def frames_to_model(frames: np.ndarray, resolution: int) -> Tensor:
    """uint8 ``(B, H, W, 3)`` frames -> ``(B, 3, r, r)`` float in [-1, 1] (centre crop + area resize)."""
    return to_model_images(np.stack([square_resize(np.asarray(f), resolution) for f in frames]))


def frames_fingerprint(backbone, frames) -> str:
    """Key of a cache entry (16 characters): the backbone's weights and the frames' pixels, or for a video
    source (:class:`sequences.capture.video.VideoFrames`) the file's bytes and the frame indices."""
    h = hashlib.sha1(backbone.fingerprint().encode())
    n = len(frames)
    h.update(str((n,) + tuple(frames.shape[1:])).encode())
    path, indices = getattr(frames, "path", None), getattr(frames, "frame_indices", None)
    if path is not None and indices is not None and os.path.isfile(path):
        # a video source: its file's bytes and the frames taken from it (decoding every frame only to
        # hash its pixels was a whole extra pass over a long video)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(np.asarray(indices, np.int64).tobytes())
        return "v" + h.hexdigest()[:15]
    for s in range(0, n, 64):  # the same bytes in order as frame by frame, read a block at a time
        h.update(np.ascontiguousarray(frames[s : s + 64]).tobytes())
    return h.hexdigest()[:16]


def encode_frames(
    backbone,
    frames,
    batch_size: int = 32,
    progress: bool = True,
    cache_dir: Optional[str] = None,
) -> np.ndarray:
    """Encode frames into latents ``(N, *latent_shape)`` float32.

    ``frames`` is a uint8 ``(N, H, W, 3)`` array or a lazy frame source. With ``cache_dir``, the result
    is stored under a key made from the backbone weights and the pixels, so a second call is free.
    """
    if not backbone.has_encoder:
        raise ValueError(
            f"backbone of kind {getattr(backbone, 'kind', '?')!r} has no encoder; use optimization-based inversion"
        )
    cache_path = None
    if cache_dir is not None:
        cache_path = os.path.join(cache_dir, f"latents-{frames_fingerprint(backbone, frames)}.npy")
        if os.path.exists(cache_path):
            return np.load(cache_path)
    from tqdm.auto import tqdm

    n = len(frames)
    out = []
    with channels_last(backbone):
        for s in tqdm(range(0, n, batch_size), desc="encode", unit="batch", disable=not progress):
            x = frames_to_model(np.asarray(frames[s : s + batch_size]), backbone.resolution)
            out.append(encode_images(backbone, x, batch_size).numpy())
    z = np.concatenate(out, 0) if out else np.zeros((0,) + tuple(backbone.latent_shape), np.float32)
    if cache_path is not None:
        from generative.images.fileio import atomic_write

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.save(f, z)

        atomic_write(cache_path, write)
    return z


@contextmanager
def channels_last(backbone) -> Iterator[None]:
    """The backbone's convolution weights in channels-last layout for the block (back to the default
    layout after it, so checkpoints save as before): oneDNN's convolutions take it without reordering
    every activation (bundled 64 px backbone, 2 CPU cores: decoding 5.5 -> 3.8 ms a frame; outputs
    equal to within one intensity level in 0.005% of the values)."""
    weights = [p for p in backbone.parameters() if p.dim() == 4] if isinstance(backbone, torch.nn.Module) else []
    for p in weights:  # 4-D only (Module.to would also reorder StyleGAN2's 5-D modulated weights, and fail)
        p.data = p.data.contiguous(memory_format=torch.channels_last)
    try:
        yield
    finally:
        for p in weights:
            p.data = p.data.contiguous()


def decode_frames(backbone, z, batch_size: int = 32, progress: bool = False, bf16: bool = False,
                  desc: str = "decode") -> np.ndarray:
    """Decode latents ``(N, *latent_shape)`` into uint8 frames ``(N, r, r, 3)``.

    ``bf16`` decodes under bfloat16 autocast (2x faster where the device computes bfloat16 natively,
    many times slower where it does not: choose it with :func:`generative.precision.choose_precision`;
    within a few intensity levels): for posterior samples, whose spread is all that is used, not for
    predictions."""
    from tqdm.auto import tqdm

    z = torch.as_tensor(np.asarray(z), dtype=torch.float32)
    device = next(iter(backbone.parameters()), torch.empty(0)).device if hasattr(backbone, "parameters") else torch.device("cpu")
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16), channels_last(backbone):
        out = [to_uint8(decode_latents(backbone, z[s : s + batch_size], batch_size))
               for s in tqdm(range(0, z.shape[0], batch_size), desc=desc, unit="batch", disable=not progress)]
    if not out:
        r = int(backbone.resolution)
        return np.zeros((0, r, r, 3), np.uint8)
    return np.concatenate(out, 0)


def pixel_std_maps(backbone, samples, batch_size: int = 32, bf16: bool = False,
                   progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Decode posterior samples ``(S, M, *latent_shape)`` (under bfloat16 autocast with ``bf16``); return
    (per-pixel std ``(M, r, r)`` in [0, 1] units of the image range, decoded sample frames uint8
    ``(S, M, r, r, 3)``)."""
    samples = np.asarray(samples)
    S, M = samples.shape[:2]
    frames = decode_frames(backbone, samples.reshape((S * M,) + samples.shape[2:]), batch_size, progress, bf16=bf16,
                           desc=f"decode {S} samples")
    frames = frames.reshape((S, M) + frames.shape[1:])
    std = (frames.astype(np.float64) / 255.0).std(axis=0).mean(axis=-1)  # std over samples, mean over RGB
    return std, frames


def invert_observed(
    backbone,
    frames,
    observed: np.ndarray,
    folder_root: str,
    inversion=None,
    perceptual_weights: Optional[str] = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Latents of the observed frames by optimization-based inversion (NaN rows elsewhere).

    Per-frame results go to ``<folder_root>/inversion-<key>`` as they finish (the key covers the
    backbone weights, the frames and the inversion settings), so an interrupted run resumes without
    redoing finished frames and a changed setting never reuses stale results.
    """
    from dataclasses import asdict

    from generative.latents.invert import InversionConfig, PerceptualLoss, invert_frames

    inv = inversion or InversionConfig()
    perceptual = None
    if perceptual_weights:
        perceptual = PerceptualLoss(perceptual_weights, inv.perceptual_size, device=device)
    settings = json.dumps([asdict(inv), perceptual_weights], sort_keys=True)
    key = hashlib.sha1((frames_fingerprint(backbone, frames) + settings).encode()).hexdigest()[:16]
    folder = os.path.join(folder_root, f"inversion-{key}")
    idx = np.flatnonzero(observed)
    lat = invert_frames(backbone, frames, folder, inv, perceptual, indices=idx, device=device, progress=progress).numpy()
    z = np.full((len(observed),) + lat.shape[1:], np.nan, np.float32)
    z[idx] = lat
    return z
