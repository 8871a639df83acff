"""Native-resolution detail layers, keyframe neighbours, pixel baselines, adaptation and the tables."""

import numpy as np
import pytest
import torch

from viewgp.poses import pose_features, random_rotations


def _poses(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    R = random_rotations(n, generator=g)
    return pose_features(R, torch.randn(n, 3, generator=g, dtype=torch.float64), torch.arange(n, dtype=torch.float64))


def _textured(n=1, size=48, seed=0):
    """Smooth random colour textures ``(n, size, size, 3)`` uint8 (flow needs structure, not noise)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 6, 6, 3), dtype=np.uint8)
    return np.stack([cv2.resize(s, (size, size), interpolation=cv2.INTER_CUBIC) for s in small])


def test_neighbours_weights_and_exact_matches():
    from viewgp.predict import pose_neighbours, time_neighbours

    idx, w = time_neighbours(np.array([0.0, 1.0, 2.0]), np.array([0.25, 1.0, 5.0]))
    np.testing.assert_array_equal(idx, [[0, 1], [1, 2], [1, 2]])
    np.testing.assert_allclose(w, [[0.75, 0.25], [1.0, 0.0], [0.0, 1.0]])
    x = _poses(6)
    idx, w = pose_neighbours(x[:4], x)
    assert idx.shape == (6, 2) and np.allclose(w.sum(1), 1)
    assert np.array_equal(idx[:4, 0], np.arange(4)) and np.allclose(w[:4, 0], 1)  # an observed pose takes it all


def test_residuals_exact_or_smoothed():
    from viewgp.predict import predict_residuals

    x = _poses(12, seed=1)
    g = torch.Generator().manual_seed(2)
    signal = torch.sin(x[:, :3] @ torch.randn(3, 40, generator=g, dtype=torch.float64))
    mean, var, hyper = predict_residuals("view", x[:8], signal[:8], x, relative_noise=1e-6)
    assert mean.shape == (12, 40) and var.shape == (12, 40) and "noise" in hyper
    np.testing.assert_allclose(mean[:8], signal[:8].numpy(), atol=1e-4)  # observed residuals come back
    assert var[8:].mean() > 10 * var[:8].mean()  # uncertain away from the observations
    # a smooth path of 40 nearby poses: noise is told apart from signal, and the mean does not copy it
    from viewgp.poses import so3_exp

    a = torch.linspace(0, 1.5, 40, dtype=torch.float64)
    R = so3_exp(torch.stack([torch.zeros_like(a), torch.zeros_like(a), a], 1))
    path = pose_features(R, torch.stack([a.cos(), a.sin(), torch.zeros_like(a)], 1), a)
    clean = torch.stack([torch.sin(2 * a + k) for k in range(30)], 1)
    noisy = clean + 0.2 * torch.randn(40, 30, generator=g, dtype=torch.float64)
    smooth, _, _ = predict_residuals("view", path, noisy, path)
    assert np.abs(smooth - clean.numpy()).mean() < 0.6 * np.abs(noisy - clean).mean().item()


def test_warp_moves_keyframe_pixels_with_the_decoded_motion():
    from generative.latents.detail import optical_flow, warp_detail, warp_image

    tex = _textured(1, 64, seed=3)[0]
    shifted = np.roll(tex, 3, axis=1)  # the scene moved 3 px to the right
    flow = optical_flow(shifted, tex)
    inner = np.s_[8:-8, 8:-8]
    assert np.abs(flow[inner][..., 0] + 3).mean() < 0.5 and np.abs(flow[inner][..., 1]).mean() < 0.5
    assert np.abs(warp_image(tex, flow)[inner] - shifted[inner].astype(np.float32)).mean() < 4
    # keyframe 0 decoded as tex, the query decoded as the shifted tex: the keyframe's pixels move along
    key = np.stack([tex])
    out, spread = warp_detail(key, key, np.stack([shifted, tex]), np.array([[0, 0], [0, 0]]), np.array([[1.0, 0.0]] * 2))
    assert spread.shape == (2, 64, 64) and spread.max() == 0  # one neighbour: nothing to disagree
    assert np.abs(out[0][inner].astype(int) - shifted[inner]).mean() < 4
    assert np.array_equal(out[1], tex)  # the keyframe itself comes back exactly


def test_warp_flow_measured_at_a_lower_size_moves_pixels_as_at_the_output_size():
    """The warp's flows are measured on the decoded frames at ``flow_size`` and resized to the output
    size with their vectors scaled: a 4 px shift at 128 px is found as 2 px at 64 px and comes back as 4."""
    from generative.latents.detail import optical_flow, resize_flow, warp_detail

    tex = _textured(1, 128, seed=5)[0]
    shifted = np.roll(tex, 4, axis=1)
    small = resize_flow(optical_flow(shifted[::2, ::2], tex[::2, ::2]), 128)
    inner = np.s_[16:-16, 16:-16]
    assert small.shape == (128, 128, 2) and np.abs(small[inner][..., 0] + 4).mean() < 1.0
    key = np.stack([tex])
    weights, nb = np.array([[1.0, 0.0]] * 2), np.array([[0, 0], [0, 0]])
    full, _ = warp_detail(key, key, np.stack([shifted, tex]), nb, weights, flow_size=None)
    half, _ = warp_detail(key, key, np.stack([shifted, tex]), nb, weights, flow_size=64)
    assert np.abs(half[0][inner].astype(int) - shifted[inner]).mean() < 1.5 * max(
        np.abs(full[0][inner].astype(int) - shifted[inner]).mean(), 2.0)
    assert np.array_equal(half[1], tex)  # the keyframe itself still comes back exactly


def test_flow_interpolation_moves_pixels_where_a_blend_leaves_a_double_image():
    from generative.latents.detail import flow_interpolation

    tex = _textured(1, 64, seed=3)[0]
    keys = np.stack([tex, np.roll(tex, 8, axis=1)])  # the scene moves 8 px to the right between the keyframes
    truth = [np.roll(tex, s, axis=1) for s in (2, 4, 6)]
    idx, w = np.array([[0, 1]] * 5), np.array([[1.0, 0.0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0.0, 1.0]])
    out = flow_interpolation(keys, idx, w)
    assert out.shape == (5, 64, 64, 3) and out.dtype == np.uint8
    assert np.array_equal(out[0], keys[0]) and np.array_equal(out[4], keys[1])  # t = 0, 1: the keyframes
    inner = np.s_[10:-10, 10:-10]
    for q, want in zip((1, 2, 3), truth):
        flow_err = np.abs(out[q][inner].astype(float) - want[inner]).mean()
        blend = (w[q, 0] * keys[0].astype(float) + w[q, 1] * keys[1].astype(float))
        blend_err = np.abs(blend[inner] - want[inner]).mean()
        assert flow_err < 0.35 * blend_err, (q, flow_err, blend_err)
    one = flow_interpolation(keys, np.array([[1], [0]]), np.array([[1.0], [1.0]]))  # one neighbour: itself
    assert np.array_equal(one, keys[::-1])


def test_pixel_baselines_own_frames_and_novel_views():
    from sequences.pipeline.baselines import fit_pixel_gp, pixel_baselines

    x = _poses(10, seed=4)
    frames = _textured(10, 24, seed=5)
    keep = np.arange(0, 10, 3)
    gp = fit_pixel_gp(frames[keep], x[keep], x, steps=5)
    own = pixel_baselines(frames[keep], keep / 10.0, x[keep], np.arange(10) / 10.0, x, gp)
    assert set(own) == {"px-nearest-time", "px-nearest-pose", "px-blend", "px-flow", "px-gp"}
    for name, (f, _, _) in own.items():
        assert f.shape == (10, 24, 24, 3) and f.dtype == np.uint8
        if name != "px-gp":
            assert np.array_equal(f[keep], frames[keep]), name
    mid = (frames[0].astype(float) * 2 + frames[3].astype(float)) / 3  # frame 1 lies 1/3 of the way to frame 3
    assert np.abs(own["px-blend"][0][1] - mid).max() <= 1
    novel = pixel_baselines(frames[keep], keep / 10.0, x[keep], np.arange(10) / 10.0, x, gp, novel=True)
    assert set(novel) == {"px-nearest-pose", "px-blend-pose", "px-flow", "px-gp"}
    assert np.array_equal(novel["px-flow"][0][keep], frames[keep])  # a query at a keyframe's pose: that keyframe
    # the pixel GP fitted once, asked a chunk at a time: the same frames and variances as all at once
    parts = [pixel_baselines(frames[keep], keep / 10.0, x[keep], np.arange(10)[s:e] / 10.0, x[s:e], gp)["px-gp"]
             for s, e in ((0, 4), (4, 10))]
    # (uint8 of the same values; a differently blocked matrix product may round a last bit differently)
    assert np.abs(np.concatenate([p[0] for p in parts]).astype(int) - own["px-gp"][0]).max() <= 1
    assert np.allclose(np.concatenate([p[1] for p in parts]), own["px-gp"][1], rtol=1e-12)


def test_adaptation_lowers_the_error_and_leaves_the_original_alone():
    from generative.latents.adapt import adapt
    from generative.backbones.pioneer import PioneerAutoencoder, PioneerConfig

    torch.manual_seed(0)
    model = PioneerAutoencoder(PioneerConfig(variant="pioneer", resolution=8, channel_base=64, max_channels=16)).eval()
    model.set_phase(1, 1.0)
    x = torch.rand(6, 3, 8, 8) * 2 - 1
    before = [p.detach().clone() for p in model.parameters()]
    adapted, losses = adapt(model, x, steps=40, lr=3e-3, batch_size=6, progress=False)
    assert losses[-1] < 0.7 * losses[0]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with torch.no_grad():
        err = lambda m: float((m.decode(m.encode(x)) - x).abs().mean())  # noqa: E731
    assert err(adapted) < err(model)
    with pytest.raises(ValueError, match="non-negative"):
        adapt(model, x, steps=-1)


def test_tables_mark_the_best_and_say_who_loses():
    from sequences.pipeline.report import aggregate_table, methods_table

    entry = lambda mse, kind: {"mse_held_out": mse, "psnr_held_out": 10 * np.log10(1 / mse), "ssim_held_out": 0.5, "kind": kind}  # noqa: E731
    metrics = {"headline": "view+warp", "methods": {"view+warp": entry(0.02, "latent GP + warp"),
                                                     "px-gp": entry(0.01, "pixel baseline (no backbone)")}}
    metrics["methods"]["px-gp"]["calibration"] = {"coverage_95": 0.9312}
    text = methods_table(metrics)
    assert "0.01000*" in text and "HIGHER MSE (loses)" in text
    assert "95% int." in text.splitlines()[0] and "0.931" in text  # coverage where there is uncertainty
    text = aggregate_table({"a": metrics["methods"], "b": metrics["methods"]}, "runs")
    assert "px-gp" in text.splitlines()[3] and "loses" in text  # sorted: best first


def test_lazy_panel_grid_is_the_grid_a_block_at_a_time():
    from sequences.pipeline.report import LazyPanelGrid, panel_grid

    rng = np.random.default_rng(0)
    panels = {f"p{i}": rng.integers(0, 256, (7, 16, 16, 3), dtype=np.uint8) for i in range(5)}
    whole = panel_grid(panels, 4)
    lazy = LazyPanelGrid(panels, 4)
    assert lazy.shape == whole.shape and len(lazy) == 7
    assert np.array_equal(lazy[2:5], whole[2:5]) and np.array_equal(lazy[6], whole[6])


def test_pixel_calibration_made_a_slice_at_a_time_equals_the_whole_stack():
    from sequences.pipeline.evaluate import pixel_calibration
    from viewgp.calibration import calibration_summary

    rng = np.random.default_rng(1)
    frames, truth = (rng.integers(0, 256, (9, 8, 8, 3), dtype=np.uint8) for _ in range(2))
    sd = rng.uniform(0.05, 0.3, (9, 8, 8))
    held = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0], bool)
    err = (frames[held].astype(np.float32) - truth[held].astype(np.float32)) / 255.0  # what it did before
    want = calibration_summary(err, np.broadcast_to(sd[held][..., None], err.shape), 4.0)
    got = pixel_calibration(frames, truth, sd, held, 4.0)
    assert got["reliability"] == want["reliability"]
    for key in ("nlpd", "rms_z", "sd_ratio"):
        assert got[key] == pytest.approx(want[key], rel=1e-12), key


def test_resize_frames_reads_a_frame_source_a_chunk_at_a_time():
    from generative.images.geometry import square_resize_frames

    frames = _textured(10, 40, seed=2)

    class Source:  # a lazily decoded video: slices only, never the whole stack at once
        shape, reads = frames.shape, []

        def __len__(self):
            return len(frames)

        def __getitem__(self, key):
            assert isinstance(key, slice)
            self.reads.append(len(range(*key.indices(len(frames)))))
            return frames[key]

    src = Source()
    out = square_resize_frames(src, 16, chunk=4)
    assert np.array_equal(out, square_resize_frames(frames, 16)) and out.shape == (10, 16, 16, 3)
    assert src.reads == [4, 4, 2]


def test_residual_gp_handed_over_a_chunk_at_a_time_equals_the_whole_arrays():
    from viewgp.predict import predict_residuals

    x, q = _poses(12, seed=7), _poses(9, seed=8)
    r = torch.randn(12, 30, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    mean, var, hyper = predict_residuals("view", x, r, q, chunk=4)
    got_m, got_v, chunks = np.zeros_like(mean), np.zeros_like(var), []

    def consume(a, b, m, v):
        chunks.append((a, b))
        got_m[a:b], got_v[a:b] = m, v

    assert predict_residuals("view", x, r, q, chunk=4, consume=consume)[:2] == (None, None)
    assert chunks == [(0, 4), (4, 8), (8, 9)]
    assert np.array_equal(got_m, mean) and np.array_equal(got_v, var)
    with pytest.raises(ValueError, match="relative_noise"):
        predict_residuals("view", x, r, q, relative_noise=1e-3, consume=consume)
