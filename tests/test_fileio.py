"""Atomic output files and the one image reader/writer."""

import os
import stat

import numpy as np
import pytest

from generative.images.fileio import atomic_write, atomic_write_json, remove_stale_temporaries
from generative.images.imageio import list_images, read_image, write_image


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


def test_strict_read_accepts_only_8_bit_rgb(tmp_path):
    import cv2

    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    write_image(tmp_path / "rgb.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png", strict=True), rgb)
    cv2.imwrite(str(tmp_path / "grey.png"), np.zeros((4, 5), np.uint8))
    cv2.imwrite(str(tmp_path / "rgba.png"), np.zeros((4, 5, 4), np.uint8))
    cv2.imwrite(str(tmp_path / "deep.png"), np.zeros((4, 5, 3), np.uint16))
    for name in ("grey.png", "rgba.png", "deep.png"):
        assert read_image(tmp_path / name).shape == (4, 5, 3)  # converted when not strict
        with pytest.raises(ValueError, match=f"cannot read frame {tmp_path / name}: expected an 8-bit 3-channel image"):
            read_image(tmp_path / name, strict=True, what="frame")
    with pytest.raises(ValueError, match="cannot read frame .*missing.png: no such file"):
        read_image(tmp_path / "missing.png", what="frame")


def test_exif_orientation_is_applied_as_opencv_does(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    img = np.zeros((2, 6, 3), np.uint8)
    img[:, :3] = 255  # left half white
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    pil.save(tmp_path / "phone.png", exif=exif.tobytes())
    shown = read_image(tmp_path / "phone.png")
    assert shown.shape == (6, 2, 3) and (shown[:3] == 255).all() and (shown[3:] == 0).all()
    # pixels as stored where the alpha channel / stored layout matters
    assert read_image(tmp_path / "phone.png", strict=True).shape == (2, 6, 3)
