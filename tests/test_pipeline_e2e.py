"""End to end: a rendered camera run through encode -> GP -> decode, and the command line."""

import json
import os

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from sequences.pipeline import PipelineConfig, run_pipeline


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

    def fingerprint(self):
        from generative.backbones.registry import weights_fingerprint

        return weights_fingerprint(self)


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
    from viewgp.keyframes import parse_keyframes

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
    from sequences.pipeline.baselines import PIXEL_BASELINES

    assert set(saved["methods"]) == {"view", "linear", "time", "view+warp", "view+detail", "view+fuse", "per-frame",
                                     *PIXEL_BASELINES} - {"px-blend-pose"}
    assert saved["output_size"] == 32 and saved["headline"] == "view+fuse"
    # The detail layer and the keyframe baselines give every observed frame back exactly ...
    obs = np.asarray(run.observed)
    for name in ("view+warp", "view+fuse", "px-nearest-time", "px-blend"):
        assert np.max(np.asarray(saved["methods"][name]["per_frame"]["mse"])[obs]) == 0.0, name
    # (the residual layer smooths at its fitted noise, which noise-free keyframes make tiny)
    assert np.max(np.asarray(saved["methods"]["view+detail"]["per_frame"]["mse"])[obs]) < 1e-3
    # ... the decoded frames of a random backbone do not; between keyframes (past the opening
    # standstill, whose frames are identical) nothing is exact.
    assert np.min(np.asarray(view["per_frame"]["mse"])[obs]) > 1e-3
    assert np.mean(np.asarray(saved["methods"]["view+detail"]["per_frame"]["mse"])[~obs]) > 1e-3
    assert m["timings"]["encode_s"] >= 0
    # A second run reuses the cached encodings.
    assert len(os.listdir(tmp_path / "cache")) == 1


def test_novel_views_on_an_azimuth_sweep(tmp_path):
    from sequences.pipeline.views import azimuth_sweep
    from sequences.synthetic import turntable_run

    run = turntable_run("duck", azimuths_deg=range(0, 360, 45), elevations_deg=(20.0,), size=32)
    query = azimuth_sweep(run, np.arange(0, 360, 30))
    m = run_pipeline(run, TinyBackbone(), str(tmp_path), PipelineConfig(methods=("view", "nearest"), n_samples=2, progress=False), query=query)
    assert _video_frames(tmp_path / "interpolated.mp4") == 12
    assert m["n_frames"] == 12 and "mse_all" not in m["methods"]["view"]
    # novel views have no place in the run's time: pose-based pixel baselines only, warped by pose neighbours
    assert set(m["methods"]) == {"view", "nearest", "view+warp", "view+detail", "view+fuse", "px-nearest-pose", "px-blend-pose", "px-flow", "px-gp"}


def test_cli_errors_are_one_line_and_exit_nonzero(tmp_path, capsys):
    from sequences.cli import main

    rc = main(["interpolate", "--video", str(tmp_path / "missing.mp4"), "--poses", str(tmp_path / "p.txt"),
               "--backbone", str(tmp_path / "b.pt"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.startswith("viewgp interpolate: error:") and "\n" not in err
    rc = main(["views", "--backbone", "x", "--out", str(tmp_path / "o")])
    assert rc == 1 and "--run DIR" in capsys.readouterr().err


def _write_run_files(tmp_path, n=12, offset=0.0):
    """A small rendered video (10 fps) and TUM poses whose stamps start ``offset`` seconds later."""
    from sequences.poses.formats import write_poses
    from sequences.poses.trajectory import PoseTrajectory
    from sequences.synthetic import phone_run
    from sequences.capture.video import write_video

    run = phone_run(n_frames=max(n, 20), size=32, seed=3)[:n]
    video = tmp_path / "run.mp4"
    write_video(video, np.asarray(run.frames), fps=10.0)
    poses = tmp_path / "poses.txt"
    traj = PoseTrajectory(np.arange(n) / 10.0 + offset, np.asarray(run.rotations), np.asarray(run.translations))
    write_poses(poses, traj, "tum")
    return video, poses


def test_cli_bad_inputs_give_one_clear_line(tmp_path, capsys):
    from sequences.cli import main

    video, poses = _write_run_files(tmp_path)
    ckpt = tmp_path / "tiny.safetensors"
    out = str(tmp_path / "o")
    # checkpoint missing
    rc = main(["interpolate", "--video", str(video), "--poses", str(poses), "--backbone", str(ckpt), "--out", out])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and "not found" in err and "tiny.safetensors" in err
    # unknown pose format
    rc = main(["interpolate", "--video", str(video), "--poses", str(poses), "--format", "nope", "--out", out])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and "nope" in err
    # poses that do not cover the video (stamps start an hour later)
    _, late = _write_run_files(tmp_path, offset=3600.0)
    rc = main(["smooth", "--video", str(video), "--poses", str(late), "--out", out])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and "no frame lies inside" in err


def test_lpips_goes_into_metrics_when_weights_are_given(tmp_path, phone):
    import torchvision

    from sequences.pipeline.evaluate import lpips_distance
    from viewgp.keyframes import parse_keyframes

    w = tmp_path / "weights"
    w.mkdir()
    torch.manual_seed(0)
    with torch.device("meta"):
        features = torchvision.models.alexnet(weights=None).features
    features = features.to_empty(device="cpu")
    for mod in features:
        if isinstance(mod, nn.Conv2d):
            mod.reset_parameters()
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, w / "alexnet-owt-7be5be79.pth")
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 192, 384, 256, 256))}, w / "alex.pth")

    run = phone.with_observed(parse_keyframes("every:5", len(phone)))
    cfg = PipelineConfig(methods=("view", "linear"), n_samples=2, progress=False, lpips_weights=str(w))
    m = run_pipeline(run, TinyBackbone(), str(tmp_path / "out"), cfg)
    assert m["lpips"] == "alexnet v0.1"
    view = m["methods"]["view"]
    assert len(view["per_frame"]["lpips"]) == 30 and view["lpips_held_out"] > 0
    assert np.isfinite(view["delta_smoothness_lpips"])
    # identical frames are at distance 0; the 16 px frames are upsampled to AlexNet's minimum size
    dist, reason = lpips_distance(str(w))
    assert reason is None
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    assert np.allclose(dist(frames, frames), 0, atol=1e-6)
    # a folder without the files is an error naming them; no folder and an empty hub cache just skips LPIPS
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth"):
        lpips_distance(str(tmp_path / "empty"))


def test_upscale_for_display_is_an_exact_integer_zoom():
    from sequences.pipeline.report import upscale_for_display

    f = np.arange(2 * 16 * 16 * 3, dtype=np.uint8).reshape(2, 16, 16, 3)
    up = upscale_for_display(f, 128)
    assert up.shape == (2, 128, 128, 3) and np.array_equal(up[:, ::8, ::8], f)
    assert upscale_for_display(f, 10) is f


def test_a_backbone_without_encoder_inverts_only_the_keyframes(tmp_path, phone):
    from generative.latents.invert import InversionConfig
    from viewgp.keyframes import parse_keyframes
    from tests.decoders import LinearDecoder

    poses = phone.pose_features(with_time=True)
    mask = parse_keyframes("greedy:6", len(phone), poses)
    assert mask.sum() == 6 and mask[0] and mask[-1]
    run = phone.with_observed(mask)
    cfg = PipelineConfig(methods=("view", "linear"), n_samples=2, progress=False,
                         inversion=InversionConfig(steps=30, lr=0.05))
    m = run_pipeline(run, LinearDecoder(12, kind="decoder-only"), str(tmp_path), cfg)
    inverted = list(tmp_path.glob("inversion-*/frame_*.pt"))
    assert sorted(int(p.stem[6:]) for p in inverted) == np.flatnonzero(mask).tolist()
    assert m["n_observed"] == 6 and np.isfinite(m["methods"]["view"]["mse_held_out"])
    assert np.isfinite(m["per_frame_reconstruction_mse"])
    # a second run reuses every inverted frame
    before = {p: p.stat().st_mtime_ns for p in inverted}
    run_pipeline(run, LinearDecoder(12, kind="decoder-only"), str(tmp_path), cfg)
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())


def test_cli_interpolate_with_a_stylegan2_generator_inverts_greedy_keyframes(tmp_path, capsys):
    from generative.backbones.stylegan2 import StyleGAN2Config, StyleGAN2Generator
    from sequences.cli import main
    from sequences.synthetic import phone_run

    torch.manual_seed(0)
    StyleGAN2Generator(StyleGAN2Config(resolution=16, style_dim=32, n_mlp=2, max_channels=16)).save_rosinality(tmp_path / "g.pt")
    phone_run(20, size=32, seed=2).save(str(tmp_path / "run"))
    rc = main(["interpolate", "--run", str(tmp_path / "run"), "--backbone", f"stylegan2:{tmp_path / 'g.pt'}",
               "--keyframes", "greedy:4", "--invert-steps", "3", "--method", "view", "linear", "--samples", "2",
               "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["n_observed"] == 4 and m["backbone"]["kind"] == "stylegan2"
    assert len(list((tmp_path / "o").glob("cache/inversion-*/frame_*.pt"))) == 4


def test_cli_interpolate_with_bayes_reports_nuts_diagnostics(tmp_path, capsys, monkeypatch):
    import generative.backbones.registry as gb
    from sequences.cli import main
    from sequences.synthetic import phone_run

    phone_run(24, size=32, seed=4).save(str(tmp_path / "run"))
    monkeypatch.setattr(gb, "load_backbone", lambda spec, device: TinyBackbone())
    rc = main(["interpolate", "--run", str(tmp_path / "run"), "--backbone", "x", "--keyframes", "every:3",
               "--method", "view", "--samples", "3", "--bayes", "--nuts", "20,20,1", "--out", str(tmp_path / "o"),
               "--quiet"])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    summary = m["methods"]["view"]["hyperparameters"]["bayes"]
    assert "divergences" in summary and summary["chains"] == 1
    assert _video_frames(tmp_path / "o" / "uncertainty.mp4") == 24
    assert main(["interpolate", "--run", str(tmp_path / "run"), "--bayes", "--nuts", "x", "--out", str(tmp_path / "p")]) == 2


def test_every_long_phase_shows_progress(tmp_path, phone, capsys):
    """Decoding (means, samples), the warp layer, scoring and every video have a bar of their own."""
    from viewgp.keyframes import parse_keyframes

    run = phone.with_observed(parse_keyframes("every:5", len(phone)))
    cfg = PipelineConfig(methods=("view", "linear"), n_samples=2, progress=True, precision="fp32")
    m = run_pipeline(run, TinyBackbone(), str(tmp_path), cfg)
    err = capsys.readouterr().err
    for label in ("encode", "decode per-frame", "decode view", "decode 2 samples", "warp keyframes", "score methods",
                  "write interpolated.mp4", "write comparison.mp4", "write uncertainty.mp4"):
        assert label in err, label
    for phase in ("decode_means_s", "decode_samples_s", "detail_s", "metrics_s", "videos_s", "plots_s", "report_s"):
        assert m["timings"][phase] >= 0, phase


def test_warp_diagnostics_are_scored_apart_from_the_methods(tmp_path, phone):
    """per-frame+warp and truth+warp see the held-out frames: scored, never compared as methods; on frames
    that do not move (the run opens with a standstill) the warp from the true frames gives them back."""
    from sequences.pipeline.report import aggregate_table, methods_table
    from viewgp.keyframes import parse_keyframes

    run = phone.with_observed(parse_keyframes("every:5", len(phone)))
    cfg = PipelineConfig(methods=("view", "linear"), n_samples=2, progress=False, media=False, diagnostics=True)
    m = run_pipeline(run, TinyBackbone(), str(tmp_path), cfg)
    rows = m["methods"]
    assert rows["per-frame+warp"]["kind"].startswith("diagnostic") and rows["truth+warp"]["kind"].startswith("diagnostic")
    truth_mse = np.asarray(rows["truth+warp"]["per_frame"]["mse"])
    obs = np.asarray(run.observed)
    assert truth_mse[obs].max() == 0.0  # a keyframe warped onto itself
    assert rows["truth+warp"]["mse_held_out"] < rows["view+warp"]["mse_held_out"]
    table = aggregate_table({"run": rows}, "runs")
    assert "truth+warp" in table and "best with a backbone (truth+warp)" not in table
    assert "best with a backbone (per-frame+warp)" not in table
    plain = run_pipeline(run, TinyBackbone(), str(tmp_path / "plain"), PipelineConfig(methods=("view",), n_samples=2,
                                                                                    progress=False, media=False))
    assert "truth+warp" not in plain["methods"]
    assert "view+warp / per-frame+warp:" in table and "view+warp / truth+warp:" in table
    text = methods_table(m)
    assert "view+warp / truth+warp:" in text and "*" not in text.split("truth+warp")[1].split("\n")[0]


def _without_timings(metrics):
    """metrics.json without what a run's speed changes (seconds)."""
    if isinstance(metrics, dict):
        return {k: _without_timings(v) for k, v in metrics.items() if k not in ("timings", "fit_seconds")}
    if isinstance(metrics, list):
        return [_without_timings(v) for v in metrics]
    return metrics


def test_chunked_run_scores_as_one_chunk(tmp_path, phone, monkeypatch):
    """Steps 4-7 stream through the targets a chunk at a time; the chunk size changes no score (pairs
    of frames across chunk borders, calibration sums, the headline's sd ablation included), and the
    videos, posters and strips still hold every frame (the grid video written in blocks smaller than
    a chunk, as 1080 px panels are)."""
    from sequences.pipeline import report
    from viewgp.keyframes import parse_keyframes

    run = phone.with_observed(parse_keyframes("every:5", len(phone)))
    found = {}
    for chunk in (7, 1000):
        if chunk == 7:
            monkeypatch.setattr(report, "GRID_BLOCK_BYTES", 1)  # one grid frame at a time
        else:
            monkeypatch.undo()
        cfg = PipelineConfig(methods=("view", "linear"), n_samples=3, progress=False, chunk_frames=chunk, diagnostics=True)
        found[chunk] = run_pipeline(run, TinyBackbone(), str(tmp_path / str(chunk)), cfg)
        assert _video_frames(tmp_path / str(chunk) / "comparison.mp4") == 30
    # (the uncertainty panel's colour scale is the first chunk's, so the grid's posters may differ there)
    for name in ("interpolated_poster.png", "strip_view.png", "strip_ground_truth.png", "comparison_poster.png"):
        a, b = (cv2.imread(str(tmp_path / str(c) / name)) for c in (7, 1000))
        assert a is not None and a.shape == b.shape, name
        if name != "comparison_poster.png":
            assert np.array_equal(a, b), name
    a, b = (json.loads(json.dumps(_without_timings(found[c]))) for c in (7, 1000))
    assert a.keys() == b.keys() and a["methods"].keys() == b["methods"].keys()
    for name in a["methods"]:
        ea, eb = a["methods"][name], b["methods"][name]
        assert ea["per_frame"]["mse"] == pytest.approx(eb["per_frame"]["mse"], rel=1e-9, abs=1e-12), name
        assert ea["delta_smoothness_rmse"] == pytest.approx(eb["delta_smoothness_rmse"], rel=1e-9), name
        if "calibration" in eb:
            assert ea["calibration"]["nlpd"] == pytest.approx(eb["calibration"]["nlpd"], rel=1e-9), name
            assert ea["calibration"]["reliability"] == eb["calibration"]["reliability"], name
    ablation = [k for k in b["calibration_ablation"] if k != "method"]
    for row in ablation:
        assert a["calibration_ablation"][row]["coverage_90"] == pytest.approx(b["calibration_ablation"][row]["coverage_90"])


def test_long_run_limits_scored_and_sampled_frames(tmp_path, phone):
    """Past ``score_frames`` targets SSIM, LPIPS and the calibration are scored at evenly spaced frames
    (``None`` elsewhere), MSE at all; past ``sample_frames`` the samples are decoded at one frame per
    window and carried to the others: the sd maps stay finite and the calibration meaningful."""
    from viewgp.keyframes import parse_keyframes
    from sequences.pipeline.latents import sample_stride

    assert sample_stride(30, None) == 1 and sample_stride(30, 30) == 1 and sample_stride(30, 10) == 3
    run = phone.with_observed(parse_keyframes("every:5", len(phone)))
    cfg = PipelineConfig(methods=("view",), n_samples=3, progress=False, score_frames=10, sample_frames=10,
                         chunk_frames=12, media=False)
    m = run_pipeline(run, TinyBackbone(), str(tmp_path), cfg)
    assert m["scored_frames"] == {"mse": 30, "ssim_lpips_calibration": 10}
    view = m["methods"]["view"]
    ssim = view["per_frame"]["ssim"]
    assert len(ssim) == 30 and sum(v is not None for v in ssim) == 10 and ssim[0] is not None and ssim[-1] is not None
    assert all(v is not None for v in view["per_frame"]["mse"]) and np.isfinite(view["ssim_held_out"])
    cal = view["calibration"]
    assert 0.0 < cal["coverage_90"] <= 1.0 and np.isfinite(cal["nlpd"])
