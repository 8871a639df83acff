"""Uncertainty you can trust: calibration metrics, the leave-one-out scale, the variance terms of the
decoded frames and the per-run report (metrics.json, reliability.png, report.html)."""

import json
import math
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

from viewgp import poses as P
from viewgp.calibration import calibration_summary, coverage, interval_half_width, nlpd, normal_quantile, shrunk_variance
from viewgp.latent_gp import LatentGP
from viewgp.predict import gp_predict, predict_residuals


# ------------------------------------------------------------------------------------ metrics
def test_coverage_nlpd_and_sd_ratio_of_gaussian_errors():
    rng = np.random.default_rng(0)
    sd = rng.uniform(0.5, 2.0, 200_000)
    err = rng.normal(size=sd.shape) * sd
    c = calibration_summary(err, sd)
    for p in (50, 90, 95):
        assert c[f"coverage_{p}"] == pytest.approx(p / 100, abs=0.005)
    assert c["sd_ratio"] == pytest.approx(1.0, abs=0.01)
    assert c["reliability"]["0.25"] == pytest.approx(0.25, abs=0.005)
    # Over-confident by 2x: the 95% interval is really a +-0.98 sd one.
    half = calibration_summary(err, sd / 2)
    assert half["coverage_95"] == pytest.approx(math.erf(0.98 / math.sqrt(2)), abs=0.005)
    assert half["sd_ratio"] == pytest.approx(2.0, abs=0.02)
    assert half["nlpd"] > c["nlpd"]
    assert nlpd([0.0], [1.0]) == pytest.approx(0.5 * math.log(2 * math.pi))
    assert coverage([1.0, 3.0], [1.0, 1.0], [0.95]) == {0.95: 0.5}
    assert normal_quantile(0.975) == pytest.approx(1.959964, abs=1e-6)
    with pytest.raises(ValueError, match="sd"):
        calibration_summary([1.0], [-1.0])


def test_student_t_intervals_and_density():
    from scipy import stats

    assert interval_half_width(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert interval_half_width(0.95, dof=2) == pytest.approx(4.302653, abs=1e-6)
    assert interval_half_width(0.95, dof=float("inf")) == pytest.approx(1.959964, abs=1e-6)
    with pytest.raises(ValueError, match="dof"):
        interval_half_width(0.95, dof=0)
    # Errors from a t_3 with scale sd: Gaussian intervals under-cover (heavy tails); the t intervals
    # are right at every level.
    rng = np.random.default_rng(1)
    sd = rng.uniform(0.5, 2.0, 200_000)
    err = stats.t.rvs(3, size=sd.shape, random_state=rng) * sd
    gauss, t = calibration_summary(err, sd), calibration_summary(err, sd, dof=3)
    assert gauss["coverage_95"] < 0.9 and gauss["dof"] is None
    for p in (50, 90, 95):
        assert t[f"coverage_{p}"] == pytest.approx(p / 100, abs=0.005)
    assert t["nlpd"] < gauss["nlpd"] and t["dof"] == 3.0
    e = np.array([0.3, -2.0, 5.0])
    assert nlpd(e, [1.0, 2.0, 0.5], dof=4) == pytest.approx(-np.mean(stats.t.logpdf(e, 4, scale=[1.0, 2.0, 0.5])))
    assert nlpd(e, [1.0] * 3, dof=1e8) == pytest.approx(nlpd(e, [1.0] * 3), rel=1e-5)
    # rms_z is the factor the sd is off by, frame by frame; sd_ratio pools errors and sds.
    c = calibration_summary([0.1, 1.0], [1.0, 0.1])
    assert c["sd_ratio"] == pytest.approx(1.0) and c["rms_z"] == pytest.approx(math.sqrt((0.01 + 100) / 2))


def test_gp_prediction_is_student_t_with_the_observed_frames_as_degrees_of_freedom():
    from viewgp.predict import LOO_MAX_FRAMES, scale_dof

    gp, x, z = _fitted(n=12)
    p = gp_predict("view", x[::2], z[::2].numpy(), x[1::2], steps=0)
    assert p.dof == 6.0
    # predictive_var is always the leave-one-out-scaled one (``calibrated`` only says what the samples are)
    assert gp_predict("view", x[::2], z[::2].numpy(), x[1::2], steps=0, calibrated=False).dof == 6.0
    assert scale_dof(1) is None and scale_dof(LOO_MAX_FRAMES + 1) is None and scale_dof(2) == 2.0


def test_shrunk_variance_keeps_the_mean_and_lifts_exact_zeros():
    v = np.array([0.0, 0.0, 1.0, 3.0])
    s = shrunk_variance(v, n=2)
    assert s.mean() == pytest.approx(v.mean())
    assert np.all(s > 0) and s[0] == pytest.approx(0.5)  # (2 * 0 + 2 * 1) / 4
    assert np.allclose(shrunk_variance(v, n=10_000), v, atol=1e-3)  # many keyframes: their own value


# ------------------------------------------------------------------------------------ leave-one-out
def _fitted(n=25, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 6, n, dtype=torch.float64)
    rv = torch.stack([0.4 * torch.sin(t), 0.2 * torch.cos(0.5 * t), 0.1 * t], -1)
    x = P.pose_features(P.so3_exp(rv), torch.stack([t / 3, torch.sin(t), 0 * t], -1), t)
    z = torch.sin(x[:, :12] @ torch.randn(12, d, generator=g, dtype=torch.float64))
    z = z + 0.05 * torch.randn(n, d, generator=g, dtype=torch.float64)
    gp = LatentGP(mean="zero", noise=0.01, steps=40).fit(x, z)
    return gp, x, z


def test_closed_form_leave_one_out_equals_refitting_without_each_frame():
    gp, x, z = _fitted()
    mu, var = gp.loo()
    state = gp.state_dict()
    for i in (0, 7, 24):
        keep = torch.arange(len(x)) != i
        other = LatentGP(mean="zero", optimizer=None)  # same hyper-parameters, frame i left out
        other.load_state_dict(state)
        other.fit(x[keep], z[keep])
        m, v = other.predict(x[i : i + 1], include_noise=True)
        assert torch.allclose(mu[i], m[0], atol=1e-8)
        assert float(var[i]) == pytest.approx(float(v[0]), rel=1e-8)
    scaled = ((z - mu) ** 2 / var[:, None]).mean()
    assert gp.loo_scale() == pytest.approx(float(scaled), rel=1e-10)
    assert gp.loo_error() == pytest.approx(float(((z - mu) ** 2).mean()), rel=1e-10)


def test_gp_predict_is_calibrated_by_the_leave_one_out_scale():
    gp, x, z = _fitted(n=40, d=6, seed=1)
    obs, held = torch.arange(40) % 3 != 1, torch.arange(40) % 3 == 1
    p = gp_predict("view", x[obs], z[obs].numpy(), x[held], n_samples=400, seed=0)
    assert p.loo_scale == pytest.approx(p.model.loo_scale())
    assert np.allclose(p.predictive_var, p.loo_scale * (p.var + p.noise))
    # The samples are of observations at that variance (function + noise, scaled).
    spread = p.samples.var(axis=0).mean(axis=-1)
    assert np.allclose(spread, p.predictive_var, rtol=0.25)
    raw = gp_predict("view", x[obs], z[obs].numpy(), x[held], n_samples=400, seed=0, calibrated=False)
    assert np.allclose(raw.samples.var(axis=0).mean(axis=-1), raw.var, rtol=0.25)


def test_residual_variance_is_never_zero_for_a_pixel_every_keyframe_gets_right():
    _, x, _ = _fitted()
    rng = np.random.default_rng(0)
    res = rng.normal(0, 0.05, (25, 6))
    res[:, 0] = 0.0  # e.g. a background pixel the decoder reconstructs exactly in every keyframe
    _, var, _ = predict_residuals("view", x[:25], torch.from_numpy(res), x[:3])
    assert np.all(var > 0) and var[:, 0].min() > 1e-6


def test_reconstruction_variance_is_shrunk_towards_the_frame_mean():
    from generative.latents.uncertainty import combine_sd, reconstruction_variance

    frames = np.full((3, 16, 16, 3), 255, np.uint8)
    recon = frames.copy()
    recon[:, :8] = 127  # the top half reconstructed badly, the bottom half exactly
    v = reconstruction_variance(frames, recon, blur=0)
    assert v[12, 5] > 0 and v[2, 5] > v[12, 5]
    assert v.mean() == pytest.approx(0.5 * (128 / 255) ** 2, rel=1e-5)
    sd = combine_sd(np.zeros((2, 8, 8), np.float32), v, 16)
    assert sd.shape == (2, 16, 16) and np.allclose(sd[0] ** 2, v, rtol=1e-5)


# ------------------------------------------------------------------------------------ pipeline outputs
@pytest.fixture(scope="module")
def demo_like(tmp_path_factory):
    from sequences.pipeline import PipelineConfig, run_pipeline
    from sequences.synthetic import phone_run
    from tests.test_pipeline_e2e import TinyBackbone
    from viewgp.keyframes import parse_keyframes

    out = tmp_path_factory.mktemp("run")
    run = phone_run(n_frames=30, size=32, seed=0)
    run = run.with_observed(parse_keyframes("every:5", len(run)))
    cfg = PipelineConfig(methods=("view", "linear", "time"), n_samples=4, progress=False)
    run_pipeline(run, TinyBackbone(), str(out), cfg)
    return out


def test_metrics_json_carries_calibration_for_every_method_with_uncertainty(demo_like):
    m = json.loads((demo_like / "metrics.json").read_text())
    with_sd = {k for k, v in m["methods"].items() if "calibration" in v}
    assert {"view", "time", "view+warp", "view+detail", "view+fuse", "px-gp"} <= with_sd
    assert not with_sd & {"linear", "px-nearest-time", "px-blend", "per-frame"}  # no uncertainty to score
    for k in with_sd:
        c = m["methods"][k]["calibration"]
        assert 0 <= c["coverage_50"] <= c["coverage_90"] <= c["coverage_95"] <= 1 and math.isfinite(c["nlpd"])
    parts = [k for k, v in m["calibration_ablation"].items() if isinstance(v, dict)]
    assert parts[0].startswith("latent function only") and parts[-2].startswith("+ leave-one-out")
    n = m["n_observed"]
    assert n == 7 and parts[-1] == f"+ Student-t ({n} keyframes)"
    # Each added variance term widens the intervals, and so do the t intervals of the same sd.
    cov = [m["calibration_ablation"][k]["coverage_95"] for k in parts]
    assert all(b >= a - 1e-9 for a, b in zip(cov, cov[1:-2]))
    assert cov[-1] >= cov[-2] and m["calibration_ablation"][parts[-1]]["dof"] == n
    # Every calibrated method's intervals are Student-t with the keyframe count as degrees of freedom.
    assert {m["methods"][k]["calibration"]["dof"] for k in with_sd} == {n}
    assert {c["dof"] for c in m["latent_calibration"].values()} == {n}
    assert set(m["latent_calibration"]) == {"view", "time"}


def test_report_html_is_self_contained_and_names_every_method(demo_like):
    page = (demo_like / "report.html").read_text()
    m = json.loads((demo_like / "metrics.json").read_text())
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page)  # nothing fetched from a network
    for ref in re.findall(r"(?:src|href|poster)='([^']+)'", page):
        assert (demo_like / ref).is_file(), ref
    for name in m["methods"]:
        assert f"<td>{name}</td>" in page
    assert "class=\"best\"" in page and "reliability.png" in page and (demo_like / "reliability.png").stat().st_size > 0


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None, reason="no Chromium installed (apt install chromium) to open report.html")
def test_report_opens_and_its_videos_play_in_headless_chromium(demo_like, tmp_path):
    browser = _chromium()
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--mute-audio", "--allow-file-access-from-files"]
    shot = tmp_path / "page.png"
    subprocess.run(args + [f"--screenshot={shot}", "--window-size=1280,900", (demo_like / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    from generative.images.imageio import read_image

    img = read_image(str(shot))
    assert img.shape[:2] == (900, 1280) and img.std() > 10  # rendered, not a blank page
    # A probe page next to the report: each video decodes (H.264 in MP4) and reports its frame size.
    probe = demo_like / "probe.html"
    probe.write_text("<!doctype html><body><pre id=out></pre><script>const out=document.getElementById('out');"
                     "for (const n of ['comparison.mp4','uncertainty.mp4']) { const v=document.createElement('video');"
                     "v.muted=true; v.src=n; v.onloadeddata=()=>{out.textContent+=n+' '+v.videoWidth+'x'+v.videoHeight+'\\n'};"
                     "v.onerror=()=>{out.textContent+=n+' error\\n'}; document.body.appendChild(v);}</script>")
    try:
        dom = subprocess.run(args + ["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                             check=True, capture_output=True, text=True, timeout=120).stdout
    finally:
        os.remove(probe)
    for name in ("comparison.mp4", "uncertainty.mp4"):
        found = re.search(re.escape(name) + r" (\d+)x(\d+)", dom)
        assert found and int(found.group(1)) > 0, f"{name} did not play: {dom[-300:]}"


@pytest.mark.parametrize("dof", [None, 3.0])
def test_summary_equals_the_direct_formulas_with_one_sd_per_rgb_pixel(dof):
    """The one-pass summary (sorted half-widths, sd broadcast inside the division) against the
    definitions evaluated value by value on the materialised sd."""
    from scipy import stats

    from viewgp.calibration import LEVELS, RELIABILITY_LEVELS, calibration_summary, interval_half_width

    rng = np.random.default_rng(4)
    err = (rng.standard_normal((5, 6, 7, 3)) * 0.1).astype(np.float32)
    sd = np.abs(rng.standard_normal((5, 6, 7, 1))) * 0.1
    sd[0, 0, 0] = 0.0  # clamped to 1e-12
    full = np.maximum(np.broadcast_to(sd, err.shape), 1e-12).reshape(-1)
    e = np.abs(err.astype(np.float64)).reshape(-1)
    got = calibration_summary(err, sd, dof)
    for p in LEVELS:
        assert got[f"coverage_{round(100 * p)}"] == np.mean(e / full <= interval_half_width(p, dof))
    for p in RELIABILITY_LEVELS:
        assert got["reliability"][str(p)] == np.mean(e / full <= interval_half_width(p, dof))
    dist = stats.norm(scale=full) if dof is None else stats.t(dof, scale=full)
    assert got["nlpd"] == pytest.approx(-np.mean(dist.logpdf(e)), rel=1e-12)
    assert got["rms_z"] == pytest.approx(np.sqrt(np.mean((e / full) ** 2)), rel=1e-12)
    assert got["sd_ratio"] == pytest.approx(np.sqrt(np.mean(e**2)) / np.sqrt(np.mean(full**2)), rel=1e-12)
    with pytest.raises(ValueError, match="broadcast"):
        calibration_summary(err, sd[:, :, :3], dof)
    with pytest.raises(ValueError, match="finite"):
        calibration_summary(err, -sd, dof)


def test_fusion_follows_the_surer_prediction_per_pixel():
    from generative.latents.uncertainty import fuse_by_variance

    a = np.full((3, 2, 2, 3), 200, np.uint8)
    b = np.full((3, 2, 2, 3), 100, np.uint8)
    sd_a = np.array([[[0.1, 0.1], [0.0, 0.2]]] * 3, np.float32)
    sd_b = np.array([[[0.1, 0.3], [0.0, 0.1]]] * 3, np.float32)
    out, sd = fuse_by_variance(a, sd_a, b, sd_b, keep_a=np.array([False, True, False]), chunk=2)
    f = out[0, ..., 0]
    assert f[0, 0] == 150  # equal variances: the mean
    assert f[0, 1] == 190  # a nine times surer: w = 0.09 / 0.1 = 0.9
    assert f[1, 0] == 200  # neither has variance: a (the warp, exact at keyframes)
    assert f[1, 1] == 120  # b surer: w = 0.01 / 0.05 = 0.2
    assert np.array_equal(out[1], a[1]) and np.allclose(sd[1], sd_a[1])  # kept frames are a, with a's sd
    assert np.allclose(sd[0], [[0.1, 0.9 * 0.1 + 0.1 * 0.3], [0.0, 0.2 * 0.2 + 0.8 * 0.1]])  # fully correlated errors
    assert np.array_equal(out[2], out[0])  # chunking changes nothing
    with pytest.raises(ValueError, match="same"):
        fuse_by_variance(a, sd_a[:, :1], b, sd_b)
