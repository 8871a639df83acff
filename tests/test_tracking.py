"""Feature tracking (examples/tracking.py): LK accuracy, the forward-backward check, complete tracks,
and the end-to-end regression of track positions on pose (reproduction 8(c))."""

import numpy as np
import pytest
import torch

from examples.tracking import complete_tracks, random_observed, track_features, tracking_table

torch.set_num_threads(1)

SHIFT = np.array([3.0, 2.0])  # (dx, dy) pixels per frame


def _texture(size: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth random texture (uint8 gray, full range): corners everywhere, no aliasing for LK."""
    import cv2

    noise = np.random.default_rng(seed).standard_normal((size, size))
    img = cv2.GaussianBlur(noise, (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min())
    return (255 * img).astype(np.uint8)


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def _shifted_frames(n: int, size: int = 128) -> np.ndarray:
    """``(n, size, size, 3)``: content moved by ``i * SHIFT`` in frame ``i`` (integer shifts).

    Windows of a larger texture rather than ``np.roll``: a wrap-around seam would be new content
    that no tracker should follow.
    """
    m = 4 * n
    big = _texture(size + m)
    return np.stack([_rgb(big[m - 2 * i : m - 2 * i + size, m - 3 * i : m - 3 * i + size]) for i in range(n)])


def test_known_shift_is_recovered():
    tracks, valid = track_features(_shifted_frames(5), max_corners=100)
    assert tracks.shape[0] == 5 and tracks.shape[2] == 2 and valid.shape == tracks.shape[:2]
    assert valid[0].all()
    full = valid.all(axis=0)
    assert full.sum() >= 30  # a few points move into the border margin; most stay
    disp = tracks[:, full] - tracks[:1, full]
    expected = np.arange(5)[:, None, None] * SHIFT
    assert np.abs(disp - expected).max() < 0.1


def test_forward_backward_check_drops_tracks_on_a_noise_frame():
    frames = _shifted_frames(4)
    frames[2] = np.random.default_rng(1).integers(0, 256, frames[2].shape, dtype=np.uint8)
    tracks, valid = track_features(frames, max_corners=100)
    assert valid[1].mean() > 0.8  # tracking worked before the noise frame
    assert valid[2].mean() < 0.2  # forward-backward inconsistent on noise
    # lost tracks stay lost even though frame 3 continues the motion of frames 0-1
    assert not (valid[3] & ~valid[2]).any()
    assert np.isnan(tracks[2:][~valid[2:]]).all()


def test_complete_tracks():
    tracks = np.arange(3 * 4 * 2, dtype=np.float64).reshape(3, 4, 2)
    valid = np.ones((3, 4), dtype=bool)
    valid[2, 1] = valid[1, 3] = False
    out = complete_tracks(tracks, valid)
    assert out.shape == (3, 2, 2)
    np.testing.assert_array_equal(out, tracks[:, [0, 2]])
    assert complete_tracks(tracks, valid, min_length=2).shape == (2, 3, 2)
    valid[2] = False
    with pytest.raises(ValueError, match="none of the 4 tracks"):
        complete_tracks(tracks, valid)
    with pytest.raises(ValueError, match="none of the 0 tracks"):
        complete_tracks(np.zeros((3, 0, 2)), np.zeros((3, 0), bool))


def test_random_observed():
    m = random_observed(40, 0.3, seed=2)
    assert m.dtype == bool and m.sum() == 12
    np.testing.assert_array_equal(m, random_observed(40, 0.3, seed=2))


@pytest.mark.parametrize("seed", [0, 1])
def test_view_gp_beats_baselines_on_a_phone_run(seed):
    # Checked on seeds 0-4 at 40 frames / 64 px, keyframes every 4th (6-10 complete tracks): view RMSE
    # is at most 0.67x linear and 0.42x nearest. With every 5th (8 observations, the last at frame 35
    # so frames 36-39 are extrapolated) the view GP is only 0.8-1.01x linear and loses on seed 4, so
    # that setting is not asserted.
    from sequences.synthetic import phone_run

    run = phone_run(n_frames=40, size=64, seed=seed)
    tracks = complete_tracks(*track_features(run.frames))
    assert tracks.shape[1] >= 3
    rows = {r["method"]: r for r in tracking_table(run, keyframes_every=4, methods=("view", "linear", "nearest"),
                                                    tracks=tracks, seed=0)}
    view = rows["view"]["rmse_px"]
    assert np.isfinite(view) and view > 0
    assert view < rows["linear"]["rmse_px"] and view < rows["nearest"]["rmse_px"]
    assert rows["view"]["mean_sd_px"] > 0 and rows["linear"]["mean_sd_px"] is None
    assert rows["view"]["n_obs"] == 10 and rows["view"]["n_heldout"] == 30
