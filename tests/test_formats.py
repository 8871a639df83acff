"""Pose file readers/writers: hand-checked rows, conventions, round trips, detection, bad files."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation as Rot

from sequences.poses.formats import (
    FORMATS,
    PoseFormatError,
    detect_format,
    has_times,
    opengl_to_opencv,
    read_advio_frames,
    read_poses,
    write_poses,
)
from sequences.poses.trajectory import PoseTrajectory
from tests import shared_data
from tests.shared_data import trajectory_file
from viewgp.poses import random_rotations

# Written by hand for these tests; the real trajectories (TUM, EuRoC, KITTI) come from the shared data
# folder (tests/shared_data.py) and their tests skip when it is absent.
DATA = Path(__file__).parent / "data"
COLMAP = DATA / "colmap_images.txt"
ARKIT = DATA / "arkit_poses.csv"
ADVIO = DATA / "advio_arkit.csv"
ADVIO_FRAMES = DATA / "advio_frames.csv"
IMU = DATA / "imu_gyro.csv"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _assert_orthonormal(R: np.ndarray, atol: float = 1e-12) -> None:
    eye = np.broadcast_to(np.eye(3), R.shape)
    assert np.abs(np.transpose(R, (0, 2, 1)) @ R - eye).max() < atol
    assert (np.linalg.det(R) > 0).all()


# ---------------------------------------------------------------------------------------------------
# Hand-checked rows of the real files


@pytest.fixture
def TUM():
    return trajectory_file(shared_data.TUM)


@pytest.fixture
def EUROC():
    return trajectory_file(shared_data.EUROC)


@pytest.fixture
def KITTI(tmp_path):
    # KITTI's reader finds <stem>_times.txt beside the poses: lay the shared pair out that way.
    poses, times = trajectory_file(shared_data.KITTI), trajectory_file(shared_data.KITTI_TIMES)
    out = tmp_path / "kitti_00.txt"
    out.write_text(poses.read_text())
    (tmp_path / "kitti_00_times.txt").write_text(times.read_text())
    return out


@pytest.fixture
def KITTI_TIMES(KITTI):
    return KITTI.with_name("kitti_00_times.txt")


def test_tum_first_row_matches_scipy(TUM):
    traj = read_poses(TUM, "tum")
    assert traj.source_format == "tum" and len(traj) == 3000
    assert traj.timestamps[0] == 1305031098.6659
    np.testing.assert_allclose(traj.translations[0], [1.3563, 0.6305, 1.6380], atol=0)
    R_ref = Rot.from_quat([0.6132, 0.5962, -0.3311, -0.3986]).as_matrix()  # scipy: xyzw, normalised
    np.testing.assert_allclose(traj.rotations[0], R_ref, atol=1e-12)
    _assert_orthonormal(traj.rotations)


def test_euroc_first_row_wxyz_and_nanoseconds(EUROC):
    traj = read_poses(EUROC, "euroc")
    assert len(traj) == 3000
    # 1403715524907143168 ns; float64 seconds carry ~2.4e-7 s at this magnitude.
    assert abs(traj.timestamps[0] - 1403715524.907143168) < 3e-7
    np.testing.assert_allclose(traj.timestamps[1] - traj.timestamps[0], 0.004999936, atol=5e-7)
    np.testing.assert_allclose(traj.translations[0], [0.515356, 1.996773, 0.971104], atol=0)
    w, x, y, z = 0.161996, 0.789985, -0.205376, 0.554528
    np.testing.assert_allclose(traj.rotations[0], Rot.from_quat([x, y, z, w]).as_matrix(), atol=1e-12)
    assert traj.quaternions(scalar_first=True)[0] == pytest.approx(np.array([w, x, y, z]) / math.hypot(w, x, y, z), abs=1e-12)


def test_kitti_row_2_translation_times_and_projection(KITTI, KITTI_TIMES):
    traj = read_poses(KITTI, "kitti", times_path=KITTI_TIMES)
    assert len(traj) == 500 and traj.metadata["has_times"]
    np.testing.assert_allclose(traj.translations[2], [-9.374345e-02, -5.676064e-02, 1.716275e00], atol=0)
    assert traj.timestamps[2] == 2.073381e-01
    raw = np.array([9.999910e-01, 1.048972e-03, -4.131348e-03, -1.058514e-03, 9.999968e-01,
                    -2.308104e-03, 4.128913e-03, 2.312456e-03, 9.999887e-01]).reshape(3, 3)
    # Printed with 7 digits, so ~1e-7 off SO(3): accepted, and projected to an exact rotation.
    assert np.abs(raw.T @ raw - np.eye(3)).max() > 1e-8
    np.testing.assert_allclose(traj.rotations[2], raw, atol=1e-6)
    _assert_orthonormal(traj.rotations)


def test_kitti_times_file_found_beside_poses_or_index(tmp_path, KITTI, KITTI_TIMES):
    assert read_poses(KITTI).metadata["times_source"] == str(KITTI_TIMES)  # <stem>_times.txt beside the poses
    lone = tmp_path / "poses.txt"
    lone.write_text(KITTI.read_text())
    traj = read_poses(lone, "kitti")
    np.testing.assert_array_equal(traj.timestamps, np.arange(500.0))
    assert "index" in traj.metadata["times_source"] and not has_times(traj)


def test_kitti_poses_times_count_mismatch(tmp_path, KITTI, KITTI_TIMES):
    times = _write(tmp_path, "t.txt", "\n".join(KITTI_TIMES.read_text().splitlines()[:499]) + "\n")
    with pytest.raises(PoseFormatError, match=r"500 poses but .*499 timestamps"):
        read_poses(KITTI, "kitti", times_path=times)


def test_kitti_without_projection_keeps_raw_values(KITTI):
    traj = read_poses(KITTI, "kitti", reorthonormalize=False)
    assert traj.rotations[2, 0, 0] == 9.999910e-01


# ---------------------------------------------------------------------------------------------------
# Conventions


def test_colmap_world_to_camera_inverted():
    traj = read_poses(COLMAP)
    # Natural sort by NAME: frame_000002 (id 2), frame_000005 (id 3), frame_000010 (id 1).
    assert traj.metadata["names"] == ["frame_000002.png", "frame_000005.png", "frame_000010.png"]
    assert traj.metadata["image_ids"] == [2, 3, 1] and traj.metadata["camera_ids"] == [1, 2, 1]
    np.testing.assert_array_equal(traj.timestamps, [0.0, 1.0, 2.0])
    for k, (qw, qx, qy, qz, T) in enumerate(
        [(0.5, 0.5, -0.5, 0.5, [2, 3, -1]), (math.sqrt(0.5), 0, math.sqrt(0.5), 0, [1, 0, 0]), (1, 0, 0, 0, [0, 0, 5])]
    ):
        R_w2c = Rot.from_quat([qx, qy, qz, qw]).as_matrix()
        np.testing.assert_allclose(traj.rotations[k], R_w2c.T, atol=1e-12)
        np.testing.assert_allclose(traj.translations[k], -R_w2c.T @ np.array(T, float), atol=1e-12)
    # Hand-made camera: centre (1, 2, 3) looking along world +X (OpenCV axes: y down = world -Z).
    R, C = traj.rotations[0], traj.translations[0]
    np.testing.assert_allclose(C, [1, 2, 3], atol=1e-12)
    np.testing.assert_allclose(R[:, 2], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(R[:, 1], [0, 0, -1], atol=1e-12)
    x_cam = R.T @ (np.array([5.0, 2.0, 3.0]) - C)  # a world point 4 m in front
    np.testing.assert_allclose(x_cam, [0, 0, 4], atol=1e-12)
    assert (R.T @ (np.array([-3.0, 2.0, 3.0]) - C))[2] < 0  # behind the camera


def test_colmap_order_by_id_and_time_from_name():
    by_id = read_poses(COLMAP, order="id")
    assert by_id.metadata["image_ids"] == [1, 2, 3]
    named = read_poses(COLMAP, time_from="name")
    np.testing.assert_array_equal(named.timestamps, [2.0, 5.0, 10.0])
    np.testing.assert_allclose(named.translations[2], [0, 0, -5], atol=1e-12)


def test_arkit_identity_looks_down_minus_z():
    traj = read_poses(ARKIT)
    assert traj.source_format == "arkit"
    R = traj.rotations
    # Identity ARKit (OpenGL) pose looks along world -Z; OpenCV optical axis is R[:, 2].
    np.testing.assert_allclose(R[0][:, 2], [0, 0, -1], atol=1e-15)
    np.testing.assert_allclose(R[0][:, 1], [0, -1, 0], atol=1e-15)  # image y points down = world -Y
    np.testing.assert_allclose(R[0][:, 0], [1, 0, 0], atol=1e-15)
    # 90 deg yaw about the gravity (y) axis turns the view to world -X; 180 deg to +Z.
    np.testing.assert_allclose(R[1][:, 2], [-1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(R[2][:, 2], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(traj.translations[1], [1.0, 1.5, -2.0], atol=0)
    R_gl = Rot.from_quat([0, 0.7071067811865476, 0, 0.7071067811865476]).as_matrix()
    np.testing.assert_allclose(R[1], R_gl @ np.diag([1.0, -1.0, -1.0]), atol=1e-12)


def test_opengl_opencv_flip_is_an_involution():
    R = random_rotations(5, torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_array_equal(opengl_to_opencv(opengl_to_opencv(R)), R)
    _assert_orthonormal(opengl_to_opencv(R))


def test_arkit_header_any_order_and_missing_column(tmp_path):
    p = _write(tmp_path, "a.csv", "qw,qx,qy,qz,tx,ty,tz,timestamp\n1,0,0,0,1,2,3,0.5\n1,0,0,0,1,2,4,0.6\n")
    traj = read_poses(p, "arkit")
    np.testing.assert_allclose(traj.translations[0], [1, 2, 3])
    assert traj.timestamps[1] == 0.6
    bad = _write(tmp_path, "b.csv", "timestamp,tx,ty,tz,qx,qy,qz,w\n0,0,0,0,0,0,0,1\n")
    with pytest.raises(PoseFormatError, match=r"lacks column\(s\) \['qw'\]"):
        read_poses(bad, "arkit")


def test_advio_wxyz_converted_and_frames_interpolated():
    traj = read_poses(ADVIO)
    assert traj.source_format == "advio" and len(traj) == 4
    # Row 2: rotation about y by 0.2 rad (wxyz), OpenGL camera axes -> OpenCV.
    R_gl = Rot.from_rotvec([0, 0.2, 0]).as_matrix()
    np.testing.assert_allclose(traj.rotations[1], R_gl @ np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    raw = read_poses(ADVIO, camera_axes="opencv")
    np.testing.assert_allclose(raw.rotations[1], R_gl, atol=1e-12)

    times, idx = read_advio_frames(ADVIO_FRAMES)
    np.testing.assert_array_equal(idx, np.arange(5))
    at_frames = read_poses(ADVIO, "advio", times_path=ADVIO_FRAMES)
    # 9.95 and 10.35 lie outside [10.0, 10.3]: dropped.
    assert at_frames.metadata["frame_indices"] == [1, 2, 3] and at_frames.metadata["frames_dropped"] == 2
    np.testing.assert_allclose(at_frames.timestamps, [10.05, 10.15, 10.25])
    np.testing.assert_allclose(at_frames.translations[:, 0], [0.05, 0.15, 0.25], atol=1e-9)
    R_mid = Rot.from_rotvec([0, 0.1, 0]).as_matrix() @ np.diag([1.0, -1.0, -1.0])
    np.testing.assert_allclose(at_frames.rotations[0], R_mid, atol=1e-9)


def test_imu_constant_angular_velocity():
    traj = read_poses(IMU)
    assert traj.source_format == "imu" and len(traj) == 11
    omega = np.array([0.1, -0.2, 0.3])
    for k in (0, 4, 10):
        expected = Rot.from_rotvec(omega * traj.timestamps[k]).as_matrix()
        np.testing.assert_allclose(traj.rotations[k], expected, atol=1e-12)
    np.testing.assert_array_equal(traj.translations, 0.0)
    np.testing.assert_array_equal(traj.metadata["accelerometer"][:, 1], 9.81)


def test_imu_headerless_gyroscope_in_milliseconds(tmp_path):
    rows = "".join(f"{10 * k},0,0,1.5\n" for k in range(21))  # ms, 1.5 rad/s about z
    traj = read_poses(_write(tmp_path, "gyroscope.csv", rows), time_unit="ms")
    assert traj.metadata["accelerometer"] is None
    np.testing.assert_allclose(traj.timestamps[-1], 0.2)
    np.testing.assert_allclose(traj.rotations[-1], Rot.from_rotvec([0, 0, 0.3]).as_matrix(), atol=1e-12)


# ---------------------------------------------------------------------------------------------------
# Round trips


#: File names a format's writer output is detected by (the rest: poses.csv / poses.txt).
_FILE_NAMES = {"colmap": "images.txt", "colmap_bin": "images.bin", "nerf": "transforms.json",
               "advio": "advio_arkit.csv", "imu": "Gyroscope.csv", "orientation": "Orientation.csv"}


def _file_name(fmt: str) -> str:
    return _FILE_NAMES.get(fmt, "poses.csv" if FORMATS[fmt].extensions[0] == ".csv" else "poses.txt")


def _random_trajectory(fmt: str, n: int = 7) -> PoseTrajectory:
    g = torch.Generator().manual_seed(123)
    R = random_rotations(n, g).numpy()
    T = torch.randn(n, 3, generator=g, dtype=torch.float64).numpy() * 3
    t = 1000.0 + np.cumsum(torch.rand(n, generator=g, dtype=torch.float64).numpy() + 0.01)
    if not FORMATS[fmt].has_times:  # no timestamps in images.txt / transforms.json: the index stands in
        t = np.arange(n, dtype=np.float64)
    if fmt == "imu":  # gyroscope only: starts at identity, no translation, small steps
        R = Rot.from_rotvec(np.cumsum(np.r_[[np.zeros(3)], np.full((n - 1, 3), 0.1)], axis=0)).as_matrix()
    if fmt in ("imu", "orientation"):
        T = np.zeros((n, 3))
    return PoseTrajectory(t, R, T, source_format=fmt)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_round_trip_every_format(tmp_path, fmt):
    traj = _random_trajectory(fmt)
    path = tmp_path / _file_name(fmt)
    write_poses(path, traj, fmt)
    assert detect_format(path) == fmt
    back = read_poses(path, fmt)
    assert len(back) == len(traj) and back.source_format == fmt
    assert has_times(back) == FORMATS[fmt].has_times
    np.testing.assert_allclose(back.timestamps, traj.timestamps, atol=1e-9, rtol=0)
    np.testing.assert_allclose(back.rotations, traj.rotations, atol=1e-9)
    np.testing.assert_allclose(back.translations, traj.translations, atol=1e-9)


def _hand_written_files() -> list[tuple[Path, str]]:
    return [(COLMAP, "colmap"), (ARKIT, "arkit"), (ADVIO, "advio"), (IMU, "imu")]


_REAL = [(shared_data.TUM, "tum"), (shared_data.EUROC, "euroc"), (shared_data.KITTI, "kitti")]


def _round_trip(tmp_path: Path, path: Path, fmt: str) -> None:
    traj = read_poses(path, fmt)
    out = tmp_path / path.name
    write_poses(out, traj, fmt)
    back = read_poses(out, fmt)
    np.testing.assert_allclose(back.timestamps, traj.timestamps, atol=1e-9, rtol=0)
    np.testing.assert_allclose(back.rotations, traj.rotations, atol=1e-9)
    np.testing.assert_allclose(back.translations, traj.translations, atol=1e-9)
    if fmt == "colmap":
        assert back.metadata["names"] == traj.metadata["names"]
    for key in ("image_ids", "camera_ids", "gyroscope", "accelerometer"):
        if traj.metadata.get(key) is not None:
            np.testing.assert_allclose(np.asarray(back.metadata[key], float), np.asarray(traj.metadata[key], float), atol=1e-9)


@pytest.mark.parametrize("path, fmt", _hand_written_files())
def test_round_trip_hand_written_files(tmp_path, path, fmt):
    _round_trip(tmp_path, path, fmt)


@pytest.mark.parametrize("name, fmt", _REAL)
def test_round_trip_real_files(tmp_path, name, fmt):
    _round_trip(tmp_path, trajectory_file(name), fmt)


def test_euroc_nanoseconds_written_exactly(tmp_path, EUROC):
    out = tmp_path / "gt.csv"
    write_poses(out, read_poses(EUROC), "euroc")
    assert out.read_text().splitlines()[1].split(",")[0] == "1403715524907143168"


def test_imu_writer_warns_about_dropped_translation(tmp_path):
    traj = _random_trajectory("tum")
    with pytest.warns(UserWarning) as rec:
        write_poses(tmp_path / "imu.csv", traj, "imu")
    messages = " | ".join(str(w.message) for w in rec)
    assert "translations are not written" in messages and "first rotation is not written" in messages
    back = read_poses(tmp_path / "imu.csv", "imu", initial_rotation=traj.rotations[0])
    np.testing.assert_allclose(back.rotations, traj.rotations, atol=1e-9)  # orientations still exact


# ---------------------------------------------------------------------------------------------------
# Detection


@pytest.mark.parametrize("path, fmt", _hand_written_files())
def test_detect_each_test_file(path, fmt):
    assert detect_format(path) == fmt


@pytest.mark.parametrize("name, fmt", _REAL)
def test_detect_real_files(name, fmt):
    assert detect_format(trajectory_file(name)) == fmt


def test_detect_arkit_with_commented_header(tmp_path):
    p = _write(tmp_path, "poses.csv", "#timestamp,tx,ty,tz,qx,qy,qz,qw\n0,0,0,0,0,0,0,1\n1,0,0,0,0,0,0,1\n")
    assert detect_format(p) == "arkit"
    np.testing.assert_allclose(read_poses(p).rotations[0][:, 2], [0, 0, -1])


def test_detection_failure_lists_formats(tmp_path):
    p = _write(tmp_path, "x.txt", "# five columns\n1 2 3 4 5\n")
    with pytest.raises(PoseFormatError) as e:
        detect_format(p)
    msg = str(e.value)
    assert "x.txt:2" in msg and all(name in msg for name in FORMATS)


def test_empty_file(tmp_path):
    p = _write(tmp_path, "empty.txt", "")
    with pytest.raises(PoseFormatError, match="no data lines") as e:
        read_poses(p)
    assert "tum" in str(e.value) and "kitti" in str(e.value)
    with pytest.raises(PoseFormatError, match="no pose rows"):
        read_poses(_write(tmp_path, "comments.txt", "# t tx ty tz qx qy qz qw\n\n"), "tum")


def test_unknown_format_name_lists_formats():
    with pytest.raises(PoseFormatError, match="unknown pose format 'vicon'.*tum, euroc, kitti, colmap, colmap_bin, nerf, "
                       "arkit, advio, imu, orientation"):
        read_poses(COLMAP, "vicon")


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_poses(DATA / "nope.txt")


# ---------------------------------------------------------------------------------------------------
# Bad files name the line


def test_tum_wrong_column_count_names_line(tmp_path):
    lines = [f"{k} 0 0 0 0 0 0 1" for k in range(10)]
    lines[6] = " ".join(lines[6].split()[:7])
    p = _write(tmp_path, "tum.txt", "\n".join(lines) + "\n")
    with pytest.raises(PoseFormatError, match=r"tum.txt:7: expected at least 8 columns .* got 7"):
        read_poses(p, "tum")
    lines[6] = "6 0 0 0 0 0 0 1 0.5"
    with pytest.raises(PoseFormatError, match=r"tum.txt:7: 9 columns but the first row has 8"):
        read_poses(_write(tmp_path, "tum.txt", "\n".join(lines) + "\n"), "tum")


def test_non_numeric_names_line_and_column(tmp_path):
    p = _write(tmp_path, "tum.txt", "# c\n1 0 0 0 0 0 0 1\n\n2 0 zero 0 0 0 0 1\n")
    with pytest.raises(PoseFormatError, match=r"tum.txt:4: column 3: 'zero' is not a number"):
        read_poses(p, "tum")


def test_nan_value_names_line(tmp_path):
    p = _write(tmp_path, "tum.txt", "1 0 0 0 0 0 0 1\n2 nan 0 0 0 0 0 1\n")
    with pytest.raises(PoseFormatError, match=r"tum.txt:2: column 2: non-finite"):
        read_poses(p, "tum")


def test_kitti_truncated_row(tmp_path, KITTI):
    lines = KITTI.read_text().splitlines()[:5]
    lines[-1] = " ".join(lines[-1].split()[:11])
    p = _write(tmp_path, "k.txt", "\n".join(lines))
    with pytest.raises(PoseFormatError, match=r"k.txt:5: expected 12 columns .* got 11"):
        read_poses(p, "kitti")


def test_kitti_non_orthonormal_rotation_names_line(tmp_path):
    rows = ["1 0 0 0 0 1 0 0 0 0 1 0", "1 1e-6 0 1 0 1 0 0 0 0 1 0", "1.1 0 0 2 0 1 0 0 0 0 1 0"]
    p = _write(tmp_path, "k.txt", "\n".join(rows) + "\n")
    with pytest.raises(PoseFormatError, match=r"k.txt:3: invalid rotation.*not orthonormal"):
        read_poses(p, "kitti")
    ok = read_poses(_write(tmp_path, "k2.txt", "\n".join(rows[:2]) + "\n"), "kitti")  # 1e-6 noise is fine
    _assert_orthonormal(ok.rotations)
    refl = _write(tmp_path, "k3.txt", "1 0 0 0 0 1 0 0 0 0 -1 0\n")
    with pytest.raises(PoseFormatError, match=r"k3.txt:1: .*reflection"):
        read_poses(refl, "kitti")


def test_non_unit_quaternion_names_line(tmp_path):
    p = _write(tmp_path, "tum.txt", "1 0 0 0 0 0 0 1\n2 0 0 0 0 0 0 2\n")
    with pytest.raises(PoseFormatError, match=r"tum.txt:2: quaternion .* norm 2"):
        read_poses(p, "tum")


def test_non_increasing_timestamps_name_line(tmp_path):
    p = _write(tmp_path, "tum.txt", "1 0 0 0 0 0 0 1\n2 0 0 0 0 0 0 1\n2 0 0 0 0 0 0 1\n")
    with pytest.raises(PoseFormatError, match=r"tum.txt:3: timestamp 2.0 is not after .*line 2"):
        read_poses(p, "tum")


def test_colmap_truncated_mid_pair(tmp_path):
    lines = COLMAP.read_text().splitlines()
    p = _write(tmp_path, "images.txt", "\n".join(lines[:-1]))  # drops the last POINTS2D line
    with pytest.raises(PoseFormatError, match="ends after the image line 9 without its POINTS2D"):
        read_poses(p, "colmap")


def test_colmap_missing_points_line_in_the_middle(tmp_path):
    text = "1 1 0 0 0 0 0 5 1 a.png\n2 1 0 0 0 0 0 6 1 b.png\n\n"
    with pytest.raises(PoseFormatError, match=r"images.txt:2: expected the POINTS2D line of the image on line 1"):
        read_poses(_write(tmp_path, "images.txt", text), "colmap")


def test_colmap_short_image_line(tmp_path):
    with pytest.raises(PoseFormatError, match=r"images.txt:1: expected at least 10 fields"):
        read_poses(_write(tmp_path, "images.txt", "1 1 0 0 0 0 0 5 1\n\n"), "colmap")


def test_euroc_bad_timestamp(tmp_path, EUROC):
    lines = EUROC.read_text().splitlines()[:4]
    lines[2] = "soon" + lines[2][19:]
    with pytest.raises(PoseFormatError, match=r"g.csv:3: column 1: timestamp 'soon'"):
        read_poses(_write(tmp_path, "g.csv", "\n".join(lines)), "euroc")


def test_imu_mixed_widths(tmp_path):
    p = _write(tmp_path, "imu.csv", "t,gx,gy,gz\n0,0,0,1\n0.1,0,0,1,0,0,9.8\n")
    with pytest.raises(PoseFormatError, match=r"imu.csv:3: 7 columns but the first row has 4"):
        read_poses(p, "imu")


def test_write_rejects_non_trajectory(tmp_path):
    with pytest.raises(TypeError):
        write_poses(tmp_path / "x.txt", np.zeros((2, 8)), "tum")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_poses(tmp_path / "ok.txt", _random_trajectory("tum"), "TUM")  # names are case-insensitive
