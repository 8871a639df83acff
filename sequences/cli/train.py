"""``viewgp train``: train a Pioneer, Balanced Pioneer or automodulator backbone (progressive growing, resumable,
torchrun DDP), or a CycleGAN translator pair between two image folders."""

from __future__ import annotations

import argparse

from .common import add_translator_model_args, translator_model

EPILOG = """examples:
  # a CycleGAN translator pair between two folders of unpaired images (both directions), 64 px
  viewgp train translator --a faces/age_25 --b faces/age_35 --out runs/t25_35 --image-size 64 --steps 20000

  # a 32 px automodulator on CPU, without the layer-mixing loss (ablation)
  viewgp train automodulator --synthetic 2000 --resolution 32 --out runs/am32 --max-channels 64 --channel-base 1024 --no-layer-mixing

  # a 64 px Balanced Pioneer on a folder of JPEG/PNG images (searched recursively), on the GPU
  viewgp train balanced --data ~/images --resolution 64 --out runs/bal64 --device cuda

  # continue that run exactly where its newest checkpoint left off
  viewgp train balanced --data ~/images --resolution 64 --out runs/bal64 --device cuda --resume

  # a quick CPU run on 2000 procedural images with a small network
  viewgp train balanced --synthetic 2000 --resolution 32 --out runs/demo32 \\
      --max-channels 64 --channel-base 1024 --images-per-phase 20000 --threads 2

  # 4 GPUs (batch sizes are per GPU)
  torchrun --nproc_per_node=4 -m sequences.cli train pioneer --data ~/images --resolution 128 \\
      --out runs/p128 --device cuda

On a CPU shared with other jobs, start with OMP_WAIT_POLICY=PASSIVE (e.g. OMP_WAIT_POLICY=PASSIVE viewgp
train ...): spinning OpenMP threads otherwise slow a multi-thread run down many times over.

outputs in --out: checkpoints/ (ckpt_<images>.pt, latest), metrics.jsonl, samples/*.png
(real / reconstruction / random samples), train_config.json and, at the end, model.safetensors
(encoder + EMA decoder; load it with generative.load).
"""


def _per_resolution(cast):
    """argparse type: one value for every resolution, or ``RES=VALUE,RES=VALUE,...``."""

    def parse(text: str):
        try:
            if "=" not in text:
                return cast(text)
            out = {}
            for item in text.split(","):
                res, value = item.split("=")
                out[int(res)] = cast(value)
            return out
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number or RES=VALUE pairs separated by commas (e.g. 4=64000,8=48000), got {text!r}"
            ) from None

    parse.__name__ = cast.__name__
    return parse


def register(subparsers) -> None:
    """Add ``train`` (one sub-parser; the variant is its first argument)."""
    p = subparsers.add_parser(
        "train",
        help="train a Pioneer / Balanced Pioneer / automodulator autoencoder, or a CycleGAN translator",
        description="Train a progressively growing generative autoencoder (Pioneer: spectral-norm encoder, "
        "equalized-lr + PixelNorm decoder; Balanced: spectral norm in both and a KL margin) with AGE losses, "
        "a decoder EMA and a generated-sample pool. Checkpoints are atomic and --resume continues exactly.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("variant", choices=["pioneer", "balanced", "automodulator", "translator"], help="model variant")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--data", help="folder of training images (JPEG/PNG, recursive)")
    data.add_argument("--synthetic", type=int, nargs="?", const=2000, metavar="N",
                      help="train on N procedural images instead (default N = 2000)")
    p.add_argument("--resolution", type=int, default=64, help="final resolution, a power of two 4 ... 1024 (default 64)")
    p.add_argument("--out", required=True, help="run folder (created)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue from the newest checkpoint in OUT/checkpoints, or from the file given")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    _add_training_args(p)
    _add_automodulator_args(p)
    _add_translator_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _add_training_args(p: argparse.ArgumentParser) -> None:
    """Schedule, optimiser, network size, data loading and checkpointing options of every variant."""
    p.add_argument("--images-per-phase", type=_per_resolution(int), metavar="N|RES=N,...",
                   help="training images per resolution phase, one number or per resolution "
                   "(default: 200k up to 32 px, 600k at 64, 1.2M at 128, 2.4M above; the paper used 2.4M)")
    p.add_argument("--total-images", type=int, help="stop after this many images (default: one phase per resolution)")
    p.add_argument("--batch-size", type=_per_resolution(int), metavar="B|RES=B,...",
                   help="batch size per process (default: 128 up to 16 px, 64 at 32, 32 at 64-128, 16 at 256, 4 at 512)")
    p.add_argument("--lr", type=_per_resolution(float), metavar="LR|RES=LR,...",
                   help="Adam learning rate (default: Pioneer 1e-3; Balanced 5e-4 up to 32 px then 1e-3)")
    p.add_argument("--margin", type=_per_resolution(float), metavar="M|RES=M,...",
                   help="KL margin M (default: Balanced 0.05 up to 32 px, 0.02 at 64-128, 0.04 above; Pioneer 0)")
    p.add_argument("--decoder-updates", type=int, default=2, help="decoder updates per encoder update (default 2)")
    p.add_argument("--decoder-recon-weight", type=float, default=0.0,
                   help="L1 reconstruction weight in the decoder update (AGE's generator match_x; default 0 as in "
                   "the paper; e.g. 1 for short CPU runs)")
    p.add_argument("--latent-dim", type=int, default=512)
    p.add_argument("--channel-base", type=int, default=16384, help="channels(r) = min(max, base / r) (default 16384)")
    p.add_argument("--max-channels", type=int, default=512, help="(default 512)")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument("--cache-images", action="store_true", help="keep decoded images in memory")
    p.add_argument("--num-workers", type=int, default=0, help="data loader processes (default 0)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--checkpoint-every", type=int, default=50_000, help="images between checkpoints (default 50000)")
    p.add_argument("--keep", type=int, default=3, help="checkpoints to keep (default 3)")
    p.add_argument("--sample-every", type=int, default=20_000, help="images between sample grids (default 20000)")
    p.add_argument("--seed", type=int, default=0)


def _add_automodulator_args(p: argparse.ArgumentParser) -> None:
    """The automodulator's loss ablations."""
    am = p.add_argument_group("automodulator only (Publication III ablations)")
    am.add_argument("--image-loss", choices=["robust", "l1"], default="robust",
                    help="encoder image loss: Barron's adaptive robust loss x 0.2 (default) or L1 x 1")
    am.add_argument("--no-layer-mixing", action="store_true", help="drop the layer-mixing loss (thesis eq. 3.5)")
    am.add_argument("--stylemix-e", type=float, default=0.25, help="style-mixed fraction of the encoder's fakes (default 0.25)")
    am.add_argument("--stylemix-d", type=float, default=0.5, help="style-mixed fraction of the decoder batch (default 0.5)")


def _add_translator_args(p: argparse.ArgumentParser) -> None:
    """The CycleGAN translator's domains, schedule and network."""
    tr = p.add_argument_group("translator only (CycleGAN: ResNet generators, PatchGAN, LSGAN, cycle loss 10)")
    tr.add_argument("--a", action="append", metavar="DIR", help="domain A image folder (repeat --a/--b for joint "
                    "training on several transitions, the aging chain's re-training)")  # fmt: skip
    tr.add_argument("--b", action="append", metavar="DIR", help="domain B image folder")
    tr.add_argument("--steps", type=int, default=10_000, help="iterations (default 10000; the paper 600k at batch 1)")
    tr.add_argument("--image-size", type=int, default=64, help="training image size, a multiple of 4 (default 64)")
    add_translator_model_args(tr)
    tr.add_argument("--init", help="start from an earlier translator run folder or translator.pt")
    tr.add_argument("--save-every", type=int, default=1000, help="steps between checkpoints and sample grids (default 1000)")


def run_translator(args) -> int:
    from generative.training.translator_loop import TranslatorTrainConfig, train_translator

    if not args.a or not args.b or len(args.a) != len(args.b):
        raise ValueError("viewgp train translator needs --a DIR --b DIR (the same number of each)")
    for name, value in (("batch-size", args.batch_size), ("lr", args.lr)):
        if isinstance(value, dict):
            raise ValueError(f"--{name} takes one value for a translator, not per-resolution pairs")
    model = translator_model(args)
    if args.lr is not None:
        model["lr"] = args.lr
    config = TranslatorTrainConfig(
        pairs=list(zip(args.a, args.b)), out_dir=args.out, steps=args.steps, batch_size=args.batch_size or 1,
        image_size=args.image_size, flip=not args.no_flip, cache_images=args.cache_images, model=model,
        init=args.init, seed=args.seed, device=args.device, threads=args.threads, checkpoint_every=args.save_every,
        keep_checkpoints=args.keep, sample_every=args.save_every, progress=not args.quiet,
    )  # fmt: skip
    train_translator(config, resume=args.resume)
    print(f"trained translator pair for {args.steps} steps; weights: {args.out}/translator.pt")
    return 0


def run(args) -> int:
    if args.variant == "translator":
        return run_translator(args)
    if not args.data and not args.synthetic:
        raise ValueError(f"viewgp train {args.variant} needs --data DIR or --synthetic N")
    from generative.training.distributed import shutdown_distributed
    from generative.training.loop import train

    config = _train_config(args)
    try:
        model = train(config, resume=args.resume)
    finally:
        shutdown_distributed()
    print(f"trained {model.kind} up to {model.resolution} px; weights: {args.out}/model.safetensors")
    return 0


def _train_config(args):
    """The ``TrainConfig`` of an autoencoder variant from its options."""
    from generative.training.loop import TrainConfig

    return TrainConfig(
        variant=args.variant,
        resolution=args.resolution,
        out_dir=args.out,
        data=args.data,
        synthetic=args.synthetic or 0,
        flip=not args.no_flip,
        cache_images=args.cache_images,
        latent_dim=args.latent_dim,
        channel_base=args.channel_base,
        max_channels=args.max_channels,
        images_per_phase=args.images_per_phase,
        total_images=args.total_images,
        batch_size=args.batch_size,
        lr=args.lr,
        margin=args.margin,
        decoder_updates=args.decoder_updates,
        decoder_recon_weight=args.decoder_recon_weight,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        num_workers=args.num_workers,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep,
        sample_every=args.sample_every,
        progress=not args.quiet,
        automodulator=dict(image_loss=args.image_loss, layer_mixing=not args.no_layer_mixing,
                           stylemix_e=args.stylemix_e, stylemix_d=args.stylemix_d)
        if args.variant == "automodulator" else None,
    )
