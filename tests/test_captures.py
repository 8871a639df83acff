"""Real-capture layouts made from our own rendered run (poses known exactly): transforms.json and COLMAP
binary models read back to the same camera-to-world poses, posed image folders, frame timing with a
video, ``viewgp import`` / ``info`` and ``viewgp interpolate --images``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from generative.images.imageio import write_image
from sequences.capture.load import load_capture
from sequences.poses.formats import has_times, read_poses, write_poses
from sequences.run import CameraRun
from sequences.poses.trajectory import PoseTrajectory

F = np.diag([1.0, -1.0, -1.0])
N = 8


@pytest.fixture(scope="module")
def rendered():
    from sequences.synthetic import phone_run

    # Past the opening standstill, so that every frame has its own pose.
    return phone_run(n_frames=40, size=32, seed=1)[slice(8, 40, 4)]


def _images(folder: Path, run: CameraRun, names: list[str]) -> Path:
    for name, k in zip(names, range(len(run))):
        write_image(folder / name, run.frame(k))
    return folder


def _transforms_json(scene: Path, run: CameraRun) -> Path:
    """Written by hand, as instant-ngp does: OpenGL camera axes, principal point with pixel centres at +0.5."""
    K = run.intrinsics
    frames = []
    for k in reversed(range(len(run))):  # listed out of order; half without the extension
        M = np.eye(4)
        M[:3, :3], M[:3, 3] = run.rotations[k] @ F, run.translations[k]
        frames.append({"file_path": f"./images/frame_{k}" + (".png" if k % 2 else ""), "transform_matrix": M.tolist()})
    doc = {"fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2] + 0.5, "cy": K[1, 2] + 0.5, "w": 32, "h": 32, "frames": frames}
    _images(scene / "images", run, [f"frame_{k}.png" for k in range(len(run))])
    path = scene / "transforms.json"
    path.write_text(json.dumps(doc))
    return path


def _colmap_model(folder: Path, run: CameraRun, names: list[str]) -> Path:
    meta = {"names": names, "intrinsics": run.intrinsics.tolist(), "image_size": [32, 32]}
    write_poses(folder / "images.bin", PoseTrajectory(np.arange(len(run), dtype=float), run.rotations, run.translations,
                                                     metadata=meta), "colmap_bin")
    return folder


def _assert_same_poses(a, b, atol=1e-9):
    np.testing.assert_allclose(a.rotations, b.rotations, atol=atol, rtol=0)
    np.testing.assert_allclose(a.translations, b.translations, atol=atol, rtol=0)


def test_transforms_json_of_a_rendered_run_reads_back_exactly(tmp_path, rendered):
    path = _transforms_json(tmp_path / "scene", rendered)
    traj = read_poses(path)
    assert traj.metadata["names"][:3] == ["images/frame_0", "images/frame_1.png", "images/frame_2"]
    _assert_same_poses(traj, rendered)
    run = load_capture(poses=path)  # the images lie beside the transforms.json
    _assert_same_poses(run, rendered)
    np.testing.assert_array_equal(run.frames[:], np.asarray(rendered.frames))
    np.testing.assert_allclose(run.intrinsics, rendered.intrinsics, atol=1e-12)
    assert run.metadata["has_times"] is False and run.metadata["source_format"] == "nerf"


def test_missing_images_are_one_warning_with_the_count(tmp_path, rendered):
    path = _transforms_json(tmp_path / "scene", rendered)
    for k in (2, 5):
        (tmp_path / "scene" / "images" / f"frame_{k}.png").unlink()
    with pytest.warns(UserWarning) as rec:
        run = load_capture(poses=path)
    messages = [str(w.message) for w in rec]
    assert len(messages) == 1 and messages[0].startswith(f"2 of {N} frames listed in") and "'images/frame_2'" in messages[0]
    assert len(run) == N - 2
    _assert_same_poses(run, rendered[np.array([0, 1, 3, 4, 6, 7])])


def test_colmap_binary_model_of_a_rendered_run(tmp_path, rendered):
    names = [f"cam/{k:03d}.jpg" for k in range(N)]
    model = _colmap_model(tmp_path / "sparse" / "0", rendered, names)
    traj = read_poses(model)
    _assert_same_poses(traj, rendered)
    np.testing.assert_allclose(traj.metadata["intrinsics"], rendered.intrinsics, atol=1e-12)
    # Its text twin holds the same model.
    write_poses(tmp_path / "txt" / "images.txt", traj, "colmap")
    twin = read_poses(tmp_path / "txt" / "images.txt")
    _assert_same_poses(twin, traj, atol=1e-12)
    assert twin.metadata["cameras"] == traj.metadata["cameras"]
    # Images matched by name: a COLMAP image folder with one image more and one less than the model.
    folder = _images(tmp_path / "images", rendered, [n.replace(".jpg", ".png") for n in names])
    (folder / "cam" / "003.png").rename(folder / "cam" / "extra.png")
    with pytest.raises(ValueError, match="none of the 8 images named"):
        load_capture(images=folder, poses=model)  # the model names .jpg files; these are .png
    write_poses(model / "images.bin", PoseTrajectory(traj.timestamps, traj.rotations, traj.translations, metadata=dict(
        traj.metadata, names=[n.replace(".jpg", ".png") for n in names])), "colmap_bin")
    with pytest.warns(UserWarning) as rec:
        run = load_capture(images=folder, poses=model)
    messages = sorted(str(w.message) for w in rec)
    assert messages[0].startswith("1 of 8 frames listed in") and messages[1].startswith("1 of 8 images in")
    assert "'extra.png'" in messages[1]
    _assert_same_poses(run, rendered[np.array([0, 1, 2, 4, 5, 6, 7])])
    np.testing.assert_array_equal(run.frame(3), rendered.frame(4))


def test_image_folder_by_sorted_order_checks_counts(tmp_path, rendered):
    folder = _images(tmp_path / "imgs", rendered, [f"{k}.png" for k in range(N)])  # 10.png sorts after 9.png
    poses = tmp_path / "poses.txt"
    t = 100.0 + 0.1 * np.arange(N)
    write_poses(poses, PoseTrajectory(t, rendered.rotations, rendered.translations), "tum")
    run = load_capture(images=folder, poses=poses)
    _assert_same_poses(run, rendered)
    np.testing.assert_array_equal(run.timestamps, t)
    (folder / "7.png").unlink()
    with pytest.raises(ValueError, match=r"has 7 images but .*poses.txt has 8 poses.*--frame-times FILE"):
        load_capture(images=folder, poses=poses)
    # With one time per image the poses are interpolated at the images' times.
    times = tmp_path / "times.txt"
    times.write_text("".join(f"{v}\n" for v in t[:7] + 0.05))
    run = load_capture(images=folder, poses=poses, frame_times=times)
    assert len(run) == 7 and has_times(run.trajectory)
    np.testing.assert_allclose(run.timestamps, t[:7] + 0.05)


def _video(tmp_path: Path, run: CameraRun) -> Path:
    from sequences.capture.video import write_video

    path = tmp_path / "run.mp4"
    write_video(path, np.asarray(run.frames), fps=10.0)
    return path


def test_video_with_colmap_needs_frame_times_or_one_frame_per_pose(tmp_path, rendered):
    video = _video(tmp_path, rendered)
    names = [f"frame_{k:04d}.png" for k in range(N)]
    full = _colmap_model(tmp_path / "all", rendered, names)
    run = load_capture(video=video, poses=full / "images.bin")  # one frame per pose: paired in order
    _assert_same_poses(run, rendered, atol=1e-12)
    np.testing.assert_allclose(run.timestamps, 0.1 * np.arange(N), atol=1e-9)
    np.testing.assert_allclose(run.intrinsics, rendered.intrinsics, atol=1e-12)
    every2 = _colmap_model(tmp_path / "half", rendered[::2], names[::2])
    with pytest.raises(ValueError, match=r"has no timestamps, so its 4 poses cannot be matched by time to the 8 frames.*"
                                         r"Fix: give --frame-times FILE"):
        load_capture(video=video, poses=every2)
    from sequences.capture.video import VideoFrames

    times = tmp_path / "posed_times.txt"
    times.write_text("".join(f"{float(t)!r}\n" for t in VideoFrames(video).timestamps[::2]))  # the posed frames' own times
    run = load_capture(video=video, poses=every2, frame_times=times)
    assert len(run) == 7  # frames 0..6 lie within the posed frames' times; frame 7 is after the last
    _assert_same_poses(run[::2], rendered[:7:2], atol=1e-9)


def test_cli_import_and_info(tmp_path, rendered, capsys):
    from sequences.cli import main

    path = _transforms_json(tmp_path / "scene", rendered)
    out = tmp_path / "run"
    assert main(["import", "--poses", str(path), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "frames:" in printed and "32x32" in printed and "nerf" in printed
    saved = CameraRun.load(out)
    _assert_same_poses(saved, rendered)
    np.testing.assert_array_equal(saved.frames, np.asarray(rendered.frames))
    assert saved.metadata["names"][0] == "images/frame_0" and saved.metadata["has_times"] is False
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    for label in ("frames:", "resolution:", "time span:", "pose format:", "intrinsics:", "observed:"):
        assert label in info, label
    assert "none; timestamps are the frame index" in info and f"{N} of {N} frames" in info
    assert main(["info", str(path)]) == 0
    assert f"images found:   {N} of {N} beside transforms.json" in capsys.readouterr().out
    rc = main(["import", "--poses", str(path), "--out", str(out)])  # never into an existing run
    assert rc == 1 and "already exists" in capsys.readouterr().err


def test_cli_refusals_are_one_line(tmp_path, rendered, capsys):
    from sequences.cli import main

    video = _video(tmp_path, rendered)
    model = _colmap_model(tmp_path / "half", rendered[::2], [f"{k}.png" for k in range(0, N, 2)])
    rc = main(["import", "--video", str(video), "--poses", str(model), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and "--frame-times FILE" in err
    ambiguous = tmp_path / "poses.csv"
    ambiguous.write_text("0,0,0,0,1,0,0,0\n1,0,0,0,1,0,0,0\n")
    rc = main(["info", str(ambiguous)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and "--format advio|arkit" in err


def test_cli_interpolate_from_images_and_transforms_json(tmp_path, rendered, monkeypatch):
    import generative.backbones.registry
    from sequences.cli import main
    from tests.test_pipeline_e2e import TinyBackbone

    monkeypatch.setattr(generative.backbones.registry, "load_backbone", lambda path, device: TinyBackbone())
    path = _transforms_json(tmp_path / "scene", rendered)
    out = tmp_path / "out"
    rc = main(["interpolate", "--images", str(tmp_path / "scene"), "--poses", str(path), "--keyframes", "every:3",
               "--method", "view", "linear", "--samples", "2", "--steps", "2", "--quiet", "--out", str(out)])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_frames"] == N and 3 <= metrics["n_observed"] < N
    assert np.isfinite(metrics["methods"]["view"]["mse_held_out"])
    assert (out / "interpolated.mp4").is_file()
