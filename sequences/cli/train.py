"""``viewgp train``: train a Pioneer, Balanced Pioneer or automodulator backbone (progressive growing, resumable,
torchrun DDP), or a CycleGAN translator pair between two image folders."""

from __future__ import annotations

import argparse

from sequences.cli.backbones import add_translator_model_args, translator_model
from sequences.cli.options import (PRECISION_CHOICES, RegistryChoices, UsageError, add_device_arg, non_negative_float,
                                    non_negative_int, positive_int, unit_interval)

EPILOG = """recipes (--recipe; any option below overrides its part of the recipe):
  paper           the published settings: KL game at 0.1, Adam betas (0, 0.99) Pioneer / (0, 0.9) Balanced,
                  2 decoder updates, no pixel loss in the decoder update, EMA 0.999, float32. Needs
                  GPU-length runs: a 32 px Balanced Pioneer on turntables reached held-out RMSE 0.1035 (mean
                  image 0.141) after an hour on 2 CPU cores.
  reconstruction  what trains on a CPU: KL game off, decoder L1 reconstruction weight 1, betas (0.5, 0.99),
                  lr 1e-3, 1 decoder update, EMA 0.995, channels-last, precision auto: bfloat16 where the
                  CPU or GPU computes it natively (2.3x the fp32 images/s there), else fp32. Measured: 0.079 vs 0.141 for
                  the mean image on the same turntables in 26 min on one thread (KL 0.02); the first example
                  below: held-out RMSE 0.159 vs 0.237 for the mean image after 75 s on one thread.
The EMA decay is warmed up, min(decay, (1 + step) / (10 + step)), so an export after a short run is the
trained decoder, not its initial weights. The progress bar shows images/s and an ETA; at the end the
export's reconstruction RMSE is printed next to the mean image's on 64 training images.

examples:
  # a quick CPU check that training works: 16 px, 12,000 procedural images, about a minute on one thread
  viewgp train balanced --recipe reconstruction --synthetic 2000 --resolution 16 --out runs/quick16 \\
      --max-channels 32 --channel-base 256 --images-per-phase 4000 --batch-size 32 --sample-every 0 --threads 1

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
(real / reconstruction / random samples), tensorboard/ (losses, lr, images/s, sample grids and
reconstruction PSNR with the images seen as step; view with: tensorboard --logdir OUT), train_config.json
and, at the end, model.safetensors (encoder + EMA decoder; load it with generative.load).
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
    p.add_argument("variant", choices=RegistryChoices("trainers"), metavar="VARIANT",
                   help="model variant: {registry:trainers} (the training registry's, and the CycleGAN translator)")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--data", help="folder of training images (JPEG/PNG, recursive)")
    data.add_argument("--synthetic", type=int, nargs="?", const=2000, metavar="N",
                      help="train on N procedural images instead (default N = 2000)")
    p.add_argument("--photos", nargs="+", metavar="DIR",
                   help="also (or only) train on random crops of the photographs in these folders: several scales, "
                   "flips, a mild colour jitter (e.g. BSDS500's train and val)")
    p.add_argument("--photo-crops", type=positive_int, default=64, help="crops of each photograph per epoch (default 64)")
    p.add_argument("--init-from", metavar="WEIGHTS",
                   help="start from these weights (an export or checkpoint of the same architecture, fully grown) and "
                   "train at the final resolution after growth, up to --total-images")
    p.add_argument("--resolution", type=positive_int, default=None,
                   help="final resolution, a power of two 4 ... 1024 (default 64, or --init-from's)")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (created; checkpoints make it resumable)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue from the newest checkpoint in OUT/checkpoints, or from the file given")
    add_device_arg(p, "cpu")
    _add_training_args(p)
    _add_automodulator_args(p)
    _add_translator_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _add_training_args(p: argparse.ArgumentParser) -> None:
    """Recipe, schedule, optimiser, network size, data loading and checkpointing options of every variant."""
    p.add_argument("--recipe", choices=["paper", "reconstruction"], default=None,
                   help="preset losses, optimiser and EMA (see 'recipes' below; default paper)")
    p.add_argument("--images-per-phase", type=_per_resolution(int), metavar="N|RES=N,...",
                   help="training images per resolution phase, one number or per resolution "
                   "(default: 200k up to 32 px, 600k at 64, 1.2M at 128, 2.4M above; the paper used 2.4M)")
    p.add_argument("--total-images", type=positive_int, help="stop after this many images (default: one phase per resolution)")
    p.add_argument("--batch-size", type=_per_resolution(int), metavar="B|RES=B,...",
                   help="batch size per process (default: 128 up to 16 px, 64 at 32, 32 at 64-128, 16 at 256, 4 at 512)")
    p.add_argument("--lr", type=_per_resolution(float), metavar="LR|RES=LR,...",
                   help="Adam learning rate (default: the recipe's; paper: Pioneer 1e-3, Balanced 5e-4 up to 32 px "
                   "then 1e-3)")
    p.add_argument("--betas", type=_betas, metavar="B1,B2",
                   help="Adam betas (default: the recipe's; paper: 0,0.99 Pioneer, 0,0.9 Balanced)")
    p.add_argument("--margin", type=_per_resolution(float), metavar="M|RES=M,...",
                   help="KL margin M (default: Balanced 0.05 up to 32 px, 0.02 at 64-128, 0.04 above; Pioneer 0)")
    p.add_argument("--kl-weight", type=non_negative_float, metavar="W",
                   help="weight of the KL game (default: the recipe's; paper 0.1, reconstruction 0)")
    p.add_argument("--decoder-updates", type=positive_int, help="decoder updates per encoder update (default: the "
                   "recipe's; paper 2, reconstruction 1)")
    p.add_argument("--decoder-recon-weight", type=non_negative_float, metavar="W",
                   help="L1 reconstruction weight in the decoder update (AGE's generator match_x; default: the "
                   "recipe's; paper 0, reconstruction 1)")
    p.add_argument("--ema-decay", type=unit_interval, metavar="D",
                   help="decoder EMA decay, warmed up over the first steps (default: the recipe's; paper 0.999, "
                   "reconstruction 0.995)")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                   help="bf16: bfloat16 autocast for the forward passes; auto: bf16 only where the device computes "
                   "it natively (AVX512-BF16 / AMX CPUs, recent GPUs), else fp32; the choice and its reason open "
                   "metrics.jsonl (default: the recipe's; paper fp32, reconstruction auto)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC activations, faster bf16 convolutions on CPU (default: the recipe's)")
    # network size: None = the --init-from weights' own, else the defaults of ARCHITECTURE_DEFAULTS
    p.add_argument("--latent-dim", type=positive_int, help="latent dimensions (default 512)")
    p.add_argument("--channel-base", type=positive_int, help="channels(r) = min(max, base / r) (default 16384)")
    p.add_argument("--max-channels", type=positive_int, help="widest layer (default 512)")
    p.add_argument("--min-channels", type=positive_int, help="narrowest layer (default 1)")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument("--cache-images", action="store_true", help="keep decoded images in memory")
    p.add_argument("--num-workers", type=non_negative_int, default=0, help="data loader processes (default 0)")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--checkpoint-every", type=non_negative_int, default=50_000,
                   help="images between checkpoints; 0: only at the end (default 50000)")
    p.add_argument("--keep", type=positive_int, default=3, help="checkpoints to keep (default 3)")
    p.add_argument("--sample-every", type=non_negative_int, default=20_000,
                   help="images between sample grids; 0: only at the end (default 20000)")
    p.add_argument("--log-every", type=positive_int, metavar="STEPS",
                   help="steps between metrics.jsonl records and TensorBoard points (default 20; translator 50)")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                   help="TensorBoard event files in OUT/tensorboard (default: written where the tensorboard package "
                   "is installed, one line says so where not; --tensorboard requires it, --no-tensorboard: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, data order and latent draws (default 0)")


def _betas(text: str) -> tuple:
    """argparse type: ``"0.5,0.99"`` -> ``(0.5, 0.99)``, both in [0, 1)."""
    try:
        b = tuple(float(v) for v in text.split(","))
    except ValueError:
        b = ()
    if len(b) != 2 or not all(0.0 <= v < 1.0 for v in b):
        raise argparse.ArgumentTypeError(f"expected two numbers in [0, 1) such as 0.5,0.99, got {text!r}")
    return b


def _add_automodulator_args(p: argparse.ArgumentParser) -> None:
    """The automodulator's loss ablations."""
    am = p.add_argument_group("automodulator only (Publication III ablations)")
    am.add_argument("--image-loss", choices=["robust", "l1"], default="robust",
                    help="encoder image loss: Barron's adaptive robust loss x 0.2 (default) or L1 x 1")
    am.add_argument("--no-layer-mixing", action="store_true", help="drop the layer-mixing loss (thesis eq. 3.5)")
    am.add_argument("--stylemix-e", type=unit_interval, default=0.25, help="style-mixed fraction of the encoder's fakes (default 0.25)")
    am.add_argument("--stylemix-d", type=unit_interval, default=0.5, help="style-mixed fraction of the decoder batch (default 0.5)")


def _add_translator_args(p: argparse.ArgumentParser) -> None:
    """The CycleGAN translator's domains, schedule and network."""
    tr = p.add_argument_group("translator only (CycleGAN: ResNet generators, PatchGAN, LSGAN, cycle loss 10)")
    tr.add_argument("--a", action="append", metavar="DIR", help="domain A image folder (repeat --a/--b for joint "
                    "training on several transitions, the aging chain's re-training)")  # fmt: skip
    tr.add_argument("--b", action="append", metavar="DIR", help="domain B image folder")
    tr.add_argument("--steps", type=positive_int, default=10_000, help="iterations (default 10000; the paper 600k at batch 1)")
    tr.add_argument("--image-size", type=positive_int, default=64, help="training image size, a multiple of 4 (default 64)")
    add_translator_model_args(tr)
    tr.add_argument("--init", help="start from an earlier translator run folder or translator.pt")
    tr.add_argument("--save-every", type=positive_int, default=1000, help="steps between checkpoints and sample grids (default 1000)")


#: Autoencoder options a translator does not take (they would be silently ignored).
AUTOENCODER_ONLY = ("recipe", "kl_weight", "betas", "ema_decay", "decoder_recon_weight", "precision", "channels_last",
                    "margin", "images_per_phase", "total_images")


def _require_tensorboard(args) -> None:
    """``--tensorboard`` asks for event files: without the package, stop before training, not after."""
    from generative.training.tensorboard import tensorboard_available

    if args.tensorboard and not tensorboard_available():
        raise UsageError("--tensorboard: TensorBoard is not installed (pip install 'viewgp[tensorboard]'), "
                         "or leave the option out to train without event files")


def run_translator(args) -> int:
    from generative.aging.training import TranslatorTrainConfig, train_translator

    _require_tensorboard(args)
    if not args.a or not args.b or len(args.a) != len(args.b):
        raise UsageError("viewgp train translator needs --a DIR --b DIR (the same number of each)")
    given = [f"--{n.replace('_', '-')}" for n in AUTOENCODER_ONLY if getattr(args, n) is not None]
    if given:
        raise UsageError(f"{', '.join(given)}: autoencoder options (pioneer, balanced, automodulator), not for a translator")
    for name, value in (("batch-size", args.batch_size), ("lr", args.lr)):
        if isinstance(value, dict):
            raise UsageError(f"--{name} takes one value for a translator, not per-resolution pairs")
    model = translator_model(args)
    if args.lr is not None:
        model["lr"] = args.lr
    config = TranslatorTrainConfig(
        pairs=list(zip(args.a, args.b)), out_dir=args.out, steps=args.steps, batch_size=args.batch_size or 1,
        image_size=args.image_size, flip=not args.no_flip, cache_images=args.cache_images, model=model,
        init=args.init, seed=args.seed, device=args.device, threads=args.threads, checkpoint_every=args.save_every,
        keep_checkpoints=args.keep, sample_every=args.save_every, progress=not args.quiet, tensorboard=args.tensorboard,
        **({"log_every": args.log_every} if args.log_every else {}),
    )  # fmt: skip
    train_translator(config, resume=args.resume)
    print(f"trained translator pair for {args.steps} steps; weights: {args.out}/translator.pt")
    return 0


def run(args) -> int:
    if args.variant == "translator":
        return run_translator(args)
    if not args.data and not args.synthetic and not args.photos:
        raise UsageError(f"viewgp train {args.variant} needs --data DIR, --photos DIR or --synthetic N")
    _require_tensorboard(args)
    import time

    from generative.training.distributed import shutdown_distributed
    from generative.training.loop import format_duration, reconstruction_check, train

    config = _train_config(args)
    schedule = config.schedule()
    total = config.total_images or schedule.growth_images
    print(f"training {config.variant} up to {config.resolution} px ({args.recipe or 'paper'} recipe): {total:,} images "
          f"in phases at {', '.join(str(r) for r in schedule.resolutions)} px; progress, images/s and ETA on stderr")
    t0 = time.perf_counter()
    try:
        model = train(config, resume=args.resume)
    finally:
        shutdown_distributed()
    wall = time.perf_counter() - t0
    check = reconstruction_check(model, config)
    print(f"trained {model.kind} up to {model.resolution} px in {format_duration(wall)}; weights: "
          f"{args.out}/model.safetensors")
    verdict = "" if check["rmse"] < check["rmse_mean_image"] else (
        "  -- NOT better than the mean image: train longer, or try --recipe reconstruction")
    print(f"export check on {check['images']} training images: reconstruction RMSE {check['rmse']:.4f} vs "
          f"{check['rmse_mean_image']:.4f} for the mean image ([0, 1] units){verdict}")
    return 0


ARCHITECTURE_DEFAULTS = {"resolution": 64, "latent_dim": 512, "channel_base": 16384, "max_channels": 512, "min_channels": 1}


def _architecture(args) -> dict:
    """The network size: the options given, then (with ``--init-from``) the weights' own, then the defaults."""
    from generative.training.loop import architecture_of

    found = architecture_of(args.init_from) if args.init_from else {}
    return {name: getattr(args, name) if getattr(args, name) is not None else found.get(name, default)
            for name, default in ARCHITECTURE_DEFAULTS.items()}


def _train_config(args):
    """The ``TrainConfig`` of an autoencoder variant: the recipe's fields, then the options given."""
    from generative.training.loop import TrainConfig
    from generative.training.recipes import recipe_fields

    fields = recipe_fields(args.recipe or "paper") | _architecture(args)
    for name in ("lr", "betas", "kl_weight", "decoder_updates", "decoder_recon_weight", "ema_decay", "precision",
                 "channels_last"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    try:
        return TrainConfig(
            variant=args.variant,
            out_dir=args.out,
            data=args.data,
            photos=args.photos,
            photo_crops=args.photo_crops,
            init_from=args.init_from,
            synthetic=args.synthetic or 0,
            flip=not args.no_flip,
            cache_images=args.cache_images,
            images_per_phase=args.images_per_phase,
            total_images=args.total_images,
            batch_size=args.batch_size,
            margin=args.margin,
            seed=args.seed,
            device=args.device,
            threads=args.threads,
            num_workers=args.num_workers,
            checkpoint_every=args.checkpoint_every,
            keep_checkpoints=args.keep,
            sample_every=args.sample_every,
            progress=not args.quiet,
            tensorboard=args.tensorboard,
            **({"log_every": args.log_every} if args.log_every else {}),
            automodulator=dict(image_loss=args.image_loss, layer_mixing=not args.no_layer_mixing,
                               stylemix_e=args.stylemix_e, stylemix_d=args.stylemix_d)
            if args.variant == "automodulator" else None,
            **fields,
        )
    except ValueError as exc:  # every field comes from an option here
        raise UsageError(str(exc)) from None
