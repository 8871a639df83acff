"""Procedural synthetic faces whose apparent age is a rendering parameter (issue 8, SPEC 5).

The face-aging pipeline needs data where "age" is learnable by a translator and known exactly for
an estimator, without any outside data set. A face is drawn with OpenCV at 4x the output size and
shrunk with area interpolation (cheap anti-aliasing). Two independent sets of parameters:

* **identity** (from ``identity_seed`` only): face width/height, skin tone, eye spacing and size,
  hair style (short / long / fringe) and base colour, mouth width, background colour, and the jitter
  of where wrinkle lines would go;
* **age** in years (meaningful range 10-80; clipped there): with ``t = (age - 10) / 65``

  - hair blends from its base colour to grey/white (starting around 28 years),
  - wrinkle lines appear on the forehead, as crow's feet beside the eyes and as nasolabial folds
    (onsets 28-57 years); their number and contrast grow up to 80 (a line present at one age is
    present, darker, at every older age, so wrinkle energy is monotone in age),
  - the lower half of the face ellipse lengthens (sagging cheeks/jaw),
  - skin darkens slightly.

Age domains follow SPEC 5: bins 10 years wide centred on 15, 25, ..., 65.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Union

import cv2
import numpy as np

from generative.images.fileio import atomic_write_csv
from generative.images.imageio import write_image

__all__ = [
    "DOMAIN_CENTRES",
    "AGE_RANGE",
    "domain_of",
    "domain_folder",
    "render_face",
    "make_face_dataset",
]

DOMAIN_CENTRES: tuple[int, ...] = (15, 25, 35, 45, 55, 65)
AGE_RANGE: tuple[float, float] = (10.0, 80.0)  # ages are clipped to this range when rendering
_SUPER = 4  # supersampling factor of the drawing canvas

_HAIR_BASES = np.array(
    [[35, 25, 20], [70, 45, 25], [20, 20, 22], [150, 110, 60], [200, 165, 90], [140, 60, 30]], dtype=np.float64
)
_GREY = np.array([215.0, 215.0, 212.0])


def domain_of(age: float) -> int:
    """Centre of the SPEC-5 age domain holding ``age`` (bins ``[c - 5, c + 5)``); ValueError outside ``[10, 70)``."""
    for c in DOMAIN_CENTRES:
        if c - 5 <= age < c + 5:
            return c
    raise ValueError(f"age {age} lies outside the age domains [10, 70) centred on {DOMAIN_CENTRES}")


def domain_folder(centre: int) -> str:
    """Folder name of the domain centred on ``centre`` (e.g. ``age_25``)."""
    return f"age_{int(centre)}"


def _identity(identity_seed: int) -> dict:
    """Age-independent appearance parameters drawn from ``identity_seed`` alone."""
    rng = np.random.default_rng([int(identity_seed) & 0xFFFFFFFF, 0x5EED])
    skin = np.array([rng.uniform(150, 235), 0.0, 0.0])
    skin[1] = skin[0] * rng.uniform(0.68, 0.82)
    skin[2] = skin[1] * rng.uniform(0.70, 0.85)
    bg = rng.uniform(30, 120, size=3)
    bg[rng.integers(3)] += rng.uniform(40, 110)  # a saturated background, never grey like old hair
    return {
        "face_w": rng.uniform(0.25, 0.31),  # half-width, fraction of the image side
        "face_h": rng.uniform(0.31, 0.36),  # upper half-height
        "cy": rng.uniform(0.50, 0.55),
        "skin": skin,
        "eye_dx": rng.uniform(0.09, 0.13),
        "eye_r": rng.uniform(0.028, 0.04),
        "iris": rng.uniform(20, 120, size=3),
        "hair_style": int(rng.integers(3)),
        "hair": _HAIR_BASES[rng.integers(len(_HAIR_BASES))] * rng.uniform(0.85, 1.15),
        "mouth_w": rng.uniform(0.06, 0.10),
        "bg": np.clip(bg, 0, 255),
        "wrinkle_jitter": rng.uniform(-1.0, 1.0, size=(16, 3)),
    }


def _blend_lines(img: np.ndarray, lines: list, colour: np.ndarray, thickness: int) -> np.ndarray:
    """Alpha-blend polylines: ``lines`` is a list of (points (K, 2) int32, alpha in [0, 1])."""
    for pts, alpha in lines:
        if alpha <= 0:
            continue
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.polylines(mask, [pts], False, 255, thickness, cv2.LINE_AA)
        a = (mask.astype(np.float32) / 255.0 * alpha)[..., None]
        img = img * (1 - a) + colour * a
    return img


def render_face(identity_seed: int, age: float, size: int = 64) -> np.ndarray:
    """Render one face: uint8 RGB ``(size, size, 3)``; deterministic in ``(identity_seed, age, size)``."""
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    p = _identity(identity_seed)
    age = float(np.clip(age, *AGE_RANGE))
    t = (age - 10.0) / 65.0
    S = size * _SUPER
    img = np.empty((S, S, 3), np.float32)
    img[:] = p["bg"]

    cx, cy = S / 2, p["cy"] * S
    fw, fh = p["face_w"] * S, p["face_h"] * S
    fh_low = fh * (1.0 + 0.16 * t)  # sagging: the jaw drops with age
    skin = p["skin"] * (1.0 - 0.13 * t)
    g = float(np.clip((age - 28.0) / 42.0, 0.0, 1.0)) ** 0.8
    hair = (1 - g) * p["hair"] + g * _GREY

    def ell(canvas, centre, axes, a0, a1, colour):
        c = tuple(int(round(v)) for v in centre)
        ax = tuple(max(1, int(round(v))) for v in axes)
        cv2.ellipse(canvas, c, ax, 0, a0, a1, tuple(float(v) for v in colour), -1, cv2.LINE_AA)

    # Hair behind the face (long style reaches the shoulders), then the face, then hair on top.
    if p["hair_style"] == 1:
        cv2.rectangle(img, (int(cx - fw * 1.2), int(cy - fh * 0.3)), (int(cx + fw * 1.2), S), tuple(hair.tolist()), -1)
    ell(img, (cx, cy - fh * 0.05), (fw * 1.15, fh * 1.12), 180, 360, hair)
    ell(img, (cx, cy), (fw, fh), 180, 360, skin)  # upper half of the face
    ell(img, (cx, cy), (fw, fh_low), 0, 180, skin)  # lower half, lengthening with age
    # Ears.
    for s in (-1, 1):
        ell(img, (cx + s * fw * 0.98, cy + fh * 0.05), (fw * 0.12, fh * 0.18), 0, 360, skin * 0.95)
    # Hair cap over the top of the head; the fringe style covers more forehead.
    cap = 0.62 if p["hair_style"] == 2 else 0.78
    ell(img, (cx, cy - fh * 0.05), (fw * 1.06, fh * 1.02), 180, 360, hair)
    ell(img, (cx, cy + fh * 0.05), (fw * 0.98, fh * cap), 180, 360, skin)

    # Eyes: whites, irises, brows (brows grey with the hair).
    ey = cy - fh * 0.05
    ex = p["eye_dx"] * S
    er = p["eye_r"] * S
    for s in (-1, 1):
        ell(img, (cx + s * ex, ey), (er * 1.5, er), 0, 360, (245, 245, 240))
        ell(img, (cx + s * ex, ey), (er * 0.7, er * 0.7), 0, 360, p["iris"])
        ell(img, (cx + s * ex, ey), (er * 0.3, er * 0.3), 0, 360, (10, 10, 10))
        cv2.line(img, (int(cx + s * (ex - er * 1.6)), int(ey - er * 2.0)), (int(cx + s * (ex + er * 1.6)), int(ey - er * 2.2)),
                 tuple((hair * 0.8).tolist()), max(1, int(er * 0.6)), cv2.LINE_AA)
    # Nose and mouth (the mouth drops a little with the jaw).
    ny = cy + fh * 0.3
    cv2.line(img, (int(cx), int(ey + er)), (int(cx - er * 0.6), int(ny)), tuple((skin * 0.75).tolist()), max(1, S // 90), cv2.LINE_AA)
    my = cy + fh_low * 0.55
    mw = p["mouth_w"] * S
    cv2.ellipse(img, (int(cx), int(my - mw * 0.25)), (int(mw), int(mw * 0.35)), 0, 20, 160, (120, 40, 45), max(1, S // 64), cv2.LINE_AA)

    # Wrinkles: fixed candidate lines per identity, switched on in order of an age threshold; their
    # contrast grows with age, so an older face of the same identity has every line of a younger one.
    j = p["wrinkle_jitter"]
    lines = []

    def strength(onset: float) -> float:
        # Rises from 0 at ``onset`` to full at 80, so every drawn line keeps darkening with age.
        return float(np.clip((age - onset) / (AGE_RANGE[1] - onset), 0.0, 1.0))

    fy0 = cy - fh * 0.28
    for k in range(4):  # forehead lines
        y = fy0 - k * fh * 0.09 + j[k, 0] * fh * 0.02
        half = fw * (0.45 - 0.05 * k) * (1 + 0.1 * j[k, 1])
        xs = np.linspace(cx - half, cx + half, 9)
        ys = y + np.sin(np.linspace(0, np.pi, 9)) * (-fh * 0.03) + j[k, 2] * fh * 0.01
        lines.append((np.stack([xs, ys], 1).astype(np.int32), strength(28 + 9 * k)))
    for s in (-1, 1):  # crow's feet: three short rays outward from each eye corner
        x0 = cx + s * (ex + er * 1.7)
        for k in range(3):
            ang = (-0.45 + 0.45 * k) + 0.1 * j[4 + k, 0]
            L = er * (1.3 + 0.3 * j[4 + k, 1])
            pts = np.array([[x0, ey], [x0 + s * L * np.cos(ang), ey + L * np.sin(ang)]], np.int32)
            lines.append((pts, strength(35 + 8 * k)))
    for s in (-1, 1):  # nasolabial folds from beside the nose down past the mouth corners
        pts = np.array([[cx + s * fw * 0.28, ny - fh * 0.05], [cx + s * fw * 0.38, ny + fh * 0.2],
                        [cx + s * (mw + fw * 0.12), my + fh * 0.08]], np.int32)
        lines.append((pts, strength(40 + 3 * j[7, 0])))
    # Contrasting dark-brown lines: wrinkle energy is what an estimator should pick up.
    img = _blend_lines(img, lines, skin * 0.4, max(1, S // 48))

    small = cv2.resize(np.clip(img, 0, 255), (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def make_face_dataset(
    root: Union[str, os.PathLike],
    n_identities: int,
    ages: Iterable[float],
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Render ``n_identities`` x ``len(ages)`` faces into ``root/age_<centre>/`` (SPEC-5 domains) and
    write ``root/labels.csv`` with columns ``file,age`` (``file`` relative to ``root``).

    Identity ``i`` uses identity seed ``seed * 1_000_003 + i``, so two data sets with different
    ``seed`` share no faces. Every age must lie in a domain (``[10, 70)``). Returns the CSV path.
    """
    ages = [float(a) for a in ages]
    if n_identities < 1 or not ages:
        raise ValueError(f"need at least one identity and one age, got n_identities={n_identities}, ages={ages}")
    if len(set(ages)) != len(ages):
        raise ValueError(f"ages must be distinct (one image per identity and age), got {ages}")
    domains = [domain_of(a) for a in ages]  # validates every age before anything is written
    root = Path(root)
    rows = []
    for c in sorted(set(domains)):
        (root / domain_folder(c)).mkdir(parents=True, exist_ok=True)
    for i in range(n_identities):
        ident = int(seed) * 1_000_003 + i
        for a, c in zip(ages, domains):
            rel = f"{domain_folder(c)}/id{i:05d}_age{a:g}.png"
            write_image(root / rel, render_face(ident, a, size))
            rows.append((rel, f"{a:g}"))
    return atomic_write_csv(root / "labels.csv", ["file", "age"], rows)
