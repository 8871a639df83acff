"""tests.r2n2: 3D-R2N2 rendering folders -> camera runs (poses, frames, intrinsics, errors)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.r2n2 import (
    BLENDER_DEFAULT_FOV_DEG,
    MAX_CAMERA_DISTANCE,
    iter_r2n2,
    r2n2_pose,
    read_r2n2_metadata,
    read_r2n2_object,
)

VIEWS = [  # azimuth elevation in-plane distance_ratio fov, as R2N2 writes them
    (31.2, 27.4, 0.0, 0.74, 25.0),
    (200.5, 25.6, 0.0, 0.88, 25.0),
    (311.9, 29.1, 0.0, 0.66, 25.0),
]


def _rgba(i: int, size: int = 16) -> np.ndarray:
    """RGBA image: an opaque coloured square on a transparent background, one half-transparent pixel."""
    img = np.zeros((size, size, 4), dtype=np.uint8)
    img[4:12, 4:12] = (40 * i + 20, 200, 30, 255)
    img[0, 0] = (100, 0, 0, 128)
    return img


def _make_object(root: Path, synset: str = "03001627", obj: str = "abc123", views=VIEWS, n_images=None) -> Path:
    rdir = root / synset / obj / "rendering"
    rdir.mkdir(parents=True)
    for i in range(len(views) if n_images is None else n_images):
        cv2.imwrite(str(rdir / f"{i:02d}.png"), cv2.cvtColor(_rgba(i), cv2.COLOR_RGBA2BGRA))
    (rdir / "rendering_metadata.txt").write_text("".join(" ".join(str(v) for v in row) + "\n" for row in views))
    return rdir.parent


def _extrinsic_reference(az: float, el: float, dist: float) -> np.ndarray:
    """World(ShapeNet model)-to-camera(OpenGL axes) 4x4 as in meshrcnn/pytorch3d ``compute_extrinsic_matrix``."""
    a, e = -math.radians(az), -math.radians(el)
    sa, ca, se, ce = math.sin(a), math.cos(a), math.sin(e), math.cos(e)
    r_world2obj = np.array([[ca * ce, sa * ce, -se], [-sa, ca, 0.0], [ca * se, sa * se, ce]])
    r_obj2cam = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    rt = np.eye(4)
    rt[:3, :3] = r_obj2cam @ r_world2obj
    rt[:3, 3] = -r_obj2cam @ np.array([dist, 0.0, 0.0])
    blender_obj_rotation = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    return rt @ blender_obj_rotation


def test_poses_match_the_metadata_and_look_at_the_origin(tmp_path):
    run = read_r2n2_object(_make_object(tmp_path))
    assert len(run) == 3 and run.frames.shape == (3, 16, 16, 3)
    for (az, el, _, ratio, _), R, c in zip(VIEWS, run.rotations, run.translations):
        d = np.linalg.norm(c)
        assert abs(d - ratio * MAX_CAMERA_DISTANCE) < 1e-12
        assert abs(math.degrees(math.asin(c[2] / d)) - el) < 1e-9
        # R2N2 azimuth turns clockwise seen from above (+z).
        assert abs((math.degrees(math.atan2(-c[1], c[0])) - az + 180) % 360 - 180) < 1e-9
        np.testing.assert_allclose(R[:, 2], -c / d, atol=1e-12)  # optical axis through the origin
        assert R[:, 1] @ [0.0, 0.0, 1.0] < 0 and abs(R[:, 0] @ [0.0, 0.0, 1.0]) < 1e-12  # upright, no roll
        np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) > 0


def test_poses_agree_with_the_meshrcnn_extrinsics_in_shapenet_frame(tmp_path):
    flip = np.diag([1.0, -1.0, -1.0])  # OpenCV <-> OpenGL camera axes
    for az, el, _, ratio, _ in VIEWS:
        R, t = r2n2_pose(az, el, 0.0, ratio, frame="shapenet")
        ref = _extrinsic_reference(az, el, ratio * MAX_CAMERA_DISTANCE)
        np.testing.assert_allclose(flip @ R.T, ref[:3, :3], atol=1e-12)
        np.testing.assert_allclose(-flip @ R.T @ t, ref[:3, 3], atol=1e-12)
    run_sn = read_r2n2_object(_make_object(tmp_path), frame="shapenet")
    # ShapeNet models are y-up: the cameras are above the model along +y.
    assert (run_sn.translations[:, 1] > 0).all()


def test_in_plane_rotation_rolls_about_the_optical_axis():
    R0, t0 = r2n2_pose(40.0, 20.0, 0.0, 0.8)
    R1, t1 = r2n2_pose(40.0, 20.0, 30.0, 0.8)
    np.testing.assert_allclose(t1, t0, atol=1e-12)
    np.testing.assert_allclose(R1[:, 2], R0[:, 2], atol=1e-12)
    assert abs(math.degrees(math.acos(R0[:, 0] @ R1[:, 0])) - 30.0) < 1e-9


def test_frames_composited_and_intrinsics(tmp_path):
    obj = _make_object(tmp_path)
    run = read_r2n2_object(obj, background=(10, 20, 30))
    np.testing.assert_array_equal(run.frames[1, 5, 5], [60, 200, 30])  # opaque
    np.testing.assert_array_equal(run.frames[1, 14, 14], [10, 20, 30])  # transparent -> background
    np.testing.assert_array_equal(run.frames[1, 0, 0], np.round(np.array([100, 0, 0]) * 128 / 255 + np.array([10, 20, 30]) * 127 / 255))
    f = 8 / math.tan(math.radians(BLENDER_DEFAULT_FOV_DEG) / 2)
    np.testing.assert_allclose(run.intrinsics, [[f, 0, 7.5], [0, f, 7.5], [0, 0, 1]], atol=1e-12)
    assert abs(f / 8 - 2.1875) < 1e-12  # meshrcnn's Blender intrinsic (35 mm lens / 32 mm sensor)
    with_column = read_r2n2_object(obj, fov="metadata")
    assert abs(with_column.intrinsics[0, 0] - 8 / math.tan(math.radians(12.5))) < 1e-12
    np.testing.assert_array_equal(run.timestamps, [0.0, 1.0, 2.0])
    assert run.metadata["synset"] == "03001627" and run.metadata["object_id"] == "abc123"
    assert read_r2n2_object(obj / "rendering").metadata["object_id"] == "abc123"


def test_bad_folders_get_clear_errors(tmp_path):
    obj = _make_object(tmp_path)
    meta = obj / "rendering" / "rendering_metadata.txt"
    meta.write_text("31.2 27.4 0 0.74 25\n200.5 25.6 0 0.88\n311.9 29.1 0 0.66 25\n")
    with pytest.raises(ValueError, match=r"rendering_metadata.txt:2: expected 5 values .*got 4"):
        read_r2n2_object(obj)
    meta.write_text("31.2 27.4 0 0.74 25\n200.5 abc 0 0.88 25\n311.9 29.1 0 0.66 25\n")
    with pytest.raises(ValueError, match=r"rendering_metadata.txt:2: not a number"):
        read_r2n2_object(obj)
    meta.write_text("31.2 27.4 0 0.74 25\n200.5 25.6 0 0.88 25\n")
    with pytest.raises(ValueError, match="3 images but 2 viewpoints"):
        read_r2n2_object(obj)
    meta.write_text("31.2 27.4 0 -0.74 25\n")
    with pytest.raises(ValueError, match=r":1: distance ratio must be positive"):
        read_r2n2_metadata(meta)
    meta.unlink()
    with pytest.raises(ValueError, match="no rendering_metadata.txt"):
        read_r2n2_object(obj)
    with pytest.raises(FileNotFoundError):
        read_r2n2_object(tmp_path / "nowhere")


def test_iter_r2n2_walks_synsets_and_objects(tmp_path):
    _make_object(tmp_path, "03001627", "chair_b")
    _make_object(tmp_path, "03001627", "chair_a", views=VIEWS[:2])
    _make_object(tmp_path, "02691156", "plane_a")
    (tmp_path / "03001627" / "empty_object").mkdir()
    with pytest.warns(UserWarning, match="empty_object: no 'rendering' folder"):
        runs = list(iter_r2n2(tmp_path))
    assert [(r.metadata["synset"], r.metadata["object_id"], len(r)) for r in runs] == [
        ("02691156", "plane_a", 3), ("03001627", "chair_a", 2), ("03001627", "chair_b", 3)
    ]
    assert [r.metadata["object_id"] for r in iter_r2n2(tmp_path, synsets=["02691156"])] == ["plane_a"]
    with pytest.raises(ValueError, match="synset folder"):
        list(iter_r2n2(tmp_path, synsets=["99999999"]))
