"""CycleGAN pair of image-to-image translators (thesis 3.1.3, 4.4; SPEC 5).

Two ResNet generators ``G_ab: A -> B`` and ``G_ba: B -> A`` and two 70x70 PatchGAN discriminators
``D_a`` (real A vs. translated B->A) and ``D_b`` (real B vs. translated A->B), trained on unpaired
images in ``[-1, 1]``:

* generator loss ``LSGAN(D_b(G_ab(a)), 1) + LSGAN(D_a(G_ba(b)), 1)
  + lambda (|G_ba(G_ab(a)) - a|_1 + |G_ab(G_ba(b)) - b|_1)`` with ``lambda = 10`` and no identity term
  (the Aalto img-transformer-chain code, notes A.4);
* discriminator loss ``0.5 (LSGAN(D(real), 1) + LSGAN(D(pool(fake)), 0))`` per discriminator, the fakes
  drawn through a 50-image history pool (:class:`~generative.training.buffer.SamplePool`, which has
  exactly CycleGAN's ``ImagePool`` semantics: fill, then return a stored image with probability 0.5);
* Adam lr 2e-4, betas (0.5, 0.999), constant rate; separate optimizers for the generators, ``D_a`` and
  ``D_b``.

Normalisation is instance norm without affine parameters and padding is reflection, as in the
PyTorch CycleGAN ``resnet_9blocks`` / ``n_layers=3`` models; weights are initialised N(0, 0.02).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor, nn

from generative.checkpoint import CheckpointError, capture_rng_state, read_checkpoint, restore_rng_state, write_checkpoint
from generative.layers import leaky_relu
from generative.training.buffer import SamplePool
from generative.training.losses import reconstruction_l1

__all__ = [
    "TranslatorConfig",
    "ResidualBlock",
    "ResnetGenerator",
    "PatchDiscriminator",
    "patchgan_receptive_field",
    "lsgan_loss",
    "cycle_loss",
    "CycleGANTrainer",
    "Translator",
    "export_translator",
    "load_translator",
]

DIRECTIONS = ("ab", "ba")


@dataclass
class TranslatorConfig:
    """Model and optimiser settings; defaults are the paper's (SPEC 5)."""

    channels: int = 3
    gen_width: int = 64  # first conv width; the trunk runs at 4x this (256)
    n_res_blocks: int = 9
    disc_width: int = 64
    disc_layers: int = 3  # stride-2 convs; 3 gives the 70x70 receptive field
    lambda_cycle: float = 10.0
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    pool_size: int = 50

    def __post_init__(self) -> None:
        for name in ("channels", "gen_width", "n_res_blocks", "disc_width", "disc_layers"):
            value = getattr(self, name)
            if int(value) != value or value < (0 if name == "n_res_blocks" else 1):
                raise ValueError(f"TranslatorConfig.{name} must be a positive integer, got {value!r}")
        if self.pool_size < 0:
            raise ValueError(f"TranslatorConfig.pool_size must be >= 0, got {self.pool_size}")

    @classmethod
    def from_dict(cls, d: dict) -> "TranslatorConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown translator config keys: {sorted(unknown)}")
        return cls(**d)


# ------------------------------------------------------------------------------ networks
def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResidualBlock(nn.Module):
    """``x + [pad1, conv3x3, IN, ReLU, pad1, conv3x3, IN](x)``; ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Johnson-style ResNet translator: ``(B, C, H, W) -> (B, C, H, W)`` in ``[-1, 1]``.

    ``H`` and ``W`` must be multiples of 4 (two stride-2 downsamplings undone by two transposed convs).
    """

    def __init__(self, channels: int = 3, width: int = 64, n_blocks: int = 9) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels, w, 7), _norm(w), nn.ReLU(inplace=True)]
        for mult in (1, 2):  # w -> 2w -> 4w at 1/2 and 1/4 resolution
            layers += [nn.Conv2d(w * mult, w * mult * 2, 3, stride=2, padding=1), _norm(w * mult * 2), nn.ReLU(inplace=True)]
        layers += [ResidualBlock(4 * w) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [
                nn.ConvTranspose2d(w * mult, w * mult // 2, 3, stride=2, padding=1, output_padding=1),
                _norm(w * mult // 2),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"translator input must be (B, C, H, W) with H, W multiples of 4, got {tuple(x.shape)}")
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``(B, C, H, W) -> (B, 1, h, w)`` raw scores (no sigmoid; LSGAN).

    ``n_layers`` stride-2 4x4 convs (the first without norm), then a stride-1 4x4 conv at up to 8x width
    and a stride-1 4x4 conv to one channel; with ``n_layers = 3`` each score sees a 70x70 patch. For
    ``n_layers = 3`` the input must be at least 32 px so the last maps have more than one pixel.
    """

    def __init__(self, channels: int = 3, width: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        self.n_layers = n_layers
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, stride=2, padding=1), leaky_relu()]
        ch = width
        for i in range(1, n_layers + 1):
            out = width * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(ch, out, 4, stride=stride, padding=1), _norm(out), leaky_relu()]
            ch = out
        layers += [nn.Conv2d(ch, 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def patchgan_receptive_field(n_layers: int = 3) -> int:
    """Side of the input patch one output score of :class:`PatchDiscriminator` sees (70 for 3 layers)."""
    strides = [2] * n_layers + [1, 1]
    rf, jump = 1, 1
    for s in strides:
        rf += 3 * jump  # kernel 4
        jump *= s
    return rf


def _init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """N(0, 0.02) conv weights, zero biases (CycleGAN ``init_type='normal'``), from a private generator."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * 0.02)
                if m.bias is not None:
                    m.bias.zero_()


# ------------------------------------------------------------------------------ losses
def lsgan_loss(pred: Tensor, target_is_real: bool) -> Tensor:
    """Least-squares GAN loss ``mean((pred - t)^2)`` with ``t = 1`` (real) or ``0`` (fake)."""
    target = 1.0 if target_is_real else 0.0
    return (pred - target).pow(2).mean()


def cycle_loss(
    a: Tensor, b: Tensor, g_ab: nn.Module, g_ba: nn.Module, lambda_cycle: float = 10.0
) -> tuple[Tensor, Tensor]:
    """``lambda |g_ba(g_ab(a)) - a|_1`` and ``lambda |g_ab(g_ba(b)) - b|_1`` (means over elements)."""
    return lambda_cycle * reconstruction_l1(g_ba(g_ab(a)), a), lambda_cycle * reconstruction_l1(g_ab(g_ba(b)), b)


# ------------------------------------------------------------------------------ trainer
class CycleGANTrainer:
    """Owns both translators, both discriminators, their optimisers and the two fake-image pools.

    Images are ``(B, C, H, W)`` in ``[-1, 1]``; the paper uses ``B = 1``. ``seed`` fixes the weight
    initialisation and the pools' draws (the global torch RNG is not touched at construction).
    """

    def __init__(
        self,
        config: Optional[TranslatorConfig] = None,
        device: Union[str, torch.device] = "cpu",
        seed: int = 0,
    ) -> None:
        self.config = config or TranslatorConfig()
        self.device = torch.device(device)
        c = self.config
        self.g_ab = ResnetGenerator(c.channels, c.gen_width, c.n_res_blocks)
        self.g_ba = ResnetGenerator(c.channels, c.gen_width, c.n_res_blocks)
        self.d_a = PatchDiscriminator(c.channels, c.disc_width, c.disc_layers)
        self.d_b = PatchDiscriminator(c.channels, c.disc_width, c.disc_layers)
        init_gen = torch.Generator().manual_seed(seed)
        for net in (self.g_ab, self.g_ba, self.d_a, self.d_b):
            _init_weights(net, init_gen)
            net.to(self.device)
        betas = (c.beta1, c.beta2)
        self.opt_g = torch.optim.Adam(list(self.g_ab.parameters()) + list(self.g_ba.parameters()), lr=c.lr, betas=betas)
        self.opt_d_a = torch.optim.Adam(self.d_a.parameters(), lr=c.lr, betas=betas)
        self.opt_d_b = torch.optim.Adam(self.d_b.parameters(), lr=c.lr, betas=betas)
        # pool_a holds translated B->A images (for D_a), pool_b translated A->B images (for D_b).
        self.pool_a = SamplePool(c.pool_size, swap_prob=0.5, seed=seed + 1)
        self.pool_b = SamplePool(c.pool_size, swap_prob=0.5, seed=seed + 2)
        self.step = 0

    # ---------------------------------------------------------------- helpers
    def _check(self, x: Tensor, name: str) -> Tensor:
        c = self.config.channels
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != c:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a (B, {c}, H, W) image tensor, got {shape}")
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"{name} height and width must be multiples of 4, got {tuple(x.shape[-2:])}")
        return x.to(self.device, torch.float32)

    @staticmethod
    def _set_requires_grad(nets: tuple[nn.Module, ...], flag: bool) -> None:
        for net in nets:
            for p in net.parameters():
                p.requires_grad_(flag)

    # ---------------------------------------------------------------- training
    def train_step(self, a_batch: Tensor, b_batch: Tensor) -> dict[str, float]:
        """One generator update, then one update of each discriminator. Returns the loss values."""
        a = self._check(a_batch, "a_batch")
        b = self._check(b_batch, "b_batch")
        lam = self.config.lambda_cycle
        for net in (self.g_ab, self.g_ba, self.d_a, self.d_b):
            net.train()

        # Generators: the discriminators are frozen so the G step leaves no gradients in them.
        self._set_requires_grad((self.d_a, self.d_b), False)
        fake_b = self.g_ab(a)
        fake_a = self.g_ba(b)
        g_adv_ab = lsgan_loss(self.d_b(fake_b), True)
        g_adv_ba = lsgan_loss(self.d_a(fake_a), True)
        cyc_a = lam * reconstruction_l1(self.g_ba(fake_b), a)
        cyc_b = lam * reconstruction_l1(self.g_ab(fake_a), b)
        g_total = g_adv_ab + g_adv_ba + cyc_a + cyc_b
        self.opt_g.zero_grad(set_to_none=True)
        g_total.backward()
        self.opt_g.step()
        self._set_requires_grad((self.d_a, self.d_b), True)

        # Discriminators see pooled (older) fakes, which damps oscillation (CycleGAN 4.1).
        pooled_b = self.pool_b.query(fake_b.detach())
        pooled_a = self.pool_a.query(fake_a.detach())
        d_b = 0.5 * (lsgan_loss(self.d_b(b), True) + lsgan_loss(self.d_b(pooled_b), False))
        self.opt_d_b.zero_grad(set_to_none=True)
        d_b.backward()
        self.opt_d_b.step()
        d_a = 0.5 * (lsgan_loss(self.d_a(a), True) + lsgan_loss(self.d_a(pooled_a), False))
        self.opt_d_a.zero_grad(set_to_none=True)
        d_a.backward()
        self.opt_d_a.step()

        self.step += 1
        return {
            "g_total": g_total.detach().item(),
            "g_adv_ab": g_adv_ab.detach().item(),
            "g_adv_ba": g_adv_ba.detach().item(),
            "cycle_a": cyc_a.detach().item(),
            "cycle_b": cyc_b.detach().item(),
            "d_a": d_a.detach().item(),
            "d_b": d_b.detach().item(),
        }

    @torch.no_grad()
    def translate(self, x: Tensor, direction: str = "ab") -> Tensor:
        """``G_ab(x)`` (``direction="ab"``) or ``G_ba(x)`` (``"ba"``); ``(B, C, H, W) -> (B, C, H, W)``."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'ab' or 'ba', got {direction!r}")
        net = self.g_ab if direction == "ab" else self.g_ba
        net.eval()  # instance norm without running stats: eval and train agree; no dropout
        return net(self._check(x, "x"))

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Everything needed to resume bit-exactly, including the global RNG state (torch.load weights_only safe)."""
        return {
            "config": asdict(self.config),
            "step": self.step,
            "g_ab": self.g_ab.state_dict(),
            "g_ba": self.g_ba.state_dict(),
            "d_a": self.d_a.state_dict(),
            "d_b": self.d_b.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d_a": self.opt_d_a.state_dict(),
            "opt_d_b": self.opt_d_b.state_dict(),
            "pool_a": self.pool_a.state_dict(),
            "pool_b": self.pool_b.state_dict(),
            "rng": capture_rng_state(),
        }

    def load_state_dict(self, state: dict, restore_rng: bool = True) -> None:
        """Inverse of :meth:`state_dict`; the config recorded in ``state`` must match this trainer's."""
        saved = TranslatorConfig.from_dict(dict(state["config"]))
        if saved != self.config:
            raise ValueError(f"checkpoint was written for {saved}, this trainer is {self.config}")
        self.g_ab.load_state_dict(state["g_ab"])
        self.g_ba.load_state_dict(state["g_ba"])
        self.d_a.load_state_dict(state["d_a"])
        self.d_b.load_state_dict(state["d_b"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d_a.load_state_dict(state["opt_d_a"])
        self.opt_d_b.load_state_dict(state["opt_d_b"])
        self.pool_a.load_state_dict(state["pool_a"], device=self.device)
        self.pool_b.load_state_dict(state["pool_b"], device=self.device)
        self.step = int(state["step"])
        if restore_rng:
            restore_rng_state(state["rng"])

    @classmethod
    def from_state_dict(cls, state: dict, device: Union[str, torch.device] = "cpu") -> "CycleGANTrainer":
        """Build a trainer with the recorded config and load ``state`` into it."""
        trainer = cls(TranslatorConfig.from_dict(dict(state["config"])), device=device)
        trainer.load_state_dict(state)
        return trainer


# ------------------------------------------------------------------------------ trained translators
TRANSLATOR_KIND = "translator"


class Translator(nn.Module):
    """A trained pair for inference: ``translate(x, "ab")`` runs ``G_ab`` (e.g. one age step older),
    ``translate(x, "ba")`` ``G_ba``; images ``(B, C, H, W)`` in ``[-1, 1]`` at ``image_size`` (the size it
    was trained at)."""

    def __init__(self, config: TranslatorConfig, image_size: int) -> None:
        super().__init__()
        self.config = config
        self.image_size = int(image_size)
        self.g_ab = ResnetGenerator(config.channels, config.gen_width, config.n_res_blocks)
        self.g_ba = ResnetGenerator(config.channels, config.gen_width, config.n_res_blocks)

    @torch.no_grad()
    def translate(self, x: Tensor, direction: str = "ab") -> Tensor:
        """``G_ab(x)`` or ``G_ba(x)``, ``(B, C, H, W) -> (B, C, H, W)``; the size must be the trained one."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'ab' or 'ba', got {direction!r}")
        if x.ndim != 4 or x.shape[1] != self.config.channels or tuple(x.shape[-2:]) != (self.image_size,) * 2:
            raise ValueError(
                f"this translator takes (B, {self.config.channels}, {self.image_size}, {self.image_size}) images, "
                f"got {tuple(x.shape)}"
            )
        net = self.g_ab if direction == "ab" else self.g_ba
        return net.eval()(x.to(next(net.parameters()).device, torch.float32))


def export_translator(trainer: CycleGANTrainer, path: Union[str, os.PathLike], image_size: int) -> Path:
    """Write the two generators of ``trainer`` (and the config and image size) atomically to ``path``."""
    state = {
        "g_ab": {k: v.detach().cpu() for k, v in trainer.g_ab.state_dict().items()},
        "g_ba": {k: v.detach().cpu() for k, v in trainer.g_ba.state_dict().items()},
    }
    config = {"model": asdict(trainer.config), "image_size": int(image_size)}
    return write_checkpoint(path, TRANSLATOR_KIND, config, state)


def load_translator(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu") -> Translator:
    """Load a ``translator.pt`` written by :func:`export_translator` (the end of every translator run).

    ``FileNotFoundError`` names a missing file; a file of another kind or with mismatching weights raises
    :class:`~generative.checkpoint.CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"translator file not found: {path} (expected the translator.pt a translator run writes)")
    payload = read_checkpoint(path, map_location=device)
    if payload.get("kind") != TRANSLATOR_KIND:
        raise CheckpointError(f"{path} holds a '{payload.get('kind')}' checkpoint, not a trained translator")
    model = Translator(TranslatorConfig.from_dict(dict(payload["config"]["model"])), payload["config"]["image_size"])
    try:
        model.g_ab.load_state_dict(payload["model"]["g_ab"])
        model.g_ba.load_state_dict(payload["model"]["g_ba"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: translator weights do not match its recorded config ({exc})") from exc
    return model.to(device).eval()
