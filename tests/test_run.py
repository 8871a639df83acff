"""CameraRun / PoseTrajectory: validation, slicing, masks, pose features, save/load round trip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation as Rot

from sequences.run import CameraRun, FrameSource
from sequences.poses.trajectory import PoseTrajectory
from viewgp.poses import random_rotations

DATA = Path(__file__).parent / "data"


def _poses(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    R = random_rotations(n, g).numpy()
    T = torch.randn(n, 3, generator=g, dtype=torch.float64).numpy()
    t = 100.0 + 0.1 * np.arange(n) + 0.013 * np.sin(np.arange(n))  # irregular but increasing
    return t, R, T


def _frames(n: int, h: int = 6, w: int = 5) -> np.ndarray:
    """Frames whose pixels encode the frame index, so alignment after slicing is checkable."""
    rng = np.random.default_rng(0)
    f = rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)
    f[:, 0, 0, 0] = np.arange(n)
    return f


def _run(n: int = 10, **kw) -> CameraRun:
    t, R, T = _poses(n)
    return CameraRun(_frames(n), t, R, T, **kw)


class CountingSource:
    """A lazy frame source that counts how many frames it has produced."""

    def __init__(self, frames: np.ndarray) -> None:
        self._frames = frames
        self.shape = frames.shape
        self.dtype = frames.dtype
        self.reads = 0

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, key):
        out = self._frames[key]
        self.reads += 1 if out.ndim == 3 else len(out)
        return out.copy()


# ---------------------------------------------------------------------------------------------------
# PoseTrajectory


def test_trajectory_validation_names_the_problem():
    t, R, T = _poses(5)
    with pytest.raises(ValueError, match="5 timestamps, 4 rotations, 5 translations"):
        PoseTrajectory(t, R[:4], T)
    bad = T.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="translations: non-finite .* index 3"):
        PoseTrajectory(t, R, bad)
    tt = t.copy()
    tt[2] = tt[1]
    with pytest.raises(ValueError, match="strictly increasing; index 2"):
        PoseTrajectory(tt, R, T)
    RR = R.copy()
    RR[4] *= 1.01
    with pytest.raises(ValueError, match="index 4 is not orthonormal"):
        PoseTrajectory(t, RR, T)
    with pytest.raises(ValueError, match=r"rotations: expected shape \(N, 3, 3\)"):
        PoseTrajectory(t, R[:, :2], T)


def test_pose_trajectory_is_still_importable_from_sequences_run():
    import sequences.run

    assert sequences.run.PoseTrajectory is PoseTrajectory  # re-exported for code written before the move


def test_trajectory_interpolate_quaternions_and_range():
    t = np.array([0.0, 1.0, 3.0])
    R = Rot.from_rotvec([[0, 0, 0], [0, 0, 1.0], [0, 0, 2.0]]).as_matrix()
    T = np.array([[0, 0, 0], [1, 0, 0], [1, 2, 0]], float)
    traj = PoseTrajectory(t, R, T, source_format="tum", metadata={"k": 1})
    assert len(traj) == 3 and traj.time_range == (0.0, 3.0)
    mid = traj.interpolate([0.5, 2.0])
    np.testing.assert_allclose(mid.rotations[0], Rot.from_rotvec([0, 0, 0.5]).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(mid.rotations[1], Rot.from_rotvec([0, 0, 1.5]).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(mid.translations, [[0.5, 0, 0], [1, 1, 0]], atol=1e-12)
    assert mid.source_format == "tum" and mid.metadata["k"] == 1
    with pytest.raises(ValueError, match="outside the pose range"):
        traj.interpolate([3.5])
    np.testing.assert_allclose(traj.interpolate([3.5], extrapolate=True).translations, [[1, 2, 0]])
    q = traj.quaternions()
    np.testing.assert_allclose(q[1], Rot.from_rotvec([0, 0, 1.0]).as_quat(), atol=1e-12)
    np.testing.assert_allclose(traj.quaternions(scalar_first=True)[1], np.roll(q[1], 1), atol=0)
    assert len(traj[1:]) == 2 and traj[np.array([True, False, True])].timestamps.tolist() == [0.0, 3.0]


# ---------------------------------------------------------------------------------------------------
# CameraRun validation


def test_run_defaults():
    run = _run(4)
    assert len(run) == 4 and run.observed.dtype == bool and run.observed.all()
    assert run.resolution == (6, 5) and run.intrinsics is None and run.metadata == {}
    assert run.timestamps.dtype == np.float64 and isinstance(run.frames, FrameSource)


def test_run_validation_errors():
    t, R, T = _poses(6)
    f = _frames(6)
    with pytest.raises(ValueError, match="5 frames but 6 poses"):
        CameraRun(f[:5], t, R, T)
    with pytest.raises(ValueError, match="6 timestamps, 6 rotations, 5 translations"):
        CameraRun(f, t, R, T[:5])
    with pytest.raises(ValueError, match="observed mask has shape \\(4,\\) but there are 6 poses"):
        CameraRun(f, t, R, T, observed=np.ones(4, bool))
    tt = t.copy()
    tt[4] = tt[2]
    with pytest.raises(ValueError, match="strictly increasing; index 4"):
        CameraRun(f, tt, R, T)
    RR = R.copy()
    RR[1, :, 0] *= -1  # a reflection
    with pytest.raises(ValueError, match="index 1 has determinant"):
        CameraRun(f, t, RR, T)
    bad = t.copy()
    bad[5] = np.inf
    with pytest.raises(ValueError, match="timestamps: non-finite .* index 5"):
        CameraRun(f, bad, R, T)
    with pytest.raises(ValueError, match="expected uint8 RGB .* got dtype float32"):
        CameraRun(f.astype(np.float32), t, R, T)
    with pytest.raises(ValueError, match=r"shape \(N, H, W, 3\), got shape \(6, 6, 5\)"):
        CameraRun(f[..., 0], t, R, T)
    with pytest.raises(ValueError, match=r"shape \(N, H, W, 3\), got shape \(6, 6, 5, 4\)"):
        CameraRun(np.zeros((6, 6, 5, 4), np.uint8), t, R, T)
    with pytest.raises(ValueError, match="lacks"):
        CameraRun([1, 2, 3], t, R, T)
    with pytest.raises(ValueError, match=r"intrinsics: expected a \(3, 3\)"):
        CameraRun(f, t, R, T, intrinsics=np.eye(4))
    with pytest.raises(ValueError, match="observed: expected a boolean mask"):
        CameraRun(f, t, R, T, observed=np.full(6, 2))
    ok = CameraRun(None, t, R, T, observed=[1, 0, 1, 1, 1, 1], intrinsics=[[50, 0, 2.5], [0, 50, 3], [0, 0, 1]])
    assert ok.observed.tolist() == [True, False, True, True, True, True] and ok.resolution is None


# ---------------------------------------------------------------------------------------------------
# Slicing, subsampling, masks


def _check_aligned(sub: CameraRun, parent: CameraRun, idx: np.ndarray) -> None:
    assert len(sub) == len(idx)
    np.testing.assert_array_equal(sub.timestamps, parent.timestamps[idx])
    np.testing.assert_array_equal(sub.rotations, parent.rotations[idx])
    np.testing.assert_array_equal(sub.translations, parent.translations[idx])
    np.testing.assert_array_equal(sub.observed, parent.observed[idx])
    np.testing.assert_array_equal(np.asarray(sub.frames[:])[:, 0, 0, 0], idx)


def test_slicing_keeps_everything_aligned():
    run = _run(10).mask([3])
    _check_aligned(run[2:9:3], run, np.array([2, 5, 8]))
    _check_aligned(run[np.array([0, 3, 7])], run, np.array([0, 3, 7]))
    _check_aligned(run[[-2, -1]], run, np.array([8, 9]))
    mask = np.zeros(10, bool)
    mask[[1, 3, 4]] = True
    _check_aligned(run[mask], run, np.array([1, 3, 4]))
    assert run[np.array([1, 3, 4])].observed.tolist() == [True, False, True]
    assert len(run[[]]) == 0


def test_bad_indices():
    run = _run(5)
    with pytest.raises(TypeError, match="run.frame"):
        run[2]
    with pytest.raises(ValueError, match="strictly increasing"):
        run[[3, 1]]
    with pytest.raises(IndexError, match="index 7 .* run of 5"):
        run[[1, 7]]
    with pytest.raises(ValueError, match=r"boolean mask has shape \(4,\)"):
        run[np.ones(4, bool)]
    with pytest.raises(ValueError, match="step must be positive"):
        run[::-1]


def test_subsample_mask_keyframes():
    run = _run(11)
    sub = run.subsample(5)
    _check_aligned(sub, run, np.array([0, 5, 10]))
    _check_aligned(run.subsample(4, offset=1), run, np.array([1, 5, 9]))
    with pytest.raises(ValueError, match="positive integer"):
        run.subsample(0)
    with pytest.raises(ValueError, match="offset"):
        run.subsample(2, offset=11)

    hidden = run.mask([2, 4]).mask(np.arange(11) == 6)
    assert np.flatnonzero(~hidden.observed).tolist() == [2, 4, 6]
    assert run.observed.all()  # the original is untouched

    ends = run.keyframes(ends=True)
    assert np.flatnonzero(ends).tolist() == [0, 10]
    assert np.flatnonzero(run.keyframes(every=4)).tolist() == [0, 4, 8]
    assert np.flatnonzero(run.keyframes(every=4, ends=True)).tolist() == [0, 4, 8, 10]
    interp = run.with_observed(ends)
    assert interp.observed.sum() == 2 and interp.frames is run.frames
    with pytest.raises(ValueError, match="every=K and/or ends=True"):
        run.keyframes()
    with pytest.raises(ValueError, match="observed mask has shape"):
        run.with_observed(np.ones(3, bool))


def test_lazy_source_stays_lazy():
    f = _frames(12)
    src = CountingSource(f)
    t, R, T = _poses(12)
    run = CameraRun(src, t, R, T)
    sub = run.subsample(2)[1:4][[0, 2]]  # frames 2 and 6 of the source
    assert src.reads == 0 and len(sub) == 2 and sub.resolution == (6, 5)
    np.testing.assert_array_equal(sub.frame(1), f[6])
    np.testing.assert_array_equal(sub.frame(-1), f[6])
    np.testing.assert_array_equal(sub.frames[:], f[[2, 6]])
    assert src.reads == 4  # 1 + 1 + 2: only the frames asked for
    with pytest.raises(ValueError, match="has len 12 but shape"):
        bad = CountingSource(f)
        bad.shape = (11,) + f.shape[1:]
        CameraRun(bad, t, R, T)


def test_frame_access_errors():
    run = _run(3)
    np.testing.assert_array_equal(run.frame(2), run.frames[2])
    with pytest.raises(IndexError, match="out of range"):
        run.frame(3)
    with pytest.raises(ValueError, match="pose-only"):
        CameraRun(None, run.timestamps, run.rotations, run.translations).frame(0)


def test_pose_features_and_trajectory():
    run = _run(7, metadata={"source_format": "tum"})
    x = run.pose_features()
    assert x.shape == (7, 12) and x.dtype == torch.float64
    np.testing.assert_array_equal(x[:, :9].numpy(), run.rotations.reshape(7, 9))
    np.testing.assert_array_equal(x[:, 9:].numpy(), run.translations)
    xt = run.pose_features(with_time=True)
    assert xt.shape == (7, 13)
    np.testing.assert_array_equal(xt[:, 12].numpy(), run.timestamps)
    traj = run.trajectory
    assert isinstance(traj, PoseTrajectory) and traj.source_format == "tum"
    np.testing.assert_array_equal(traj.rotations, run.rotations)
    again = CameraRun.from_trajectory(traj, frames=run.frames)
    np.testing.assert_array_equal(again.translations, run.translations)
    assert again.metadata["source_format"] == "tum"


# ---------------------------------------------------------------------------------------------------
# Save / load


def _full_run() -> CameraRun:
    run = _run(9, intrinsics=[[40.0, 0, 2.5], [0, 41.5, 3.0], [0, 0, 1]],
               metadata={"name": "demo", "fps": 30, "arr": np.arange(3), "nested": {"a": [1.5, None]}})
    return run.mask([2, 5])


def test_save_load_round_trip(tmp_path):
    run = _full_run()
    d = run.save(tmp_path / "run")
    assert sorted(p.name for p in d.iterdir()) == ["frames", "poses.txt", "run.json"]
    manifest = json.loads((d / "run.json").read_text())
    assert manifest["version"] == 1 and manifest["n"] == 9 and "OpenCV" in manifest["convention"]
    assert manifest["frames"][0] == "frames/000000.png"
    for lazy in (False, True):
        back = CameraRun.load(d, lazy=lazy)
        np.testing.assert_array_equal(np.asarray(back.frames[:]), run.frames)  # bit-exact
        np.testing.assert_array_equal(back.timestamps, run.timestamps)
        np.testing.assert_allclose(back.rotations, run.rotations, atol=1e-12, rtol=0)
        np.testing.assert_array_equal(back.translations, run.translations)
        np.testing.assert_array_equal(back.observed, run.observed)
        np.testing.assert_array_equal(back.intrinsics, run.intrinsics)
        assert back.metadata == {"name": "demo", "fps": 30, "arr": [0, 1, 2], "nested": {"a": [1.5, None]}}
    lazy_run = CameraRun.load(d, lazy=True)
    np.testing.assert_array_equal(lazy_run.subsample(4).frame(2), run.frames[8])


def test_png_channels_are_rgb(tmp_path):
    import cv2

    f = np.zeros((1, 2, 2, 3), np.uint8)
    f[..., 0] = 255  # pure red
    run = CameraRun(f, [0.0], np.eye(3)[None], np.zeros((1, 3)))
    d = run.save(tmp_path / "r")
    bgr = cv2.imread(str(d / "frames" / "000000.png"))
    assert bgr[0, 0].tolist() == [0, 0, 255]  # other tools see a red image
    assert CameraRun.load(d).frame(0)[0, 0].tolist() == [255, 0, 0]


def test_save_load_pose_only_and_lazy_source(tmp_path):
    t, R, T = _poses(4)
    back = CameraRun.load(CameraRun(None, t, R, T).save(tmp_path / "p"))
    assert back.frames is None and len(back) == 4
    src = CountingSource(_frames(40))
    t, R, T = _poses(40)
    d = CameraRun(src, t, R, T).save(tmp_path / "lazy")
    np.testing.assert_array_equal(CameraRun.load(d).frames, src._frames)


def test_save_rejects_unserialisable_metadata(tmp_path):
    run = _run(2, metadata={"model": object()})
    with pytest.raises(ValueError, match="metadata.model: object is not JSON-serialisable"):
        run.save(tmp_path / "x")
    assert not (tmp_path / "x" / "run.json").exists()


@pytest.fixture
def saved(tmp_path) -> Path:
    return _full_run().save(tmp_path / "run")


def _edit_manifest(d: Path, **changes) -> None:
    m = json.loads((d / "run.json").read_text())
    m.update(changes)
    (d / "run.json").write_text(json.dumps(m))


def test_load_missing_frame(saved):
    (saved / "frames" / "000004.png").unlink()
    with pytest.raises(ValueError, match=r"1 of 9 frame files are missing, first .*000004.png"):
        CameraRun.load(saved)


def test_load_manifest_count_mismatch(saved):
    _edit_manifest(saved, n=10)
    with pytest.raises(ValueError, match="n = 10 but poses.txt holds 9 poses"):
        CameraRun.load(saved)


def test_load_frame_list_mismatch(saved):
    m = json.loads((saved / "run.json").read_text())
    _edit_manifest(saved, frames=m["frames"][:-1])
    with pytest.raises(ValueError, match="frame list has 8 files, expected n = 9"):
        CameraRun.load(saved)


def test_load_observed_mismatch(saved):
    _edit_manifest(saved, observed=[True] * 3)
    with pytest.raises(ValueError, match="observed mask has 3 entries"):
        CameraRun.load(saved)


def test_load_no_manifest_or_bad_json(saved, tmp_path):
    with pytest.raises(ValueError, match="not a camera run directory"):
        CameraRun.load(saved / "frames")
    (saved / "run.json").write_text("{ not json")
    with pytest.raises(ValueError, match="run.json: invalid JSON"):
        CameraRun.load(saved)
    with pytest.raises(FileNotFoundError):
        CameraRun.load(tmp_path / "absent")


def test_load_unsupported_version(saved):
    _edit_manifest(saved, version=99)
    with pytest.raises(ValueError, match="unsupported run format version 99"):
        CameraRun.load(saved)


def test_load_corrupt_poses_and_frames(saved, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(saved, other)
    lines = (saved / "poses.txt").read_text().splitlines()
    (saved / "poses.txt").write_text("\n".join(lines[:-1] + [lines[-1][:20]]) + "\n")
    with pytest.raises(ValueError, match=r"cannot read the poses: .*poses.txt:10: expected at least 8 columns"):
        CameraRun.load(saved)
    (other / "frames" / "000003.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read frame image .*000003.png"):
        CameraRun.load(other)
    lazy = CameraRun.load(other, lazy=True)  # lazy loading defers the decode error to access
    with pytest.raises(ValueError, match="000003.png"):
        lazy.frame(3)
