"""sequences.capture.video: reading/writing video, timestamps (incl. variable frame rate), crops, alignment, load_run."""

from __future__ import annotations

import os
import stat
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation as Rot
from scipy.spatial.transform import Slerp

from generative.images.geometry import adjust_intrinsics, crop_box, crop_resize
from sequences.poses.formats import write_poses
from sequences.run import CameraRun
from sequences.poses.trajectory import PoseTrajectory
from sequences.capture.align import align_frames_to_poses, frame_times_from_csv
from sequences.capture.video import (
    VideoError,
    _container_times,
    VideoFrames,
    load_run,
    read_video,
    write_strip,
    write_video,
)

DATA = Path(__file__).parent / "data"


def _frames(n: int = 20, h: int = 48, w: int = 64) -> np.ndarray:
    """Frames whose mean red level encodes the index (robust to mp4v compression)."""
    f = np.zeros((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        f[i, :, :, 0] = 10 * i
        f[i, :, :, 2] = 128
    return f


def _index_of(frame: np.ndarray) -> int:
    return int(round(frame[..., 0].astype(float).mean() / 10))


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("vid") / "clip.mp4", _frames(), fps=10)


def _patch_mp4_frame_durations(path: Path, multiples: list[int]) -> None:
    """Make an OpenCV-written MP4 variable-frame-rate: replace its single-entry 'stts' box (all
    frames one duration d) by per-frame durations ``multiples[i] * d / 2`` (they must add up to the
    original total, which the demuxer also knows); parent box sizes are fixed up (the 'moov' box
    follows 'mdat', so no chunk offsets move)."""
    data = bytearray(path.read_bytes())
    start, end, chain = 0, len(data), []
    for name in (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts"):
        i = start
        while i < end:
            size, kind = struct.unpack(">I4s", data[i:i + 8])
            if kind == name:
                break
            i += size
        else:
            raise AssertionError(f"no {name!r} box")
        chain.append(i)
        start, end = i + 8, i + size
    i = chain[-1]
    old_size = struct.unpack(">I", data[i:i + 4])[0]
    count, delta = struct.unpack(">II", data[i + 16:i + 24])
    assert struct.unpack(">I", data[i + 12:i + 16])[0] == 1 and count == len(multiples) and sum(multiples) == 2 * count
    assert delta % 2 == 0
    body = struct.pack(">II", 0, count) + b"".join(struct.pack(">II", 1, m * delta // 2) for m in multiples)
    new = struct.pack(">I4s", 8 + len(body), b"stts") + body
    data[i:i + old_size] = new
    for j in chain[:-1]:
        size = struct.unpack(">I", data[j:j + 4])[0]
        data[j:j + 4] = struct.pack(">I", size + len(new) - old_size)
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------------------------------------------
# Reading and writing


def test_write_then_read_frames_and_timestamps(video):
    frames, times = read_video(video)
    assert frames.shape == (20, 48, 64, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(times, np.arange(20) * 0.1, atol=1e-3)
    assert [_index_of(f) for f in frames] == list(range(20))

    src = VideoFrames(video)
    assert len(src) == 20 and src.shape == (20, 48, 64, 3) and src.timestamps_source == "container"
    np.testing.assert_array_equal(src.timestamps, times)
    # Random access, backwards and repeated indices give exactly the eagerly decoded frames.
    np.testing.assert_array_equal(src[[7, 2, 7]], frames[[7, 2, 7]])
    np.testing.assert_array_equal(src[-1], frames[19])
    np.testing.assert_array_equal(src[3:9:2], frames[3:9:2])
    with pytest.raises(IndexError, match="frame 20 out of range"):
        src[20]
    src.close()

    sub, t_sub = read_video(video, max_frames=4, stride=3)
    assert [_index_of(f) for f in sub] == [0, 3, 6, 9]
    np.testing.assert_allclose(t_sub, [0.0, 0.3, 0.6, 0.9], atol=1e-3)


def test_variable_frame_rate_timestamps_come_from_the_container(tmp_path, monkeypatch):
    # The stts patch needs frames stored in presentation order (mp4v; H.264's B-frames reorder them).
    monkeypatch.setenv("VIEWGP_VIDEO_CODEC", "mp4v")
    path = write_video(tmp_path / "vfr.mp4", _frames(12), fps=10)
    durations = [2, 2, 1, 1, 4, 2, 1, 3, 2, 2, 2, 2]  # in units of 0.05 s; same 1.2 s in all
    _patch_mp4_frame_durations(path, durations)
    frames, times = read_video(path)
    expected = np.concatenate([[0.0], np.cumsum(durations[:-1]) * 0.05])
    np.testing.assert_allclose(times, expected, atol=1e-3)
    assert not np.allclose(times, np.arange(12) / 10)  # index / fps would be wrong
    assert [_index_of(f) for f in frames] == list(range(12))


def test_write_video_is_atomic_and_checks_input(tmp_path):
    path = tmp_path / "out.mp4"
    write_video(path, _frames(5), fps=25)
    write_video(path, _frames(7), fps=25)  # replaces the file
    assert len(VideoFrames(path)) == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no temporary left behind
    with pytest.raises(ValueError, match="expected uint8"):
        write_video(tmp_path / "f.mp4", _frames(3).astype(np.float32), fps=10)
    with pytest.raises(ValueError, match=r"expected \(N, H, W, 3\)"):
        write_video(tmp_path / "g.mp4", _frames(3)[..., 0], fps=10)
    with pytest.raises(ValueError, match="fps must be positive"):
        write_video(tmp_path / "h.mp4", _frames(3), fps=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_video_writer_appends_blocks_and_leaves_nothing_on_failure(tmp_path):
    """A long video written a block at a time (the pipeline's chunks): every block in order, one file;
    a block of another size or an exception inside ``with`` leaves no file and no temporary."""
    from sequences.capture.video import VideoWriter

    frames = _frames(9)
    with VideoWriter(tmp_path / "v.mp4", fps=10) as writer:
        for s in (0, 4, 6):
            writer.write(frames[s : {0: 4, 4: 6, 6: 9}[s]])
    back = VideoFrames(tmp_path / "v.mp4")
    assert len(back) == 9 and [_index_of(f) for f in back[:]] == list(range(9))
    with pytest.raises(ValueError, match=r"frame 2 has size"):
        with VideoWriter(tmp_path / "w.mp4", fps=10) as writer:
            writer.write(frames[:2])
            writer.write(frames[2:4, :-2])
    with pytest.raises(RuntimeError, match="stop"):
        with VideoWriter(tmp_path / "x.mp4", fps=10) as writer:
            writer.write(frames[:2])
            raise RuntimeError("stop")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_video_writer_copies_each_block_and_reports_a_dead_encoder(tmp_path):
    """Blocks are fed to ffmpeg from a thread: a caller that reuses one buffer for every block still
    gets each block as it was written; an encoder that dies mid-video raises a VideoError naming the
    file and leaves no file and no temporary."""
    from sequences.capture.video import VideoError, VideoWriter, video_codec

    frames = _frames(6)
    buffer = np.empty_like(frames[:2])
    with VideoWriter(tmp_path / "v.mp4", fps=10) as writer:
        for s in (0, 2, 4):
            buffer[:] = frames[s : s + 2]
            writer.write(buffer)
    assert [_index_of(f) for f in VideoFrames(tmp_path / "v.mp4")[:]] == list(range(6))
    if video_codec() != "h264":
        pytest.skip("no ffmpeg H.264 encoder here: the mp4v writer has no encoder process to lose")
    with pytest.raises(VideoError, match="w.mp4"):
        with VideoWriter(tmp_path / "w.mp4", fps=10) as writer:
            writer.write(frames[:2])
            writer._proc.kill()
            for _ in range(50):  # the dead pipe is found by the feeding thread, then by write or close
                writer.write(frames[2:4])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_written_video_and_strip_get_normal_file_permissions(tmp_path):
    # mkstemp creates private 0600 files; outputs must be readable like any file open() would create.
    old = os.umask(0o022)
    try:
        video = write_video(tmp_path / "v.mp4", _frames(3), fps=10)
        strip = write_strip(tmp_path / "s.png", _frames(3))
    finally:
        os.umask(old)
    assert stat.S_IMODE(video.stat().st_mode) == 0o644
    assert stat.S_IMODE(strip.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.png", "v.mp4"]


def test_reading_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        read_video(tmp_path / "missing.mp4")
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"this is not a video\n" * 50)
    with pytest.raises(VideoError, match="garbage.mp4"):
        VideoFrames(bad)


def test_image_sequence_and_timestamp_fallback(tmp_path):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"img_{i:03d}.png"), cv2.cvtColor(_frames(4, 8, 10)[i], cv2.COLOR_RGB2BGR))
    frames, times = read_video(tmp_path / "img_%03d.png")
    np.testing.assert_array_equal(frames, _frames(4, 8, 10))  # PNG is lossless
    assert np.all(np.diff(times) > 0)
    # A container without usable timestamps falls back to index / fps, with a warning.
    with pytest.warns(UserWarning, match="no usable frame timestamps; using frame index / fps"):
        t, source = _container_times([0.0, 0.0, 0.0], 20.0, Path("x.avi"))
    np.testing.assert_allclose(t, [0.0, 0.05, 0.1])
    assert source == "index/fps"
    with pytest.raises(VideoError, match="neither increasing frame timestamps nor a frame rate"):
        _container_times([0.0, 0.0], 0.0, Path("x.avi"))


def test_write_strip_grid(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, size=(5, 6, 7, 3), dtype=np.uint8)
    path = write_strip(tmp_path / "strip.png", frames, ncols=3, pad=1)
    grid = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert grid.shape == (2 * 6 + 1, 3 * 7 + 2, 3)
    for i in range(5):
        r, c = divmod(i, 3)
        np.testing.assert_array_equal(grid[r * 7:r * 7 + 6, c * 8:c * 8 + 7], frames[i])
    assert (grid[7:, 16:] == 255).all()  # the empty sixth tile is padding colour
    row = write_strip(tmp_path / "row.png", frames)
    assert cv2.imread(str(row)).shape == (6, 5 * 7 + 4 * 2, 3)


# ---------------------------------------------------------------------------------------------------
# Crops and resizing


def test_resize_and_crop_shapes_and_content():
    frames = _frames(3, 48, 64)
    frames[:, :, :8] = 255  # left border outside the centred square
    sq = crop_resize(frames, 32)
    assert sq.shape == (3, 32, 32, 3) and sq.dtype == np.uint8
    assert crop_box((48, 64), 32) == (8, 0, 48, 48)
    assert (sq[..., 1] == 0).all()  # the white border was cropped away
    assert crop_box((48, 64), (16, 32)) == (0, 8, 64, 32)
    assert crop_resize(frames, (16, 32)).shape == (3, 16, 32, 3)
    box = (10, 4, 20, 30)
    out = crop_resize(frames[0], (15, 10), crop=box)
    np.testing.assert_array_equal(out, cv2.resize(frames[0][4:34, 10:30], (10, 15), interpolation=cv2.INTER_AREA))
    assert crop_resize(frames, 24, crop=None).shape == (3, 24, 24, 3)
    with pytest.raises(ValueError, match="does not lie inside the 64x48 frame"):
        crop_resize(frames, 16, crop=(50, 0, 20, 20))
    with pytest.raises(ValueError, match="crop must be"):
        crop_resize(frames, 16, crop="face")


def test_adjust_intrinsics_follows_the_pixels():
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    X = np.array([0.2, -0.12, 2.0])
    u, v = (K @ X / X[2])[:2]  # (36.5, 20.5)
    img = np.zeros((48, 64, 3), dtype=np.uint8)
    img[int(v - 1.5):int(v - 1.5) + 4, int(u - 1.5):int(u - 1.5) + 4] = 255  # 4x4 block centred at (u, v)
    box = crop_box((48, 64), 24)
    small = crop_resize(img, 24, box)[..., 0].astype(float)
    ys, xs = np.mgrid[:24, :24]
    cu, cv_ = (small * xs).sum() / small.sum(), (small * ys).sum() / small.sum()
    K2 = adjust_intrinsics(K, box, 24)
    u2, v2 = (K2 @ X / X[2])[:2]
    assert abs(u2 - cu) < 0.05 and abs(v2 - cv_) < 0.05


# ---------------------------------------------------------------------------------------------------
# Alignment with poses


def _trajectory(n: int = 9, t0: float = 100.0, seed: int = 0) -> PoseTrajectory:
    rng = np.random.default_rng(seed)
    times = t0 + np.cumsum(rng.uniform(0.1, 0.4, n))
    R = Rot.from_rotvec(np.cumsum(rng.normal(0, 0.4, (n, 3)), axis=0)).as_matrix()
    T = rng.normal(size=(n, 3))
    return PoseTrajectory(times, R, T, "test")


def test_alignment_matches_scipy_slerp():
    traj = _trajectory()
    t0, t1 = traj.time_range
    frame_times = np.linspace(t0, t1, 25) - 3.0  # on a clock 3 s behind the poses
    keep, R, T = align_frames_to_poses(frame_times, traj, time_offset=3.0)
    assert keep.all() and R.shape == (25, 3, 3) and T.shape == (25, 3)
    q = frame_times + 3.0
    ref = Slerp(traj.timestamps, Rot.from_matrix(traj.rotations))(q).as_matrix()
    assert np.abs(R - ref).max() < 1e-9
    for j in range(3):
        np.testing.assert_allclose(T[:, j], np.interp(q, traj.timestamps, traj.translations[:, j]), atol=1e-12)


def test_alignment_drops_frames_outside_with_a_warning():
    traj = _trajectory()
    t0, t1 = traj.time_range
    frame_times = np.concatenate([t0 - np.array([0.3, 0.2, 0.1]), np.linspace(t0, t1, 10), t1 + np.array([0.1, 0.2])])
    with pytest.warns(UserWarning, match=r"dropped 5 of 15 frames.*3 before the first pose.*2 after the last pose"):
        keep, R, T = align_frames_to_poses(frame_times, traj)
    np.testing.assert_array_equal(np.flatnonzero(keep), np.arange(3, 13))
    assert len(R) == len(T) == 10


def test_alignment_without_overlap_explains_the_offset():
    traj = _trajectory(t0=1000.0)
    with pytest.raises(ValueError) as e:
        align_frames_to_poses(np.arange(10) * 0.1, traj)
    msg = str(e.value)
    t0, t1 = traj.time_range
    assert "[0.000000, 0.900000]" in msg and f"[{t0:.6f}, {t1:.6f}]" in msg
    assert f"--time-offset {t0:.6f}" in msg
    with pytest.raises(ValueError, match="strictly increasing; index 2"):
        align_frames_to_poses([0.0, 1.0, 1.0], traj)


def test_frame_times_csv(tmp_path):
    times, idx = frame_times_from_csv(DATA / "advio_frames.csv")
    np.testing.assert_allclose(times, [9.95, 10.05, 10.15, 10.25, 10.35])
    np.testing.assert_array_equal(idx, np.arange(5))
    one = tmp_path / "t.csv"
    one.write_text("time\n0.5\n0.75\n1.5\n")
    times, idx = frame_times_from_csv(one)
    np.testing.assert_allclose(times, [0.5, 0.75, 1.5])
    np.testing.assert_array_equal(idx, [0, 1, 2])
    bad = tmp_path / "bad.csv"
    bad.write_text("0.1,0\n0.2,1\n0.15,2\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: time 0.15 is not after"):
        frame_times_from_csv(bad)
    bad.write_text("0.1,0\n0.2\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: expected 2 values, got 1"):
        frame_times_from_csv(bad)


# ---------------------------------------------------------------------------------------------------
# load_run


def _tum_trajectory(tmp_path: Path) -> tuple[Path, PoseTrajectory]:
    times = 100.0 + np.arange(9) * 0.25  # 100.0 .. 102.0
    R = Rot.from_rotvec(np.outer(np.arange(9) * 0.1, [0.0, 1.0, 0.2])).as_matrix()
    T = np.stack([np.arange(9) * 0.05, np.zeros(9), np.ones(9)], axis=1)
    traj = PoseTrajectory(times, R, T, "tum")
    path = tmp_path / "poses.txt"
    write_poses(path, traj, "tum")
    return path, traj


def test_load_run_from_video_and_tum(video, tmp_path):
    poses, traj = _tum_trajectory(tmp_path)
    run = load_run(video, poses, time_offset=100.0)
    assert isinstance(run, CameraRun) and len(run) == 20
    assert isinstance(run.frames, VideoFrames)  # lazy
    np.testing.assert_allclose(run.timestamps, 100.0 + np.arange(20) * 0.1, atol=1e-3)
    ref = Slerp(traj.timestamps, Rot.from_matrix(traj.rotations))(run.timestamps).as_matrix()
    assert np.abs(run.rotations - ref).max() < 1e-9
    np.testing.assert_allclose(run.translations[:, 0], (run.timestamps - 100.0) * 0.2, atol=1e-9)
    assert _index_of(run.frame(7)) == 7
    assert run.metadata["pose_source"] == "tum" and run.metadata["frames_dropped"] == 0

    K = np.array([[40.0, 0.0, 31.5], [0.0, 40.0, 23.5], [0.0, 0.0, 1.0]])
    small = load_run(video, traj, time_offset=100.0, size=32, intrinsics=K)
    assert isinstance(small.frames, np.ndarray) and small.frames.shape == (20, 32, 32, 3)
    np.testing.assert_allclose(small.intrinsics[0], [40.0 * 32 / 48, 0, 15.5], atol=1e-9)


def test_load_run_partial_overlap_and_frame_time_overrides(video, tmp_path):
    poses, _ = _tum_trajectory(tmp_path)
    with pytest.warns(UserWarning, match="dropped 5 of 20 frames"):
        run = load_run(video, poses, time_offset=100.55)  # frames at 100.55 .. 102.45; poses end at 102.0
    assert len(run) == 15 and run.metadata["frame_indices"] == list(range(15))
    assert [_index_of(f) for f in run.frames[:]] == list(range(15))

    csv = tmp_path / "frames.csv"
    csv.write_text("".join(f"{100.0 + 0.3 * k:.3f},{2 * k}\n" for k in range(8)))  # every other frame
    with pytest.warns(UserWarning, match="dropped 1 of 8 frames"):
        run = load_run(video, poses, frame_times=csv)
    assert run.metadata["frame_indices"] == [0, 2, 4, 6, 8, 10, 12]  # 102.1 is past the poses
    assert [_index_of(f) for f in run.frames[:]] == [0, 2, 4, 6, 8, 10, 12]
    np.testing.assert_allclose(run.timestamps, 100.0 + 0.3 * np.arange(7))

    with pytest.raises(ValueError, match="frame_times has 3 entries but the video has 20 frames"):
        load_run(video, poses, frame_times=[1.0, 2.0, 3.0])


def test_load_run_advio_frames_csv(tmp_path):
    video = write_video(tmp_path / "advio.mp4", _frames(5), fps=10)
    run = load_run(video, DATA / "advio_arkit.csv", format="advio", times_path=DATA / "advio_frames.csv")
    assert run.metadata["frame_indices"] == [1, 2, 3]
    np.testing.assert_allclose(run.timestamps, [10.05, 10.15, 10.25])
    assert [_index_of(f) for f in run.frames[:]] == [1, 2, 3]
    # The same through the explicit override on the raw trajectory.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run2 = load_run(video, DATA / "advio_arkit.csv", format="advio", frame_times=DATA / "advio_frames.csv")
    np.testing.assert_allclose(run2.rotations, run.rotations, atol=1e-12)


def test_lazy_frames_survive_pickling(video):
    import pickle

    src = VideoFrames(video)
    first = src[4]  # leaves a capture open
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone[4], first)
    np.testing.assert_array_equal(clone.timestamps, src.timestamps)


def test_h264_where_the_machine_can_and_mp4v_otherwise(tmp_path, monkeypatch):
    from sequences.capture.video import video_codec

    for codec in (video_codec(), "mp4v"):
        monkeypatch.setenv("VIEWGP_VIDEO_CODEC", codec)
        path = write_video(tmp_path / f"{codec}.mp4", _frames(6)[:, :47, :63], fps=29.97)  # odd sizes
        cv2 = pytest.importorskip("cv2")
        cap = cv2.VideoCapture(str(path))
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode().lower()
        fps = cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        frames, _ = read_video(path)
        assert len(frames) == 6 and abs(fps - 29.97) < 0.01
        assert [_index_of(f) for f in frames] == list(range(6))
        assert frames.shape[1:3] == (48, 64)  # padded to even sizes
        assert fourcc in (("mp4v", "fmp4") if codec == "mp4v" else ("avc1", "h264"))  # as OpenCV names them
