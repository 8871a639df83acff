"""Train the bundled default backbone: a 64 px Pioneer autoencoder on rendered tabletop runs and turntables,
then fine-tuned on those renders together with crops of real photographs.

This is how ``generative/weights/pioneer64_default.safetensors`` (the backbone ``viewgp demo`` and the
pipeline commands use when no ``--backbone`` is given) was made, with our own renderer and training code:

1. renders training images at 128 px (area-resized to 64 px by the data loader, which anti-aliases the
   checkered ground as the demo's 256 px frames are when they are encoded):
   * hand-held phone runs over tabletop scenes (``sequences.synthetic.phone_run``) with seeds
     1..``--phone-runs``; every seed draws another trajectory and places the objects differently, and the
     objects vary by seed: the demo's five meshes, a random subset of the eight bundled meshes, or meshes
     mixed with procedurally generated objects ``random_100`` ... ``random_999``. Seed 0, the demo's run,
     is never rendered for training;
   * turntable views (white background, the ShapeNet-chairs-like setting of ``examples/novel_views_chairs.py``)
     of the eight meshes and of ``random_000`` ... ``random_024``; ``random_025`` ... ``random_049`` are held
     out of training so the novel-view reproduction can report objects the backbone never saw;
2. trains ``generative.training.train`` (progressive growing 4 -> 64 px, Pioneer networks: spectral-norm
   encoder, equalized-lr + PixelNorm decoder, 512-d sphere latent) with the *reconstruction* recipe: AGE's
   generator-side reconstruction term on (``decoder_recon_weight=1``), the KL game off (``kl_weight=0``),
   the decoder's latent-cycle loss on (weight 100), Adam betas (0.5, 0.99), decoder EMA 0.995, bfloat16
   autocast with channels-last activations where the hardware computes bfloat16 natively (2.3x the
   float32 images/s on an AMX CPU, measured; float32 elsewhere: ``--precision auto``);
3. measures held-out reconstruction of the demo's own run (seed 0, 120 frames rendered at 256 px, encoded
   at 64 px) as RMSE and PSNR against the mean-image baseline, and copies the EMA export (half precision,
   a few MB) to ``--weights``.

    .venv/bin/python examples/train_default_backbone.py --out /tmp/default64 --threads 1

Real photographs: ``--photos`` adds random crops of BSDS500's ``train`` and ``val`` photographs
(``../shared/data/natural/``; at several scales, flipped, colour-jittered; ``test`` is never trained on) to the
renders, ``--photo-crops`` crops of each photograph per epoch, and ``--finetune IMAGES`` starts from
``--init-from`` (default: the bundled weights) instead of growing a new network: IMAGES more images at 64 px.
The evaluation then also reports held-out PSNR on 1,000 fixed crops of BSDS500's ``test`` photographs at
64 px, and on every real capture under ``../shared/data/captures/`` at the pipeline's 256 px output (each
photograph centre-cropped, encoded at 64 px, decoded and resized to 256 px, as ``viewgp interpolate`` does
for its per-frame row); ``--eval-only`` appends these to ``curve.jsonl`` (the learning curve).

The bundled weights are three runs of this script (docs/backbones.md, "The bundled backbone", has the curve):

    # 1. renders only, grown 4 -> 64 px: 400k images (the weights shipped until December 2026)
    .venv/bin/python examples/train_default_backbone.py --out runs/stage1 --threads 1
    # 2. + photographs, lr 3e-4: stopped after 96k images (432k counted from the start of growth)
    .venv/bin/python examples/train_default_backbone.py --out runs/stage2 --threads 2 --photos --photo-crops 100 \
        --finetune 200000 --lr 64=0.0003 --init-from runs/stage1/run/model.safetensors
    # 3. the same data, lr 1e-4: stopped after 32k images, exported from that checkpoint
    .venv/bin/python examples/train_default_backbone.py --out runs/stage3 --threads 2 --photos --photo-crops 100 \
        --finetune 64000 --lr 64=0.0001 --init-from runs/stage2/run/checkpoints/ckpt_000000432000.pt
    .venv/bin/python examples/train_default_backbone.py --out runs/stage3 --eval-only --export

``--resume`` continues a killed run; ``--eval-only`` evaluates the newest checkpoint (or the finished
export) without training, so the learning curve can be read while training goes on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads crawl on a shared CPU

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generative.backbones.registry import to_model_images  # noqa: E402
from generative.images.datasets import PhotoCropDataset  # noqa: E402
from generative.images.geometry import square_resize  # noqa: E402
from generative.public_data import missing_reason, public_data_folder  # noqa: E402
from generative.training.loop import TrainConfig, train  # noqa: E402

WEIGHTS = Path(__file__).resolve().parents[1] / "generative" / "weights" / "pioneer64_default.safetensors"
DEMO_SCENE = ("duck", "teddy", "soccerball", "mug", "lego")
#: Turntable objects in the training set; random_025 ... random_049 are held out (see module docstring).
TRAIN_TURNTABLE_RANDOM = range(0, 25)
HELDOUT_TURNTABLE_RANDOM = range(25, 50)
RENDER_SIZE = 128
RESOLUTION = 64


def _write_pngs(folder: Path, frames: np.ndarray) -> None:
    from generative.images.imageio import write_image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        write_image(folder / f"{i:04d}.png", frame)


def phone_scene_names(seed: int) -> list[str]:
    """The objects of training phone run ``seed``: the demo's five meshes, a random subset of the eight
    meshes, or meshes mixed with procedural objects ``random_100`` ... (every third seed each)."""
    from sequences.synthetic import object_names, random_object_names

    rng = np.random.default_rng(10_000 + seed)
    meshes, procedural = object_names(), random_object_names(100)
    kind = seed % 3
    if kind == 0:
        return list(DEMO_SCENE)
    if kind == 1:
        return [str(n) for n in rng.choice(meshes, size=int(rng.integers(3, 7)), replace=False)]
    return ([str(n) for n in rng.choice(meshes, size=int(rng.integers(1, 4)), replace=False)]
            + [str(n) for n in rng.choice(procedural, size=int(rng.integers(2, 4)), replace=False)])


def _render_job(job: tuple) -> str:
    from sequences.synthetic import phone_run, tabletop_scene, turntable_run

    kind, arg, frames_per_run, folder = job
    folder = Path(folder)
    if (folder / ".done").exists():
        return str(folder)
    if kind == "phone":
        run = phone_run(frames_per_run, size=RENDER_SIZE, seed=arg, scene=tabletop_scene(phone_scene_names(arg), seed=arg))
    else:
        run = turntable_run(arg, azimuths_deg=np.arange(0, 360, 10.0), elevations_deg=(0.0, 15.0, 30.0, 45.0),
                            size=RENDER_SIZE, jitter_deg=1.0, seed=1, distance=1.4, fov_deg=40.0)
    _write_pngs(folder, np.asarray(run.frames))
    (folder / ".done").write_text("ok\n")
    return str(folder)


def render_training_set(root: Path, phone_runs: int, frames_per_run: int, workers: int) -> Path:
    """Render the training images into ``root`` (one sub-folder per run / object); resumable."""
    from sequences.synthetic import object_names, random_object_names

    if (root / ".complete").exists():
        return root
    jobs = [("phone", s, frames_per_run, str(root / f"phone_{s:04d}")) for s in range(1, phone_runs + 1)]
    objects = object_names() + random_object_names(TRAIN_TURNTABLE_RANDOM.start, TRAIN_TURNTABLE_RANDOM.stop)
    jobs += [("turntable", o, 0, str(root / f"turntable_{o}")) for o in objects]
    with Pool(workers) as pool:
        for i, _ in enumerate(pool.imap_unordered(_render_job, jobs), 1):
            if i % 50 == 0 or i == len(jobs):
                print(f"rendered {i}/{len(jobs)} runs", flush=True)
    (root / ".complete").write_text("ok\n")
    return root


def demo_frames() -> torch.Tensor:
    """The demo's run (seed 0, never trained on) as the backbone sees it: ``(120, 3, 64, 64)`` in [-1, 1]."""
    from sequences.synthetic import phone_run

    frames = np.asarray(phone_run(120, size=256, seed=0).frames)
    return to_model_images(np.stack([square_resize(f, RESOLUTION) for f in frames]))


def bsds_test_crops(resolution: int = RESOLUTION) -> torch.Tensor:
    """1,000 fixed crops (5 per photograph, no jitter) of BSDS500's test photographs, never trained on:
    ``(1000, 3, r, r)`` in [-1, 1]; None when ../shared/data/natural/ is absent."""
    natural = public_data_folder("natural")
    if natural is None:
        return None
    crops = PhotoCropDataset(natural / "test", resolution, crops_per_image=5, jitter=0.0, seed=2025, flip=False)
    return torch.stack([crops[i] for i in range(crops.num_images())])


def capture_psnr(model, size: int = 256) -> dict:
    """Per-frame reconstruction PSNR of every real capture at the pipeline's output size: each photograph
    centre-cropped and area-resized to 64 px, encoded, decoded, resized to ``size`` px and compared with the
    photograph resized to ``size`` px (``viewgp interpolate``'s per-frame row)."""
    from generative.images.geometry import square_resize_frames
    from generative.images.imageio import list_images, read_image
    from generative.latents.frames import decode_frames, encode_frames

    captures = public_data_folder("captures")
    out = {}
    for folder in sorted(captures.iterdir()) if captures is not None else []:
        if not (folder / "images").is_dir():
            continue
        frames = [read_image(f) for f in list_images(folder / "images")]
        truth = square_resize_frames(frames, size).astype(np.float32) / 255
        # the pipeline's own encode and decode of frame arrays, so this is its per-frame row
        recon = decode_frames(model, encode_frames(model, np.stack(frames), progress=False))
        out[folder.name] = psnr01(float(((square_resize_frames(recon, size).astype(np.float32) / 255 - truth) ** 2).mean()))
    return out


def psnr01(mse: float) -> float:
    return 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")


def evaluate(model, x: torch.Tensor, mean_image: torch.Tensor) -> dict:
    """Reconstruction MSE / RMSE / PSNR on the [0, 1] scale, against the mean training image."""
    with torch.no_grad():
        recon = model.decode(model.encode(x)).clamp(-1, 1)
    mse = float(((recon - x) / 2).pow(2).mean())
    mse_mean = float(((mean_image.expand_as(x) - x) / 2).pow(2).mean())
    return {"mse": mse, "rmse": math.sqrt(mse), "psnr_db": psnr01(mse),
            "mean_image_mse": mse_mean, "mean_image_psnr_db": psnr01(mse_mean), "recon": recon}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/default64", help="working folder (data, run, eval.json)")
    p.add_argument("--phone-runs", type=int, default=420, help="rendered training phone runs (seeds 1..N)")
    p.add_argument("--frames-per-run", type=int, default=60)
    p.add_argument("--images-per-phase", default="4=16000,8=32000,16=64000,32=96000,64=128000",
                   help="progressive-growing schedule, resolution=images (fade-in: the first half of each phase)")
    p.add_argument("--total-images", type=int, default=1_500_000,
                   help="images in all; after the last phase training goes on at 64 px (stop it any time: "
                        "--eval-only reads the newest checkpoint)")
    p.add_argument("--channel-base", type=int, default=1024)
    p.add_argument("--max-channels", type=int, default=128)
    p.add_argument("--min-channels", type=int, default=32)
    p.add_argument("--lr", default="4=0.001,8=0.001,16=0.001,32=0.001,64=0.0005")
    p.add_argument("--ema-decay", type=float, default=0.995)
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="auto: bfloat16 where the CPU/GPU computes it natively, else float32 (generative.precision)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--render-workers", type=int, default=2)
    p.add_argument("--weights", default=str(WEIGHTS), help="where to write the half-precision EMA export")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--eval-only", action="store_true", help="skip training; evaluate the newest checkpoint")
    p.add_argument("--export", action="store_true",
                   help="with --eval-only: also write the bundled weights and the grid from the newest checkpoint "
                        "(how a run stopped where its learning curve flattened is shipped)")
    p.add_argument("--grid", default=str(Path(__file__).with_name("pioneer64_default_grid.png")))
    p.add_argument("--photos", nargs="*", default=None, metavar="DIR",
                   help="also train on random crops of these photograph folders (no folder given: BSDS500's train "
                        "and val under ../shared/data/natural/)")
    p.add_argument("--photo-crops", type=int, default=100, help="crops of each photograph per epoch")
    p.add_argument("--finetune", type=int, default=0, metavar="IMAGES",
                   help="start from --init-from (default: the bundled weights) and train IMAGES more images at 64 px")
    p.add_argument("--init-from", default=str(WEIGHTS), help="weights --finetune starts from")
    args = p.parse_args()
    if args.photos is not None and not args.photos:
        natural = public_data_folder("natural")
        if natural is None:
            p.error(missing_reason("natural"))
        args.photos = [str(natural / "train"), str(natural / "val")]

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    t0 = time.perf_counter()
    data = render_training_set(out / "data", args.phone_runs, args.frames_per_run, args.render_workers)
    print(f"training images ready in {time.perf_counter() - t0:.1f} s", flush=True)

    def per_res(spec: str, cast) -> dict:
        return {int(k): cast(v) for k, v in (item.split("=") for item in spec.split(","))}

    if not args.eval_only:
        phases = per_res(args.images_per_phase, int)
        total = sum(phases.values()) + args.finetune if args.finetune else args.total_images
        cfg = TrainConfig(
            variant="pioneer", resolution=RESOLUTION, out_dir=str(out / "run"), data=str(data), cache_images=True,
            channel_base=args.channel_base, max_channels=args.max_channels, min_channels=args.min_channels,
            images_per_phase=phases, total_images=total, batch_size=32, lr=per_res(args.lr, float),
            photos=args.photos, photo_crops=args.photo_crops, init_from=args.init_from if args.finetune else None,
            decoder_updates=1, decoder_recon_weight=1.0, kl_weight=0.0, ema_decay=args.ema_decay,
            betas=(0.5, 0.99), precision=args.precision, channels_last=True,
            seed=args.seed, threads=args.threads, checkpoint_every=16000, keep_checkpoints=2,
            sample_every=64000, log_every=20, progress=False,
        )
        t0 = time.perf_counter()
        train(cfg, resume=args.resume)
        (out / "train_wall_s.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    return report(out, data, args)


def report(out: Path, data: Path, args) -> int:
    from generative import load
    from generative.backbones.checkpoint import CheckpointManager, read_checkpoint
    from generative.images.datasets import ImageFolderDataset, stack_images

    export = out / "run" / "model.safetensors"
    source = export
    if not export.exists():  # still training: evaluate the newest checkpoint
        source = CheckpointManager(out / "run" / "checkpoints").latest()
    model = load(source)
    x = demo_frames()
    if model.resolution != RESOLUTION:
        print(f"{source.name} is at {model.resolution} px (still growing); nothing to compare at {RESOLUTION} px yet")
        return 0
    train_set = ImageFolderDataset(data, RESOLUTION, flip=False)
    ids = range(0, train_set.num_images(), max(1, train_set.num_images() // 2000))
    mean_image = stack_images(train_set, ids, RESOLUTION).mean(0, keepdim=True)
    result = evaluate(model, x, mean_image)
    recon = result.pop("recon")
    wall = out / "train_wall_s.txt"
    bsds = bsds_test_crops()
    if bsds is not None:
        b = evaluate(model, bsds, bsds.mean(0, keepdim=True))
        result["bsds500_test_crops_psnr_db"] = b["psnr_db"]
        result["bsds500_test_crops_mean_image_psnr_db"] = b["mean_image_psnr_db"]
    result["capture_psnr_db_256px"] = capture_psnr(model)
    samples_seen = (read_checkpoint(source)["training"]["samples"] if source != export else None)
    result.update({
        "evaluated": str(source), "train_images": train_set.num_images(), "samples": samples_seen,
        "heldout": "phone_run(120, size=256, seed=0) area-resized to 64 px: the demo run, never trained on",
        "train_wall_s": float(wall.read_text()) if wall.exists() else None,
    })
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    with open(out / "curve.jsonl", "a") as f:
        f.write(json.dumps({k: v for k, v in result.items() if k != "heldout"}) + "\n")
    print(json.dumps(result, indent=2))
    if source != export and not args.export:
        return 0

    from torchvision.utils import save_image

    with torch.no_grad():
        samples = model.generate(8, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    pick = torch.arange(0, 120, 15)
    save_image((torch.cat([x[pick], recon[pick], samples]) + 1) / 2, args.grid, nrow=8, padding=1)
    print(f"grid (held-out frames / reconstructions / random samples): {args.grid}")
    model.export(args.weights, dtype=torch.float16)
    print(f"bundled weights: {args.weights} ({os.path.getsize(args.weights) / 2**20:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
