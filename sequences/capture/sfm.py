"""Structure from motion: camera poses for a video or a folder of photographs that comes without any.

COLMAP's pipeline through its Python bindings (``pycolmap``, the optional extra ``.[sfm]``, CPU only):

1. **frames**: a video is sampled at a stated rate (``fps``, on the container clock) into JPEG files
   (:func:`sample_video`); a photo folder is used as it is (its JPEG/PNG files in natural name order);
2. **features**: SIFT on each image downscaled to at most ``max_image_size`` pixels on its long side
   (keypoints are stored in full-resolution pixels), one shared camera (``SIMPLE_RADIAL``, focal
   length refined) when all images have one size;
3. **matching**: every pair for a small photo set (*exhaustive*); for a video, or a large photo set,
   each image with its ``overlap`` successors and at doubling gaps beyond them (*sequential*) plus
   **loop closure**: for each image the ``loop_candidates`` most similar images further away, found
   by a bag of visual words built from the capture's own SIFT descriptors (no vocabulary file, no
   download). Each pair is verified geometrically (RANSAC, at least 15 inliers);
4. **mapping**: COLMAP's incremental mapper; of the models it finds the largest is kept;
5. the model is written in COLMAP's text format (``cameras.txt``, ``images.txt``, ``points3D.txt``)
   and read back with the project's reader (:mod:`sequences.poses.colmap` through
   :func:`sequences.poses.formats.read_poses`): camera-to-world poses, OpenCV axes, frames named by file.

Frames that are not registered are **dropped** and listed with the reason (no features, no verified
match, not registered, in a smaller model); they are never given interpolated poses as if posed.
A capture that cannot be posed raises :class:`SfMError` (a ``ValueError``) saying why in one line:
too few features, too few matches, or too few frames registered.

Photographs carrying an EXIF orientation (phones) are posed as the project's image reader shows them,
upright: COLMAP ignores the tag, so it is given upright copies (:func:`_upright_copies`).

Resolution matters. On the 44 photographs (1080 x 1440) of the ``watch`` capture (public data,
``captures/watch``; exhaustive matching, one thread) features at a long side of 720 / 800 / 900 / 1080 /
1200 / 1440 (full) px registered 26 / 30 / 34 / 34 / 33 / 30 photographs (the shipped reference model
has 33; photographs downscaled to 540 x 720 before structure from motion registered 12); the full
resolution also took the longest (SIFT and matching on up to 8192 features per image). Hence the default
1080 px. See ``examples/sfm_watch.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence, Union

import numpy as np

from sequences.poses.trajectory import PoseTrajectory

if TYPE_CHECKING:
    from sequences.run import CameraRun

__all__ = [
    "EXTRA",
    "INSTALL_HINT",
    "SfMError",
    "MissingExtraError",
    "pycolmap_missing_reason",
    "require_pycolmap",
    "SfMOptions",
    "DEFAULT_OPTIONS",
    "SfMResult",
    "SampledVideo",
    "sample_video",
    "exhaustive_pairs",
    "sequential_pairs",
    "retrieval_pairs",
    "reconstruct",
    "posed_capture",
    "SFM_POSES",
]

PathLike = Union[str, os.PathLike]

#: The optional extra that installs pycolmap, and how to install it.
EXTRA = "sfm"
INSTALL_HINT = f"pip install -e '.[{EXTRA}]'"

#: The ``--poses`` value that asks for structure from motion instead of a pose file.
SFM_POSES = "auto"

#: What ``metadata['path']`` of an SfM trajectory says where a pose file's path would be.
SFM_SOURCE = "structure from motion (--poses auto)"

#: COLMAP's default: a verified pair needs this many RANSAC inliers.
MIN_INLIERS = 15


class SfMError(ValueError):
    """A capture that structure from motion cannot pose; the message says why in one line."""


class MissingExtraError(ImportError):
    """pycolmap, the optional extra ``.[sfm]``, is not installed."""


def pycolmap_missing_reason() -> Optional[str]:
    """None when pycolmap can be imported; else one line naming the extra that installs it."""
    try:
        import pycolmap  # noqa: F401
    except ImportError as exc:
        return (f"structure from motion needs pycolmap (COLMAP's Python bindings), which is not installed ({exc}); "
                f"install the optional extra: {INSTALL_HINT} (or pip install pycolmap)")
    return None


def require_pycolmap():
    """The ``pycolmap`` module; :class:`MissingExtraError` naming ``.[sfm]`` when it is missing."""
    reason = pycolmap_missing_reason()
    if reason is not None:
        raise MissingExtraError(reason)
    import pycolmap

    return pycolmap


# ----------------------------------------------------------------------------------------------------
# Options and results


MATCHING = ("auto", "exhaustive", "sequential")


@dataclass(frozen=True)
class SfMOptions:
    """How :func:`reconstruct` poses a capture.

    Attributes:
        max_image_size: long side (pixels) of the images SIFT sees; larger images are downscaled for
            extraction only (0 or less: full resolution). Measured on the ``watch`` capture: 720 px
            registers 26 of 44, 900 and 1080 px 34, full resolution (1440) 30; see the module docstring.
        max_features: SIFT features per image at most.
        matching: ``exhaustive`` (every pair), ``sequential`` (neighbours + loop closure), or ``auto``:
            exhaustive for photo sets of at most ``exhaustive_max_images``, sequential otherwise and
            for videos.
        exhaustive_max_images: the largest photo set ``auto`` matches exhaustively (n (n - 1) / 2 pairs).
        overlap: sequential matching pairs each image with this many successors (and at doubling
            gaps beyond, 2 overlap, 4 overlap, ...).
        loop_closure: sequential matching also pairs each image with its ``loop_candidates`` most
            similar images further than ``overlap`` away (bag of words on the capture's descriptors).
        loop_candidates: images retrieved per image for loop closure.
        camera_model: COLMAP camera model of the shared camera (``SIMPLE_RADIAL``: one focal length,
            principal point, one radial term).
        min_registered: a largest model with fewer registered frames is an :class:`SfMError`.
        threads: CPU threads for extraction, matching and mapping; 0: all cores.
        seed: seed of RANSAC, the mapper and the vocabulary, for repeatable runs (with ``threads=1``
            the result is the same run after run).
    """

    max_image_size: int = 1080
    max_features: int = 8192
    matching: str = "auto"
    exhaustive_max_images: int = 100
    overlap: int = 10
    loop_closure: bool = True
    loop_candidates: int = 5
    camera_model: str = "SIMPLE_RADIAL"
    min_registered: int = 3
    threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.matching not in MATCHING:
            raise ValueError(f"SfM matching must be one of {', '.join(MATCHING)}, got {self.matching!r}")
        for name in ("max_features", "exhaustive_max_images", "overlap", "loop_candidates", "min_registered"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SfM option {name} must be >= 1, got {getattr(self, name)}")
        if self.min_registered < 2:
            raise ValueError(f"SfM option min_registered must be >= 2 (a model has two frames at least), got {self.min_registered}")
        if self.threads < 0:
            raise ValueError(f"SfM option threads must be >= 0 (0: all cores), got {self.threads}")
        from sequences.poses.colmap import CAMERA_MODELS

        if self.camera_model not in {name for name, _ in CAMERA_MODELS.values()}:
            raise ValueError(f"unknown COLMAP camera model {self.camera_model!r}; known: "
                             f"{', '.join(name for name, _ in CAMERA_MODELS.values())}")

    def strategy(self, n_images: int, video: bool) -> str:
        """``exhaustive`` or ``sequential`` for ``n_images`` frames (of a video or not)."""
        if self.matching != "auto":
            return self.matching
        return "sequential" if video or n_images > self.exhaustive_max_images else "exhaustive"


#: The options of ``--poses auto`` and of calls that pass none (tests set ``threads=1`` here, for runs
#: that are the same on every machine).
DEFAULT_OPTIONS = SfMOptions()


@dataclass
class SfMResult:
    """What :func:`reconstruct` found.

    Attributes:
        model_dir: the COLMAP text model written (``cameras.txt``, ``images.txt``, ``points3D.txt``).
        trajectory: the registered frames' camera-to-world poses as the project's COLMAP reader reads
            the model: rotations ``(K, 3, 3)``, centres ``(K, 3)``, ``metadata['names']`` the K image
            names in natural order, intrinsics and camera records; no timestamps (pose index).
        names: all ``N`` input image names, in natural order.
        registered: the ``K`` registered names, in that order.
        dropped: name -> why, for the ``N - K`` frames left out of the model (and of any run made from it).
        matching: the pairing used (``exhaustive``, ``sequential``, ``sequential + loop closure``).
        pairs: image pairs matched; verified_pairs: pairs that passed geometric verification.
        models: registered frames of every model the mapper found, largest first.
        points: 3D points of the kept model; reprojection_error: their mean reprojection error (pixels).
        seconds: wall-clock time per phase (``features``, ``matching``, ``mapping``, ``total``).
        options: the options used.
    """

    model_dir: Path
    trajectory: PoseTrajectory
    names: list[str]
    registered: list[str]
    dropped: dict[str, str]
    matching: str
    pairs: int
    verified_pairs: int
    models: list[int]
    points: int
    reprojection_error: float
    seconds: dict[str, float]
    options: SfMOptions
    extra: dict = field(default_factory=dict)

    def report(self, max_names: int = 12) -> str:
        """One line: how many frames were registered, and which were dropped from the run."""
        n, k = len(self.names), len(self.registered)
        line = f"registered {k} of {n} frames"
        if len(self.models) > 1:
            line += f" (the largest of {len(self.models)} models: {', '.join(map(str, self.models))} frames)"
        if not self.dropped:
            return line + "; none dropped"
        shown = list(self.dropped)
        listed = ", ".join(shown[:max_names]) + (f", ... ({len(shown) - max_names} more)" if len(shown) > max_names else "")
        reasons: dict[str, int] = {}
        for why in self.dropped.values():
            reasons[why] = reasons.get(why, 0) + 1
        why = "; ".join(f"{c} {r}" for r, c in reasons.items())
        return f"{line}; the other {len(shown)} are dropped from the run, not interpolated ({why}): {listed}"

    def to_json(self) -> dict:
        """A JSON-serialisable summary (``sfm.json`` of ``viewgp poses``)."""
        return {
            "format": "viewgp-sfm", "version": 1, "model": str(self.model_dir), "frames": len(self.names),
            "registered": self.registered, "dropped": self.dropped, "matching": self.matching,
            "pairs": self.pairs, "verified_pairs": self.verified_pairs, "models": self.models,
            "points": self.points, "reprojection_error_px": self.reprojection_error,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "options": dataclasses.asdict(self.options), "pycolmap": self.extra.get("pycolmap"),
            **{k: v for k, v in self.extra.items() if k != "pycolmap"},
        }


# ----------------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """Phase lines and bars on stderr (nothing when ``enabled`` is False)."""

    def __init__(self, enabled: bool, phases: int) -> None:
        self.enabled = bool(enabled)
        self.phases = phases
        self.phase = 0

    def start(self, text: str) -> None:
        self.phase += 1
        self.line(f"[{self.phase}/{self.phases}] {text}")

    def line(self, text: str) -> None:
        if self.enabled:
            from tqdm import tqdm

            tqdm.write(f"viewgp sfm: {text}", file=sys.stderr)

    def bar(self, total: int, desc: str, unit: str):
        from tqdm import tqdm

        return tqdm(total=total, desc=f"  {desc}", unit=unit, disable=not self.enabled, file=sys.stderr,
                    dynamic_ncols=True, leave=True)


@contextlib.contextmanager
def _colmap_quiet(pycolmap, quiet: bool) -> Iterator[None]:
    """COLMAP logs every image and every pair at INFO level (and warns about each failed registration
    attempt): show its errors only, since our own progress says which phase runs and the result lists
    what was dropped; its level is restored afterwards."""
    old = pycolmap.logging.minloglevel
    if quiet:
        pycolmap.logging.minloglevel = 2  # ERROR
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = old


# ----------------------------------------------------------------------------------------------------
# Frames


@dataclass
class SampledVideo:
    """Frames of a video sampled for structure from motion (:func:`sample_video`).

    Attributes:
        video: the video file; folder: where the frames were written.
        names: ``M`` file names (``frame_<container index>.jpg``), in time order.
        frame_indices: ``(M,)`` container frame indices; times: ``(M,)`` their container times (s).
        fps: the sampling rate asked for; video_frames, video_fps: the whole video's frame count and rate.
    """

    video: Path
    folder: Path
    names: list[str]
    frame_indices: np.ndarray
    times: np.ndarray
    fps: float
    video_frames: int
    video_fps: float


def sample_video(video: PathLike, folder: PathLike, fps: float = 2.0, max_frames: Optional[int] = None,
                 progress: bool = True) -> SampledVideo:
    """Write the frames of ``video`` nearest to ``t0, t0 + 1/fps, ...`` (container times) as JPEG files
    into ``folder``; all frames when the video's own rate is lower. ``max_frames``: consider only the
    first ``max_frames`` frames of the video."""
    from generative.images.imageio import write_image
    from sequences.capture.video import VideoFrames

    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"frame sampling rate must be a positive number of frames per second, got {fps}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    src = VideoFrames(video, max_frames=max_frames)
    try:
        t = src.container_timestamps
        targets = t[0] + np.arange(0.0, (t[-1] - t[0]) + 0.5 / fps, 1.0 / fps)
        # The frame nearest to each target time (times increase, so searchsorted brackets each target).
        j = np.clip(np.searchsorted(t, targets), 1, len(t) - 1) if len(t) > 1 else np.zeros(len(targets), np.int64)
        if len(t) > 1:
            j = np.where(np.abs(t[j - 1] - targets) <= np.abs(t[j] - targets), j - 1, j)
        idx = np.unique(j).astype(np.int64)
        sel = src.select(idx)
        names = [f"frame_{int(i):06d}.jpg" for i in idx]
        report = _Progress(progress, 0)
        report.line(f"frames: {len(idx)} of the {len(t)} video frames, sampled at {fps:g} per second")
        bar = report.bar(len(idx), "sampling", "frame")
        try:
            for k in range(len(idx)):  # increasing container order: the decoder only moves forward
                write_image(folder / names[k], sel[k])
                bar.update(1)
        finally:
            bar.close()
            sel.close()
        return SampledVideo(Path(video), folder, names, idx, t[idx].copy(), float(fps), src.n_container_frames, src.fps)
    finally:
        src.close()


# ----------------------------------------------------------------------------------------------------
# Image pairs


def exhaustive_pairs(n: int) -> list[tuple[int, int]]:
    """Every pair ``(i, j)``, ``i < j < n``."""
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def sequential_pairs(n: int, overlap: int) -> list[tuple[int, int]]:
    """Each image with its ``overlap`` successors, and with those at gaps ``2 overlap, 4 overlap, ...``:
    the doubling gaps tie distant parts of a slow sweep together at a cost of ``log n`` pairs each."""
    pairs = set()
    for i in range(n):
        for d in range(1, overlap + 1):
            if i + d < n:
                pairs.add((i, i + d))
        d = 2 * overlap
        while i + d < n:
            pairs.add((i, i + d))
            d *= 2
    return sorted(pairs)


def retrieval_pairs(descriptors: Sequence[np.ndarray], candidates: int, min_gap: int, seed: int = 0,
                    words: int = 256, per_image: int = 1000) -> list[tuple[int, int]]:
    """Loop-closure pairs: each image with its ``candidates`` most similar images at least ``min_gap``
    positions away, by TF-IDF bag-of-words cosine similarity.

    The vocabulary is ``words`` k-means centres of (at most ``per_image`` per image) descriptors of the
    capture itself, so no pretrained vocabulary (and no download) is needed. ``descriptors``: one
    ``(n_i, 128)`` array of SIFT descriptors per image. Returns sorted ``(i, j)`` with ``i < j``.
    """
    import cv2

    n = len(descriptors)
    if n <= min_gap + 1 or candidates < 1:
        return []
    rng = np.random.default_rng(seed)
    sampled = []
    for d in descriptors:
        d = np.asarray(d, dtype=np.float32).reshape(-1, 128)
        sampled.append(d[rng.choice(len(d), per_image, replace=False)] if len(d) > per_image else d)
    train = np.concatenate(sampled)
    if len(train) > 50_000:
        train = train[rng.choice(len(train), 50_000, replace=False)]
    k = int(min(words, max(2, len(train) // 10)))
    if len(train) < 2 * k or k < 2:
        return []
    # OpenCV's k-means (k-means++ seeding from its global generator, seeded here for repeatable pairs).
    cv2.setRNGSeed(int(seed))
    criteria = (cv2.TERM_CRITERIA_MAX_ITER + cv2.TERM_CRITERIA_EPS, 15, 1e-3)
    _, _, centres = cv2.kmeans(np.ascontiguousarray(train), k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    centres = np.asarray(centres, dtype=np.float32)
    c2 = (centres * centres).sum(1)
    hist = np.zeros((n, k))
    for i, d in enumerate(sampled):
        if len(d):
            word = np.argmin(c2[None] - 2 * d @ centres.T, axis=1)  # nearest centre (|d|^2 is common)
            hist[i] = np.bincount(word, minlength=k)
    idf = np.log(n / (1.0 + (hist > 0).sum(0)))
    tfidf = hist / np.maximum(hist.sum(1, keepdims=True), 1) * idf
    tfidf /= np.maximum(np.linalg.norm(tfidf, axis=1, keepdims=True), 1e-12)
    sim = tfidf @ tfidf.T
    pairs = set()
    for i in range(n):
        far = np.flatnonzero(np.abs(np.arange(n) - i) >= min_gap)
        if far.size == 0:
            continue
        best = far[np.argsort(-sim[i, far], kind="stable")[:candidates]]
        pairs.update((min(i, int(j)), max(i, int(j))) for j in best if sim[i, j] > 0)
    return sorted(pairs)


# ----------------------------------------------------------------------------------------------------
# The pipeline


def _same_size(paths: Sequence[Path]) -> bool:
    """Whether all images have one size (then they share one camera). Reads only the file headers
    (Pillow: a dependency of matplotlib, so always there; OpenCV would decode every image)."""
    from PIL import Image

    sizes = set()
    for p in paths:
        with Image.open(p) as im:
            sizes.add(im.size)
        if len(sizes) > 1:
            return False
    return True


def _upright_copies(image_dir: Path, names: Sequence[str], work: Path) -> Optional[Path]:
    """A folder of upright copies of the images when any carries an EXIF orientation (phone photos), else None.

    COLMAP reads the pixels as stored and ignores the EXIF orientation, while the project's reader
    (:func:`generative.images.imageio.read_image`) applies it: the poses and intrinsics must be those of the
    images the run will show, so structure from motion sees them the way the run reads them."""
    from PIL import Image

    from generative.images.imageio import read_image, write_image

    def rotated(path: Path) -> bool:
        with Image.open(path) as im:
            return int(im.getexif().get(0x0112, 1) or 1) != 1  # 0x0112: the EXIF orientation tag

    if not any(rotated(image_dir / nm) for nm in names):
        return None
    folder = work / "upright"
    for nm in names:
        target = folder / nm
        target.parent.mkdir(parents=True, exist_ok=True)
        if rotated(image_dir / nm):
            write_image(target, read_image(image_dir / nm))  # same name and type, pixels turned upright
        else:
            shutil.copyfile(image_dir / nm, target)
    return folder


def _chunks(items: Sequence, n_chunks: int) -> Iterator[Sequence]:
    size = max(1, math.ceil(len(items) / max(1, n_chunks)))
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _extract(pycolmap, db: Path, image_dir: Path, names: list[str], options: SfMOptions, single_camera: bool,
             progress: _Progress) -> None:
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = options.camera_model
    mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.AUTO
    # Import every image first, so that the chunks extracted below (one bar step each) share its camera.
    pycolmap.import_images(db, image_dir, camera_mode=mode, image_names=names, options=reader)
    ex = pycolmap.FeatureExtractionOptions()
    ex.max_image_size = int(options.max_image_size) if options.max_image_size > 0 else -1
    ex.num_threads = options.threads or -1
    ex.sift.max_num_features = int(options.max_features)
    with progress.bar(len(names), "features", "image") as bar:
        for chunk in _chunks(names, 50):
            pycolmap.extract_features(db, image_dir, image_names=list(chunk), camera_mode=mode, reader_options=reader,
                                      extraction_options=ex, device=pycolmap.Device.cpu)
            bar.update(len(chunk))


def _match(pycolmap, db: Path, work: Path, pairs: list[tuple[str, str]], options: SfMOptions, progress: _Progress) -> None:
    mo = pycolmap.FeatureMatchingOptions()
    mo.num_threads = options.threads or -1
    vo = pycolmap.TwoViewGeometryOptions()
    vo.min_num_inliers = MIN_INLIERS
    vo.ransac.random_seed = int(options.seed)
    with progress.bar(len(pairs), "matching", "pair") as bar:
        for k, chunk in enumerate(_chunks(pairs, 50)):
            listing = work / f"pairs_{k:03d}.txt"
            listing.write_text("".join(f"{a} {b}\n" for a, b in chunk), encoding="utf-8")
            po = pycolmap.ImportedPairingOptions()
            po.match_list_path = str(listing)
            pycolmap.match_image_pairs(db, matching_options=mo, pairing_options=po, verification_options=vo,
                                       device=pycolmap.Device.cpu)
            bar.update(len(chunk))


def _mapper_options(pycolmap, options: SfMOptions, n: int):
    po = pycolmap.IncrementalPipelineOptions()
    po.num_threads = options.threads or -1
    po.mapper.num_threads = options.threads or -1
    po.random_seed = int(options.seed)
    po.mapper.random_seed = int(options.seed)
    po.triangulation.random_seed = int(options.seed)
    # Keep small models too (COLMAP drops those under 10 frames), so that a capture that barely
    # registers is reported with its count rather than as nothing at all.
    po.min_model_size = int(min(options.min_registered, n))
    po.extract_colors = False
    return po


def reconstruct(image_dir: PathLike, model_dir: PathLike, names: Optional[Sequence[str]] = None,
                options: Optional[SfMOptions] = None, video: bool = False, progress: bool = True,
                work_dir: Optional[PathLike] = None, label: Optional[str] = None) -> SfMResult:
    """Pose the images ``names`` of ``image_dir`` by structure from motion (see the module docstring).

    Args:
        image_dir: the folder of the images.
        model_dir: where the COLMAP text model of the largest reconstruction is written (created).
        names: image file names relative to ``image_dir``, in capture order; default: its JPEG/PNG
            files in natural name order.
        options: :class:`SfMOptions` (:data:`DEFAULT_OPTIONS` when None).
        video: the images are frames of a video in time order (``auto`` matching is then sequential).
        progress: phase lines and progress bars on stderr.
        work_dir: folder for COLMAP's database and scratch files (default: a temporary folder, removed).
        label: what error messages call the capture (default: ``image_dir``; e.g. the video sampled into it).
    Returns:
        an :class:`SfMResult`; raises :class:`SfMError` when the capture cannot be posed and
        :class:`MissingExtraError` when pycolmap is not installed.
    """
    from sequences.poses.formats import read_poses
    from sequences.capture.image_folder import list_frame_images

    pycolmap = require_pycolmap()
    options = options or DEFAULT_OPTIONS
    image_dir = Path(image_dir)
    if names is None:
        names = [p.relative_to(image_dir).as_posix() for p in list_frame_images(image_dir)]
    names = list(names)
    n = len(names)
    label = label or str(image_dir)
    if n < 2:
        raise SfMError(f"{label}: structure from motion needs at least 2 frames, got {n}")
    missing = [nm for nm in names if not (image_dir / nm).is_file()]
    if missing:
        raise FileNotFoundError(f"{image_dir}: image {missing[0]!r} not found")
    strategy = options.strategy(n, video)
    progress_ = _Progress(progress, 3)
    seconds: dict[str, float] = {}
    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="viewgp-sfm-")))
        else:
            work = Path(work_dir)
            work.mkdir(parents=True, exist_ok=True)
        stack.enter_context(_colmap_quiet(pycolmap, quiet=True))
        db_path = work / "database.db"
        if db_path.exists():
            db_path.unlink()  # a stale database would mix in another run's images
        pycolmap.Database.open(db_path).close()  # import_images needs the file to exist

        # 1. Features.
        size = "full resolution" if options.max_image_size <= 0 else f"long side <= {options.max_image_size} px"
        progress_.start(f"features: SIFT on {n} images ({size}, up to {options.max_features} each)")
        t = time.perf_counter()
        colmap_dir = (None if video else _upright_copies(image_dir, names, work)) or image_dir
        single = video or _same_size([colmap_dir / nm for nm in names])
        _extract(pycolmap, db_path, colmap_dir, names, options, single, progress_)
        with pycolmap.Database.open(db_path) as db:
            images = {im.name: im.image_id for im in db.read_all_images()}
            keypoints = {nm: db.num_keypoints_for_image(images[nm]) for nm in names}
            descriptors = ([db.read_descriptors(images[nm]).data for nm in names]
                           if strategy == "sequential" and options.loop_closure else None)
        seconds["features"] = time.perf_counter() - t
        featured = [nm for nm in names if keypoints[nm] > 0]
        if len(featured) < 2:
            raise SfMError(f"{label}: cannot pose the capture: too few features (SIFT found features in "
                           f"{len(featured)} of {n} images; blank, blurred or tiny images?)")

        # 2. Matching.
        t = time.perf_counter()
        if strategy == "exhaustive":
            index_pairs, matching = exhaustive_pairs(n), "exhaustive"
        else:
            index_pairs, matching = sequential_pairs(n, options.overlap), "sequential"
            if options.loop_closure:
                loops = retrieval_pairs(descriptors, options.loop_candidates, options.overlap + 1, options.seed)
                index_pairs = sorted(set(index_pairs) | set(loops))
                matching = "sequential + loop closure"
        pairs = [(names[i], names[j]) for i, j in index_pairs if keypoints[names[i]] and keypoints[names[j]]]
        progress_.start(f"matching: {matching}, {len(pairs)} image pairs, geometric verification")
        _match(pycolmap, db_path, work, pairs, options, progress_)
        with pycolmap.Database.open(db_path) as db:
            pair_ids, geometries = db.read_two_view_geometries()
        by_id = {v: k for k, v in images.items()}
        connected: set[str] = set()
        verified = 0
        for pid, g in zip(pair_ids, geometries):
            if len(g.inlier_matches) >= MIN_INLIERS:
                verified += 1
                a, b = pycolmap.pair_id_to_image_pair(pid)
                connected.update((by_id[a], by_id[b]))
        seconds["matching"] = time.perf_counter() - t
        progress_.line(f"  {verified} of {len(pairs)} pairs verified; {len(connected)} of {n} frames matched to another")
        if verified == 0:
            raise SfMError(f"{label}: cannot pose the capture: too few matches (no two of its {n} frames share "
                           f"{MIN_INLIERS} geometrically consistent feature matches; textureless, blurred or unrelated frames?)")

        # 3. Mapping.
        t = time.perf_counter()
        progress_.start("mapping: incremental, bundle adjustment")
        mapper = _mapper_options(pycolmap, options, n)
        sparse = work / "sparse"
        shutil.rmtree(sparse, ignore_errors=True)
        sparse.mkdir()
        with progress_.bar(n, "registered", "frame") as bar:
            def registered(k: int = 1) -> None:
                bar.update(min(k, n - bar.n))  # a second model counts from its own start: stop at n

            models = pycolmap.incremental_mapping(db_path, colmap_dir, sparse, mapper,
                                                  initial_image_pair_callback=lambda: registered(2),
                                                  next_image_callback=registered)
        seconds["mapping"] = time.perf_counter() - t
        recs = sorted(models.values(), key=lambda r: r.num_reg_images(), reverse=True)
        sizes = [int(r.num_reg_images()) for r in recs]
        if not recs:
            raise SfMError(f"{label}: cannot pose the capture: too few registered (no model: no pair among the "
                           f"{verified} verified pairs gave a usable start, too few matches or too little camera movement "
                           "between them)")
        best = recs[0]
        if sizes[0] < options.min_registered:
            raise SfMError(f"{label}: cannot pose the capture: too few registered (the largest model holds {sizes[0]} "
                           f"of {n} frames, fewer than the {options.min_registered} needed)")

        # 4. The model, read back by the project's own reader.
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        best.write_text(str(model_dir))
    registered_names = {best.images[i].name for i in best.reg_image_ids()}
    in_other = {best_other.images[i].name for best_other in recs[1:] for i in best_other.reg_image_ids()}
    dropped = {}
    for nm in names:
        if nm in registered_names:
            continue
        if keypoints[nm] == 0:
            dropped[nm] = "no features"
        elif nm not in connected:
            dropped[nm] = "no verified match"
        elif nm in in_other:
            dropped[nm] = "in a smaller model"
        else:
            dropped[nm] = "not registered"
    traj = read_poses(model_dir / "images.txt", "colmap")
    seconds["total"] = time.perf_counter() - t_start
    return SfMResult(
        model_dir=model_dir, trajectory=traj, names=names, registered=[nm for nm in names if nm in registered_names],
        dropped=dropped, matching=matching, pairs=len(pairs), verified_pairs=verified, models=sizes,
        points=int(best.num_points3D()), reprojection_error=float(best.compute_mean_reprojection_error()),
        seconds=seconds, options=options, extra={"pycolmap": getattr(pycolmap, "__version__", "unknown")},
    )


def write_summary(path: PathLike, result: SfMResult, extra: Optional[dict] = None) -> Path:
    """``result.to_json()`` (plus ``extra``) as a JSON file, atomically."""
    from generative.images.fileio import atomic_write_text

    data = dict(result.to_json(), **(extra or {}))
    return atomic_write_text(Path(path), json.dumps(data, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------------
# A camera run posed by structure from motion (--poses auto)


def _trajectory_for(result: SfMResult) -> PoseTrajectory:
    """The model's poses, saying where they came from (for messages) and what was dropped (for the run)."""
    traj = result.trajectory
    meta = dict(traj.metadata, path=SFM_SOURCE, sfm={"registered": len(result.registered), "frames": len(result.names),
                                                    "dropped": result.dropped, "matching": result.matching})
    return PoseTrajectory(traj.timestamps, traj.rotations, traj.translations, traj.source_format, meta)


def posed_capture(
    *,
    video: Optional[PathLike] = None,
    images: Optional[PathLike] = None,
    fps: float = 2.0,
    max_frames: Optional[int] = None,
    frame_times: Union[PathLike, Sequence[float], np.ndarray, None] = None,
    time_offset: float = 0.0,
    options: Optional[SfMOptions] = None,
    progress: bool = True,
    warn: Optional[Callable[[str], None]] = None,
) -> "CameraRun":
    """A :class:`~sequences.run.CameraRun` of a capture without poses, posed by :func:`reconstruct`.

    ``images``: the registered images of the folder (``max_frames``: only its first images in name
    order are posed); ``frame_times`` (one time per image of the folder, in name order, or a CSV) give
    the kept ones their times. ``video``: its frames sampled at ``fps`` (of the first ``max_frames``),
    the registered ones at their container times (plus ``time_offset``); the run's frames are decoded
    from the video. Frames that are not registered are dropped, with a warning listing them (``warn``,
    default :func:`warnings.warn`). The model itself is not kept: ``viewgp poses`` writes it.
    """
    import re
    import warnings

    from sequences.capture.align import intrinsics_for_size
    from sequences.capture.image_folder import list_frame_images, load_image_run
    from sequences.run import CameraRun

    if (video is None) == (images is None):
        raise ValueError(f"--poses {SFM_POSES}: give the frames to pose, --video FILE or --images DIR (one of them)")
    warn = warn or (lambda text: warnings.warn(text, stacklevel=3))
    with tempfile.TemporaryDirectory(prefix="viewgp-sfm-") as tmp:
        tmp = Path(tmp)
        if images is not None:
            folder = Path(images)
            if not folder.is_dir():
                raise FileNotFoundError(f"--images {folder}: image folder not found")
            paths = list_frame_images(folder)
            names = [p.relative_to(folder).as_posix() for p in paths]
            if max_frames is not None:
                names = names[: int(max_frames)]
            ft = None
            if frame_times is not None:
                from sequences.capture.align import frame_times_from_csv

                all_times = (frame_times_from_csv(frame_times)[0] if isinstance(frame_times, (str, os.PathLike))
                             else np.asarray(frame_times, dtype=np.float64).reshape(-1))
                if all_times.shape[0] != len(paths):
                    raise ValueError(f"--frame-times: {all_times.shape[0]} times for the {len(paths)} images of {folder}; "
                                     "give one time per image, in name order")
                ft = all_times
            result = reconstruct(folder, tmp / "sparse", names, options, video=False, progress=progress)
            if result.dropped:
                warn(result.report())
            traj = _trajectory_for(result)
            kept = None if ft is None else ft[[names.index(nm) for nm in traj.metadata["names"]]]
            # The model names every registered image: load_image_run matches them by name. Its own warning
            # about the images without a pose is left out: the report above lists them, with the reason.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".* have no pose in " + re.escape(SFM_SOURCE))
                run = load_image_run(folder, traj, frame_times=kept, time_offset=time_offset)
            run.metadata["sfm"] = traj.metadata["sfm"]
            return run
        from sequences.capture.video import load_run

        if frame_times is not None:
            raise ValueError(f"--frame-times does not apply to --video with --poses {SFM_POSES}: the registered frames "
                             "keep their times from the video container")
        sampled = sample_video(video, tmp / "images", fps=fps, max_frames=max_frames, progress=progress)
        result = reconstruct(sampled.folder, tmp / "sparse", sampled.names, options, video=True, progress=progress,
                             label=f"{video} (sampled at {fps:g} frames per second)")
        if result.dropped:
            warn(result.report())
        traj = _trajectory_for(result)
        where = {nm: k for k, nm in enumerate(sampled.names)}
        rows = np.asarray([where[nm] for nm in traj.metadata["names"]], dtype=np.int64)
        # Each registered frame keeps its own container time and index: load_run then takes the poses
        # as they are (no interpolation) and decodes those frames only.
        timed = PoseTrajectory(sampled.times[rows] + float(time_offset), traj.rotations, traj.translations,
                               traj.source_format, dict(traj.metadata, has_times=True, frame_indices=sampled.frame_indices[rows].tolist(),
                                                        times_source="video container times of the registered frames"))
        h, w = _frame_hw(sampled.folder / sampled.names[0])
        K = intrinsics_for_size(traj.metadata, w, h)
        run = load_run(video, timed, max_frames=max_frames, intrinsics=K)
        meta = dict(run.metadata, pose_file=None, source_format=traj.source_format, has_times=True,
                    times_source=timed.metadata["times_source"], sfm=dict(traj.metadata["sfm"], fps=float(fps)),
                    names=list(traj.metadata["names"]))
        if traj.metadata.get("distortion"):
            meta["distortion"] = traj.metadata["distortion"]
        return CameraRun(run.frames, run.timestamps, run.rotations, run.translations, run.observed, run.intrinsics, meta)


def _frame_hw(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
    return h, w
