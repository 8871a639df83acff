"""generative.metrics.ssim: known cases, encodings of one picture, scikit-image (which computes ``ssim``) as the
reference of the fast per-frame ``ssim_uint8``, and the values of the torch implementation it replaced."""

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from generative.metrics import psnr, ssim, ssim_uint8

# scikit-image's settings for Wang et al.'s SSIM: Gaussian window of sigma 1.5, population statistics
SKIMAGE = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1)


def _smooth_images(n=2, c=3, size=24, seed=0):
    """[0, 1] float64 images with structure at several scales."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, size // 4, size // 4, generator=g, dtype=torch.float64)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (0.7 * x + 0.3 * torch.rand(n, c, size, size, generator=g, dtype=torch.float64)).clamp(0, 1)


def test_identical_images_score_one():
    x = _smooth_images()
    torch.testing.assert_close(ssim(x, x, "none", value_range=(0, 1)), torch.ones(2, dtype=torch.float64))
    assert ssim(x * 2 - 1, x * 2 - 1).item() == pytest.approx(1.0)


def test_constant_offset_costs_only_the_luminance_term():
    a = torch.full((1, 3, 16, 16), 0.5, dtype=torch.float64)
    b = a + 0.1
    c1 = 0.01**2
    expected = (2 * 0.5 * 0.6 + c1) / (0.5**2 + 0.6**2 + c1)  # flat images: contrast and structure are C2 / C2
    assert ssim(a, b, value_range=(0, 1)).item() == pytest.approx(expected, rel=1e-12)
    x = _smooth_images(n=1)
    shifted = ssim(x * 0.8, x * 0.8 + 0.1, value_range=(0, 1)).item()
    assert 0.9 < shifted < 1.0


def test_noise_lowers_it_monotonically():
    x = _smooth_images()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
    scores = [ssim(x, (x + s * noise).clamp(0, 1), value_range=(0, 1)).item() for s in (0.02, 0.1, 0.3)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


def test_one_picture_scores_the_same_in_every_encoding():
    x, y = _smooth_images(seed=2), _smooth_images(seed=3)
    x8, y8 = (x * 255).round().to(torch.uint8), (y * 255).round().to(torch.uint8)
    x01, y01 = x8.double() / 255, y8.double() / 255
    ref = ssim(x01, y01, "none", value_range=(0, 1))
    torch.testing.assert_close(ssim(x01 * 2 - 1, y01 * 2 - 1, "none"), ref)
    torch.testing.assert_close(ssim(x8, y8, "none"), ref)
    frames = ssim_uint8(x8.permute(0, 2, 3, 1).numpy(), y8.permute(0, 2, 3, 1).numpy())
    assert isinstance(frames, np.ndarray) and frames.shape == (2,)
    np.testing.assert_allclose(frames, ref.numpy(), atol=1e-6)  # float32 filtering
    assert ssim(x01, y01, value_range=(0, 1)).item() == pytest.approx(ref.mean().item())


def test_bad_inputs_are_named():
    x = torch.zeros(1, 3, 10, 10)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x, x)
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.zeros(1, 3, 12, 12), torch.zeros(1, 3, 12, 13))
    with pytest.raises(ValueError, match="uint8 RGB frames"):
        ssim_uint8(np.zeros((2, 12, 12, 3)), np.zeros((2, 12, 12, 3)))
    with pytest.raises(ValueError, match="'mean' or 'none'"):
        ssim(torch.zeros(1, 3, 12, 12), torch.zeros(1, 3, 12, 12), "sum")
    assert psnr(x, x).isinf()  # the other pixel metrics still live next to it


def test_matches_scikit_image():
    x, y = _smooth_images(n=3, size=32, seed=4), _smooth_images(n=3, size=32, seed=5)
    y = (0.6 * x + 0.4 * y).clamp(0, 1)  # correlated pairs, not just unrelated noise
    ours = ssim(x, y, "none", value_range=(0, 1)).numpy()
    ref = [structural_similarity(a.permute(1, 2, 0).numpy(), b.permute(1, 2, 0).numpy(), data_range=1.0, **SKIMAGE)
           for a, b in zip(x, y)]  # fmt: skip
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    x8, y8 = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), (y * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    ref8 = [structural_similarity(a, b, data_range=255, **SKIMAGE) for a, b in zip(x8, y8)]
    np.testing.assert_allclose(ssim_uint8(x8, y8), ref8, atol=1e-6)  # float32 filtering
    # [-1, 1] images: the same picture as in [0, 1]
    np.testing.assert_allclose(ssim(x * 2 - 1, y * 2 - 1, "none").numpy(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["noise", "structured", "shifted", "contrast"])
def test_fast_frame_ssim_equals_scikit_image_on_random_and_structured_frames(kind):
    """ssim_uint8 (ours, OpenCV float32) against scikit-image on 64 x 48 frames: unrelated noise (SSIM near 0),
    smooth pictures with noise, a one-pixel shift and a contrast change (near 1)."""
    rng = np.random.default_rng({"noise": 0, "structured": 1, "shifted": 2, "contrast": 3}[kind])
    if kind == "noise":
        a, b = rng.integers(0, 256, (2, 3, 48, 64, 3), dtype=np.uint8)
    else:
        smooth = _smooth_images(n=3, size=64, seed=int(rng.integers(100)))[:, :, :48].permute(0, 2, 3, 1).numpy()
        a = (smooth * 255).round().astype(np.uint8)
        if kind == "structured":
            b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).round().astype(np.uint8)
        elif kind == "shifted":
            b = np.roll(a, 1, axis=2)
        else:
            b = np.clip(0.7 * a.astype(np.float64) + 40, 0, 255).round().astype(np.uint8)
    ref = np.array([structural_similarity(x, y, data_range=255, **SKIMAGE) for x, y in zip(a, b)])
    np.testing.assert_allclose(ssim_uint8(a, b), ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ssim(a.transpose(0, 3, 1, 2), b.transpose(0, 3, 1, 2), "none").numpy(), ref, rtol=0, atol=1e-12)
    assert (ref < 0.1).all() if kind == "noise" else (ref > 0.3).all()  # the cases are what they say


def test_values_of_the_replaced_torch_implementation():
    """SSIM of fixed [-1, 1] pairs as computed by the float64 torch convolutions that scikit-image replaced
    (recorded before they were deleted): the package gives the same numbers to 1e-12."""

    def smooth(seed):  # blurred noise in [-1, 1]
        x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
        return torch.tanh(torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False))

    a = smooth(7)
    b = 0.6 * a + 0.4 * smooth(8)
    recorded = [0.7052337543005816, 0.7162163730692732, 0.7748117496930026]
    np.testing.assert_allclose(ssim(a, b, "none").numpy(), recorded, rtol=0, atol=1e-12)
