"""generative.metrics with networks and weight files made here (nothing is downloaded), checked against the
maintained packages that compute them and the values of the hand-written code those packages replaced."""

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from scipy import stats
from torch import nn

from generative import metrics
from generative.latents.edit import angle_between, sample_latents


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _smooth_images(n, size, seed):
    """Images with spatial structure (blurred noise), in [-1, 1]."""
    x = torch.randn(n, 3, size // 4, size // 4, generator=_gen(seed))
    return torch.tanh(F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False))


# ===================================================================================== pixel errors
def test_mse_rmse_psnr_values_and_ranges():
    a = torch.zeros(2, 3, 4, 4)
    b = torch.full((2, 3, 4, 4), 0.5)
    b[1] = 0.25
    torch.testing.assert_close(metrics.mse(a, b, "none"), torch.tensor([0.25, 0.0625], dtype=torch.float64))
    torch.testing.assert_close(metrics.rmse(a, b, "none"), torch.tensor([0.5, 0.25], dtype=torch.float64))
    assert metrics.rmse(a, b).item() == pytest.approx(0.375)  # mean of per-image values
    assert metrics.psnr(a, b, "none")[0].item() == pytest.approx(10 * math.log10(4 / 0.25))
    # the same pictures as uint8 give the same PSNR (range 255 instead of 2)
    x = torch.rand(3, 3, 8, 8, generator=_gen(0)) * 2 - 1
    y = (x + 0.1 * torch.randn(3, 3, 8, 8, generator=_gen(1))).clamp(-1, 1)
    xu = ((x + 1) * 127.5).round().to(torch.uint8)
    yu = ((y + 1) * 127.5).round().to(torch.uint8)
    x8, y8 = xu.double() / 127.5 - 1, yu.double() / 127.5 - 1
    torch.testing.assert_close(metrics.psnr(xu, yu, "none"), metrics.psnr(x8, y8, "none"))
    assert metrics.psnr(xu.permute(0, 2, 3, 1).numpy(), yu.permute(0, 2, 3, 1).numpy()).item() == pytest.approx(
        metrics.psnr(xu, yu).item()
    )
    assert math.isinf(metrics.psnr(x, x).item())


def test_psnr_equals_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio

    x = _smooth_images(3, 16, seed=20)
    y = (x + 0.05 * torch.randn(x.shape, generator=_gen(21))).clamp(-1, 1)
    ref = [peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=2.0) for a, b in zip(x.double(), y.double())]
    np.testing.assert_allclose(metrics.psnr(x, y, "none").numpy(), ref, rtol=1e-12)
    xu, yu = ((x + 1) * 127.5).round().to(torch.uint8), ((y + 1) * 127.5).round().to(torch.uint8)
    ref8 = [peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=255) for a, b in zip(xu, yu)]
    np.testing.assert_allclose(metrics.psnr(xu, yu, "none").numpy(), ref8, rtol=1e-12)


def test_pixel_metric_errors():
    with pytest.raises(ValueError, match="same shape"):
        metrics.mse(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="both as uint8"):
        metrics.rmse(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="reduction"):
        metrics.psnr(torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2), "sum")


# ====================================================== values of the implementations the packages replaced
def _filled(module: nn.Module, seed: int) -> dict:
    """A state dict for ``module``'s layout drawn from ``seed`` alone (not from torch's initialisers, whose
    draws may change between versions): He-scaled weights, small biases, positive running variances."""
    g = _gen(seed)
    out = {}
    for k, v in sorted(module.state_dict().items()):
        if not v.is_floating_point():
            out[k] = torch.zeros((), dtype=v.dtype)
        elif k.endswith("running_var"):
            out[k] = 0.5 + torch.rand(v.shape, generator=g)
        elif k.endswith("running_mean") or k.endswith("bias"):
            out[k] = 0.1 * torch.randn(v.shape, generator=g)
        elif v.ndim == 1:
            out[k] = 1 + 0.1 * torch.randn(v.shape, generator=g)
        else:
            out[k] = torch.randn(v.shape, generator=g) * math.sqrt(2.0 / v[0].numel())
    return out


def _meta(build):
    with torch.device("meta"):
        return build()


# LPIPS distances of _smooth_images(3, 48, 3) vs _smooth_images(3, 48, 4) computed by the hand-written LPIPS
# that the lpips package replaced, with _filled(features, 1) and heads torch.rand(1, C, 1, 1) from seed 2.
RECORDED_LPIPS = {
    ("alex", True): [1.0110327005386353, 1.0302647352218628, 0.9876463413238525],
    ("alex", False): [1.9457108974456787, 1.9613944292068481, 1.8879369497299194],
    ("vgg", True): [1.0101760625839233, 0.9957787394523621, 1.0113859176635742],
    ("vgg", False): [2.020223617553711, 1.9982492923736572, 2.0208096504211426],
}


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_package_reproduces_the_replaced_implementation(net):
    """The lpips package, filled from the same local weights, gives the distances the deleted implementation
    gave: equal to float32 round-off (rtol 1e-6; measured: bit-identical)."""
    builder = torchvision.models.alexnet if net == "alex" else torchvision.models.vgg16
    state = {f"features.{k}": v for k, v in _filled(_meta(lambda: builder(weights=None).features), 1).items()}
    chans = (64, 192, 384, 256, 256) if net == "alex" else (64, 128, 256, 512, 512)
    g = _gen(2)
    lin = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate(chans)}
    x0, x1 = _smooth_images(3, 48, seed=3), _smooth_images(3, 48, seed=4)
    with torch.no_grad():
        for heads in (True, False):
            d = metrics.LPIPS(net, state, lin if heads else None)(x0, x1)
            np.testing.assert_allclose(d.numpy(), RECORDED_LPIPS[net, heads], rtol=1e-6)


# Inception pool3 features of _smooth_images(2, 64, 6) with _filled(network, 5), computed by the hand-written
# TF-FID blocks that pytorch-fid's replaced (and by torchvision's network, unchanged): the first eight
# features of each image, and the sum and the sum of squares of all 2048.
RECORDED_INCEPTION = {
    "pt_inception": (
        [[0.0, 0.10703963041305542, 1.2668503522872925, 0.6291903257369995, 1.1635206937789917, 0.5114550590515137,
          0.007321449462324381, 1.6444439888000488],
         [0.0, 0.1131468266248703, 1.1716938018798828, 0.6457881331443787, 1.119267463684082, 0.620381236076355,
          0.0074139805510640144, 1.7122071981430054]],
        [1588.4277300985123, 1573.6827535285802], [3506.694826278049, 3444.982959892599]),
    "torchvision": (
        [[0.026139503344893456, 0.0, 0.11432921886444092, 4.741681098937988, 0.03392547369003296, 0.6300461292266846,
          0.21479478478431702, 0.0004461634671315551],
         [0.0419711098074913, 0.0, 0.10269845277070999, 4.808748722076416, 0.021373238414525986, 0.6045377254486084,
          0.2084265947341919, 0.0]],
        [5327.324412083766, 5106.678470146086], [37693.29558765496, 34738.461156208534]),
}  # fmt: skip


@pytest.mark.parametrize("variant", ["pt_inception", "torchvision"])
def test_inception_features_reproduce_the_replaced_implementation(variant):
    """Features to float32 round-off of the recorded ones (rtol 1e-5 on sums of 2048 values; measured:
    bit-identical)."""
    if variant == "pt_inception":
        build = lambda: torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)  # noqa: E731
    else:
        build = lambda: torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)  # noqa: E731
    feat = metrics.InceptionFeatures(_filled(_meta(build), 5))
    assert feat.variant == variant
    with torch.no_grad():
        f = feat(_smooth_images(2, 64, seed=6)).double()
    first8, sums, squares = RECORDED_INCEPTION[variant]
    np.testing.assert_allclose(f[:, :8].numpy(), first8, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f.sum(1).numpy(), sums, rtol=1e-5)
    np.testing.assert_allclose(f.pow(2).sum(1).numpy(), squares, rtol=1e-5)


def test_metric_networks_never_download(monkeypatch, alex_files):
    """Building LPIPS (both nets, the package's heads) and the FID Inception touches no URL loader."""
    import pytorch_fid.inception
    import torchvision.models._api

    def no_network(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")

    for owner in (torch.hub, pytorch_fid.inception, torchvision.models._api):
        for name in ("load_state_dict_from_url", "download_url_to_file"):
            if hasattr(owner, name):
                monkeypatch.setattr(owner, name, no_network)
    metrics.LPIPS("alex", alex_files / "alexnet-owt-7be5be79.pth", "package")
    metrics.LPIPS("vgg", torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"]).state_dict())
    metrics.InceptionFeatures(_inception_state(tf_fid=True))


# ============================================================================================ LPIPS
@pytest.fixture(scope="module")
def alex_files(tmp_path_factory):
    """A random AlexNet in the torchvision file layout (features.* + a classifier key) and an LPIPS
    linear head in the lpips package layout (lin{k}.model.1.weight, (1, C, 1, 1))."""
    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    with torch.device("meta"):  # skip initialising the 58M-parameter classifier
        features = torchvision.models.alexnet(weights=None).features
    features = features.to_empty(device="cpu")
    for m in features:
        if isinstance(m, nn.Conv2d):
            m.reset_parameters()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    torch.save(state, d / "alexnet-owt-7be5be79.pth")
    lin = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=_gen(k)) for k, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(lin, d / "alex.pth")
    torch.save({k: torch.ones_like(v) for k, v in lin.items()}, d / "ones.pth")
    return d


@pytest.fixture(scope="module")
def lpips_alex(alex_files):
    return metrics.LPIPS("alex", backbone_weights=alex_files / "alexnet-owt-7be5be79.pth", lin_weights=alex_files / "alex.pth")


def test_lpips_is_a_distance_that_grows_with_noise(lpips_alex):
    assert lpips_alex.variant == "lpips"
    x = _smooth_images(4, 48, seed=0)
    y = _smooth_images(4, 48, seed=1)
    with torch.no_grad():
        assert torch.equal(lpips_alex(x, x), torch.zeros(4))
        dxy, dyx = lpips_alex(x, y), lpips_alex(y, x)
        torch.testing.assert_close(dxy, dyx)
        assert (dxy > 0).all()
        noise = torch.randn(x.shape, generator=_gen(2))
        d = [lpips_alex(x, (x + s * noise).clamp(-1, 1)).mean().item() for s in (0.02, 0.1, 0.3, 0.6)]
    assert d[0] > 0 and all(a < b for a, b in zip(d, d[1:])), d


def test_lpips_matches_the_formula_on_the_first_layer(alex_files):
    """Only layer 0 weighted: d = mean_hw sum_c w_c (n(f0) - n(f1))^2 with f = relu(conv1(scaled x))."""
    state = torch.load(alex_files / "alexnet-owt-7be5be79.pth")
    w = torch.rand(64, generator=_gen(5))
    lin = {f"lin{k}.model.1.weight": torch.zeros(1, c, 1, 1) for k, c in enumerate((64, 192, 384, 256, 256))}
    lin["lin0.model.1.weight"] = w.reshape(1, 64, 1, 1)
    m = metrics.LPIPS("alexnet", backbone_weights=state, lin_weights=lin)
    x0, x1 = _smooth_images(2, 40, seed=3), _smooth_images(2, 40, seed=4)

    def f(x):
        shift = torch.tensor([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1)
        scale = torch.tensor([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1)
        h = F.relu(F.conv2d((x - shift) / scale, state["features.0.weight"], state["features.0.bias"], stride=4, padding=2))
        return h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)

    expected = ((f(x0) - f(x1)).pow(2) * w.reshape(1, 64, 1, 1)).sum(1).mean((1, 2))
    with torch.no_grad():
        torch.testing.assert_close(m(x0, x1), expected, rtol=1e-5, atol=1e-7)


def test_lpips_baseline_is_uniform_weights_and_lpips_is_differentiable(alex_files):
    base = metrics.LPIPS("alex", backbone_weights=alex_files / "alexnet-owt-7be5be79.pth")
    ones = metrics.LPIPS("alex", backbone_weights=alex_files / "alexnet-owt-7be5be79.pth", lin_weights=alex_files / "ones.pth")
    assert base.variant == "baseline"
    x0, x1 = _smooth_images(2, 32, seed=6), _smooth_images(2, 32, seed=7)
    with torch.no_grad():
        torch.testing.assert_close(base(x0, x1), ones(x0, x1))
    x = x0.clone().requires_grad_(True)
    base(x, x1).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in base.parameters())
    base.train()
    assert not base.training


def test_lpips_vgg_from_an_in_memory_state_dict():
    torch.manual_seed(1)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    m = metrics.LPIPS("vgg16", backbone_weights=features.state_dict())
    x0, x1 = _smooth_images(2, 16, seed=8), _smooth_images(2, 16, seed=9)
    with torch.no_grad():
        d = m(x0, x1)
        assert d.shape == (2,) and (d > 0).all()
        assert torch.equal(m(x0, x0), torch.zeros(2))
    with pytest.raises(ValueError, match="at least 16x16"):
        m(x0[:, :, :15, :15], x1[:, :, :15, :15])


def test_lpips_linear_heads_shipped_with_the_package(alex_files):
    """``lin_weights="package"``: the official v0.1 heads from the lpips wheel (non-negative, per channel)."""
    path = metrics.package_lin_weights("alexnet")
    assert path.name == "alex.pth" and path.is_file() and metrics.package_lin_weights("vgg16").name == "vgg.pth"
    m = metrics.LPIPS("alex", alex_files / "alexnet-owt-7be5be79.pth", "package")
    assert m.variant == "lpips"
    shipped = torch.load(path, map_location="cpu", weights_only=True)
    for k in range(5):
        w = shipped[f"lin{k}.model.1.weight"]
        assert torch.equal(m.model.lins[k].model[-1].weight, w) and (w >= 0).all()
    x0, x1 = _smooth_images(2, 40, seed=3), _smooth_images(2, 40, seed=4)
    with torch.no_grad():
        via_file = metrics.LPIPS("alex", alex_files / "alexnet-owt-7be5be79.pth", path)(x0, x1)
        torch.testing.assert_close(m(x0, x1), via_file, rtol=0, atol=0)
    with pytest.raises(ValueError, match="'alex' or 'vgg'"):
        metrics.package_lin_weights("squeeze")


def test_lpips_weight_errors_name_the_files(alex_files, tmp_path, monkeypatch):
    with pytest.raises(metrics.WeightsNotFoundError, match="nope.pth.*alexnet-owt-7be5be79.pth"):
        metrics.LPIPS("alex", backbone_weights=tmp_path / "nope.pth")
    assert issubclass(metrics.WeightsNotFoundError, FileNotFoundError)
    with pytest.raises(FileNotFoundError, match="missing_lin.pth.*alex.pth"):
        metrics.LPIPS("alex", backbone_weights=alex_files / "alexnet-owt-7be5be79.pth", lin_weights=tmp_path / "missing_lin.pth")
    # nothing given: the torch hub cache is searched, and the error says where and what
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    assert metrics.hub_checkpoint_dir() == cache
    with pytest.raises(FileNotFoundError, match=r"alexnet-owt-7be5be79\.pth.*never downloads"):
        metrics.LPIPS("alex")
    cache.mkdir(parents=True)
    (cache / "alexnet-owt-7be5be79.pth").write_bytes((alex_files / "alexnet-owt-7be5be79.pth").read_bytes())
    assert metrics.LPIPS("alex").variant == "baseline"  # found in the cache
    # wrong contents get a ValueError naming the file and the problem
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="garbage.pth"):
        metrics.LPIPS("alex", backbone_weights=bad)
    vgg_lin = {f"lin{k}.model.1.weight": torch.ones(1, c, 1, 1) for k, c in enumerate((64, 128, 256, 512, 512))}
    with pytest.raises(ValueError, match=r"lin1.model.1.weight has shape \(1, 128, 1, 1\)"):
        metrics.LPIPS("alex", backbone_weights=alex_files / "alexnet-owt-7be5be79.pth", lin_weights=vgg_lin)
    with pytest.raises(ValueError, match="does not fit"):
        metrics.LPIPS("vgg", backbone_weights=alex_files / "alexnet-owt-7be5be79.pth")
    with pytest.raises(ValueError, match="'alex' or 'vgg'"):
        metrics.LPIPS("squeeze", backbone_weights=alex_files / "alexnet-owt-7be5be79.pth")


def test_lpips_rejects_too_small_images(lpips_alex):
    x = torch.zeros(1, 3, 30, 30)
    with pytest.raises(ValueError, match="at least 31x31"):
        lpips_alex(x, x)


# ============================================================================================== FID
def _closed_form(mu1, var1, mu2, var2):
    """Frechet distance of Gaussians with diagonal (hence commuting) covariances."""
    return float(np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2)))


def test_frechet_distance_closed_forms():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 0.0])
    v1, v2 = np.array([1.0, 2.0, 0.5]), np.array([4.0, 0.5, 0.5])
    assert metrics.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(_closed_form(mu1, v1, mu2, v2), rel=1e-10)
    # general covariances: Tr((S1 S2)^1/2) = sum of square roots of the eigenvalues of S1 S2
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    expected = np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    assert metrics.frechet_distance(np.zeros(5), s1, np.zeros(5), s2) == pytest.approx(expected, rel=1e-8)
    assert metrics.frechet_distance(mu1, np.diag(v1), mu1, np.diag(v1)) == pytest.approx(0.0, abs=1e-9)
    # singular covariances (rank 1) still give a finite number
    u = rng.normal(size=(4, 1))
    assert math.isfinite(metrics.frechet_distance(np.zeros(4), u @ u.T, np.ones(4), 2 * u @ u.T))
    with pytest.raises(ValueError, match="inconsistent"):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


def test_fid_of_gaussian_features_matches_the_closed_form():
    g = _gen(0)
    mu1, mu2 = torch.tensor([0.0, 1.0, 0.0, -1.0]), torch.tensor([1.0, 1.0, 0.5, -1.0])
    sd1, sd2 = torch.tensor([1.0, 2.0, 0.5, 1.0]), torch.tensor([1.5, 1.0, 0.5, 3.0])
    n = 40000
    a = mu1 + sd1 * torch.randn(n, 4, generator=g, dtype=torch.float64)
    b = mu2 + sd2 * torch.randn(n, 4, generator=g, dtype=torch.float64)
    value = metrics.fid(a, b, nn.Identity(), batch_size=5000)
    expected = _closed_form(mu1.numpy(), sd1.numpy() ** 2, mu2.numpy(), sd2.numpy() ** 2)
    assert value == pytest.approx(expected, rel=0.03)
    assert metrics.fid(a, a, nn.Identity(), batch_size=5000) == pytest.approx(0.0, abs=1e-8)


def test_fid_with_a_plugged_in_feature_net_and_statistics_io(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    x = _smooth_images(64, 16, seed=10)
    loader = [(x[i : i + 10], torch.zeros(10)) for i in range(0, 64, 10)]  # (images, labels) batches
    mu, sigma = metrics.feature_statistics(x, net, batch_size=16)
    mu2, sigma2 = metrics.feature_statistics(loader, net)
    np.testing.assert_allclose(mu, mu2, rtol=1e-12)
    np.testing.assert_allclose(sigma, sigma2, rtol=1e-10, atol=1e-14)
    assert mu.shape == (8,) and sigma.shape == (8, 8)
    assert metrics.fid(x, x, net) == pytest.approx(0.0, abs=1e-6)
    shifted = [metrics.fid(x, (x + s).clamp(-1, 1), net) for s in (0.1, 0.3, 0.6)]
    assert 0 < shifted[0] < shifted[1] < shifted[2]
    metrics.save_statistics(tmp_path / "ref.npz", mu, sigma)
    m3, s3 = metrics.load_statistics(tmp_path / "ref.npz")
    assert np.array_equal(m3, mu) and np.array_equal(s3, sigma)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        metrics.load_statistics(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="at least 2"):
        metrics.feature_statistics(x[:1], net)


# ================================================================================ Inception (FID)
def _inception_state(tf_fid: bool, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    if tf_fid:
        net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
    else:
        net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    return net.state_dict()


def test_inception_features_from_a_tf_fid_state_dict():
    feat = metrics.InceptionFeatures(_inception_state(tf_fid=True))
    assert feat.variant == "pt_inception"
    x = _smooth_images(2, 32, seed=11)
    with torch.no_grad():
        f = feat(x)
    assert f.shape == (2, 2048) and torch.isfinite(f).all() and (f >= 0).all()  # pooled ReLU outputs
    from pytorch_fid.inception import FIDInceptionE_1, FIDInceptionE_2

    assert isinstance(feat.blocks[-2], FIDInceptionE_2) and isinstance(feat.blocks[-3], FIDInceptionE_1)  # Mixed_7c / 7b


def test_tf_fid_blocks_differ_from_torchvision_only_in_pooling():
    """pytorch-fid's blocks, which InceptionFeatures uses for the pt_inception file, are torchvision's with
    TF pooling: what makes their FID the TF FID."""
    from pytorch_fid.inception import FIDInceptionA, FIDInceptionE_2
    from torchvision.models.inception import InceptionA, InceptionE

    torch.manual_seed(0)
    ref_a, ref_e = InceptionA(8, pool_features=4).eval(), InceptionE(8).eval()
    fid_a, fid_e = FIDInceptionA(8, pool_features=4).eval(), FIDInceptionE_2(8).eval()
    fid_a.load_state_dict(ref_a.state_dict())
    fid_e.load_state_dict(ref_e.state_dict())
    x = torch.randn(2, 8, 7, 7, generator=_gen(12))
    with torch.no_grad():
        ya, yr = fid_a(x), ref_a(x)
        # zero padding only enters the average at the border: the interior is identical
        torch.testing.assert_close(ya[:, :, 1:-1, 1:-1], yr[:, :, 1:-1, 1:-1])
        assert not torch.allclose(ya[:, -4:, 0], yr[:, -4:, 0])
        ye = fid_e(x)
        torch.testing.assert_close(ye[:, -192:], ref_e.branch_pool(F.max_pool2d(x, 3, 1, 1)))
        torch.testing.assert_close(ye[:, :-192], ref_e(x)[:, :-192])


def test_inception_features_torchvision_layout_and_file_errors(tmp_path, monkeypatch):
    feat = metrics.InceptionFeatures(_inception_state(tf_fid=False))
    assert feat.variant == "torchvision"
    with pytest.raises(FileNotFoundError, match="no_inception.pth.*pt_inception-2015-12-05-6726825d.pth"):
        metrics.InceptionFeatures(tmp_path / "no_inception.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="inception_v3_google-0cc3c7bd.pth"):
        metrics.InceptionFeatures()
    # a file found in the cache by name but holding another network: ValueError naming it
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save({"conv.weight": torch.zeros(1)}, cache / "inception_v3_google-0cc3c7bd.pth")
    with pytest.raises(ValueError, match="inception_v3_google-0cc3c7bd.pth does not fit"):
        metrics.InceptionFeatures()


# ============================================================================================== SWD
def test_sliced_wasserstein_zero_shift_and_linearity():
    a = torch.randn(300, 6, generator=_gen(0), dtype=torch.float64)
    assert metrics.sliced_wasserstein(a, a) == 0.0
    delta = torch.tensor([1.0, -0.5, 0.25, 0.0, 2.0, 1.0], dtype=torch.float64)
    d1 = metrics.sliced_wasserstein(a, a + delta, n_directions=256, seed=3)
    d2 = metrics.sliced_wasserstein(a, a + 2 * delta, n_directions=256, seed=3)
    # a pure shift moves every 1-D projection by delta . u: SWD = mean |delta . u|, linear in delta
    assert d2 == pytest.approx(2 * d1, rel=1e-12)
    D = 6
    mean_abs = delta.norm().item() * math.gamma(D / 2) / (math.sqrt(math.pi) * math.gamma((D + 1) / 2))
    assert d1 == pytest.approx(mean_abs, rel=0.1)
    assert metrics.sliced_wasserstein(a, a + delta, seed=1) == metrics.sliced_wasserstein(a, a + delta, seed=1)


def test_sliced_wasserstein_unequal_sizes_is_exact_in_1d():
    a = torch.tensor([[0.0], [1.0]])
    b = torch.tensor([[0.0], [0.5], [1.0]])
    assert metrics.sliced_wasserstein(a, b, n_directions=4, repeats=1) == pytest.approx(1 / 6)
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=37), rng.normal(1.0, 2.0, size=23)
    ours = metrics.sliced_wasserstein(torch.tensor(u)[:, None], torch.tensor(v)[:, None], n_directions=3, repeats=1)
    assert ours == pytest.approx(stats.wasserstein_distance(u, v), rel=1e-10)
    with pytest.raises(ValueError, match="point sets"):
        metrics.sliced_wasserstein(torch.zeros(3, 2), torch.zeros(3, 3))


def test_laplacian_pyramid_matches_opencv_pyrdown():
    img = np.random.default_rng(2).random((32, 32, 3)).astype(np.float32)
    pyr = metrics.laplacian_pyramid(torch.from_numpy(img).permute(2, 0, 1)[None], 3)
    assert [p.shape[-1] for p in pyr] == [32, 16, 8]
    np.testing.assert_allclose(pyr[2][0].permute(1, 2, 0).numpy(), cv2.pyrDown(cv2.pyrDown(img)), atol=1e-5)
    up = cv2.pyrUp(cv2.pyrDown(img))
    np.testing.assert_allclose(pyr[0][0].permute(1, 2, 0).numpy(), img - up, atol=1e-5)


def test_swd_images_zero_for_identical_sets_and_grows_with_noise():
    x = _smooth_images(12, 32, seed=13)
    kw = dict(patches_per_image=32, n_directions=64, repeats=2, batch_size=5, seed=0)
    same = metrics.swd_images(x, x.clone(), **kw)
    assert set(same) == {32, 16, "mean"}
    assert all(v == 0.0 for v in same.values())
    noise = torch.randn(x.shape, generator=_gen(14))
    means = [metrics.swd_images(x, x + s * noise, **kw)["mean"] for s in (0.05, 0.2, 0.5)]
    assert 0 < means[0] < means[1] < means[2]
    with pytest.raises(ValueError, match="at least 16 px"):
        metrics.swd_images(x[:, :, :8, :8], x[:, :, :8, :8])


# ============================================================================================== PPL
class LinearDecoder(nn.Module):
    """decode(z) = scale * z as a (3, 4, 4) image: the path length in image space is the latent one."""

    kind = "toy"
    resolution = 4
    latent_shape = (48,)
    has_encoder = False

    def __init__(self, geometry="sphere", scale=1.0):
        super().__init__()
        self.latent_geometry = geometry
        self.scale = nn.Parameter(torch.tensor(float(scale)), requires_grad=False)

    def decode(self, z):
        return self.scale * z.reshape(len(z), 3, 4, 4)

    def encode(self, x):
        raise RuntimeError("this toy backbone has no encoder (has_encoder is False)")


def _sq_dist(a, b):
    return (a - b).pow(2).flatten(1).sum(1)


def test_ppl_of_a_linear_decoder_is_the_squared_angle():
    """On the sphere |d slerp / dt| = omega, so PPL = E[omega^2] for the squared-L2 distance."""
    res = metrics.perceptual_path_length(LinearDecoder(), _sq_dist, n=200, eps=1e-3, batch_size=64, seed=0)
    assert res.distances.shape == (200,)
    bb = LinearDecoder()
    g = _gen(99)
    omega = angle_between(sample_latents(bb, 20000, g).double(), sample_latents(bb, 20000, g).double())
    assert res.ppl == pytest.approx(omega.pow(2).mean().item(), rel=0.03)
    # same seed -> same value; a decoder twice as large -> four times the path length
    again = metrics.perceptual_path_length(LinearDecoder(), _sq_dist, n=200, eps=1e-3, batch_size=50, seed=0)
    np.testing.assert_allclose(again.distances, res.distances, rtol=1e-4)
    double = metrics.perceptual_path_length(LinearDecoder(scale=2.0), _sq_dist, n=200, eps=1e-3, batch_size=64, seed=0)
    np.testing.assert_allclose(double.distances, 4 * res.distances, rtol=1e-4)


def test_ppl_euclidean_uses_lerp_and_validates():
    res = metrics.perceptual_path_length(LinearDecoder("euclidean"), _sq_dist, n=300, eps=1e-2, batch_size=100, seed=1, sampling="end")
    assert res.ppl == pytest.approx(2 * 48, rel=0.1)  # E|z1 - z0|^2 for N(0, I) in 48 dims
    with pytest.raises(ValueError, match="space must be 'z'"):
        metrics.perceptual_path_length(LinearDecoder(), _sq_dist, n=2, space="w")
    with pytest.raises(ValueError, match="sampling"):
        metrics.perceptual_path_length(LinearDecoder(), _sq_dist, n=2, sampling="mid")


def test_face_crop_region():
    x = torch.arange(64.0).reshape(1, 1, 8, 8).expand(1, 3, 8, 8)
    c = metrics.face_crop(x)
    assert c.shape == (1, 3, 4, 4)
    assert torch.equal(c[0, 0], x[0, 0, 3:7, 2:6])
