"""What one pipeline run carries from step to step: the settings (:class:`PipelineConfig`), the checks a
run must pass before the pipeline spends minutes on it (:func:`check_run_for_pipeline`), and
:class:`PipelineState`, the small object every step reads and fills in (instead of helpers with ten
parameters each).

The readers (:mod:`sequences.capture`) check that files parse; :func:`check_run_for_pipeline` checks that
what they produced can be interpolated: enough frames, and camera positions whose scale the GP can work
with. Each failure is one ``ValueError`` naming the source, the problem and the fix.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch

from generative.images.geometry import square_resize_frames
from generative.precision import Precision, choose_precision

__all__ = ["PipelineConfig", "PipelineState", "output_size", "score_rows", "MAX_COORDINATE", "check_run_for_pipeline"]


@dataclass
class PipelineConfig:
    """What to fit and what to write. ``methods[0]`` is the headline method (decoded with uncertainty
    and, with ``detail``, given the keyframes' native-resolution detail)."""

    methods: Sequence[str] = ("view", "linear")
    n_samples: int = 8
    fit_steps: Optional[int] = None
    fixed: Optional[dict] = None
    batch_size: int = 128
    fps: Optional[float] = None  # frame rate of the videos; None: the run's own (CameraRun.frame_rate), else 30
    device: str = "cpu"
    seed: int = 0
    progress: bool = True
    cache_dir: Optional[str] = None
    bayes: Optional[dict] = None  # NUTS settings (num_samples, warmup_steps, num_chains): integrate hyper-parameters out
    inversion: Any = None  # generative.latents.invert.InversionConfig: invert frames instead of encoding them
    perceptual_weights: Optional[str] = None  # folder with VGG16 LPIPS weights for the inversion loss
    display_size: int = 256  # videos and strips are upscaled (nearest) to at least this many pixels
    lpips_weights: Optional[str] = None  # folder with LPIPS weights; None: the torch hub cache, if present
    output_size: Optional[int] = 256  # short side of the output (centre square); None: the run's own
    detail: bool = True  # add the keyframes' residual detail to the headline method (generative.latents.detail)
    pixel_baselines: bool = True  # also score nearest / blended / GP-interpolated keyframe pixels
    adapt_steps: int = 0  # fine-tune the backbone on the observed frames first (generative.latents.adapt)
    media: bool = True  # write videos, strips and plots (False: metrics.json only, for batch evaluations)
    # Also score the headline's warp driven by the held-out frames themselves (not methods: they see the
    # truth): "per-frame+warp" (flow from each frame's own reconstruction, i.e. a perfect latent prediction)
    # and "truth+warp" (flow from the true frame at the backbone's resolution, i.e. a perfect decoder too).
    diagnostics: bool = False
    # "auto": bfloat16 for posterior samples and adaptation only where the device computes it natively
    # (generative.precision); "fp32" / "bf16" force one. Scored predictions are always decoded in float32.
    precision: str = "auto"
    # Target frames decoded, scored and written per chunk: steps 4-7 stream through the targets this
    # many at a time, so memory does not grow with the run's length. None: as many as fit in about
    # CHUNK_BYTES at the output size (a chunk's dozen panels and their sd maps: 250 frames at 256 px,
    # 8 at 1080 px).
    chunk_frames: Optional[int] = None
    # SSIM, LPIPS (and LPIPS-delta) and the calibration are scored on at most this many target frames,
    # evenly spaced (all of them in shorter runs); MSE / PSNR on every frame.
    score_frames: Optional[int] = 1000
    # Posterior samples decoded at most at this many target frames, evenly spaced; the sd maps of the
    # frames between carry the nearest decoded map, rescaled by the predictive variance (first order,
    # generative.latents.uncertainty.rescaled_sd). None: at every frame.
    sample_frames: Optional[int] = 1000


@dataclass
class PipelineState:
    """One run of the pipeline. Set at the start: the inputs, the observed mask ``obs`` ``(N,)``, the
    output side ``size``, the keyframes' pixels ``(K, S, S, 3)`` at that size, the query poses
    ``(M, 13)`` and times ``(M,)`` (the run's own frames, or a ``query`` run's novel views); a chunk of
    the targets (:meth:`chunk`) also holds their truth ``(M, S, S, 3)`` where the targets have frames.
    Filled in by the steps (the per-target ones on each chunk): ``latents`` ``(N, *latent)``,
    ``preds`` (method -> :class:`viewgp.predict.Prediction`), ``outputs`` (panel -> uint8 ``(M, S, S, 3)``),
    ``sd_maps`` / ``dofs`` (per-pixel sd ``(M, S, S)`` and its Student-t degrees of freedom), ``have``
    (frames with a reconstruction; ``None`` for novel views) and ``ablation`` (the headline's sd map
    built up one part at a time, at the chunk's :meth:`scored_rows`)."""

    run: Any
    backbone: Any
    out_dir: str
    config: PipelineConfig
    query: Any = None
    novel: bool = False  # the targets are a query run's poses (novel views), not the run's own frames
    head: str = ""  # the headline method, config.methods[0]
    obs: np.ndarray = None
    held: np.ndarray = None  # the targets that are scored: the held-out frames, or every novel view
    poses_obs: torch.Tensor = None  # pose features with time (K, 13) of the observed frames
    times_obs: np.ndarray = None  # (K,)
    fps: float = 30.0  # frame rate of the written videos: the config's, else the run's own, else 30
    size: int = 0
    precision: Precision = None
    keyframes: np.ndarray = None
    poses_q: torch.Tensor = None
    times_q: np.ndarray = None
    truth: Optional[np.ndarray] = None
    timings: dict = field(default_factory=dict)
    adaptation: Optional[dict] = None
    latents: Optional[np.ndarray] = None
    preds: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    sd_maps: dict = field(default_factory=dict)
    dofs: dict = field(default_factory=dict)
    have: Optional[np.ndarray] = None
    ablation: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)  # scored like methods, never shown as panels
    labels: Optional[list] = None  # the panels as the report wrote them
    headline: str = ""  # the headline row: the headline method, with warped keyframes where the detail ran
    # Steps 4-7 run on one chunk of the targets at a time (:meth:`chunk`): ``start`` is the chunk's first
    # target, ``target_obs`` ``(M,)`` which targets are keyframes (none for novel views) and
    # ``target_latents`` the targets' own latents (the run's own frames only). The keyframe layer
    # (:func:`~sequences.pipeline.latents.decode_keyframes`) is computed once for every chunk:
    # ``keyframe_layer`` holds the keyframes' reconstructions, their variance and the fitted detail GPs.
    start: int = 0
    n_targets: int = 0  # targets in the whole run (the chunk's are ``len(times_q)``)
    all_poses_q: Optional[torch.Tensor] = None  # the whole run's query poses (start values of fits made once)
    target_obs: Optional[np.ndarray] = None
    target_latents: Optional[np.ndarray] = None
    keyframe_layer: dict = field(default_factory=dict)
    pixel_models: dict = field(default_factory=dict)  # baselines fitted once on the keyframes (px-gp)

    @classmethod
    def start(cls, run, backbone, out_dir: str, config: PipelineConfig, query=None) -> "PipelineState":
        """The state before the first step: checks, output size, the keyframes' pixels and the targets."""
        obs = _observed_mask(run)
        size = output_size(run, config.output_size)
        target, novel = (run, False) if query is None else (query, True)
        times_q = np.asarray(target.timestamps, np.float64)
        poses_q = target.pose_features(with_time=True)
        return cls(run, backbone, out_dir, config, query, novel=novel, head=config.methods[0], obs=obs,
                   held=~obs if not novel else np.ones(len(times_q), bool),
                   poses_obs=run.pose_features(with_time=True)[torch.from_numpy(obs)],
                   times_obs=np.asarray(run.timestamps)[obs], fps=float(config.fps or run.frame_rate or 30.0),
                   size=size, precision=choose_precision(config.precision, config.device),
                   keyframes=square_resize_frames(run.frames[np.flatnonzero(obs)], size),
                   poses_q=poses_q, times_q=times_q,
                   target_obs=obs.copy() if not novel else np.zeros(len(times_q), bool),
                   n_targets=len(times_q), all_poses_q=poses_q)

    def chunk(self, start: int, stop: int, progress: Optional[bool] = None) -> "PipelineState":
        """The state restricted to targets ``start:stop``: their poses, times, truth (read and resized
        now, a block of frames at a time), masks, latents and every prediction's rows; empty outputs.
        Settings (``progress``: the steps' own bars, default the config's), keyframes, the keyframe
        layer, fitted models and ``timings`` are shared."""
        from dataclasses import replace

        rows = slice(start, stop)
        target = self.run if self.query is None else self.query
        truth = None if target.frames is None else square_resize_frames(target.frames[rows], self.size)
        config = self.config if progress is None else replace(self.config, progress=bool(progress))
        return replace(self, config=config, poses_q=self.poses_q[rows], times_q=self.times_q[rows], held=self.held[rows],
                       target_obs=self.target_obs[rows], truth=truth, start=start,
                       target_latents=None if self.novel else self.latents[rows],
                       preds={m: p.rows(rows) for m, p in self.preds.items()}, outputs={}, sd_maps={}, dofs={},
                       diagnostics={}, ablation={}, have=None)

    def chunk_size(self) -> int:
        """Targets per chunk: ``config.chunk_frames``, or those whose outputs fit in :data:`CHUNK_BYTES`."""
        if self.config.chunk_frames:
            return max(1, int(self.config.chunk_frames))
        return int(np.clip(CHUNK_BYTES // (BYTES_PER_PIXEL * self.size * self.size), 8, 500))

    def scored_rows(self) -> np.ndarray:
        """The targets of this chunk (indices into it) that SSIM, LPIPS and the calibration score
        (:func:`score_rows` of the whole run)."""
        m = len(self.times_q)
        return np.flatnonzero(score_rows(self.n_targets, self.config.score_frames)[self.start : self.start + m])

    def chunks(self) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` of each chunk of :meth:`chunk_size` targets."""
        m, step = len(self.times_q), self.chunk_size()
        return ((s, min(s + step, m)) for s in range(0, m, step))

    @property
    def every_frame_encoded(self) -> bool:
        """Every frame of the run has a latent (inverted backbones: only the keyframes)."""
        z = self.latents
        return z is not None and not np.isnan(z.reshape(len(z), -1)).any()

    def panels(self) -> dict:
        """Panel name -> frames ``(M, S, S, 3)``: the ground truth (where there is one), then every output."""
        return ({"ground truth": self.truth} if self.truth is not None else {}) | self.outputs

    def panel_labels(self) -> list:
        """The panels as written (:attr:`labels`), or those that would be: all but ``independent``."""
        return self.labels if self.labels is not None else [k for k in self.panels() if k != "independent"]

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """``timings[name]``: the seconds the block took, summed over every chunk that ran it."""
        t0 = time.perf_counter()
        yield
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0


#: Memory for one chunk's outputs, and what one target frame takes per output pixel: about 16 uint8
#: RGB panels (ground truth, methods, baselines) and 8 float32 sd maps.
CHUNK_BYTES = 1.3e9
BYTES_PER_PIXEL = 16 * 3 + 8 * 4


def score_rows(n_targets: int, limit: Optional[int]) -> np.ndarray:
    """``(n_targets,)`` bool: the targets scored by the costly measures, every one up to ``limit``
    (``None``: no limit), else ``limit`` evenly spaced (first and last included)."""
    rows = np.ones(n_targets, bool)
    if limit is not None and n_targets > int(limit):
        rows[:] = False
        rows[np.round(np.linspace(0, n_targets - 1, max(int(limit), 2))).astype(np.int64)] = True
    return rows


def output_size(run, requested: Optional[int]) -> int:
    """The side of the square output frames: ``requested`` (the short side), never more than the
    run's own short side; ``None`` or 0: the run's own short side."""
    h, w = np.asarray(run.frames[0]).shape[:2]
    own = min(h, w)
    return own if not requested else min(int(requested), own)


def _observed_mask(run) -> np.ndarray:
    obs = np.asarray(run.observed, bool)
    if obs.sum() < 1:
        raise ValueError("the camera run has no observed frames to fit on")
    if run.frames is None:
        raise ValueError("the camera run has no frames to encode")
    return obs


#: Larger camera coordinates are not positions in metres (or any unit a camera run is recorded in): a
#: corrupt row, or a unit error. Squared distances between them would overflow the kernel's float64.
MAX_COORDINATE = 1e8


def check_run_for_pipeline(run, source: str, min_frames: int = 2) -> None:
    """``ValueError`` unless ``run`` (read from ``source``, named in the message) has at least
    ``min_frames`` frames with pixels and plausible camera positions."""
    n = len(run)
    if run.frames is None:
        raise ValueError(f"{source}: the camera run has poses but no frames to encode")
    if n < min_frames:
        meta = run.metadata
        if "video_frames" in meta:
            why = (f" (the video has {meta['video_frames']} frame(s); {n} of them lie inside the time range of "
                   "the poses). Give a longer video, or a pose file that covers more of it")
        else:
            why = "; save a run with more frames"
        raise ValueError(f"{source}: the camera run has {n} frame(s); the pipeline needs at least {min_frames}{why}")
    t = np.asarray(run.translations, np.float64)
    big = np.flatnonzero(np.abs(t).max(axis=1) > MAX_COORDINATE)
    if big.size:
        i = int(big[0])
        raise ValueError(
            f"{source}: camera position {t[i].tolist()} at t = {float(run.timestamps[i]):.6f} s ({big.size} frame(s) "
            f"in all) is not a plausible position (a coordinate beyond {MAX_COORDINATE:g}); fix that pose row or "
            "the units of the pose file"
        )
