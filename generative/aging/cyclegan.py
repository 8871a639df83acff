"""Training of a CycleGAN translator pair (thesis 3.1.3, 4.4; SPEC 5): losses and the trainer.

The networks are :mod:`generative.aging.translator`'s, trained on unpaired images in ``[-1, 1]``:

* generator loss ``LSGAN(D_b(G_ab(a)), 1) + LSGAN(D_a(G_ba(b)), 1)
  + lambda (|G_ba(G_ab(a)) - a|_1 + |G_ab(G_ba(b)) - b|_1)`` with ``lambda = 10`` and no identity term
  (the Aalto img-transformer-chain code, notes A.4);
* discriminator loss ``0.5 (LSGAN(D(real), 1) + LSGAN(D(pool(fake)), 0))`` per discriminator, the fakes
  drawn through a 50-image history pool (:class:`~generative.training.buffer.SamplePool`, which has
  exactly CycleGAN's ``ImagePool`` semantics: fill, then return a stored image with probability 0.5);
* Adam lr 2e-4, betas (0.5, 0.999), constant rate; separate optimizers for the generators, ``D_a`` and
  ``D_b``; weights initialised N(0, 0.02).
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor, nn

from generative.backbones.checkpoint import capture_rng_state, restore_rng_state
from generative.aging.translator import DIRECTIONS, PatchDiscriminator, ResnetGenerator, TranslatorConfig
from generative.training.buffer import SamplePool
from generative.training.losses import reconstruction_l1

__all__ = ["lsgan_loss", "cycle_loss", "CycleGANTrainer"]


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
            "config": self.config.to_dict(),
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
