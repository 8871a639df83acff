"""Image metrics: pixel errors and SSIM, LPIPS, FID, sliced Wasserstein distance and perceptual path length.

Images are ``(B, 3, H, W)`` float tensors in [-1, 1] unless a function says otherwise. One module per
family: :mod:`.pixel` (MSE, RMSE, PSNR, SSIM), :mod:`.lpips`, :mod:`.fid`, :mod:`.swd`, :mod:`.ppl`;
:mod:`.weights` reads the networks' weights from local files (nothing here downloads; its docstring
lists the files each network accepts). Every public name is re-exported here.

Maintained packages compute what they compute the same way: SSIM is scikit-image's, LPIPS the ``lpips``
package's, the TF FID Inception pytorch-fid's (all from local weights). What stays ours says why in its
module docstring (the fast per-frame SSIM, the Frechet distance, SWD, PPL, weight loading).
"""

from generative.metrics.batches import Images
from generative.metrics.fid import (
    FID_INCEPTION_FILE,
    TORCHVISION_INCEPTION_FILE,
    InceptionFeatures,
    feature_statistics,
    fid,
    frechet_distance,
    load_statistics,
    save_statistics,
)
from generative.metrics.lpips import LPIPS, package_lin_weights
from generative.metrics.pixel import mse, psnr, rmse, ssim, ssim_uint8
from generative.metrics.ppl import PPLResult, face_crop, perceptual_path_length
from generative.metrics.swd import laplacian_pyramid, sliced_wasserstein, swd_images
from generative.metrics.weights import WeightsNotFoundError, WeightsSource, hub_checkpoint_dir

__all__ = [
    "mse",
    "rmse",
    "psnr",
    "ssim",
    "ssim_uint8",
    "WeightsNotFoundError",
    "hub_checkpoint_dir",
    "LPIPS",
    "package_lin_weights",
    "InceptionFeatures",
    "feature_statistics",
    "frechet_distance",
    "fid",
    "save_statistics",
    "load_statistics",
    "sliced_wasserstein",
    "laplacian_pyramid",
    "swd_images",
    "face_crop",
    "PPLResult",
    "perceptual_path_length",
]
