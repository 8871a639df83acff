"""Video frames: reading (lazily or eagerly, with container timestamps), writing MP4 and PNG strips,
cropping/resizing (:mod:`generative.images.geometry`), and aligning frames with a pose trajectory.

The two-line user path::

    from sequences.capture.video import load_run
    run = load_run("phone.mp4", "poses.txt", time_offset=12.5, size=128)

Frame timestamps come from the container: OpenCV's ``CAP_PROP_POS_MSEC`` after each decoded
frame, i.e. the frame's presentation time, which is right for variable-frame-rate phone videos.
Only when the container gives no usable times (all zero, or not increasing, as for image
sequences) do we fall back to ``index / fps``, with a warning; a per-frame CSV (ADVIO
``frames.csv``) overrides both (``frame_times=``).

Clocks: pose files use their own clock (Unix time, device boot time, ...) while container times
start near 0. ``time_offset`` maps one to the other: the pose time of frame ``i`` is
``frame_times[i] + time_offset``, and the run's timestamps are on the pose clock.
"""

from __future__ import annotations

import copy
import functools
import os
import queue
import subprocess
import tempfile
import threading
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from generative.images.fileio import atomic_write, atomic_write_bytes
from generative.images.imageio import encode_image
from generative.images.geometry import Box, adjust_intrinsics, crop_box, crop_resize
from sequences.capture.align import align_frames_to_poses, frame_times_from_csv
from sequences.run import CameraRun
from sequences.poses.trajectory import PoseTrajectory

__all__ = [
    "VideoError",
    "VideoFrames",
    "VideoWriter",
    "read_video",
    "write_video",
    "video_codec",
    "write_strip",
    "load_run",
]

PathLike = Union[str, os.PathLike]


class VideoError(ValueError):
    """A video that cannot be opened, decoded or written (the message names the file)."""


def _cv2():
    import cv2

    return cv2


# ----------------------------------------------------------------------------------------------------
# Reading


def _open_capture(path: Path):
    cv2 = _cv2()
    if not path.is_file() and "%" not in path.name:  # 'img_%04d.png' names an image sequence
        raise FileNotFoundError(f"video file not found: {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: OpenCV cannot open this file as a video (unknown container or codec, or a truncated file)")
    return cap


def _container_times(msec: list[float], fps: float, path: Path) -> tuple[np.ndarray, str]:
    """Container presentation times in seconds, or ``index / fps`` when the container gives none."""
    t = np.asarray(msec, dtype=np.float64) / 1000.0
    if len(t) < 2 or (np.isfinite(t).all() and (np.diff(t) > 0).all()):
        return t, "container"
    if not (fps > 0 and np.isfinite(fps)):
        raise VideoError(
            f"{path}: the container gives neither increasing frame timestamps nor a frame rate; "
            "pass frame_times= (e.g. a frames.csv) explicitly"
        )
    warnings.warn(
        f"{path}: the container gives no usable frame timestamps; using frame index / fps ({fps:g} fps)",
        stacklevel=3,
    )
    return np.arange(len(t), dtype=np.float64) / fps, "index/fps"


class VideoFrames:
    """A lazy :class:`sequences.run.FrameSource` over a video file: uint8 RGB ``(H, W, 3)`` frames.

    Construction scans the file once (``grab`` without colour conversion) to count the frames and
    read their container timestamps (:attr:`timestamps`, seconds); frames are decoded on access.
    Access is fastest in increasing order (reading moves forward; going back reopens the file).

    Args:
        path: any video OpenCV can open, or an image sequence pattern such as ``img_%04d.png``.
        frame_indices: optional increasing container frame indices to expose (a subset), e.g. the
            frames that have poses.
        max_frames: only consider the first ``max_frames`` frames of the file.
    """

    def __init__(self, path: PathLike, frame_indices: Optional[Sequence[int]] = None, max_frames: Optional[int] = None) -> None:
        cv2 = _cv2()
        self.path = Path(path)
        if max_frames is not None and (int(max_frames) != max_frames or max_frames < 1):
            raise ValueError(f"max_frames must be a positive integer, got {max_frames}")
        cap = _open_capture(self.path)
        try:
            self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            msec = []
            while max_frames is None or len(msec) < max_frames:
                if not cap.grab():
                    break
                msec.append(cap.get(cv2.CAP_PROP_POS_MSEC))
            width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        finally:
            cap.release()
        if not msec:
            raise VideoError(f"{self.path}: no frame could be decoded")
        self.n_container_frames = len(msec)
        self.container_timestamps, self.timestamps_source = _container_times(msec, self.fps, self.path)
        self.dtype = np.dtype(np.uint8)
        self._cap = None
        self._next = 0  # container index the open capture will decode next
        if width <= 0 or height <= 0:  # some backends report 0 until a frame is decoded
            height, width = self._decode([0])[0].shape[:2]
        self._frame_hw = (height, width)
        self._set_indices(np.arange(len(msec)) if frame_indices is None else frame_indices)

    def _set_indices(self, frame_indices) -> None:
        idx = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
        if idx.size and ((np.diff(idx) <= 0).any() or idx[0] < 0):
            raise ValueError("frame_indices must be non-negative and strictly increasing")
        if idx.size and idx[-1] >= self.n_container_frames:
            raise VideoError(
                f"{self.path}: frame index {int(idx[-1])} requested but the video has {self.n_container_frames} decodable frames"
            )
        self.frame_indices = idx
        self.timestamps = self.container_timestamps[idx]
        self._shape = (len(idx),) + self._frame_hw + (3,)

    def select(self, frame_indices) -> "VideoFrames":
        """A lazy source over the given increasing container frame indices (no rescan of the file)."""
        out = copy.copy(self)
        out._cap, out._next = None, 0
        out._set_indices(frame_indices)
        return out

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self._shape

    def __len__(self) -> int:
        return self._shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            n = len(self)
            if not -n <= int(key) < n:
                raise IndexError(f"frame {int(key)} out of range for {n} frames of {self.path}")
            return self._decode([int(self.frame_indices[int(key)])])[0]
        local = np.arange(len(self))[key]
        if local.size == 0:
            return np.zeros((0,) + self._shape[1:], dtype=np.uint8)
        # Decode each wanted frame once, in increasing order, then arrange them as asked.
        uniq, inverse = np.unique(self.frame_indices[local], return_inverse=True)
        decoded = self._decode(uniq.tolist())
        out = np.empty((len(local),) + self._shape[1:], dtype=np.uint8)
        for j, u in enumerate(inverse.reshape(-1)):
            out[j] = decoded[u]
        return out

    def _decode(self, container_indices: list[int]) -> list[np.ndarray]:
        cv2 = _cv2()
        frames = []
        for ci in container_indices:
            if self._cap is None or ci < self._next:
                self.close()
                self._cap = _open_capture(self.path)
                self._next = 0
            while self._next < ci:
                if not self._cap.grab():
                    raise VideoError(f"{self.path}: decoding stopped at frame {self._next} (wanted frame {ci})")
                self._next += 1
            ok, bgr = self._cap.read()
            self._next += 1
            if not ok or bgr is None:
                raise VideoError(f"{self.path}: cannot decode frame {ci}")
            if bgr.ndim == 2:
                bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return frames

    def close(self) -> None:
        if getattr(self, "_cap", None) is not None:
            self._cap.release()
            self._cap = None

    def __getstate__(self) -> dict:
        # An open capture cannot be pickled (e.g. into DataLoader workers); reopen on demand.
        state = dict(self.__dict__)
        state["_cap"], state["_next"] = None, 0
        return state

    def __enter__(self) -> "VideoFrames":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VideoFrames({str(self.path)!r}, shape={self._shape}, timestamps from {self.timestamps_source})"


def read_video(path: PathLike, max_frames: Optional[int] = None, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Read frames eagerly: ``(frames (N, H, W, 3) uint8 RGB, timestamps (N,) seconds)``.

    Frames ``0, stride, 2 stride, ...``; ``max_frames`` caps the number returned. Timestamps as in
    :class:`VideoFrames` (container presentation times).
    """
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride}")
    limit = None if max_frames is None else (int(max_frames) - 1) * int(stride) + 1
    src = VideoFrames(path, max_frames=limit)
    try:
        sel = np.arange(0, len(src), int(stride))
        return src[sel], src.timestamps[sel].copy()
    finally:
        src.close()


# ----------------------------------------------------------------------------------------------------
# Writing


def _frames_array(frames, name: str = "frames") -> np.ndarray:
    a = np.asarray(frames[:] if not isinstance(frames, np.ndarray) else frames)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"{name}: expected (N, H, W, 3) RGB frames, got shape {a.shape}")
    if a.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 frames, got {a.dtype}")
    if a.shape[0] == 0:
        raise ValueError(f"{name}: no frames")
    return a


#: ``VIEWGP_VIDEO_CODEC=mp4v`` makes :func:`write_video` use OpenCV's MPEG-4 part 2 even where H.264 works.
CODEC_ENV = "VIEWGP_VIDEO_CODEC"


@functools.lru_cache(maxsize=None)
def _h264_encoder() -> Optional[str]:
    """The ffmpeg binary of the ``imageio-ffmpeg`` wheel when it can encode H.264 (libx264), else None."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        listed = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30)
    except (ImportError, RuntimeError, OSError, subprocess.SubprocessError):
        return None
    return exe if "libx264" in listed.stdout else None


def video_codec() -> str:
    """The codec :func:`write_video` writes with here: ``"h264"`` (libx264 through the ffmpeg binary that
    the ``imageio-ffmpeg`` wheel ships; plays in browsers and phones) or ``"mp4v"`` (OpenCV's MPEG-4
    part 2, the fallback where that binary is missing or lacks libx264, or when ``VIEWGP_VIDEO_CODEC=mp4v``)."""
    if os.environ.get(CODEC_ENV, "").lower() == "mp4v" or _h264_encoder() is None:
        return "mp4v"
    return "h264"


#: Blocks of frames queued for ffmpeg at most (:class:`VideoWriter`); the writer waits beyond that.
QUEUED_BLOCKS = 4


class VideoWriter:
    """An MP4 written a block of frames at a time (:meth:`write`), for videos longer than memory: in the
    codec of :func:`video_codec` (H.264 through an ffmpeg pipe where the machine can, else OpenCV's
    mp4v). The file is written to a temporary name beside ``path``; :meth:`close` checks that it opens
    with every frame at the right size and moves it into place, so ``path`` is never half-written (an
    exception inside ``with`` removes the temporary file). Frames of odd height or width gain one
    repeated row or column (both codecs store 2x2 chroma blocks; OpenCV's mp4v writer silently crops an
    odd edge, and reads back short). ``total``: the frame count for the progress bar (``progress``).

    Blocks go to ffmpeg from a thread of their own (a copy of each, at most :data:`QUEUED_BLOCKS`
    waiting), so the caller computes the next block while ffmpeg encodes this one instead of waiting
    on the pipe: on 2 cores that overlap was most of the comparison video's time in a long run."""

    def __init__(self, path: PathLike, fps: float, progress: bool = False, total: Optional[int] = None) -> None:
        if not (fps > 0 and np.isfinite(fps)):
            raise ValueError(f"fps must be positive, got {fps}")
        self.path, self.fps, self.codec, self.n = Path(path), float(fps), video_codec(), 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=self.path.suffix, dir=self.path.parent)
        os.close(fd)  # OpenCV picks the container from the file name: the temporary file keeps the extension
        self.hw: Optional[tuple[int, int]] = None
        self._proc = self._cv_writer = self._log = self._feeder = None
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUED_BLOCKS)
        self._feed_failed = False
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=f"write {self.path.name}", unit="frame", disable=not progress)

    def _open(self, h: int, w: int) -> None:
        self.hw = (h, w)
        H, W = h + h % 2, w + w % 2
        if self.codec == "h264":
            rate = Fraction(self.fps).limit_denominator(100_000)  # 30.000000000000004 -> 30/1, 29.97 -> 2997/100
            cmd = [_h264_encoder(), "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                   "-s", f"{W}x{H}", "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "-", "-an",
                   "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-f", "mp4", self.tmp]
            self._log = tempfile.TemporaryFile()  # a file, not a pipe: ffmpeg never blocks on a full stderr pipe
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)
            self._feeder = threading.Thread(target=self._feed, args=(self._proc.stdin,), daemon=True)
            self._feeder.start()
        else:
            cv2 = _cv2()
            self._cv_writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (W, H))
            if not self._cv_writer.isOpened():
                raise VideoError(f"{self.path}: OpenCV cannot open an mp4v writer for {W}x{H} at {self.fps} fps")

    def write(self, frames) -> None:
        """Append uint8 RGB frames ``(B, H, W, 3)`` (every block of one video the same size)."""
        block = _frames_array(frames)
        if block.ndim != 4 or block.shape[3] != 3:
            raise ValueError(f"write_video: expected (N, H, W, 3) RGB frames, got shape {tuple(block.shape)}")
        h, w = int(block.shape[1]), int(block.shape[2])
        if self.hw is None:
            self._open(h, w)
        elif (h, w) != self.hw:
            raise ValueError(f"write_video: frame {self.n} has size {(h, w)}, expected {self.hw}")
        if h % 2 or w % 2:
            block = np.pad(block, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        if self._proc is not None:
            if self._feed_failed:
                self._finish_h264()  # raises with ffmpeg's own message where ffmpeg failed
                raise VideoError(f"{self.path}: frames could not be written to ffmpeg")
            self._queue.put(np.array(block, copy=True))  # the caller may reuse its buffer
        else:
            cv2 = _cv2()
            for img in block:
                self._cv_writer.write(cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR))
        self.n += len(block)
        self._bar.update(len(block))

    def _feed(self, pipe) -> None:
        """The feeding thread: queued blocks into ffmpeg's stdin until ``None``; after a failed write
        (ffmpeg gone) it only drains the queue, and :meth:`write` / :meth:`close` raise."""
        while (block := self._queue.get()) is not None:
            if not self._feed_failed:
                try:
                    pipe.write(memoryview(block).cast("B"))  # no bytes copy; the GIL is released while it waits
                except Exception:  # ffmpeg gone (a broken pipe) or the pipe closed: write() and close() say so
                    self._feed_failed = True

    def _stop_feeder(self) -> None:
        if self._feeder is not None:
            self._queue.put(None)
            self._feeder.join()
            self._feeder = None

    def _finish_h264(self) -> None:
        self._stop_feeder()
        proc, self._proc = self._proc, None
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        rc = proc.wait()
        self._log.seek(0)
        message = self._log.read().decode("utf-8", "replace").strip().splitlines()
        self._log.close()
        if rc != 0:
            raise VideoError(f"{self.path}: ffmpeg could not encode H.264 ({message[0] if message else f'exit code {rc}'})")

    def close(self) -> Path:
        """Finish the file, check it reads back as every frame written, and move it into place."""
        self._bar.close()
        if self.n == 0:
            self.abort()
            raise ValueError(f"write_video: expected (N, H, W, 3) RGB frames with N >= 1 for {self.path}, got none")
        try:
            if self._proc is not None:
                self._finish_h264()
            if self._cv_writer is not None:
                self._cv_writer.release()
                self._cv_writer = None
            check = VideoFrames(self.tmp)
            check.close()
            H, W = (v + v % 2 for v in self.hw)
            if len(check) != self.n or check.shape[1:3] != (H, W):
                raise VideoError(f"{self.path}: written video reads back as {check.shape}, expected {(self.n, H, W, 3)}")
            atomic_write(self.path, lambda tmp: os.replace(self.tmp, tmp), suffix=self.path.suffix)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Stop writing and remove the temporary file (``path`` is left as it was)."""
        self._bar.close()
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._stop_feeder()  # its write fails on the dead pipe; then it drains to the stop
            self._proc = None
        if self._cv_writer is not None:
            self._cv_writer.release()
            self._cv_writer = None
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: PathLike, frames, fps: float, progress: bool = False) -> Path:
    """Write RGB uint8 frames ``(N, H, W, 3)`` (array or frame source, read 64 frames at a time) as MP4
    at ``fps`` with a :class:`VideoWriter` (codec, padding to even sizes, atomic and checked)."""
    if not hasattr(frames, "shape"):
        frames = np.asarray(frames)
    if len(frames.shape) != 4 or frames.shape[3] != 3 or frames.shape[0] == 0:
        raise ValueError(f"write_video: expected (N, H, W, 3) RGB frames with N >= 1, got shape {tuple(frames.shape)}")
    n = len(frames)
    with VideoWriter(path, fps, progress, total=n) as writer:
        for start in range(0, n, 64):
            writer.write(frames[start : start + 64])
    return Path(path)


def write_strip(path: PathLike, frames, ncols: Optional[int] = None, pad: int = 2, pad_value: int = 255) -> Path:
    """Write frames ``(N, H, W, 3)`` as one grid image (PNG, or any format by extension).

    ``ncols`` defaults to ``N`` (a single strip); rows fill left to right, ``pad`` pixels of
    ``pad_value`` between tiles. Written atomically.
    """
    path = Path(path)
    a = _frames_array(frames)
    n, h, w = a.shape[:3]
    ncols = n if ncols is None else int(ncols)
    if ncols < 1:
        raise ValueError(f"ncols must be positive, got {ncols}")
    nrows = -(-n // ncols)
    grid = np.full((nrows * h + (nrows - 1) * pad, ncols * w + (ncols - 1) * pad, 3), pad_value, dtype=np.uint8)
    for i, img in enumerate(a):
        r, c = divmod(i, ncols)
        grid[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = img
    try:
        data = encode_image(grid, path.suffix or ".png")
    except ValueError:
        raise ValueError(f"{path}: OpenCV cannot encode an image with extension {path.suffix!r}") from None
    return atomic_write_bytes(path, data)


def load_run(
    video_path: PathLike,
    poses: Union[PathLike, PoseTrajectory],
    format: Optional[str] = None,
    time_offset: float = 0.0,
    size=None,
    times_path: Optional[PathLike] = None,
    max_frames: Optional[int] = None,
    frame_times: Union[PathLike, Sequence[float], np.ndarray, None] = None,
    crop: Union[str, Box, None] = "center",
    intrinsics=None,
) -> CameraRun:
    """A :class:`CameraRun` from a video and a pose file (or :class:`PoseTrajectory`).

    Args:
        video_path: any video OpenCV can open.
        poses: a pose file (read with :func:`sequences.poses.formats.read_poses`, ``format`` and
            ``times_path`` passed on) or a trajectory.
        time_offset: seconds added to frame times to put them on the pose clock.
        size: None keeps frames lazy (decoded on access, full resolution); an int or (h, w) reads
            them now, cropped (``crop``) and resized.
        max_frames: only the first ``max_frames`` frames of the video.
        frame_times: per-frame times overriding the container's: an ``(N,)`` array (frame ``i``),
            or a CSV path for :func:`frame_times_from_csv` (``t`` or ``t, frame_index``).
            A trajectory already sampled at frames (ADVIO read with its ``frames.csv`` as
            ``times_path``, carrying ``metadata['frame_indices']``) is used as is. For poses
            without timestamps (COLMAP, transforms.json: :func:`sequences.poses.formats.has_times`) they
            are the times of the posed frames instead, one per pose on the video clock; without
            them such poses need one video frame per pose (:mod:`sequences.capture.align`), else
            ``ValueError`` says how to fix it.
        intrinsics: optional ``(3, 3)`` of the full-resolution video; adjusted for crop/resize.
    Returns:
        a run whose frames are the kept video frames, timestamps on the pose clock, poses
        interpolated at them; metadata records the video, pose source, offset and dropped frames.
    """
    from sequences.poses.formats import has_times, read_poses
    from sequences.capture.align import timed_for_frames

    traj = poses if isinstance(poses, PoseTrajectory) else read_poses(poses, format, times_path=times_path)
    video_path = Path(video_path)
    probe = VideoFrames(video_path, max_frames=max_frames)
    probe.close()
    n_video = probe.n_container_frames
    if not has_times(traj):
        # The pose index is no time: pair by order, or time the poses with frame_times (one per pose).
        pose_times, source = None, "given frame times"
        if isinstance(frame_times, (str, os.PathLike)):
            pose_times, source = frame_times_from_csv(frame_times)[0], str(frame_times)
        elif frame_times is not None:
            pose_times = np.asarray(frame_times, dtype=np.float64).reshape(-1)
        shift = float(time_offset)  # alignment adds the offset to frame times: the poses move with them
        traj = timed_for_frames(traj, probe.timestamps + shift, str(video_path),
                                None if pose_times is None else pose_times + shift, source)
        frame_times = None
    meta = {
        "video": str(video_path), "pose_source": traj.source_format, "time_offset": float(time_offset),
        "video_frames": n_video, "video_fps": probe.fps,
    }
    if "frame_indices" in traj.metadata and frame_times is None:
        # Poses already sampled at frames (e.g. ADVIO + frames.csv): frame times are the pose times.
        idx = np.asarray(traj.metadata["frame_indices"], dtype=np.int64)
        keep_idx = idx < n_video
        if not keep_idx.all():
            warnings.warn(f"dropped {int((~keep_idx).sum())} posed frames beyond the {n_video} frames of {video_path}", stacklevel=2)
        idx, times = idx[keep_idx], traj.timestamps[keep_idx]
        R, T = traj.rotations[keep_idx], traj.translations[keep_idx]
        meta["frame_times_source"] = "trajectory frame indices"
    else:
        if frame_times is None:
            ft, cand = probe.timestamps, np.arange(n_video)
            meta["frame_times_source"] = probe.timestamps_source
        elif isinstance(frame_times, (str, os.PathLike)):
            ft, cand = frame_times_from_csv(frame_times)
            inside = cand < n_video
            ft, cand = ft[inside], cand[inside]
            meta["frame_times_source"] = str(frame_times)
        else:
            ft = np.asarray(frame_times, dtype=np.float64).reshape(-1)
            if ft.size < n_video:
                raise ValueError(f"frame_times has {ft.size} entries but the video has {n_video} frames")
            ft, cand = ft[:n_video], np.arange(n_video)
            meta["frame_times_source"] = "given array"
        if ft.size == 0:
            raise ValueError(f"no frame times refer to the {n_video} frames of {video_path}")
        keep, R, T = align_frames_to_poses(ft, traj, time_offset)
        idx, times = cand[keep], ft[keep] + float(time_offset)
        meta["frames_dropped"] = int((~keep).sum())
    meta["frame_indices"] = idx.tolist()
    frames = probe.select(idx)
    K = None if intrinsics is None else np.asarray(intrinsics, dtype=np.float64)
    if size is not None:
        box = crop_box(frames.shape[1:3], size, crop)
        arr = crop_resize(frames, size, box)
        frames.close()
        frames = arr
        meta["crop_box"] = list(box)
        if K is not None:
            K = adjust_intrinsics(K, box, size)
    return CameraRun(frames, times, R, T, intrinsics=K, metadata=meta)
