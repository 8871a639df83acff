"""``viewgp demo`` and the bundled default backbone (weights made by examples/train_default_backbone.py)."""

import json

import cv2
import numpy as np
import pytest
import torch

import generative
from generative.backbones.registry import DEFAULT_BACKBONE, load_default


def test_bundled_backbone_loads_and_reconstructs_better_than_the_mean():
    from generative.images.geometry import square_resize
    from sequences.synthetic import phone_run

    model = load_default()
    assert model.kind.endswith("pioneer") and model.resolution == 64 and model.latent_geometry == "sphere"
    assert DEFAULT_BACKBONE.stat().st_size < 20 * 2**20  # "a few MB" of package data
    frames = np.stack([square_resize(f, 64) for f in np.asarray(phone_run(24, size=128, seed=0).frames)])
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        z = model.encode(x)
        recon = model.decode(z)
    assert torch.allclose(z.norm(dim=1), torch.ones(len(z)), atol=1e-4)
    err_model = (recon - x).pow(2).mean()
    err_mean = (x.mean(0, keepdim=True) - x).pow(2).mean()  # even the run's own mean image loses
    assert err_model < err_mean


def test_missing_bundled_weights_name_the_file(tmp_path, monkeypatch):
    import generative.backbones.registry as gb

    monkeypatch.setattr(gb, "DEFAULT_BACKBONE", tmp_path / "pioneer64_default.safetensors")
    with pytest.raises(FileNotFoundError, match="pioneer64_default.safetensors"):
        gb.load_default()
    from sequences.cli import main

    assert main(["demo", "--out", str(tmp_path / "d"), "--quiet"]) == 1


def test_demo_writes_everything(tmp_path, capsys):
    from sequences.cli import main

    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--frames", "30", "--keyframes", "every:5", "--size", "64", "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0 and str(out) in text and "view" in text
    for name in ("interpolated.mp4", "comparison.mp4", "uncertainty.mp4"):
        cap = cv2.VideoCapture(str(out / name))
        n = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            n += 1
            assert min(frame.shape[:2]) >= 256  # upscaled for viewing
        assert n == 30, name
    for name in ("comparison_strip.png", "latent_trajectories.png", "kernel_matrices.png", "strip_view.png"):
        assert cv2.imread(str(out / name)) is not None, name
    m = json.loads((out / "metrics.json").read_text())
    from sequences.pipeline.baselines import PIXEL_BASELINES

    assert set(m["methods"]) == {"view", "time", "linear", "view+warp", "view+detail", "view+fuse", "per-frame",
                                 *PIXEL_BASELINES} - {"px-blend-pose"}
    assert m["output_size"] == 64 and m["headline"] == "view+fuse"
    assert "best no-backbone baseline" in text and "px-gp" in text
    view = m["methods"]["view"]
    assert view["posterior_sd_held_out"] > view["posterior_sd_observed"]
    assert np.isfinite(view["mse_held_out"])
    # the rendered run is saved and can be fed to the other commands
    from sequences.run import CameraRun

    assert len(CameraRun.load(str(out / "run"))) == 30


def test_interpolate_defaults_to_the_bundled_backbone(tmp_path, capsys):
    from sequences.cli import main
    from sequences.synthetic import phone_run

    phone_run(20, size=32, seed=5).save(str(tmp_path / "run"))
    rc = main(["interpolate", "--run", str(tmp_path / "run"), "--keyframes", "ends", "--method", "view", "linear",
               "--samples", "2", "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["backbone"]["kind"] == generative.load_default().kind and m["n_observed"] == 2


def test_demo_takes_other_weights_and_scores_the_warp_diagnostics(tmp_path, capsys):
    from sequences.cli import main

    rc = main(["demo", "--out", str(tmp_path / "d"), "--frames", "20", "--keyframes", "every:5", "--size", "64",
               "--method", "view", "--backbone", str(DEFAULT_BACKBONE), "--diagnostics", "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0
    m = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert m["methods"]["truth+warp"]["kind"].startswith("diagnostic")
    assert "view+warp / per-frame+warp:" in text and "view+warp / truth+warp:" in text
    assert main(["demo", "--out", str(tmp_path / "e"), "--backbone", str(tmp_path / "none.safetensors"), "--quiet"]) == 1
    assert "none.safetensors" in capsys.readouterr().err
