"""End to end: a rendered camera run through encode -> GP -> decode, and the command line."""

import json
import os

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from sequences.pipeline import PipelineConfig, run_pipeline
from sequences.run import CameraRun


class TinyBackbone(nn.Module):
    """A 16 px sphere-latent autoencoder with random weights: enough to exercise the data flow."""

    kind = "tiny"
    resolution = 16
    latent_shape = (24,)
    latent_geometry = "sphere"
    has_encoder = True

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.enc = nn.Linear(3 * 4 * 4, 24)
        self.dec = nn.Linear(24, 3 * 8 * 8)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))

    def encode(self, x):
        h = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        return nn.functional.normalize(self.enc(h), dim=1)

    def decode(self, z):
        x = torch.tanh(self.dec(z)).reshape(-1, 3, 8, 8)
        return nn.functional.interpolate(x, size=16, mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def phone():
    from sequences.synthetic import phone_run

    return phone_run(n_frames=30, size=32, seed=0)


def _video_frames(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_interpolation_writes_valid_outputs(tmp_path, phone):
    from sequences.pipeline import parse_keyframes

    run = phone.with_observed(parse_keyframes("every:5", len(phone)))
    cfg = PipelineConfig(methods=("view", "linear", "time"), n_samples=3, progress=False, cache_dir=str(tmp_path / "cache"))
    m = run_pipeline(run, TinyBackbone(), str(tmp_path), cfg)
    for name in ("interpolated.mp4", "comparison.mp4", "uncertainty.mp4"):
        assert _video_frames(tmp_path / name) == 30, name
    for name in ("comparison_strip.png", "strip_view.png", "latent_trajectories.png", "kernel_matrices.png"):
        img = cv2.imread(str(tmp_path / name))
        assert img is not None and img.size > 0, name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["n_observed"] == int(run.observed.sum())
    view = saved["methods"]["view"]
    assert len(view["per_frame"]["mse"]) == 30 and np.isfinite(view["mse_held_out"])
    # The GP is less certain where it saw no frame.
    assert view["posterior_sd_held_out"] > view["posterior_sd_observed"]
    assert set(saved["methods"]) == {"view", "linear", "time"}
    assert m["timings"]["encode_s"] >= 0
    # A second run reuses the cached encodings.
    assert len(os.listdir(tmp_path / "cache")) == 1


def test_novel_views_on_an_azimuth_sweep(tmp_path):
    from sequences.pipeline import azimuth_sweep
    from sequences.synthetic import turntable_run

    run = turntable_run("duck", azimuths_deg=range(0, 360, 45), elevations_deg=(20.0,), size=32)
    query = azimuth_sweep(run, np.arange(0, 360, 30))
    m = run_pipeline(run, TinyBackbone(), str(tmp_path), PipelineConfig(methods=("view", "nearest"), n_samples=2, progress=False), query=query)
    assert _video_frames(tmp_path / "interpolated.mp4") == 12
    assert m["n_frames"] == 12 and "mse_all" not in m["methods"]["view"]


def test_cli_errors_are_one_line_and_exit_nonzero(tmp_path, capsys):
    from sequences.cli import main

    rc = main(["interpolate", "--video", str(tmp_path / "missing.mp4"), "--poses", str(tmp_path / "p.txt"),
               "--backbone", str(tmp_path / "b.pt"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.startswith("viewgp interpolate: error:") and "\n" not in err
    rc = main(["views", "--backbone", "x", "--out", str(tmp_path / "o")])
    assert rc == 1 and "--run DIR" in capsys.readouterr().err
