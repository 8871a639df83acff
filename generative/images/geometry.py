"""Frame geometry, once: crop boxes, centre crops, resizing, and the camera intrinsics that follow them.

Every path that brings a frame to another size goes through :func:`crop_resize` (or its square special
case :func:`square_resize`): the backbone's input, the pipeline's scored output frames, a video loaded at
a size, images given on the command line, training crops.

Interpolation policy (one, for every caller): **area averaging when the crop shrinks in both directions
(or keeps its size), bilinear otherwise**. Area averaging is the alias-free choice for downsampling;
bilinear never overshoots (bicubic rings and clips at edges), so an enlarged frame holds no values its
source did not. A crop of exactly the target size is returned as is (no resampling).

Pixel convention: pixel centres at integer coordinates, so a pixel's edge sits at ``-0.5``; crops and
resizes move the principal point accordingly (:func:`adjust_intrinsics`, :func:`rescale_intrinsics`).
Images are uint8 RGB ``(H, W, 3)``; a box is ``(x0, y0, w, h)`` in pixels.
"""

from __future__ import annotations

from typing import Union

import cv2
import numpy as np

__all__ = ["Box", "out_hw", "crop_box", "crop_resize", "square_resize", "square_resize_frames",
           "adjust_intrinsics", "rescale_intrinsics"]

Box = tuple[int, int, int, int]


def out_hw(size) -> tuple[int, int]:
    """``size`` (an int for a square, or ``(height, width)``) as ``(height, width)``; ``ValueError`` otherwise."""
    hw = (size, size) if np.isscalar(size) else tuple(size)
    if len(hw) != 2 or any(int(v) != v or v < 1 for v in hw):
        raise ValueError(f"size must be a positive int or (height, width), got {size}")
    return int(hw[0]), int(hw[1])


def crop_box(frame_hw: tuple[int, int], size, crop: Union[str, Box, None] = "center") -> Box:
    """The ``(x0, y0, w, h)`` region :func:`crop_resize` takes from ``(H, W)`` frames.

    ``"center"``: the largest centred region with the aspect ratio of ``size`` (a square for an int);
    ``None``/``"none"``: the whole frame (resizing then distorts); a box: checked to lie inside.
    """
    H, W = frame_hw
    oh, ow = out_hw(size)
    if crop is None or (isinstance(crop, str) and crop == "none"):
        return 0, 0, W, H
    if isinstance(crop, str):
        if crop != "center":
            raise ValueError(f"crop must be 'center', 'none' or a box (x0, y0, w, h); got {crop!r}")
        if W * oh >= H * ow:  # frame wider than the target: crop the sides
            cw, ch = int(round(H * ow / oh)), H
        else:
            cw, ch = W, int(round(W * oh / ow))
        return (W - cw) // 2, (H - ch) // 2, cw, ch
    box = tuple(int(v) for v in crop)
    if len(box) != 4:
        raise ValueError(f"crop box must be (x0, y0, w, h), got {crop}")
    x0, y0, cw, ch = box
    if cw < 1 or ch < 1 or x0 < 0 or y0 < 0 or x0 + cw > W or y0 + ch > H:
        raise ValueError(f"crop box {box} (x0, y0, w, h) does not lie inside the {W}x{H} frame")
    return box


def _resize_one(img: np.ndarray, box: Box, oh: int, ow: int) -> np.ndarray:
    """One ``(H, W, C)`` image cropped to ``box`` and resized to ``(oh, ow)`` by the module's policy."""
    x0, y0, cw, ch = box
    img = img[y0 : y0 + ch, x0 : x0 + cw]
    if (ch, cw) == (oh, ow):
        return img
    interp = cv2.INTER_AREA if (cw >= ow and ch >= oh) else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(img), (ow, oh), interpolation=interp)


def square_resize(img: np.ndarray, resolution: int) -> np.ndarray:
    """Centre-crop ``(H, W, 3)`` to a square and resize to ``(resolution, resolution, 3)`` (the module's
    policy: area interpolation when shrinking, bilinear when enlarging)."""
    h, w = img.shape[:2]
    s = min(h, w)
    return _resize_one(img, ((w - s) // 2, (h - s) // 2, s, s), int(resolution), int(resolution))


def _frames_array(block) -> np.ndarray:
    return np.asarray(block)


def square_resize_frames(frames, size: int, chunk: int = 64) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` frames (or a frame source, e.g. a lazily decoded video) -> centre square
    crops ``(N, size, size, 3)`` (:func:`square_resize`). A source is read ``chunk`` frames at a time,
    so a long native-resolution video is never decoded whole (9,000 frames of 1080p are 56 GB)."""
    n, size = len(frames), int(size)
    out = np.empty((n, size, size, 3), np.uint8)
    for s in range(0, n, chunk):
        for i, f in enumerate(_frames_array(frames[s : s + chunk])):
            out[s + i] = square_resize(f, size)
    return out


def crop_resize(frames, size, crop: Union[str, Box, None] = "center", chunk: int = 64) -> np.ndarray:
    """Crop then resize frames ``(N, H, W, 3)`` (or one ``(H, W, 3)``) to ``size`` (int or (h, w)).

    ``crop`` as in :func:`crop_box` (e.g. a face-centred box). Returns uint8 ``(N, h, w, 3)`` (or
    ``(h, w, 3)`` for one frame). A lazy frame source is read ``chunk`` frames at a time.
    """
    single = isinstance(frames, np.ndarray) and frames.ndim == 3
    if single:
        frames = frames[None]
    n, H, W = len(frames), int(frames.shape[1]), int(frames.shape[2])
    oh, ow = out_hw(size)
    box = crop_box((H, W), size, crop)
    out = np.empty((n, oh, ow, 3), dtype=np.uint8)
    for start in range(0, n, chunk):
        for j, img in enumerate(_frames_array(frames[start : start + chunk])):
            out[start + j] = _resize_one(img, box, oh, ow)
    return out[0] if single else out


def adjust_intrinsics(K, box: Box, size) -> np.ndarray:
    """Intrinsics ``(3, 3)`` after cropping ``box = (x0, y0, w, h)`` and resizing to ``size``.

    Pixel centres at integers: ``u' = (u - x0 + 0.5) * sx - 0.5`` with ``sx = w_out / w``.
    """
    K = np.asarray(K, dtype=np.float64)
    oh, ow = out_hw(size)
    x0, y0, cw, ch = box
    sx, sy = ow / cw, oh / ch
    A = np.array([[sx, 0.0, (0.5 - x0) * sx - 0.5], [0.0, sy, (0.5 - y0) * sy - 0.5], [0.0, 0.0, 1.0]])
    return A @ K


def rescale_intrinsics(K, from_wh: tuple[int, int], to_wh: tuple[int, int]) -> np.ndarray:
    """Intrinsics ``(3, 3)`` of images ``from_wh = (width, height)`` rescaled (no crop) to ``to_wh``:
    :func:`adjust_intrinsics` with the whole frame as the box."""
    (w0, h0), (w, h) = (int(v) for v in from_wh), (int(v) for v in to_wh)
    if (w0, h0) == (w, h):
        return np.asarray(K, dtype=np.float64).copy()
    return adjust_intrinsics(K, (0, 0, w0, h0), (h, w))
