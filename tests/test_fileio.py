"""Atomic output files and the one image reader/writer."""

import os
import stat

import numpy as np
import pytest

from generative.fileio import atomic_write, atomic_write_json, remove_stale_temporaries
from generative.imageio import list_images, read_image, write_image


def test_atomic_write_gives_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_json(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text().strip().startswith("{")


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")

    def boom(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "m.json", {"a": float("nan")})
    assert not (tmp_path / "m.json").exists()


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / ".video.mp4.ab12cd34.mp4").write_bytes(b"x")
    (tmp_path / ".keep").write_text("not ours")
    (tmp_path / "real.png").write_bytes(b"x")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".video.mp4.ab12cd34.mp4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep", "real.png"]


def test_image_round_trip_and_alpha(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    write_image(tmp_path / "a.png", img)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), img)
    import cv2

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent: the background shows
    cv2.imwrite(str(tmp_path / "b.png"), rgba)
    np.testing.assert_array_equal(read_image(tmp_path / "b.png", background=(10, 20, 30))[0, 0], [10, 20, 30])
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.png"]
    (tmp_path / "c.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="c.png"):
        read_image(tmp_path / "c.png")
