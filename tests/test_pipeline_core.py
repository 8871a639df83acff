"""The latent side of the pipeline: GP prediction vs baselines with a known latent trajectory."""

import numpy as np
import pytest
import torch

from sequences.pipeline.evaluate import delta_smoothness, frame_errors
from viewgp.keyframes import parse_keyframes
from viewgp.predict import linear_interpolation, predict_latents
from viewgp import poses as P


def _orbit_run(n=80, seed=0):
    """A camera circling an object twice with a wobble: the latent is a smooth function of the pose
    (not of time), so time-based interpolation between keyframes misses the second lap's detail."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 8, n, dtype=torch.float64)
    az = torch.linspace(0, 2 * 2 * np.pi, n, dtype=torch.float64) + 0.6 * torch.sin(3.1 * t)
    R = P.so3_exp(torch.stack([torch.zeros_like(az), torch.zeros_like(az), az], -1))
    T = torch.stack([torch.cos(az), torch.sin(az), torch.zeros_like(az)], -1) * 2.0
    x = P.pose_features(R, T, t)
    # True latents: a random smooth function of the view direction, D = 16.
    W = torch.randn(4, 16, generator=g, dtype=torch.float64)
    feats = torch.stack([torch.cos(az), torch.sin(az), torch.cos(2 * az), torch.sin(2 * az)], -1)
    z = (feats @ W).numpy()
    return x, t.numpy(), z


def test_parse_keyframes():
    assert parse_keyframes("ends", 5).tolist() == [True, False, False, False, True]
    assert parse_keyframes("every:3", 8).tolist() == [True, False, False, True, False, False, True, True]
    assert parse_keyframes("all", 3).all()
    with pytest.raises(ValueError, match="positive integer"):
        parse_keyframes("every:0", 5)
    with pytest.raises(ValueError, match="unknown keyframes"):
        parse_keyframes("some", 5)


def test_linear_interpolation_euclidean_and_sphere():
    t = np.array([0.0, 1.0, 3.0])
    z = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 0.0]])
    out = linear_interpolation(t, z, np.array([-1.0, 0.5, 2.0, 4.0]))
    np.testing.assert_allclose(out, [[0, 0], [0.5, 1.0], [2.0, 1.0], [3.0, 0.0]])
    zs = np.array([[1.0, 0.0], [0.0, 1.0]])
    mid = linear_interpolation(np.array([0.0, 1.0]), zs, np.array([0.5]), geometry="sphere")
    np.testing.assert_allclose(mid, [[np.sqrt(0.5), np.sqrt(0.5)]], atol=1e-12)


def test_view_gp_beats_linear_on_held_out_frames_and_is_less_certain_there():
    x, t, z = _orbit_run()
    obs = parse_keyframes("every:8", len(t))
    xo = x[torch.from_numpy(obs)]
    gp = predict_latents("view", xo, t[obs], z[obs], x, t, n_samples=4, steps=150)
    lin = predict_latents("linear", xo, t[obs], z[obs], x, t)
    held = ~obs
    err_gp = np.mean((gp.mean[held] - z[held]) ** 2)
    err_lin = np.mean((lin.mean[held] - z[held]) ** 2)
    assert err_gp < 0.5 * err_lin, (err_gp, err_lin)
    assert gp.var[held].mean() > 2 * gp.var[obs].mean()
    assert gp.samples.shape == (4, len(t), 16)
    assert lin.var is None


def test_few_keyframes_use_data_driven_hyperparameters():
    x, t, z = _orbit_run(40, seed=1)
    obs = parse_keyframes("ends", len(t))
    pred = predict_latents("view", x[torch.from_numpy(obs)], t[obs], z[obs], x, t)
    assert pred.fit_seconds >= 0 and np.isfinite(pred.mean).all()
    hp = pred.hyperparameters
    assert hp["noise"] > 0 and hp["outputscale"] > 0
    # Observed ends are reproduced up to the small noise; views unlike both ends are uncertain (the
    # middle of a two-lap orbit repeats the start's view, so it is not the most uncertain frame).
    np.testing.assert_allclose(pred.mean[[0, -1]], z[[0, -1]], atol=0.05 * np.abs(z).max())
    assert pred.var.max() > 10 * pred.var[[0, -1]].max()


def test_independent_and_nearest_baselines():
    x, t, z = _orbit_run(20)
    ind = predict_latents("independent", x, t, z, x, t)
    np.testing.assert_array_equal(ind.mean, z)
    with pytest.raises(ValueError, match="only defined where every query frame was encoded"):
        predict_latents("independent", x[:5], t[:5], z[:5], x, t)
    near = predict_latents("nearest", x[::2], t[::2], z[::2], x, t)
    np.testing.assert_array_equal(near.mean[::2], z[::2])


def test_frame_metrics():
    a = np.zeros((3, 4, 4, 3), np.uint8)
    b = a.copy()
    b[1] = 255
    err = frame_errors(a, b)
    assert err["mse"] == [0.0, 1.0, 0.0]
    assert err["psnr"][1] == pytest.approx(0.0)
    seq = np.stack([np.full((2, 2, 3), i * 10, np.uint8) for i in range(8)])
    assert delta_smoothness(seq, delta=5) == pytest.approx(50 / 255)


def test_azimuth_sweep_looks_at_the_centre():
    from sequences.pipeline.views import azimuth_sweep
    from sequences.run import CameraRun
    from sequences.synthetic import look_at

    centre = np.array([0.5, -1.0, 0.2])
    up = np.array([0.0, 0.0, 1.0])
    az = np.deg2rad(np.arange(0, 90, 15))
    eyes = centre + 3.0 * np.stack([np.cos(az) * np.cos(0.3), np.sin(az) * np.cos(0.3), np.full_like(az, np.sin(0.3))], 1)
    rots = np.stack([look_at(e, centre, up) for e in eyes])
    run = CameraRun(frames=None, timestamps=np.arange(len(az), dtype=float), rotations=rots, translations=eyes)
    q = azimuth_sweep(run, np.arange(0, 360, 30))
    assert len(q) == 12
    rel = np.asarray(q.translations) - centre
    np.testing.assert_allclose(np.linalg.norm(rel, axis=1), 3.0, atol=1e-9)
    np.testing.assert_allclose(rel[:, 2], 3.0 * np.sin(0.3), atol=1e-9)  # same elevation
    axes = np.asarray(q.rotations)[:, :, 2]
    np.testing.assert_allclose(axes, -rel / 3.0, atol=1e-9)  # optical axis points at the centre
