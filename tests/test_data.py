import cv2
import numpy as np
import pytest
import torch

from generative.images.datasets import ImageFolderDataset, SyntheticImageDataset, render_synthetic_image, stack_images
from generative.images.geometry import square_resize


def _write(path, img_rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    left_red = np.zeros((20, 30, 3), np.uint8)  # non-square: centre crop keeps columns 5..24
    left_red[:, :15] = (255, 0, 0)
    _write(tmp_path / "a.png", left_red)
    _write(tmp_path / "sub" / "b.PNG", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    _write(tmp_path / "sub" / "deeper" / "c.jpg", np.full((10, 10, 3), 128, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_image_folder_reads_recursively_with_flip_items(folder):
    ds = ImageFolderDataset(folder, 8)
    assert [p.name for p in ds.files] == ["a.png", "b.PNG", "c.jpg"]
    assert len(ds) == 6  # 3 images + their mirror images
    x = ds[0]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert x[0, 0, 0] == 1.0 and x[1, 0, 0] == -1.0  # red on the left
    assert torch.equal(ds[3], torch.flip(ds[0], dims=[2]))  # item N + i is image i mirrored
    assert torch.allclose(ds[2], torch.full((3, 8, 8), 128 / 127.5 - 1), atol=0.02)  # JPEG grey
    ds.resolution = 4  # the trainer changes resolution per phase
    assert ds[1].shape == (3, 4, 4)
    assert len(ImageFolderDataset(folder, 8, flip=False)) == 3


def test_image_folder_cache_gives_the_same_images(folder):
    plain = ImageFolderDataset(folder, 8, flip=False)
    cached = ImageFolderDataset(folder, 8, flip=False, cache=True, cache_resolution=16)
    for i in range(3):
        assert torch.allclose(plain[i], cached[i], atol=2 / 127.5)


def test_empty_or_missing_folder_errors(tmp_path):
    (tmp_path / "only_text").mkdir()
    (tmp_path / "only_text" / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"no images in .*only_text.*\.jpg, \.jpeg, \.png"):
        ImageFolderDataset(tmp_path / "only_text", 8)
    with pytest.raises(FileNotFoundError, match="missing"):
        ImageFolderDataset(tmp_path / "missing", 8)


def test_corrupt_image_is_skipped_with_a_warning(folder):
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    ds = ImageFolderDataset(folder, 8, flip=False)
    bad = [p.name for p in ds.files].index("broken.png")
    with pytest.warns(RuntimeWarning, match="broken.png"):
        x = ds[bad]
    assert torch.equal(x, ds[(bad + 1) % ds.num_images()])  # served by the next readable image
    batch = torch.stack([ds[i] for i in range(len(ds))])  # a full pass never crashes
    assert batch.shape == (4, 3, 8, 8)


def test_all_corrupt_images_is_a_clear_error(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"garbage")
    ds = ImageFolderDataset(tmp_path, 8)
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="none of the 1 images"):
        ds[0]


def test_square_resize_centre_crops():
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, 5:15] = 200
    out = square_resize(img, 10)
    assert out.shape == (10, 10, 3) and (out == 200).all()


def test_synthetic_images_are_seeded_and_resolution_consistent():
    a = render_synthetic_image(3, 32, seed=1)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    assert np.array_equal(a, render_synthetic_image(3, 32, seed=1))
    assert not np.array_equal(a, render_synthetic_image(4, 32, seed=1))
    assert not np.array_equal(a, render_synthetic_image(3, 32, seed=2))
    small = render_synthetic_image(3, 16, seed=1).astype(float)
    down = cv2.resize(a, (16, 16), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(small - down).mean() < 6  # the same scene at both resolutions
    ds = SyntheticImageDataset(5, 16, seed=1, offset=3)
    assert np.array_equal(ds.image_uint8(0, 32), a)
    assert stack_images(ds, range(5)).shape == (5, 3, 16, 16)
    with pytest.raises(ValueError, match="size must be >= 1"):
        SyntheticImageDataset(0, 16)


def _photos(tmp_path):
    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate([(48, 72), (60, 40)]):
        _write(tmp_path / "photos" / f"p{i}.png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return tmp_path / "photos"


def test_photo_crops_are_seeded_per_item_at_several_scales(tmp_path):
    from generative.images.datasets import PhotoCropDataset

    root = _photos(tmp_path)
    ds = PhotoCropDataset(root, 8, crops_per_image=50, min_scale=0.25, seed=3, flip=False)
    assert ds.num_images() == 100 and len(ds) == 100
    boxes = [ds.crop_box(k) for k in range(100)]
    assert {b[0] for b in boxes} == {0, 1} and all(b[0] == k % 2 for k, b in enumerate(boxes))  # photograph k % n
    for photo, y0, x0, side in boxes:  # inside the photograph, between a quarter and all of its short side
        h, w = (48, 72) if photo == 0 else (60, 40)
        assert min(h, w) // 4 - 1 <= side <= min(h, w) and y0 + side <= h and x0 + side <= w
    sides = np.array([b[3] for b in boxes if b[0] == 0])
    assert sides.min() < 20 and sides.max() > 36  # coarse and fine crops both occur
    again = PhotoCropDataset(root, 8, crops_per_image=50, min_scale=0.25, seed=3, flip=False)
    assert torch.equal(ds[17], again[17])  # a resumed run sees the same crop
    assert not torch.equal(ds[17], PhotoCropDataset(root, 8, crops_per_image=50, seed=4, flip=False)[17])
    ds.resolution = 4
    assert ds[0].shape == (3, 4, 4)


def test_photo_crop_without_jitter_is_the_area_resized_crop(tmp_path):
    from generative.images.datasets import PhotoCropDataset
    from generative.images.imageio import read_image

    root = _photos(tmp_path)
    ds = PhotoCropDataset(root, 8, crops_per_image=4, jitter=0.0, flip=False)
    photo, y0, x0, side = ds.crop_box(2)
    want = square_resize(read_image(ds.files[photo])[y0 : y0 + side, x0 : x0 + side], 8)
    assert np.array_equal(ds.image_uint8(2), want)
    jittered = PhotoCropDataset(root, 8, crops_per_image=4, jitter=0.3, flip=False).image_uint8(2)
    assert jittered.shape == want.shape and not np.array_equal(jittered, want)


def test_photo_crops_refuse_missing_or_empty_folders(tmp_path):
    from generative.images.datasets import PhotoCropDataset

    with pytest.raises(FileNotFoundError, match="nowhere"):
        PhotoCropDataset(tmp_path / "nowhere", 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in"):
        PhotoCropDataset([_photos(tmp_path), tmp_path / "empty"], 8)


def test_concatenated_datasets_share_flips_and_resolution(tmp_path):
    from generative.images.datasets import ConcatImageDataset, PhotoCropDataset

    synth = SyntheticImageDataset(3, 8, flip=False)
    crops = PhotoCropDataset(_photos(tmp_path), 8, crops_per_image=2, flip=False)
    both = ConcatImageDataset([synth, crops], flip=True)
    assert both.num_images() == 7 and len(both) == 14
    assert torch.equal(both[1], synth[1]) and torch.equal(both[4], crops[1])
    assert torch.equal(both[7 + 4], torch.flip(crops[1], dims=[2]))
    both.resolution = 4
    assert synth.resolution == 4 and crops.resolution == 4 and both[6].shape == (3, 4, 4)
    with pytest.raises(IndexError):
        both.image_uint8(7)


def test_public_data_folders_follow_their_environment_variables(tmp_path, monkeypatch):
    from generative.public_data import PUBLIC_DATA, missing_reason, public_data_folder

    monkeypatch.setenv("VIEWGP_NATURAL", str(tmp_path))
    assert public_data_folder("natural") == tmp_path
    monkeypatch.setenv("VIEWGP_CAPTURES", str(tmp_path / "absent"))
    found = public_data_folder("captures")  # an absent override falls back to ../shared/data/captures, if any
    assert found is None or found.name == "captures"
    assert "VIEWGP_CAPTURES" in missing_reason("captures") and set(PUBLIC_DATA) == {"natural", "captures", "trajectories"}
    with pytest.raises(ValueError, match="unknown public data 'faces'"):
        public_data_folder("faces")
