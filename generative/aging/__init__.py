"""Face aging by chained translators (the thesis' Publication IV application, its own use of the
generative models): the CycleGAN translator (:mod:`~generative.aging.translator`), its trainer and
training loop (:mod:`~generative.aging.cyclegan`, :mod:`~generative.aging.training`, built on the
shared pieces of :mod:`generative.training`), the external age estimator that only scores, the
synthetic faces used to test it, and the chain that strings translators across age domains
(:mod:`~generative.aging.chain`).
"""
