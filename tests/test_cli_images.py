"""viewgp reconstruct | sample | interpolate-images | attribute, run in-process on a tiny backbone."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from generative.latents import edit
from generative.backbones.registry import to_model_images, to_uint8
from generative.images.geometry import square_resize
from generative.images.imageio import list_images
from sequences import cli
from sequences.cli import backbones, image_files
from sequences.cli import images as cli_images


@pytest.fixture(autouse=True)
def _float32_decoding(cpu_without_bf16):
    """Outputs are compared with float32 library calls bit for bit: decide precision as an AVX2 CPU would."""


R = 16  # backbone resolution
PAD = 2  # grid border in pixels


class TinyConvBackbone(nn.Module):
    """16 px conv encoder/decoder with 8-d unit-sphere latents and random weights."""

    kind = "tiny_conv"
    resolution = R
    latent_shape = (8,)
    latent_geometry = "sphere"
    has_encoder = True

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 8, 4, 2, 1), nn.Flatten(), nn.Linear(128, 8))
        self.dec = nn.Sequential(nn.Linear(8, 128), nn.Unflatten(1, (8, 4, 4)), nn.Upsample(scale_factor=4), nn.Conv2d(8, 3, 3, 1, 1), nn.Tanh())

    def encode(self, x):
        return F.normalize(self.enc(x), dim=1)

    def decode(self, z):
        return self.dec(z)


@pytest.fixture
def backbone(monkeypatch):
    bb = TinyConvBackbone().eval()
    calls = []

    def fake_load(path, device):
        calls.append((path, device))
        return bb

    monkeypatch.setattr(backbones, "load_backbone", fake_load)
    bb.calls = calls
    return bb


def _write(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _folder(root, n, seed, size=(20, 24)):
    rng = np.random.default_rng(seed)
    for i in range(n):
        _write(root / f"img{i}.png", rng.integers(0, 256, size=size + (3,), dtype=np.uint8))
    return root


def _read_rgb(path):
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _grid_size(rows, cols):
    return (rows * (R + PAD) + PAD, cols * (R + PAD) + PAD)


# ------------------------------------------------------------------------------------------ image IO
def test_images_are_read_as_rgb_centre_cropped_and_resized(tmp_path):
    img = np.zeros((10, 30, 3), np.uint8)
    img[:, 10:20] = (255, 0, 0)  # a red centre square in RGB, flanked by black
    _write(tmp_path / "red.png", img)
    paths, x = image_files.load_images([str(tmp_path / "red.png")], 5)
    assert x.shape == (1, 3, 5, 5)
    torch.testing.assert_close(x[0, 0], torch.ones(5, 5))  # red channel first, crop kept only the red part
    torch.testing.assert_close(x[0, 1:], -torch.ones(2, 5, 5))
    (tmp_path / "gray").mkdir()
    cv2.imwrite(str(tmp_path / "gray" / "g.png"), np.full((8, 8), 128, np.uint8))
    _, g = image_files.load_images([str(tmp_path / "gray")], 4)
    assert g.shape == (1, 3, 4, 4)


def test_image_errors_are_clear(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in folder"):
        list_images([str(tmp_path / "empty")])
    with pytest.raises(FileNotFoundError, match="nothere"):
        list_images([str(tmp_path / "nothere")])
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image .*bad.png"):
        image_files.load_images([str(tmp_path / "bad.png")], 4)


def test_parse_lambdas():
    assert cli_images.parse_lambdas("-2,-1,0,1,2") == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert cli_images.parse_lambdas(" 0.5 , -.25") == [0.5, -0.25]
    for bad, what in (("1,a,2", "'a'"), ("", "empty"), ("1,,2", "''"), ("inf", "finite")):
        with pytest.raises(ValueError, match=what):
            cli_images.parse_lambdas(bad)


# -------------------------------------------------------------------------------------------- commands
def test_reconstruct_writes_each_reconstruction_and_a_comparison(backbone, tmp_path, capsys):
    src = _folder(tmp_path / "in", 3, seed=0)
    out = tmp_path / "out"
    rc = cli.main(["reconstruct", "--backbone", "model.pt", "--images", str(src), "--out", str(out), "--device", "cpu", "--batch-size", "2"])
    assert rc == 0
    assert backbone.calls == [("model.pt", "cpu")]
    frames = np.stack([square_resize(_read_rgb(src / f"img{i}.png"), R) for i in range(3)])
    expected = to_uint8(edit.reconstruct(backbone, to_model_images(frames)))
    for i in range(3):
        assert np.array_equal(_read_rgb(out / f"img{i}.png"), expected[i])  # RGB order survives the round trip
    assert _read_rgb(out / "comparison.png").shape[:2] == _grid_size(3, 2)
    assert "3 reconstructions" in capsys.readouterr().out


def test_sample_grid_is_seeded(backbone, tmp_path):
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    assert cli.main(["sample", "--backbone", "m.pt", "-n", "6", "--seed", "3", "--out", str(a)]) == 0
    assert cli.main(["sample", "--backbone", "m.pt", "-n", "6", "--seed", "3", "--out", str(b), "--batch-size", "4"]) == 0
    assert cli.main(["sample", "--backbone", "m.pt", "-n", "6", "--seed", "4", "--nrow", "6", "--out", str(c)]) == 0
    ga, gb, gc = _read_rgb(a), _read_rgb(b), _read_rgb(c)
    assert ga.shape[:2] == _grid_size(2, 3)  # ceil(sqrt(6)) = 3 per row
    assert np.array_equal(ga, gb)
    assert gc.shape[:2] == _grid_size(1, 6)
    z = edit.sample_latents(backbone, 6, torch.Generator().manual_seed(3))
    first = to_uint8(edit.decode_latents(backbone, z[:1]))[0]
    assert np.array_equal(ga[PAD : PAD + R, PAD : PAD + R], first)


def test_interpolate_two_images_strip_and_four_images_grid(backbone, tmp_path):
    src = _folder(tmp_path / "in", 4, seed=1)
    strip = tmp_path / "strip.png"
    files = [str(src / f"img{i}.png") for i in range(4)]
    assert cli.main(["interpolate-images", "--backbone", "m.pt", *files[:2], "--steps", "5", "--out", str(strip)]) == 0
    s = _read_rgb(strip)
    assert s.shape[:2] == _grid_size(1, 7)  # A | 5 steps | B
    # the first decoded step is the reconstruction of A
    frames = np.stack([square_resize(_read_rgb(src / "img0.png"), R)])
    rec_a = to_uint8(edit.reconstruct(backbone, to_model_images(frames)))[0]
    x0 = PAD + (R + PAD)
    assert np.array_equal(s[PAD : PAD + R, x0 : x0 + R], rec_a)
    grid = tmp_path / "grid.png"
    assert cli.main(["interpolate-images", "--backbone", "m.pt", *files, "--steps", "3", "--out", str(grid)]) == 0
    assert _read_rgb(grid).shape[:2] == _grid_size(3, 3)
    assert cli.main(["interpolate-images", "--backbone", "m.pt", *files[:3], "--out", str(grid)]) == 2  # usage


def test_attribute_edits_and_saves_the_vector(backbone, tmp_path):
    w, wo, imgs = _folder(tmp_path / "with", 4, seed=2), _folder(tmp_path / "without", 3, seed=3), _folder(tmp_path / "imgs", 2, seed=4)
    out = tmp_path / "out"
    # "--lambdas -2,..." (a value starting with '-') must parse as the value, not as an option
    rc = cli.main(["attribute", "--backbone", "m.pt", "--with", str(w), "--without", str(wo), "--images", str(imgs),
                   "--lambdas", "-2,-1,0,1,2", "--out", str(out)])  # fmt: skip
    assert rc == 0
    v = torch.load(out / "attribute_vector.pt")
    _, xa = image_files.load_images([str(w)], R)
    _, xb = image_files.load_images([str(wo)], R)
    torch.testing.assert_close(v, edit.attribute_vector(backbone, xa, xb))
    for name in ("img0.png", "img1.png"):
        assert _read_rgb(out / name).shape[:2] == _grid_size(1, 6)  # input + 5 lambdas
    assert _read_rgb(out / "grid.png").shape[:2] == _grid_size(2, 6)
    # re-use the saved vector
    out2 = tmp_path / "out2"
    rc = cli.main(["attribute", "--backbone", "m.pt", "--vector", str(out / "attribute_vector.pt"), "--images", str(imgs),
                   "--lambdas=0.5", "--out", str(out2)])  # fmt: skip
    assert rc == 0 and _read_rgb(out2 / "img0.png").shape[:2] == _grid_size(1, 2)


def test_attribute_input_errors_are_one_line(backbone, tmp_path, capsys):
    imgs = _folder(tmp_path / "imgs", 1, seed=5)
    (tmp_path / "empty").mkdir()
    cases = [  # exit 2: the command line is wrong; exit 1: a file is
        (["--with", str(imgs), "--without", str(imgs), "--lambdas", "1,x"], "bad --lambdas entry 'x'", 2),
        (["--with", str(tmp_path / "empty"), "--without", str(imgs)], "no images in folder", 1),
        (["--without", str(imgs)], "both --with and --without", 2),
        (["--vector", str(tmp_path / "v.pt")], "attribute vector file not found", 1),
    ]
    for extra, message, code in cases:
        rc = cli.main(["attribute", "--backbone", "m.pt", "--images", str(imgs), "--out", str(tmp_path / "o"), *extra])
        err = capsys.readouterr().err
        assert rc == code, extra
        assert message in err and err.count("\n") == 1, err
        assert not (tmp_path / "o").exists()  # nothing written


def test_missing_checkpoint_is_one_line_and_exit_1(tmp_path, capsys):
    src = _folder(tmp_path / "in", 1, seed=6)
    missing = tmp_path / "no_such_model.pt"
    rc = cli.main(["reconstruct", "--backbone", str(missing), "--images", str(src), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("viewgp reconstruct: error: backbone checkpoint not found") and str(missing) in err
    assert err.count("\n") == 1


def test_help_has_examples(capsys):
    for command in ("reconstruct", "sample", "interpolate-images", "attribute"):
        with pytest.raises(SystemExit) as exc:
            cli.main([command, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert "examples:" in text and f"viewgp {command}" in text and "--device" in text
        from generative.backbones.registry import registered_kinds

        flat = " ".join(text.split())  # help lines wrap anywhere
        assert f"(kinds: {', '.join(registered_kinds())})" in flat  # --backbone names the registry's kinds


def test_reconstruct_decodes_in_bfloat16_where_the_cpu_has_it_unless_told_fp32(backbone, tmp_path, monkeypatch):
    from generative import precision

    precision._auto.cache_clear()
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    src = _folder(tmp_path / "in", 2, seed=1)
    frames = np.stack([square_resize(_read_rgb(src / f"img{i}.png"), R) for i in range(2)])
    expected = to_uint8(edit.reconstruct(backbone, to_model_images(frames)))
    for flag, exact in (("auto", False), ("fp32", True)):
        out = tmp_path / flag
        assert cli.main(["reconstruct", "--backbone", "m.pt", "--images", str(src), "--out", str(out),
                         "--precision", flag]) == 0
        got = np.stack([_read_rgb(out / f"img{i}.png") for i in range(2)])
        diff = np.abs(got.astype(int) - expected.astype(int))
        assert (diff.max() == 0) == exact and diff.max() <= 8  # bfloat16: within a few intensity levels
    precision._auto.cache_clear()
