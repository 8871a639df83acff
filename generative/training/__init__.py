"""Training of the generative backbones: losses, progressive-growing schedule, EMA, sample pool,
torchrun/DDP helpers and the trainer (:func:`generative.training.loop.train`).

Importing this package registers every built-in trainer (:mod:`generative.training.registry`).
"""

from generative.training import automodulator_loop, loop  # noqa: F401  (each registers its training variants)
