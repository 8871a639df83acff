"""Reading, writing and listing image files, once for the whole project (OpenCV underneath).

Images in memory are uint8 RGB ``(H, W, 3)``. Reading decodes any format OpenCV knows (8- or 16-bit;
grey becomes 3-channel; an alpha channel is composited over ``background`` or dropped; EXIF orientation
is applied); writing is atomic (:func:`generative.images.fileio.atomic_write`) with the format chosen by the
extension.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from generative.images.fileio import atomic_write_bytes

PathLike = Union[str, os.PathLike]

__all__ = ["IMAGE_EXTENSIONS", "read_image", "write_image", "encode_image", "list_images", "is_image_file"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def is_image_file(path: PathLike) -> bool:
    """Whether ``path`` is an existing file with a JPEG/PNG extension (any case)."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()


def read_image(
    path: PathLike, background: Optional[Sequence[float]] = None, *, strict: bool = False, what: str = "image"
) -> np.ndarray:
    """The image at ``path`` as uint8 RGB ``(H, W, 3)``.

    16-bit images are scaled to 8 bits; grey images become 3-channel; an alpha channel is composited
    over ``background`` (RGB 0-255) when given, else dropped. ``strict`` accepts only 8-bit 3-channel
    files and converts nothing (for files the project wrote itself, such as a saved run's frames,
    where anything else means the file was replaced). A missing, empty, undecodable or (``strict``)
    non-8-bit-RGB file is a ``ValueError`` that starts ``cannot read <what> <path>``.

    The file's EXIF orientation is applied, except when ``background`` or ``strict`` asks for the
    pixels as stored: OpenCV only keeps the alpha channel (and the stored layout) when it ignores EXIF.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"cannot read {what} {path}: no such file")
    as_stored = background is not None or strict
    flags = cv2.IMREAD_UNCHANGED if as_stored else cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None or img.ndim not in (2, 3) or min(img.shape[:2]) < 1:
        raise ValueError(f"cannot read {what} {path} (corrupt or not an image format OpenCV knows)")
    if strict and (img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3):
        raise ValueError(f"cannot read {what} {path}: expected an 8-bit 3-channel image, got {img.dtype} {img.shape}")
    if img.dtype == np.uint16:
        img = (img.astype(np.float64) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ValueError(f"cannot read {what} {path}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = img[..., None]
    channels = img.shape[2]
    if channels == 1:
        return np.repeat(img, 3, axis=2)
    if channels == 4:
        rgb = img[..., 2::-1]
        if background is None:
            return np.ascontiguousarray(rgb)
        alpha = img[..., 3:4].astype(np.float64) / 255.0
        bg = np.asarray(background, dtype=np.float64).reshape(1, 1, 3)
        return np.clip(np.round(rgb * alpha + bg * (1 - alpha)), 0, 255).astype(np.uint8)
    if channels != 3:
        raise ValueError(f"cannot read {what} {path}: unsupported channel count {channels}")
    return np.ascontiguousarray(img[..., ::-1])


def encode_image(rgb: np.ndarray, ext: str = ".png") -> bytes:
    """Encode uint8 RGB ``(H, W, 3)`` (or grey ``(H, W)``) as ``ext`` (``.png``, ``.jpg``)."""
    import cv2

    arr = np.ascontiguousarray(rgb)
    if arr.dtype != np.uint8:
        raise ValueError(f"images are written from uint8 arrays, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim != 2:
        raise ValueError(f"expected an (H, W, 3) RGB or (H, W) grey image, got shape {arr.shape}")
    try:
        ok, buf = cv2.imencode(ext, arr)
    except cv2.error:  # OpenCV raises, rather than returning False, for an extension it has no encoder for
        ok = False
    if not ok:
        raise ValueError(f"cannot encode an image as {ext!r} (use .png or .jpg)")
    return buf.tobytes()


def write_image(path: PathLike, rgb: np.ndarray) -> Path:
    """Write uint8 RGB ``(H, W, 3)`` to ``path`` atomically; the extension picks the format."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ValueError(f"cannot write image {path}: use one of {', '.join(IMAGE_EXTENSIONS)}")
    return atomic_write_bytes(path, encode_image(rgb, ext))


def list_images(specs: Union[PathLike, Iterable[PathLike]], recursive: bool = False) -> list[Path]:
    """Image files named by ``specs``: files, or folders (their JPEG/PNG files, sorted by path;
    ``recursive`` descends into sub-folders). A folder without images, a missing path or an empty
    list is a ``ValueError`` / ``FileNotFoundError`` naming it."""
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    files: list[Path] = []
    for spec in specs:
        p = Path(spec).expanduser()
        if p.is_dir():
            found = sorted(f for f in (p.rglob("*") if recursive else p.iterdir()) if is_image_file(f))
            if not found:
                raise ValueError(f"no images in folder {p} (looked for {', '.join(IMAGE_EXTENSIONS)} files)")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"image or folder not found: {p}")
    if not files:
        raise ValueError("no images given")
    return files
