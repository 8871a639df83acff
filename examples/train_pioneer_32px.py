"""Train a small 32 px Balanced Pioneer on CPU on rendered turntable views and measure held-out reconstruction.

1. Renders turntable views of every bundled mesh (``sequences.synthetic``, pybullet TinyRenderer) into an
   image folder: a training grid of azimuths x elevations and a held-out set of *other* views
   (azimuths and elevations half-way between the training ones). With ``--synthetic`` the procedural
   ``SyntheticImageDataset`` is used instead (no pybullet needed).
2. Trains ``generative.training.train`` (progressive growing 4 -> 32 px) with the settings below.
3. Reports the held-out reconstruction RMSE of the EMA model against the mean-image baseline and
   writes a grid (held-out images, their reconstructions, random samples).

    .venv/bin/python examples/train_pioneer_32px.py --out /tmp/pioneer32 --threads 2

The same training from the command line (after the export step, data in /tmp/pioneer32/data/train):

    viewgp train balanced --data /tmp/pioneer32/data/train --resolution 32 --out /tmp/pioneer32/run \\
        --channel-base 512 --max-channels 64 --images-per-phase 4=64000,8=48000,16=48000,32=64000 \\
        --batch-size 32 --lr 1e-3 --decoder-updates 1 --cache-images --threads 2

Settings chosen for a CPU budget of ~20 minutes: batch 32 at every resolution (more, cheaper steps), lr 1e-3
(the original makeTS rate for datasets other than CelebA-HQ / LSUN), the default Balanced margins (0.05 up
to 32 px), one decoder update per encoder update (the Balanced README's advice for new training), widths
64, 64, 32, 16 channels at 4, 8, 16, 32 px with the 512-d latent, and a mid-grey render background.

The committed grid ``examples/balanced_pioneer_32px_grid.png`` (held-out RMSE 0.079 vs 0.141 for the mean
image, i.e. 3.1x lower MSE; 26 min on one CPU thread beside other jobs) used a *reconstruction-first*
variant of these settings -- AGE's generator-side L1 on, the KL game at a fifth of the paper's weight,
Adam betas (0.5, 0.99), decoder EMA 0.99 -- and shorter phases:

    .venv/bin/python examples/train_pioneer_32px.py --out /tmp/pioneer32 --kl-weight 0.02 \
        --decoder-recon-weight 1 --betas 0.5,0.99 --ema-decay 0.99 \
        --images-per-phase 4=8000,8=16000,16=24000,32=64000

The paper recipe reached 0.1035 after an hour on 2 cores (decoder trained only through the latent cycle,
which a short CPU run barely starts to learn).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# On a shared CPU, OpenMP threads that spin while waiting for each other turn a 2-thread run into a crawl
# (measured: 10x slower convolutions when another process holds a core); waiting passively avoids that.
# It must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generative import load  # noqa: E402
from generative.images.datasets import ImageFolderDataset, SyntheticImageDataset, stack_images  # noqa: E402
from generative.training.loop import TrainConfig, train  # noqa: E402


def export_views(root: Path, size: int = 64, background=(128, 128, 128)) -> tuple[Path, Path]:
    """Render training and held-out turntable views of every mesh as PNGs; returns (train, heldout).

    A mid-grey background keeps the data mean near 0 in [-1, 1]: the decoder gets no pixel loss (AGE),
    so its output offset can only drift towards the data through the adversarial KL terms, slowly.
    """
    from sequences.synthetic import object_names, turntable_run

    sets = {
        # training views: 36 azimuths x 4 elevations per object
        "train": dict(azimuths_deg=np.arange(0, 360, 10.0), elevations_deg=(0.0, 15.0, 30.0, 45.0), seed=1),
        # held-out views in between: azimuths offset by 5 deg, elevations half-way
        "heldout": dict(azimuths_deg=np.arange(5, 360, 20.0), elevations_deg=(7.5, 22.5, 37.5), seed=2),
    }
    out = {}
    for name, kw in sets.items():
        folder = root / name
        for obj in object_names():
            run = turntable_run(obj, size=size, jitter_deg=1.0, background=background, **kw)
            (folder / obj).mkdir(parents=True, exist_ok=True)
            for i, frame in enumerate(np.asarray(run.frames)):
                cv2.imwrite(str(folder / obj / f"{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        out[name] = folder
    return out["train"], out["heldout"]


def prepare_data(out: Path, synthetic: bool, resume: bool, seed: int):
    """``(training folder or None, held-out dataset, training dataset)`` at 32 px: rendered turntable
    views (re-used when resuming) or, with ``synthetic``, the procedural dataset."""
    if synthetic:
        return None, SyntheticImageDataset(256, 32, seed=seed, offset=10_000), SyntheticImageDataset(2000, 32, seed=seed)
    t0 = time.perf_counter()
    if resume and (out / "data" / "heldout").is_dir():
        train_dir, held_dir = out / "data" / "train", out / "data" / "heldout"
    else:
        train_dir, held_dir = export_views(out / "data")
    print(f"rendered views in {time.perf_counter() - t0:.1f} s", flush=True)
    return str(train_dir), ImageFolderDataset(held_dir, 32, flip=False), ImageFolderDataset(train_dir, 32, flip=False)


def parse_images_per_phase(spec: str):
    """``'N'`` -> N images per phase; ``'4=64000,8=48000,...'`` -> a per-resolution dict."""
    if "=" in spec:
        return {int(k): int(v) for k, v in (item.split("=") for item in spec.split(","))}
    return int(spec)


def rmse01(a: torch.Tensor, b: torch.Tensor) -> float:
    """RMSE on the [0, 1] intensity scale of two [-1, 1] image batches."""
    return float(((a - b) / 2).pow(2).mean().sqrt())


def add_training_args(p: argparse.ArgumentParser, out_default: str, grid_default: str) -> None:
    """The options both 32 px examples (Balanced Pioneer, automodulator) take."""
    p.add_argument("--out", default=out_default, help="working folder (data, run, eval.json)")
    p.add_argument("--synthetic", action="store_true", help="procedural images instead of rendered objects")
    p.add_argument("--images-per-phase", default="4=64000,8=48000,16=48000,32=64000",
                   help="N or RES=N,... (default 4=64000,8=48000,16=48000,32=64000)")
    p.add_argument("--total-images", type=int, default=None, help="default: the sum of the phases")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--channel-base", type=int, default=512)
    p.add_argument("--max-channels", type=int, default=64)
    p.add_argument("--decoder-updates", type=int, default=1)
    p.add_argument("--decoder-recon-weight", type=float, default=0.0, help="AGE's generator-side L1 (paper: 0)")
    p.add_argument("--kl-weight", type=float, default=0.1, help="encoder KL game weight (paper: 0.1)")
    p.add_argument("--betas", default=None, help="Adam betas, e.g. 0.5,0.99 (default: the variant's paper values)")
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--grid", default=grid_default)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in OUT/run from its newest checkpoint")


def training_kwargs(args: argparse.Namespace, out: Path, data: str) -> dict:
    """``TrainConfig`` keyword arguments from :func:`add_training_args` options (all but ``variant``)."""
    ipp = parse_images_per_phase(args.images_per_phase)
    step_images = max(min(ipp.values()) if isinstance(ipp, dict) else ipp, 2)
    return dict(
        resolution=32,
        out_dir=str(out / "run"),
        data=data,
        synthetic=2000 if args.synthetic else 0,
        cache_images=True,
        channel_base=args.channel_base,
        max_channels=args.max_channels,
        images_per_phase=ipp,
        total_images=args.total_images,
        batch_size=args.batch_size,
        lr=args.lr,
        decoder_updates=args.decoder_updates,
        decoder_recon_weight=args.decoder_recon_weight,
        kl_weight=args.kl_weight,
        betas=tuple(float(b) for b in args.betas.split(",")) if args.betas else None,
        ema_decay=args.ema_decay,
        seed=args.seed,
        threads=args.threads,
        checkpoint_every=step_images // 2,
        sample_every=step_images // 2,
        log_every=20,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(p, "/tmp/pioneer32", str(Path(__file__).with_name("balanced_pioneer_32px_grid.png")))
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    out = Path(args.out)
    data, heldout, train_set = prepare_data(out, args.synthetic, args.resume, args.seed)
    cfg = TrainConfig(variant="balanced", **training_kwargs(args, out, data))
    t0 = time.perf_counter()
    train(cfg, resume=args.resume)
    wall = time.perf_counter() - t0

    model = load(out / "run" / "model.safetensors")  # the shipped weights: encoder + EMA decoder
    x = stack_images(heldout, range(heldout.num_images()), 32)
    with torch.no_grad():
        recon = torch.cat([model.decode(model.encode(b)) for b in x.split(128)])
        mean_img = stack_images(train_set, range(train_set.num_images()), 32).mean(0, keepdim=True)
        samples = model.generate(8, generator=torch.Generator().manual_seed(0))
    result = {
        "heldout_images": int(x.shape[0]),
        "rmse_model": rmse01(recon.clamp(-1, 1), x),
        "rmse_mean_image": rmse01(mean_img.expand_as(x), x),
        "train_wall_s": round(wall, 1),
        "model_file": str(out / "run" / "model.safetensors"),
        "model_file_mb": round(os.path.getsize(out / "run" / "model.safetensors") / 2**20, 2),
        "config": cfg.to_dict(),
    }
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=2))

    from torchvision.utils import save_image

    pick = torch.linspace(0, x.shape[0] - 1, 8).long()
    grid = torch.cat([x[pick], recon[pick], samples]).clamp(-1, 1)
    save_image((grid + 1) / 2, args.grid, nrow=8, padding=1)
    print(f"grid (held-out / reconstruction / samples): {args.grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
