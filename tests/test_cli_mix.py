"""viewgp mix and viewgp sample --conditional on a tiny exported automodulator (16 px, blocks 4 / 8 px coarse,
16 px intermediate), run in-process."""

import cv2
import numpy as np
import pytest
import torch

import generative
from generative.backbones.automodulator import AutomodulatorAutoencoder, AutomodulatorConfig
from generative.backbones.registry import to_uint8
from generative.latents.mixing import SCALES, conditional_latents
from sequences import cli
from sequences.cli import backbones, options
from sequences.cli.image_files import load_images


@pytest.fixture(autouse=True)
def _float32_decoding(cpu_without_bf16):
    """Outputs are compared with float32 library calls bit for bit: decide precision as an AVX2 CPU would."""


R = 16
PAD = 2  # grid border


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = AutomodulatorAutoencoder(AutomodulatorConfig(resolution=R, latent_dim=16, channel_base=64, max_channels=8)).eval()
    path = tmp_path_factory.mktemp("model") / "auto16.safetensors"
    model.export(path)
    return path


@pytest.fixture(scope="module")
def model(ckpt):
    return generative.load(ckpt).eval()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Four distinct 16 px RGB images (smooth colour blobs + stripes)."""
    d = tmp_path_factory.mktemp("img")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        img = cv2.resize(small, (R, R), interpolation=cv2.INTER_LINEAR)
        img[:, i * 3 : i * 3 + 2] = 255 - img[:, i * 3 : i * 3 + 2]
        p = d / f"im{i}.png"
        assert cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        paths.append(p)
    return paths


def _read(path):
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _x(model, *paths):
    return load_images([str(p) for p in paths], R)[1]


def _cell(grid, i, j, r=R):
    y, x = PAD + i * (r + PAD), PAD + j * (r + PAD)
    return grid[y : y + r, x : x + r]


# ------------------------------------------------------------------------------------------ viewgp mix
def test_mix_writes_image_of_model_size_matching_the_model_api(ckpt, model, images, tmp_path):
    a, b = images[0], images[1]
    out = tmp_path / "mix.png"
    assert cli.main(["mix", "--backbone", str(ckpt), "--device", "cpu", "--coarse", str(a), "--intermediate", str(b), "--out", str(out)]) == 0
    got = _read(out)
    assert got.shape == (R, R, 3)
    with torch.no_grad():
        za, zb = model.encode(_x(model, a)), model.encode(_x(model, b))
        ref = model.mix(za, zb)  # independent route: the model's own scale mixing
    assert np.array_equal(got, to_uint8(ref)[0])
    # a different intermediate image changes the output
    out2 = tmp_path / "mix2.png"
    assert cli.main(["mix", "--backbone", str(ckpt), "--device", "cpu", "--coarse", str(a), "--intermediate", str(images[2]), "--out", str(out2)]) == 0
    assert not np.array_equal(_read(out2), got)


def test_mix_with_one_image_everywhere_equals_reconstruction(ckpt, model, images, tmp_path):
    a = images[3]
    out = tmp_path / "same.png"
    assert cli.main(["mix", "--backbone", str(ckpt), "--device", "cpu", "--coarse", str(a), "--intermediate", str(a), "--out", str(out)]) == 0
    with torch.no_grad():
        rec = model.reconstruct(_x(model, a))
    assert np.array_equal(_read(out), to_uint8(rec)[0])
    # an omitted scale takes the coarser image: --coarse alone is the reconstruction too
    out2 = tmp_path / "coarse_only.png"
    assert cli.main(["mix", "--backbone", str(ckpt), "--device", "cpu", "--coarse", str(a), "--out", str(out2)]) == 0
    assert np.array_equal(_read(out2), _read(out))


def test_mix_cut_form(ckpt, model, images, tmp_path):
    a, b = images[0], images[1]
    out = tmp_path / "cut.png"
    assert cli.main(["mix", "--backbone", str(ckpt), "--device", "cpu", "--a", str(a), "--b", str(b), "--cut", "1", "--out", str(out)]) == 0
    with torch.no_grad():
        ref = model.mix_at(model.encode(_x(model, a)), model.encode(_x(model, b)), 1)
    assert np.array_equal(_read(out), to_uint8(ref)[0])


def test_mixing_grid_layout_and_cells(ckpt, model, images, tmp_path):
    rows, cols = images[:2], images[1:4]
    out = tmp_path / "grid.png"
    argv = ["mix", "--backbone", str(ckpt), "--device", "cpu", "--grid", "--rows", *map(str, rows), "--cols", *map(str, cols), "--out", str(out)]
    assert cli.main(argv) == 0
    grid = _read(out)
    # (rows + 1) x (cols + 1) cells of R px with a 2 px border
    assert grid.shape == ((len(rows) + 1) * (R + PAD) + PAD, (len(cols) + 1) * (R + PAD) + PAD, 3)
    assert (_cell(grid, 0, 0) == 255).all()  # blank corner
    xa, xb = _x(model, *rows), _x(model, *cols)
    for j in range(len(cols)):
        assert np.array_equal(_cell(grid, 0, j + 1), to_uint8(xb[j : j + 1])[0])  # column sources
    with torch.no_grad():
        za, zb = model.encode(xa), model.encode(xb)
        for i in range(len(rows)):
            assert np.array_equal(_cell(grid, i + 1, 0), to_uint8(xa[i : i + 1])[0])  # row sources
            for j in range(len(cols)):
                # default cut = the coarse blocks (4, 8 px): coarse from the row image, the rest from the column
                ref = model.mix_at(za[i : i + 1], zb[j : j + 1], 2)
                assert np.array_equal(_cell(grid, i + 1, j + 1), to_uint8(ref)[0]), (i, j)


# ------------------------------------------------------------------------------ sample --conditional
def test_conditional_samples_keep_the_coarse_latent(ckpt, model, images, tmp_path):
    a = images[0]
    out = tmp_path / "cond.png"
    argv = ["sample", "--conditional", "--backbone", str(ckpt), "--device", "cpu", "--coarse", str(a), "-n", "4", "--seed", "3", "--out", str(out)]
    assert cli.main(argv) == 0
    grid = _read(out)
    assert grid.shape == (2 * (R + PAD) + PAD, 2 * (R + PAD) + PAD, 3)  # ceil(sqrt(4)) = 2 per row
    with torch.no_grad():
        za = model.encode(_x(model, a))
        zs = conditional_latents(model, {"coarse": za}, 4, torch.Generator().manual_seed(3))
        # coarse blocks (0, 1): the image's code in every sample; intermediate block 2: a fresh draw each
        for p in (0, 1):
            assert torch.equal(zs[p], za.expand(4, -1))
        assert (zs[2][0] - zs[2][1]).abs().max() > 1e-3
        # the decoder features after the fixed coarse blocks are identical across samples ...
        feats = model.decoder_ema.features([torch.nn.functional.normalize(z, dim=1) for z in zs], 2, noise=False)
        assert torch.equal(feats, feats[:1].expand_as(feats))
        ref = model.decode_mixed(zs)
    # ... the written samples are exactly those decodes, and they differ (the fine detail is random)
    cells = [_cell(grid, k // 2, k % 2) for k in range(4)]
    for k in range(4):
        assert np.array_equal(cells[k], to_uint8(ref[k : k + 1])[0]), k
    assert not np.array_equal(cells[0], cells[1])


def test_cli_scale_flags_are_the_library_scales():
    assert options.SCALE_FLAGS == SCALES  # spelled out in the CLI so that building the parser skips torch


# ------------------------------------------------------------------------------------------ errors
def _err(capsys, argv, code=2):
    """The one-line error of ``argv``: exit 2 for a usage error, 1 for a file that does not work."""
    assert cli.main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_clear_errors(ckpt, images, tmp_path, capsys, monkeypatch):
    base = ["--backbone", str(ckpt), "--device", "cpu", "--out", str(tmp_path / "o.png")]
    a, b = str(images[0]), str(images[1])
    assert "image not found" in _err(capsys, ["mix", *base, "--coarse", str(tmp_path / "nope.png")], 1)
    assert "no fine blocks" in _err(capsys, ["mix", *base, "--coarse", a, "--fine", b])
    assert "--cut must be in 0 ... 3" in _err(capsys, ["mix", *base, "--a", a, "--b", b, "--cut", "4"])
    assert "needs all of --a, --b and --cut" in _err(capsys, ["mix", *base, "--a", a, "--b", b])
    assert "exactly one form" in _err(capsys, ["mix", *base])
    assert "exactly one form" in _err(capsys, ["mix", *base, "--coarse", a, "--a", a, "--b", b, "--cut", "1"])
    assert "needs --rows" in _err(capsys, ["mix", *base, "--grid", "--rows", a])
    assert "only go with --conditional" in _err(capsys, ["sample", *base, "--coarse", a])
    assert "at least one scale" in _err(capsys, ["sample", *base, "--conditional"])
    assert "backbone checkpoint not found" in _err(capsys, ["mix", "--backbone", str(tmp_path / "x.pt"), "--coarse", a, "--out", "o.png"], 1)
    # a backbone without per-block latents
    class Plain(torch.nn.Module):
        kind, resolution, latent_shape, has_encoder = "pioneer", R, (16,), True

    monkeypatch.setattr(backbones, "load_backbone", lambda path, device: Plain())
    assert "needs an automodulator backbone" in _err(capsys, ["mix", *base, "--coarse", a], 1)
    assert "needs an automodulator backbone" in _err(capsys, ["sample", *base, "--conditional", "--coarse", a], 1)
    assert not (tmp_path / "o.png").exists()
