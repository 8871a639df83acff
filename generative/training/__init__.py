"""Training of the generative backbones: losses, progressive-growing schedule, EMA, sample pool,
torchrun/DDP helpers and the trainer (:func:`generative.training.loop.train`)."""
