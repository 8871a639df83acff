"""Train the bundled default backbone: a 32 px Pioneer autoencoder on rendered multi-view object data.

This is how ``generative/weights/pioneer32_tabletop.safetensors`` (the backbone ``viewgp demo`` and the
pipeline commands use when no ``--backbone`` is given) was made, with our own renderer and training code:

1. renders training images at 64 px (area-resized to 32 px by the data loader, which anti-aliases the
   checkered ground): hand-held phone runs over the tabletop scene (``sequences.synthetic.phone_run``)
   with seeds 1..``--phone-runs`` (every seed places the objects differently and draws another
   trajectory; seed 0, the demo's run, is never rendered for training), plus turntable views of every
   bundled mesh on white (the ShapeNet-chairs-like setting of ``examples/novel_views_chairs.py``, whose
   *novel* views sit between these training azimuths);
2. trains ``generative.training.train`` (progressive growing 4 -> 32 px, Pioneer networks, 512-d sphere
   latent) with a *reconstruction-first* recipe that fits a ~20-minute CPU budget: AGE's generator-side
   reconstruction term on (``decoder_recon_weight=1``), the KL game off (``kl_weight=0``), Adam betas
   (0.5, 0.99) and decoder EMA 0.99. Measured on this machine: the paper recipe (Balanced Pioneer, KL
   0.1, betas (0, 0.9), EMA 0.999, decoder trained only through the encoder) reconstructed the held-out
   demo run *worse* than the mean image after 45 minutes (RMSE 0.198 vs 0.170), and on a fixed batch
   the reconstruction-first Pioneer lowered L1 from 0.80 to 0.16 in 80 steps where the paper recipe
   reached 0.30. The pipeline needs an encoder and decoder that reconstruct; random samples from the
   prior are not its point (train with the paper recipe, on a GPU, for a generative model);
3. measures held-out reconstruction RMSE on the demo's own run (seed 0) against the mean-image baseline
   and copies the EMA export to ``--weights``.

    .venv/bin/python examples/train_default_backbone.py --out /tmp/default32 --threads 2

About 20 minutes on 2 CPU cores. ``--resume`` continues a killed run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads crawl on a shared CPU

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generative import load  # noqa: E402
from generative.backbone import to_model_images  # noqa: E402
from generative.data import ImageFolderDataset, square_resize, stack_images  # noqa: E402
from generative.training.loop import TrainConfig, train  # noqa: E402

WEIGHTS = Path(__file__).resolve().parents[1] / "generative" / "weights" / "pioneer32_tabletop.safetensors"


def _write_pngs(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def render_training_set(root: Path, phone_runs: int, frames_per_run: int, size: int = 64) -> Path:
    """Render the training images into ``root`` (one sub-folder per run / object); returns ``root``."""
    from sequences.synthetic import object_names, phone_run, turntable_run

    done = root / ".complete"
    if done.exists():
        return root
    for seed in range(1, phone_runs + 1):
        run = phone_run(frames_per_run, size=size, seed=seed)
        _write_pngs(root / f"phone_{seed:03d}", np.asarray(run.frames))
    for obj in object_names():
        run = turntable_run(obj, azimuths_deg=np.arange(0, 360, 10.0), elevations_deg=(0.0, 15.0, 30.0, 45.0),
                            size=size, jitter_deg=1.0, seed=1)
        _write_pngs(root / f"turntable_{obj}", np.asarray(run.frames))
    done.write_text("ok\n")
    return root


def rmse01(a: torch.Tensor, b: torch.Tensor) -> float:
    """RMSE on the [0, 1] intensity scale of two [-1, 1] image batches."""
    return float(((a - b) / 2).pow(2).mean().sqrt())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/default32", help="working folder (data, run, eval.json)")
    p.add_argument("--phone-runs", type=int, default=64)
    p.add_argument("--frames-per-run", type=int, default=60)
    p.add_argument("--images-per-phase", default="4=4000,8=8000,16=16000,32=48000")
    p.add_argument("--decoder-recon-weight", type=float, default=1.0,
                   help="AGE's generator-side L1 weight (0 = the paper recipe; 1 makes a 40-minute CPU run usable)")
    p.add_argument("--variant", default="pioneer", choices=("pioneer", "balanced"))
    p.add_argument("--kl-weight", type=float, default=0.0,
                   help="weight of the encoder's KL game (paper 0.1; 0 = reconstruction first, for a short run)")
    p.add_argument("--betas", default="0.5,0.99", help="Adam betas (paper: 0,0.99 Pioneer / 0,0.9 Balanced)")
    p.add_argument("--ema-decay", type=float, default=0.99,
                   help="decoder EMA (paper 0.999, which keeps ~20%% of the initial weights after 1600 steps)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--weights", default=str(WEIGHTS), help="where to copy the exported EMA weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--eval-only", action="store_true", help="skip training; evaluate OUT/run/model.safetensors")
    p.add_argument("--grid", default=str(Path(__file__).with_name("pioneer32_tabletop_grid.png")))
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    out = Path(args.out)
    t0 = time.perf_counter()
    data = render_training_set(out / "data", args.phone_runs, args.frames_per_run)
    print(f"training images ready in {time.perf_counter() - t0:.1f} s", flush=True)

    if not args.eval_only:
        ipp = {int(k): int(v) for k, v in (item.split("=") for item in args.images_per_phase.split(","))}
        cfg = TrainConfig(
            variant=args.variant, resolution=32, out_dir=str(out / "run"), data=str(data), cache_images=True,
            channel_base=512, max_channels=64, images_per_phase=ipp, batch_size=32, lr=1e-3, decoder_updates=1,
            decoder_recon_weight=args.decoder_recon_weight, kl_weight=args.kl_weight, ema_decay=args.ema_decay,
            betas=tuple(float(b) for b in args.betas.split(",")),
            seed=args.seed, threads=args.threads, checkpoint_every=8000, sample_every=16000, log_every=20,
        )
        t0 = time.perf_counter()
        train(cfg, resume=args.resume)
        (out / "train_wall_s.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")

    from sequences.synthetic import phone_run

    model = load(out / "run" / "model.safetensors")
    demo = np.asarray(phone_run(120, size=64, seed=0).frames)  # the demo's run: never trained on
    x = to_model_images(np.stack([square_resize(f, 32) for f in demo]))
    train_set = ImageFolderDataset(data, 32, flip=False)
    with torch.no_grad():
        recon = model.decode(model.encode(x)).clamp(-1, 1)
        mean_img = stack_images(train_set, range(train_set.num_images()), 32).mean(0, keepdim=True)
        samples = model.generate(8, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    wall = out / "train_wall_s.txt"
    result = {
        "train_images": train_set.num_images(),
        "heldout": "phone_run(120, seed=0), the demo run (never trained on)",
        "rmse_model": rmse01(recon, x),
        "rmse_mean_image": rmse01(mean_img.expand_as(x), x),
        "train_wall_s": float(wall.read_text()) if wall.exists() else None,
    }
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))

    from torchvision.utils import save_image

    pick = torch.arange(0, 120, 15)
    grid = torch.cat([x[pick], recon[pick], samples])
    save_image((grid + 1) / 2, args.grid, nrow=8, padding=1)
    print(f"grid (held-out frames / reconstructions / random samples): {args.grid}")
    Path(args.weights).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "run" / "model.safetensors", args.weights)
    print(f"bundled weights: {args.weights} ({os.path.getsize(args.weights) / 2**20:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
