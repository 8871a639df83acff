"""Generated-sample pool for the encoder's fake-KL term (CycleGAN-style ``ImagePool``; thesis 3.2.2).

The encoder sees a mixture of fresh decoder samples and older ones, which gives it a steadier view of
the decoder's output distribution.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["SamplePool"]


class SamplePool:
    """Holds up to ``capacity`` images ``(3, H, W)``.

    :meth:`query` takes a batch ``(B, 3, H, W)``: while the pool fills, each image is stored and
    returned as is; once full, each image is, with probability ``swap_prob``, stored in place of a
    random stored image which is returned instead, otherwise returned as is. Randomness comes from the
    pool's own CPU generator so the pool's state (contents + generator) checkpoints and resumes exactly.
    """

    def __init__(self, capacity: int = 200, swap_prob: float = 0.5, seed: int = 0) -> None:
        if capacity < 0:
            raise ValueError(f"pool capacity must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        self.swap_prob = float(swap_prob)
        self.generator = torch.Generator().manual_seed(seed)
        self.images: Optional[Tensor] = None  # (n, 3, H, W) on the device of the first query
        self.count = 0

    def reset(self, capacity: Optional[int] = None) -> None:
        """Empty the pool (at every phase change: stored images have the old resolution)."""
        if capacity is not None:
            self.capacity = int(capacity)
        self.images = None
        self.count = 0

    def __len__(self) -> int:
        return self.count

    @torch.no_grad()
    def query(self, batch: Tensor) -> Tensor:
        if self.capacity == 0:
            return batch
        batch = batch.detach()
        if self.images is None:
            self.images = torch.empty((self.capacity, *batch.shape[1:]), dtype=batch.dtype, device=batch.device)
        elif self.images.shape[1:] != batch.shape[1:]:
            raise ValueError(f"pool holds images of shape {tuple(self.images.shape[1:])}, got {tuple(batch.shape[1:])}; reset it first")
        out = batch.clone()
        # One draw per image, whether or not it is needed, keeps the generator stream simple.
        coins = torch.rand(batch.shape[0], generator=self.generator)
        slots = torch.randint(0, max(self.capacity, 1), (batch.shape[0],), generator=self.generator)
        for i in range(batch.shape[0]):
            if self.count < self.capacity:
                self.images[self.count] = batch[i]
                self.count += 1
            elif coins[i] < self.swap_prob:
                j = int(slots[i])
                out[i] = self.images[j]
                self.images[j] = batch[i]
        return out

    def state_dict(self) -> dict:
        return {
            "capacity": self.capacity,
            "swap_prob": self.swap_prob,
            "generator": self.generator.get_state(),
            "images": None if self.images is None else self.images[: self.count].detach().cpu().clone(),
            "count": self.count,
        }

    def load_state_dict(self, state: dict, device=None) -> None:
        self.capacity = int(state["capacity"])
        self.swap_prob = float(state["swap_prob"])
        self.generator.set_state(state["generator"])
        self.count = int(state["count"])
        self.images = None
        if state["images"] is not None:
            stored = state["images"]
            self.images = torch.empty((self.capacity, *stored.shape[1:]), dtype=stored.dtype, device=device or stored.device)
            self.images[: self.count] = stored.to(self.images.device)
