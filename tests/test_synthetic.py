"""sequences.synthetic: exact camera conventions, determinism, objects where the poses say, phone run, IMU."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

pybullet = pytest.importorskip("pybullet")

from sequences.run import CameraRun  # noqa: E402
from sequences.poses.trajectory import PoseTrajectory  # noqa: E402
from sequences.synthetic import (  # noqa: E402
    BACKGROUND,
    Scene,
    chairs_protocol,
    gl_view_from_pose,
    intrinsics_from_fov,
    look_at,
    object_names,
    phone_run,
    phone_trajectory,
    pose_from_gl_view,
    project_points,
    render_views,
    simulate_imu,
    turntable_poses,
    turntable_run,
    turntable_scene,
)
from viewgp.poses import geodesic_angle, integrate_gyroscope, random_rotations, so3_exp  # noqa: E402


def _masks(run: CameraRun) -> np.ndarray:
    """Per-frame object labels, re-rendered from the scene recorded in the run's metadata."""
    size = run.frames.shape[1]
    frames, labels, _ = render_views(Scene.from_dict(run.metadata["scene"]), run.rotations, run.translations, run.intrinsics, size)
    np.testing.assert_array_equal(frames, run.frames)  # the recorded scene reproduces the run exactly
    return labels


def _roll_deg(R: np.ndarray) -> float:
    """Angle of world up (+z) in the image plane, 0 when up points to the image top."""
    u = R.T @ np.array([0.0, 0.0, 1.0])
    return float(np.degrees(np.arctan2(u[0], -u[1])))


# ---------------------------------------------------------------------------------------------------
# Conventions


def test_view_matrix_conversion_matches_pybullet():
    rng = np.random.default_rng(0)
    for _ in range(5):
        eye, target = rng.normal(size=3) * 2, rng.normal(size=3) * 0.3
        V = pybullet.computeViewMatrix(eye.tolist(), target.tolist(), [0, 0, 1])
        R, t = pose_from_gl_view(V)
        np.testing.assert_allclose(t, eye, atol=1e-5)  # pybullet works in float32
        np.testing.assert_allclose(R, look_at(eye, target), atol=1e-6)
        d = (target - eye) / np.linalg.norm(target - eye)
        np.testing.assert_allclose(R[:, 2], d, atol=1e-6)  # z = optical axis, towards the target
        assert R[:, 1] @ [0, 0, 1] < 0  # y points down
        np.testing.assert_allclose(gl_view_from_pose(R, t).T.ravel(), V, atol=1e-5)
    R = random_rotations(4, torch.Generator().manual_seed(1)).numpy()
    for Ri in R:
        t = rng.normal(size=3)
        R2, t2 = pose_from_gl_view(gl_view_from_pose(Ri, t))
        np.testing.assert_allclose(R2, Ri, atol=1e-12)
        np.testing.assert_allclose(t2, t, atol=1e-12)


def test_rendered_sphere_is_where_pose_and_intrinsics_put_it():
    """Silhouette centre and depth-map geometry of an off-centre sphere agree with K and the pose."""
    scene = turntable_scene("sphere")  # bounding-box diagonal 1 -> radius 1 / (2 sqrt 3)
    radius = 1 / (2 * np.sqrt(3))
    K = intrinsics_from_fov(40.0, 64)
    _, T = turntable_poses([10, 130, 250], [15, 35, -20], 3.0)
    R = np.stack([look_at(c, [0.25, -0.2, 0.15]) for c in T])  # sphere off the image centre
    _, labels, depth = render_views(scene, R, T, K, 64)
    for i in range(3):
        ys, xs = np.nonzero(labels[i] == 0)
        ((u, v),), _ = project_points([0.0, 0.0, 0.0], R[i], T[i], K)
        assert abs(u - 31.5) > 3 or abs(v - 31.5) > 3
        assert abs(xs.mean() - u) < 0.4 and abs(ys.mean() - v) < 0.4
        z = depth[i][ys, xs].astype(np.float64)
        cam = np.stack([(xs - K[0, 2]) / K[0, 0] * z, (ys - K[1, 2]) / K[1, 1] * z, z], 1)
        world = cam @ R[i].T + T[i]
        np.testing.assert_allclose(np.linalg.norm(world, axis=1), radius, rtol=0.01)
        assert np.isinf(depth[i][labels[i] == BACKGROUND]).all()


# ---------------------------------------------------------------------------------------------------
# (a) object views


def test_turntable_deterministic_and_object_follows_the_pose():
    az, el = list(range(0, 360, 45)), [15.0, 40.0]
    run = turntable_run("duck", az, el, distance=1.4, size=48, seed=3)
    again = turntable_run("duck", az, el, distance=1.4, size=48, seed=3)
    np.testing.assert_array_equal(run.frames, again.frames)
    assert len(run) == 16 and run.frames.shape == (16, 48, 48, 3) and run.frames.dtype == np.uint8
    assert run.intrinsics.shape == (3, 3)
    assert run.metadata["object"] == "duck" and run.metadata["seed"] == 3 and "TinyRenderer" in run.metadata["renderer"]
    # Poses: elevation-major grid, distance 1.4, looking at the origin.
    c = run.translations
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.4, atol=1e-12)
    np.testing.assert_allclose(np.degrees(np.arcsin(c[:, 2] / 1.4)), np.repeat(el, 8), atol=1e-9)
    np.testing.assert_allclose(np.degrees(np.arctan2(c[:, 1], c[:, 0])) % 360, np.tile(az, 2), atol=1e-9)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", run.rotations.transpose(0, 2, 1), -c)[:, :2], 0, atol=1e-12)

    labels = _masks(run)
    for i in range(len(run)):
        ys, xs = np.nonzero(labels[i] == 0)
        assert len(xs) > 50
        ((u, v),), _ = project_points([0.0, 0.0, 0.0], run.rotations[i], run.translations[i], run.intrinsics)
        # The duck is asymmetric: its silhouette centroid is near, not at, its box centre.
        assert np.hypot(xs.mean() - u, ys.mean() - v) < 4.0
    # A pose that is off by a quarter turn would put the object elsewhere.
    assert not np.array_equal(run.frames[0], run.frames[2])

    jittered = turntable_run("duck", az[:3], el[:1], size=32, seed=1, jitter_deg=2.0)
    other = turntable_run("duck", az[:3], el[:1], size=32, seed=2, jitter_deg=2.0)
    assert not np.allclose(jittered.translations, other.translations)


def test_unknown_object_lists_the_available_ones():
    names = object_names()
    assert {"duck", "teddy", "soccerball", "mug", "lego"} <= set(names)
    with pytest.raises(ValueError, match="unknown object 'chair'.*duck"):
        turntable_run("chair", size=32)
    with pytest.raises(ValueError, match="elevation at index 0 is 90"):
        turntable_run("duck", [0.0], [90.0], size=32)


def test_chairs_protocol_train_and_novel_views():
    train, novel = chairs_protocol("teddy", size=32)
    assert len(train) == 60 and len(novel) == 60
    assert train.metadata["split"] == "train" and novel.metadata["split"] == "novel"
    el_tr = np.asarray(train.metadata["elevations_deg"])
    el_nv = np.asarray(novel.metadata["elevations_deg"])
    assert sorted(set(el_tr.round(9))) == [10.0, 25.0, 40.0]
    assert el_nv.min() > el_tr.min() and el_nv.max() < el_tr.max()  # interpolation in elevation
    # No novel viewpoint coincides with a training viewpoint.
    ang = geodesic_angle(torch.from_numpy(novel.rotations)[:, None], torch.from_numpy(train.rotations)[None])
    assert float(ang.min()) > np.radians(2.0)
    assert not np.array_equal(train.frames[0], novel.frames[0])
    with pytest.raises(ValueError, match="multiple of the 3 training elevations"):
        chairs_protocol("teddy", size=32, n_train=50)


# ---------------------------------------------------------------------------------------------------
# (b) phone run


def test_phone_run_standstill_roll_imu_and_timing():
    start = time.perf_counter()
    run = phone_run(n_frames=120, size=64, seed=0)
    elapsed = time.perf_counter() - start
    print(f"\nphone_run: 120 frames at 64x64 rendered in {elapsed:.2f} s")  # reported, not asserted
    assert run.frames.shape == (120, 64, 64, 3)
    np.testing.assert_allclose(run.timestamps, np.arange(120) / 30.0)
    # Standstill at pose A: the first frames have identical poses and identical images.
    for i in range(1, 10):
        np.testing.assert_array_equal(run.rotations[i], run.rotations[0])
        np.testing.assert_array_equal(run.translations[i], run.translations[0])
        np.testing.assert_array_equal(run.frames[i], run.frames[0])
    assert not np.array_equal(run.rotations[40], run.rotations[0])
    # Landscape -> portrait: 90 degrees of roll about the optical axis between pose A and pose B.
    assert abs(abs(_roll_deg(run.rotations[-1]) - _roll_deg(run.rotations[0])) - 90.0) < 3.0
    assert run.metadata["roll_deg"][0] == 0.0 and run.metadata["roll_deg"][-1] == 90.0
    # Back and forth: the azimuth of the camera centre changes direction at least twice.
    az = np.unwrap(np.arctan2(run.translations[:, 1], run.translations[:, 0]))
    turns = np.sum(np.diff(np.sign(np.round(np.diff(az), 6))[np.round(np.diff(az), 6) != 0]) != 0)
    assert turns >= 2
    # Gyroscope readings integrate back to the orientations.
    imu = run.metadata["imu"]
    times, gyro = torch.tensor(imu["times"]), torch.tensor(imu["gyro"])
    R_int = integrate_gyroscope(times, gyro, torch.from_numpy(run.rotations[0]))
    assert float(geodesic_angle(R_int, torch.from_numpy(run.rotations)).max()) < 1e-6
    assert np.abs(np.asarray(imu["gyro"])[:10]).max() == 0.0  # at rest


def test_phone_run_deterministic_and_seeded():
    a = phone_run(n_frames=24, size=32, seed=5, imu_noise=None)
    b = phone_run(n_frames=24, size=32, seed=5, imu_noise=None)
    c = phone_run(n_frames=24, size=32, seed=6, imu_noise=None)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.rotations, b.rotations)
    assert not np.array_equal(a.frames, c.frames)
    assert "imu" not in a.metadata and a.metadata["seed"] == 5
    with pytest.raises(ValueError, match="n_frames must be an integer >= 20"):
        phone_trajectory(10)


def test_phone_run_object_tracks_the_pose():
    run = phone_run(n_frames=60, size=64, seed=2, scene=("soccerball",), imu_noise=None)
    centre = np.asarray(run.metadata["scene"]["objects"][0]["position"])
    labels = _masks(run)
    checked = 0
    for i in range(len(run)):
        ys, xs = np.nonzero(labels[i] == 0)
        if len(xs) < 20 or xs.min() == 0 or ys.min() == 0 or xs.max() == 63 or ys.max() == 63:
            continue  # partly outside the frame: the centroid is biased
        ((u, v),), z = project_points(centre, run.rotations[i], run.translations[i], run.intrinsics)
        assert z[0] > 0 and np.hypot(xs.mean() - u, ys.mean() - v) < 1.0, i
        checked += 1
    assert checked > 40


def test_simulated_gyro_is_exact_for_constant_rate_and_noisy_when_asked():
    omega = np.array([0.3, -0.2, 0.5])
    times = np.sort(np.random.default_rng(0).uniform(0, 2, 40))
    R = so3_exp(torch.from_numpy(times[:, None] * omega)).numpy()
    traj = PoseTrajectory(times, R, np.zeros((40, 3)))
    t, gyro = simulate_imu(traj)
    np.testing.assert_allclose(gyro, np.broadcast_to(omega, (40, 3)), atol=1e-9)
    _, noisy = simulate_imu(traj, noise=0.05, seed=1)
    err = noisy - gyro
    assert 0.03 < err.std() < 0.07
    R_int = integrate_gyroscope(torch.from_numpy(t), torch.from_numpy(noisy), torch.from_numpy(R[0]))
    drift = float(geodesic_angle(R_int, torch.from_numpy(R)).max())
    assert 1e-4 < drift < 0.1


def test_random_objects_render_in_their_urdf_colour():
    import numpy as np

    from sequences.synthetic import random_object_names, turntable_run

    names = random_object_names(0, 3)
    assert names == ["random_000", "random_001", "random_002"]
    run = turntable_run("random_000", azimuths_deg=[0.0, 90.0], elevations_deg=(20.0,), size=32)
    frames = np.asarray(run.frames)
    obj = (frames < 250).any(-1)  # not the white background
    assert obj.mean() > 0.02
    # random_000's URDF colour is rgba 0.04 0.07 0.91: a blue object, shaded
    mean = frames[obj].mean(0)
    assert mean[2] > mean[0] + 40 and mean[2] > mean[1] + 40
    with pytest.raises(ValueError, match="0 ... 999"):
        random_object_names(0, 1001)
    with pytest.raises(ValueError, match="random_000 ... random_999"):
        turntable_run("random_x", size=16)


def test_rendering_prints_nothing_of_its_own():
    """pybullet's C code announces its build time on import: a fresh process must print only its own."""
    import subprocess
    import sys
    from pathlib import Path

    code = "from sequences.synthetic import phone_run; phone_run(20, size=16, seed=0); print('done')"
    r = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=Path(__file__).resolve().parents[1],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "done\n" and "pybullet" not in r.stderr, (r.stdout, r.stderr)
