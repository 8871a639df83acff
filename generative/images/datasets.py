"""Training images: a folder of JPEG/PNG files, random crops of photographs, a seeded procedural dataset,
their concatenation, and a resumable index stream.

Items are ``(3, r, r)`` float32 tensors in [-1, 1]; ``r`` is the dataset's current ``resolution``, which
the trainer changes at every phase of progressive growing (images are centre-cropped to a square and
area-resized on the fly).

Horizontal flips are part of the index: with ``flip=True`` a dataset of N images has 2N items, item
``k >= N`` being the mirror image of item ``k - N``. Shuffling then flips at random, and the flip of
every sample is a function of the (checkpointed) position in the index stream, so a resumed run sees
exactly the images an uninterrupted run would have seen, with any number of loader workers.
"""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler, Sampler

# IMAGE_EXTENSIONS is re-exported: the extensions are defined once, in generative.images.imageio.
from generative.images.imageio import IMAGE_EXTENSIONS, list_images, read_image
from generative.images.geometry import square_resize

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "PhotoCropDataset",
    "ConcatImageDataset",
    "SyntheticImageDataset",
    "render_synthetic_image",
    "IndexStream",
    "StreamBatchSampler",
    "uint8_to_tensor",
    "stack_images",
]


def uint8_to_tensor(img: np.ndarray) -> Tensor:
    """uint8 RGB ``(H, W, 3)`` -> float32 ``(3, H, W)`` in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def _check_resolution(resolution: int) -> int:
    resolution = int(resolution)
    if resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution}")
    return resolution


class _FlipIndexed(Dataset, ABC):
    """Shared item logic: ``len = N`` or ``2N`` with mirrored second half."""

    flip: bool
    resolution: int

    @abstractmethod
    def num_images(self) -> int:
        """Number of distinct images N."""

    @abstractmethod
    def image_uint8(self, index: int, resolution: Optional[int] = None) -> np.ndarray:
        """Image ``index`` (0 <= index < N) as uint8 RGB ``(r, r, 3)``, ``r`` defaulting to ``self.resolution``."""

    def __len__(self) -> int:
        return self.num_images() * (2 if self.flip else 1)

    def __getitem__(self, k: int) -> Tensor:
        n = self.num_images()
        if not 0 <= k < len(self):
            raise IndexError(f"item {k} out of range for a dataset of {len(self)} items")
        img = self.image_uint8(k % n)
        if k >= n:
            img = img[:, ::-1]
        return uint8_to_tensor(img)


class ImageFolderDataset(_FlipIndexed):
    """Every JPEG/PNG under ``root`` (recursively, sorted by path).

    A file that cannot be decoded is skipped with a warning (its item is served by the next readable
    image), so a bad file never stops training mid-epoch. ``cache=True`` keeps every decoded image in
    memory at ``cache_resolution`` (default: the resolution at construction), from which lower
    resolutions are made (use with ``num_workers=0`` or a small dataset).
    """

    def __init__(
        self,
        root: Union[str, os.PathLike],
        resolution: int,
        flip: bool = True,
        cache: bool = False,
        cache_resolution: Optional[int] = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        if not self.root.is_dir():
            raise ValueError(f"{self.root} is not a folder")
        try:
            self.files = list_images(self.root, recursive=True)
        except ValueError:
            raise ValueError(
                f"no images in {self.root} (searched recursively for {', '.join(IMAGE_EXTENSIONS)}, any case)"
            ) from None
        self.resolution = _check_resolution(resolution)
        self.flip = flip
        self.cache_resolution = _check_resolution(cache_resolution or resolution) if cache else None
        self._cache: dict[int, np.ndarray] = {}
        self._bad: set[int] = set()

    def num_images(self) -> int:
        return len(self.files)

    def _decode(self, i: int) -> Optional[np.ndarray]:
        if i in self._bad:
            return None
        path = self.files[i]
        try:
            return read_image(path)
        except ValueError:
            self._bad.add(i)
            warnings.warn(f"skipping unreadable image {path} (corrupt or not an image)", RuntimeWarning, stacklevel=3)
            return None

    def _source(self, i: int) -> Optional[np.ndarray]:
        if self.cache_resolution is None:
            return self._decode(i)
        if i not in self._cache:
            img = self._decode(i)
            if img is None:
                return None
            self._cache[i] = square_resize(img, self.cache_resolution)
        return self._cache[i]

    def image_uint8(self, index: int, resolution: Optional[int] = None) -> np.ndarray:
        """Image ``index`` (a readable one at or after it, wrapping) as uint8 ``(r, r, 3)``."""
        n = len(self.files)
        for step in range(n):
            img = self._source((index + step) % n)
            if img is not None:
                return square_resize(img, resolution or self.resolution)
        raise ValueError(f"none of the {n} images in {self.root} could be read")


class PhotoCropDataset(_FlipIndexed):
    """Random square crops of the photographs under ``root`` (a folder, or several: e.g. BSDS500's ``train``
    and ``val`` without its ``test``): ``crops_per_image`` crops of each photograph,
    at scales from ``min_scale`` of its shorter side up to all of it (log-uniform, so fine and coarse
    detail are equally common), with a mild colour jitter (brightness, contrast, saturation, each within
    ``jitter``), area-resized to ``resolution``.

    Item ``k`` is photograph ``k % n`` under crop ``k // n``; the crop and the jitter depend only on
    ``(seed, k)``, so a resumed run sees the crops an uninterrupted one would, and a held-out evaluation set
    (``jitter=0``, another ``seed``) is the same set every time. Photographs are decoded once and kept
    (BSDS500's 500 images take 230 MB).
    """

    def __init__(
        self,
        root: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]],
        resolution: int,
        crops_per_image: int = 64,
        min_scale: float = 0.25,
        jitter: float = 0.15,
        seed: int = 0,
        flip: bool = True,
    ) -> None:
        self.roots = [Path(root)] if isinstance(root, (str, os.PathLike)) else [Path(r) for r in root]
        self.files = []
        for folder in self.roots:
            if not folder.is_dir():
                raise FileNotFoundError(f"photograph folder not found: {folder}")
            try:
                self.files += list_images(folder, recursive=True)
            except ValueError:
                raise ValueError(f"no images in {folder} (searched recursively for {', '.join(IMAGE_EXTENSIONS)})") from None
        if crops_per_image < 1:
            raise ValueError(f"crops_per_image must be >= 1, got {crops_per_image}")
        if not 0.0 < min_scale <= 1.0:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.resolution = _check_resolution(resolution)
        self.crops_per_image, self.min_scale, self.jitter = int(crops_per_image), float(min_scale), float(jitter)
        self.seed, self.flip = int(seed), flip
        self._photos: dict[int, np.ndarray] = {}

    def num_images(self) -> int:
        return len(self.files) * self.crops_per_image

    def _photo(self, i: int) -> np.ndarray:
        if i not in self._photos:
            self._photos[i] = read_image(self.files[i])  # a bad photograph is an error: the folder is curated
        return self._photos[i]

    def crop_box(self, index: int) -> tuple[int, int, int, int]:
        """``(photo, y0, x0, side)`` of crop ``index``."""
        photo = index % len(self.files)
        h, w = self._photo(photo).shape[:2]
        rng = np.random.default_rng([self.seed, index])
        short = min(h, w)
        side = int(round(short * float(np.exp(rng.uniform(np.log(self.min_scale), 0.0)))))
        side = max(1, min(short, side))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        return photo, y0, x0, side

    def image_uint8(self, index: int, resolution: Optional[int] = None) -> np.ndarray:
        if not 0 <= index < self.num_images():
            raise IndexError(f"crop {index} out of range for {self.num_images()} crops")
        photo, y0, x0, side = self.crop_box(index)
        img = square_resize(self._photo(photo)[y0 : y0 + side, x0 : x0 + side], resolution or self.resolution)
        if self.jitter == 0.0:
            return img
        # brightness, contrast and saturation factors in [1 - jitter, 1 + jitter] (torchvision's ColorJitter)
        b, c, s = np.random.default_rng([self.seed, index, 1]).uniform(1 - self.jitter, 1 + self.jitter, 3)
        x = img.astype(np.float32) * b
        x = (x - x.mean()) * c + x.mean()
        grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
        x = (x - grey[..., None]) * s + grey[..., None]
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)


class ConcatImageDataset(_FlipIndexed):
    """Several image datasets as one (e.g. rendered frames and crops of photographs): the images of the
    first, then of the second, ...; flips and ``resolution`` apply to all of them."""

    def __init__(self, datasets: Sequence[_FlipIndexed], flip: bool = True) -> None:
        if not datasets:
            raise ValueError("ConcatImageDataset needs at least one dataset")
        self.datasets = list(datasets)
        self.flip = flip
        self.offsets = np.cumsum([0] + [d.num_images() for d in self.datasets])

    @property
    def resolution(self) -> int:
        return self.datasets[0].resolution

    @resolution.setter
    def resolution(self, value: int) -> None:
        for d in self.datasets:
            d.resolution = value

    def num_images(self) -> int:
        return int(self.offsets[-1])

    def image_uint8(self, index: int, resolution: Optional[int] = None) -> np.ndarray:
        if not 0 <= index < self.num_images():
            raise IndexError(f"image {index} out of range for {self.num_images()} images")
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.datasets[part].image_uint8(index - int(self.offsets[part]), resolution)


def render_synthetic_image(index: int, resolution: int, seed: int = 0) -> np.ndarray:
    """Procedural test image number ``index``: a two-colour linear gradient with 1-3 anti-aliased
    coloured discs, squares and rings. The scene depends only on ``(seed, index)``, so every resolution
    shows the same picture. Returns uint8 ``(resolution, resolution, 3)``."""
    rng = np.random.default_rng([seed, index])
    r = _check_resolution(resolution)
    c = (np.arange(r) + 0.5) / r
    yy, xx = np.meshgrid(c, c, indexing="ij")
    theta = rng.uniform(0, 2 * np.pi)
    t = np.clip(0.5 + (xx - 0.5) * np.cos(theta) + (yy - 0.5) * np.sin(theta), 0, 1)[..., None]
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    img = (1 - t) * c0 + t * c1
    px = 1.0 / r  # one pixel in normalised units: the anti-aliasing ramp
    for _ in range(rng.integers(1, 4)):
        shape = rng.integers(0, 3)
        cx, cy = rng.uniform(0.2, 0.8, 2)
        size = rng.uniform(0.1, 0.3)
        colour = rng.uniform(0, 1, 3)
        if shape == 0:  # disc
            d = np.hypot(xx - cx, yy - cy) - size
        elif shape == 1:  # square
            d = np.maximum(np.abs(xx - cx), np.abs(yy - cy)) - size
        else:  # ring
            d = np.abs(np.hypot(xx - cx, yy - cy) - size) - 0.3 * size
        cover = np.clip(0.5 - d / px, 0, 1)[..., None]
        img = (1 - cover) * img + cover * colour
    return np.round(img * 255).astype(np.uint8)


class SyntheticImageDataset(_FlipIndexed):
    """``size`` seeded procedural images (see :func:`render_synthetic_image`) for tests and demos; images
    ``offset ... offset + size - 1`` of the seed's sequence (use a different ``offset`` for held-out
    images)."""

    def __init__(self, size: int, resolution: int, seed: int = 0, flip: bool = False, offset: int = 0, cache: bool = True) -> None:
        if size < 1:
            raise ValueError(f"synthetic dataset size must be >= 1, got {size}")
        self.size = int(size)
        self.resolution = _check_resolution(resolution)
        self.seed = int(seed)
        self.flip = flip
        self.offset = int(offset)
        self.cache = cache
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def num_images(self) -> int:
        return self.size

    def image_uint8(self, index: int, resolution: Optional[int] = None) -> np.ndarray:
        if not 0 <= index < self.size:
            raise IndexError(f"image {index} out of range for {self.size} synthetic images")
        res = resolution or self.resolution
        key = (index, res)
        if key in self._cache:
            return self._cache[key]
        img = render_synthetic_image(self.offset + index, res, self.seed)
        if self.cache:
            self._cache[key] = img
        return img


def stack_images(dataset: _FlipIndexed, indices: Sequence[int], resolution: Optional[int] = None) -> Tensor:
    """Images ``indices`` (un-flipped) as a float ``(len, 3, r, r)`` batch in [-1, 1]."""
    return torch.stack([uint8_to_tensor(dataset.image_uint8(i, resolution)) for i in indices])


# ------------------------------------------------------------------------------ sampling
class IndexStream:
    """Endless stream of dataset item indices for one process, resumable from any position.

    Epoch ``e`` is the order of :class:`torch.utils.data.DistributedSampler` with ``set_epoch(e)``
    (a seeded shuffle split between ``world_size`` ranks; ``world_size = 1`` without DDP), and the
    stream is those epochs back to back. :meth:`indices` starting at ``offset`` yields exactly what an
    uninterrupted stream yields after ``offset`` items.
    """

    def __init__(self, dataset: Dataset, rank: int = 0, world_size: int = 1, seed: int = 0) -> None:
        self.sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.per_epoch = len(self.sampler)

    def indices(self, offset: int = 0) -> Iterator[int]:
        epoch, start = divmod(int(offset), self.per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            yield from list(self.sampler)[start:]
            start, epoch = 0, epoch + 1


class StreamBatchSampler(Sampler):
    """Batches of ``batch_size`` consecutive indices of an :class:`IndexStream` from ``offset`` on
    (endless; for ``DataLoader(batch_sampler=...)``)."""

    def __init__(self, stream: IndexStream, offset: int, batch_size: int) -> None:
        self.stream, self.offset, self.batch_size = stream, int(offset), int(batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        it = self.stream.indices(self.offset)
        while True:
            yield [next(it) for _ in range(self.batch_size)]
