"""The generative architectures and their registry: the :class:`~generative.backbones.registry.Backbone`
protocol, its capability protocols, the registry and :func:`~generative.backbones.registry.load`
(:mod:`~generative.backbones.registry`); one module per architecture (Pioneer, automodulator and
StyleGAN2), the layers they share, and the
checkpoint and config formats they are saved in. A new backbone is one module here that registers its
class, plus its name in ``BACKBONE_MODULES``.
"""
