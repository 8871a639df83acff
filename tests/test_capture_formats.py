"""The capture formats: COLMAP binary models and cameras, transforms.json, phone sensor logs read by
header names, TUM with extra columns, and detection that refuses to guess. All files are written here."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation as Rot

from sequences.poses.formats import AmbiguousFormatError, PoseFormatError, detect_format, has_times, read_poses, write_poses
from sequences.poses.nerf import intrinsics_from_fields
from sequences.poses.trajectory import PoseTrajectory

F = np.diag([1.0, -1.0, -1.0])


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


# ---------------------------------------------------------------------------------------------------
# COLMAP binary


def _one_image_model(folder: Path) -> Path:
    """images.bin + cameras.bin packed by hand: one image, camera centre (1, 2, 3) looking along world +X."""
    folder.mkdir(parents=True, exist_ok=True)
    R_c2w = np.stack([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]], axis=1)  # camera x = -Y, y = -Z, z = +X
    R_w2c = R_c2w.T
    T_w2c = -R_w2c @ np.array([1.0, 2.0, 3.0])
    qx, qy, qz, qw = Rot.from_matrix(R_w2c).as_quat()
    images = (struct.pack("<Q", 1) + struct.pack("<i7di", 7, qw, qx, qy, qz, *T_w2c, 3) + b"cam/a.png\x00"
              + struct.pack("<Q", 2) + struct.pack("<ddqddq", 1.0, 2.0, -1, 3.0, 4.0, 12))
    (folder / "images.bin").write_bytes(images)
    cameras = struct.pack("<Q", 1) + struct.pack("<iiQQ", 3, 4, 640, 480) + struct.pack("<8d", 500, 510, 320, 240, 0.1, -0.01, 0.001, 0.002)
    (folder / "cameras.bin").write_bytes(cameras)
    return folder / "images.bin"


def test_colmap_binary_record_by_hand(tmp_path):
    path = _one_image_model(tmp_path / "sparse" / "0")
    assert detect_format(path) == "colmap_bin" and detect_format(path.parent) == "colmap_bin"
    traj = read_poses(path.parent)  # a model folder stands for its images file
    assert traj.source_format == "colmap_bin" and not has_times(traj)
    assert traj.metadata["names"] == ["cam/a.png"] and traj.metadata["image_ids"] == [7] and traj.metadata["camera_ids"] == [3]
    np.testing.assert_allclose(traj.translations[0], [1, 2, 3], atol=1e-12)
    np.testing.assert_allclose(traj.rotations[0][:, 2], [1, 0, 0], atol=1e-12)  # optical axis along world +X
    np.testing.assert_allclose(traj.rotations[0][:, 1], [0, 0, -1], atol=1e-12)  # image down = world -Z
    # OPENCV camera: COLMAP's (0.5, 0.5) pixel centre -> ours at (0, 0); distortion kept.
    np.testing.assert_allclose(traj.metadata["intrinsics"], [[500, 0, 319.5], [0, 510, 239.5], [0, 0, 1]])
    assert traj.metadata["image_size"] == [640, 480]
    assert traj.metadata["distortion"] == {"model": "OPENCV", "k1": 0.1, "k2": -0.01, "p1": 0.001, "p2": 0.002}


def test_colmap_binary_equals_its_text_twin(tmp_path):
    g = np.random.default_rng(4)
    n = 9
    R = Rot.random(n, random_state=5).as_matrix()
    names = [f"img_{k}.jpg" for k in g.permutation(n)]
    meta = {"names": names, "image_ids": list(range(10, 10 + n)), "camera_ids": [1] * n,
            "intrinsics": [[300.0, 0, 159.5], [0, 310.0, 119.5], [0, 0, 1]], "image_size": [320, 240]}
    traj = PoseTrajectory(np.arange(n, dtype=float), R, g.normal(size=(n, 3)), "colmap", meta)
    write_poses(tmp_path / "txt" / "images.txt", traj, "colmap")
    write_poses(tmp_path / "bin" / "images.bin", traj, "colmap_bin")
    assert (tmp_path / "txt" / "cameras.txt").is_file() and (tmp_path / "bin" / "cameras.bin").is_file()
    text, binary = read_poses(tmp_path / "txt" / "images.txt"), read_poses(tmp_path / "bin" / "images.bin")
    assert text.metadata["names"] == binary.metadata["names"] == sorted(names, key=lambda s: int(s[4:-4]))
    np.testing.assert_array_equal(text.rotations, binary.rotations)
    np.testing.assert_array_equal(text.translations, binary.translations)
    for key in ("image_ids", "camera_ids", "intrinsics", "image_size", "cameras"):
        assert text.metadata[key] == binary.metadata[key], key
    np.testing.assert_allclose(text.metadata["intrinsics"], meta["intrinsics"], atol=1e-12)


def test_colmap_binary_bad_files(tmp_path):
    path = _one_image_model(tmp_path)
    data = path.read_bytes()
    (tmp_path / "images.bin").write_bytes(data[:40])
    with pytest.raises(PoseFormatError, match=r"images.bin: says it holds 1 images but has only 40 bytes"):
        read_poses(path)
    (tmp_path / "images.bin").write_bytes(data[:-10])
    with pytest.raises(PoseFormatError, match=r"images.bin: file ends .* 2D points of image record 1"):
        read_poses(path)
    (tmp_path / "images.bin").write_bytes(data + b"xx")
    with pytest.raises(PoseFormatError, match="2 bytes left after the last record"):
        read_poses(path)
    with pytest.raises(PoseFormatError, match="COLMAP cameras file; give the model's images.bin"):
        read_poses(tmp_path / "cameras.bin")


def test_colmap_cameras_text_and_unknown_camera(tmp_path):
    _write(tmp_path, "images.txt", "1 1 0 0 0 0 0 0 2 a.png\n\n")
    _write(tmp_path, "cameras.txt", "# c\n2 SIMPLE_RADIAL 100 80 90 50 40 0.01\n")
    traj = read_poses(tmp_path / "images.txt")
    np.testing.assert_allclose(traj.metadata["intrinsics"], [[90, 0, 49.5], [0, 90, 39.5], [0, 0, 1]])
    assert traj.metadata["distortion"] == {"model": "SIMPLE_RADIAL", "k": 0.01}
    _write(tmp_path, "cameras.txt", "5 PINHOLE 100 80 90 90 50 40\n")
    with pytest.raises(PoseFormatError, match=r"refer to CAMERA_ID \[2\] that the cameras file does not define"):
        read_poses(tmp_path / "images.txt")
    _write(tmp_path, "cameras.txt", "2 PINHOLE 100 80 90 50 40\n")
    with pytest.raises(PoseFormatError, match=r"cameras.txt:1: camera model PINHOLE has 4 parameters, got 3"):
        read_poses(tmp_path / "images.txt")


def test_colmap_duplicate_names_and_folder_with_both_models(tmp_path):
    _write(tmp_path, "images.txt", "1 1 0 0 0 0 0 0 1 a.png\n\n2 1 0 0 0 0 0 1 1 a.png\n\n")
    with pytest.raises(PoseFormatError, match=r"images.txt:3: image name 'a.png' appears twice"):
        read_poses(tmp_path / "images.txt")
    _one_image_model(tmp_path)
    with pytest.raises(AmbiguousFormatError, match="images.bin and images.txt"):
        read_poses(tmp_path)


# ---------------------------------------------------------------------------------------------------
# transforms.json


def _transforms(tmp_path: Path, doc: dict, name: str = "transforms.json") -> Path:
    return _write(tmp_path, name, json.dumps(doc))


def test_nerf_opengl_axes_intrinsics_and_names(tmp_path):
    M = np.eye(4)
    M[:3, 3] = [0.5, 1.0, 2.0]
    Ry = np.eye(4)
    Ry[:3, :3] = Rot.from_euler("y", 90, degrees=True).as_matrix()
    doc = {"fl_x": 100.0, "fl_y": 101.0, "w": 64, "h": 48, "k1": 0.01, "camera_model": "OPENCV", "aabb_scale": 16,
           "frames": [{"file_path": "./images/f_10", "transform_matrix": Ry.tolist(), "time": 0.5},
                      {"file_path": "./images/f_2", "transform_matrix": M[:3].tolist(), "time": 0.0}]}
    traj = read_poses(_transforms(tmp_path, doc))
    assert traj.source_format == "nerf" and not has_times(traj)
    assert traj.metadata["names"] == ["images/f_2", "images/f_10"]  # natural order, './' dropped
    assert traj.metadata["frame_times"] == [0.0, 0.5]
    # Identity OpenGL camera: looks along world -Z with image up = world +Y, so OpenCV y (down) = -Y.
    np.testing.assert_allclose(traj.rotations[0], F, atol=1e-15)
    np.testing.assert_allclose(traj.translations[0], [0.5, 1.0, 2.0])
    np.testing.assert_allclose(traj.rotations[1][:, 2], [-1, 0, 0], atol=1e-12)  # yawed 90 deg about +Y: looks along -X
    np.testing.assert_allclose(traj.metadata["intrinsics"], [[100, 0, 31.5], [0, 101, 23.5], [0, 0, 1]])
    assert traj.metadata["image_size"] == [64, 48]
    assert traj.metadata["distortion"] == {"model": "OPENCV", "k1": 0.01}
    assert traj.metadata["nerf_fields"] == {"camera_model": "OPENCV", "aabb_scale": 16}


def test_nerf_camera_angle_needs_the_image_width(tmp_path):
    doc = {"camera_angle_x": 0.6911112070083618, "frames": [{"file_path": "./train/r_0", "transform_matrix": np.eye(4).tolist()}]}
    traj = read_poses(_transforms(tmp_path, doc))
    assert "intrinsics" not in traj.metadata and traj.metadata["camera"] == {"camera_angle_x": doc["camera_angle_x"]}
    K = intrinsics_from_fields(traj.metadata["camera"], 800, 800)
    assert K[0, 0] == pytest.approx(0.5 * 800 / math.tan(0.5 * doc["camera_angle_x"]))  # 1111.11 for the NeRF scenes
    assert K[1, 1] == K[0, 0] and K[0, 2] == K[1, 2] == 399.5


def test_nerf_per_frame_intrinsics_and_bad_frames(tmp_path):
    eye = np.eye(4).tolist()
    doc = {"w": 10, "h": 10, "frames": [{"file_path": "a.png", "transform_matrix": eye, "fl_x": 5.0},
                                        {"file_path": "b.png", "transform_matrix": eye, "fl_x": 6.0}]}
    traj = read_poses(_transforms(tmp_path, doc))
    assert traj.metadata["camera"] is None and [c["fl_x"] for c in traj.metadata["camera_per_frame"]] == [5.0, 6.0]
    bad = dict(doc, frames=[{"file_path": "a.png", "transform_matrix": (2 * np.eye(4)).tolist()}])
    with pytest.raises(PoseFormatError, match=r"transforms.json: frame 1 \('a.png'\): transform_matrix last row"):
        read_poses(_transforms(tmp_path, bad))
    scaled = np.eye(4)
    scaled[0, 0] = 1.5
    with pytest.raises(PoseFormatError, match=r"frame 1 \('a.png'\): invalid rotation"):
        read_poses(_transforms(tmp_path, dict(doc, frames=[{"file_path": "a.png", "transform_matrix": scaled.tolist()}])))
    with pytest.raises(PoseFormatError, match=r"frame 2 \('a.png'\): file_path appears twice"):
        read_poses(_transforms(tmp_path, dict(doc, frames=[doc["frames"][0], doc["frames"][0]])))
    with pytest.raises(PoseFormatError, match=r"transforms.json:1: invalid JSON"):
        read_poses(_write(tmp_path, "transforms.json", "{'frames': []}"))
    with pytest.raises(PoseFormatError, match="not a transforms.json"):
        detect_format(_write(tmp_path, "other.json", '{"a": 1}'))


# ---------------------------------------------------------------------------------------------------
# Phone sensor logs: header names decide


def test_gyroscope_columns_by_header_name(tmp_path):
    # Sensor Logger's Gyroscope.csv: z first; time in ns, seconds_elapsed in s. 1.5 rad/s about z.
    rows = "".join(f"{1_700_000_000_000_000_000 + 10_000_000 * k},{0.01 * k},1.5,0,0\n" for k in range(21))
    p = _write(tmp_path, "Gyroscope.csv", "time,seconds_elapsed,z,y,x\n" + rows)
    assert detect_format(p) == "imu"
    traj = read_poses(p)
    assert traj.metadata["time_column"] == "seconds_elapsed" and traj.metadata["time_unit"] == "s"
    np.testing.assert_allclose(traj.timestamps[-1], 0.2)
    np.testing.assert_allclose(traj.rotations[-1], Rot.from_rotvec([0, 0, 0.3]).as_matrix(), atol=1e-12)
    np.testing.assert_array_equal(traj.metadata["gyroscope"][0], [0, 0, 1.5])
    # time,z,y,x (no seconds column) is read the same way, not with z as gx.
    p2 = _write(tmp_path, "gyro_log.csv", "time,z,y,x\n" + "".join(f"{0.01 * k},1.5,0,0\n" for k in range(21)))
    np.testing.assert_allclose(read_poses(p2).rotations[-1], Rot.from_rotvec([0, 0, 0.3]).as_matrix(), atol=1e-12)


def test_gyroscope_time_units(tmp_path):
    ns = "".join(f"{1_700_000_000_000_000_000 + 10_000_000 * k},0,0,1\n" for k in range(3))
    p = _write(tmp_path, "g.csv", "timestamp,gx,gy,gz\n" + ns)
    with pytest.raises(PoseFormatError, match=r"g.csv: time column 'timestamp' holds values like 1.7e\+18.*time_unit='ns'"):
        read_poses(p)
    np.testing.assert_allclose(np.diff(read_poses(p, time_unit="ns").timestamps), 0.01, atol=1e-6)
    euroc_imu = _write(tmp_path, "data.csv", "#timestamp [ns],w_RS_S_x [rad s^-1],w_RS_S_y [rad s^-1],w_RS_S_z [rad s^-1]\n" + ns)
    assert detect_format(euroc_imu) == "imu"
    assert read_poses(euroc_imu).metadata["time_unit"] == "ns"


def test_xyz_logs_need_their_name(tmp_path):
    rows = "time,x,y,z\n0,0,0,1\n0.1,0,0,1\n"
    with pytest.raises(AmbiguousFormatError, match=r"could be imu .*--format imu") as e:
        detect_format(_write(tmp_path, "log.csv", rows))
    assert e.value.candidates == ("imu",)
    with pytest.raises(PoseFormatError, match=r"an accelerometer log .* not a pose file"):
        read_poses(_write(tmp_path, "Accelerometer.csv", rows))
    assert read_poses(_write(tmp_path, "log.csv", rows), "imu").metadata["gyroscope"].shape == (2, 3)


def test_orientation_csv_device_axes_to_back_camera(tmp_path):
    s = math.sqrt(0.5)
    text = ("time,seconds_elapsed,qz,qy,qx,qw,roll,pitch,yaw\n"
            f"1700000000000000000,0.0,0,0,0,1,0,0,0\n1700000000100000000,0.1,{s},0,0,{s},0,0,1.57\n")
    p = _write(tmp_path, "Orientation.csv", text)
    assert detect_format(p) == "orientation"
    traj = read_poses(p)
    np.testing.assert_allclose(traj.timestamps, [0.0, 0.1])
    # Phone flat, screen up (identity): the back camera looks down (world -Z), image top = device +Y = north.
    np.testing.assert_allclose(traj.rotations[0], F, atol=1e-15)
    R_dev = Rot.from_quat([0, 0, s, s]).as_matrix()  # qx qy qz qw read by name, not by position
    np.testing.assert_allclose(traj.rotations[1], R_dev @ F, atol=1e-12)
    np.testing.assert_array_equal(traj.translations, 0.0)
    raw = read_poses(p, camera_axes="opencv")
    np.testing.assert_allclose(raw.rotations[1], R_dev, atol=1e-12)


# ---------------------------------------------------------------------------------------------------
# TUM with extra columns; ambiguous files


def test_tum_with_openvins_covariance_columns(tmp_path):
    header = "# timestamp(s) tx ty tz qx qy qz qw Pr11 Pr12 Pr13\n"
    rows = "".join(f"{1.0 + k} {k} 0 0 0 0 0 1 {0.1 * k} 0.2 0.3\n" for k in range(4))
    p = _write(tmp_path, "traj_est.txt", header + rows)
    assert detect_format(p) == "tum"
    traj = read_poses(p)
    assert traj.metadata["extra_names"] == ["Pr11", "Pr12", "Pr13"]
    np.testing.assert_allclose(traj.metadata["extra_columns"][:, 0], [0, 0.1, 0.2, 0.3])
    write_poses(tmp_path / "back.txt", traj, "tum")
    back = read_poses(tmp_path / "back.txt")
    np.testing.assert_array_equal(back.metadata["extra_columns"], traj.metadata["extra_columns"])
    assert back.metadata["extra_names"] == traj.metadata["extra_names"]


def test_headerless_eight_column_csv_is_refused_unless_the_path_says_advio(tmp_path):
    row = "10.0,0.0,0.0,1.0,1.0,0.0,0.0,0.0\n10.1,0.1,0.0,1.0,1.0,0.0,0.0,0.0\n"
    p = _write(tmp_path, "poses.csv", row)
    with pytest.raises(AmbiguousFormatError, match=r"poses.csv:1: ambiguous pose format.*advio.*arkit.*--format advio\|arkit") as e:
        read_poses(p)
    assert e.value.candidates == ("advio", "arkit")
    with pytest.raises(PoseFormatError, match="needs its header"):
        read_poses(p, "arkit")
    assert read_poses(p, "advio").source_format == "advio"
    assert detect_format(_write(tmp_path, "advio-01/iphone/arkit.csv", row)) == "advio"
    assert detect_format(_write(tmp_path, "seq/iphone/arkit.csv", row)) == "advio"  # ADVIO's own layout


def test_orientation_and_imu_round_trip_warn_about_translations(tmp_path):
    traj = PoseTrajectory([0.0, 0.5], Rot.random(2, random_state=1).as_matrix(), [[0, 0, 0], [1, 0, 0]])
    with pytest.warns(UserWarning, match="translations are not written"):
        write_poses(tmp_path / "Orientation.csv", traj, "orientation")
    back = read_poses(tmp_path / "Orientation.csv")
    np.testing.assert_allclose(back.rotations, traj.rotations, atol=1e-12)


def test_docs_list_every_format():
    from sequences.poses.formats import FORMATS

    page = (Path(__file__).resolve().parents[1] / "docs" / "captures.md").read_text()
    table = page[page.index("| `--format` |"):]
    for name in FORMATS:
        assert f"| `{name}` |" in table, f"docs/captures.md's pose-format table lacks {name}"
