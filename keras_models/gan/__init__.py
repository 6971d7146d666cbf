"""Generative adversarial networks trained by `fit()` through custom `train_step`s.

    >>> import keras_models
    >>> gan = keras_models.build("cgan", image_shape=(8, 8, 1), num_classes=10)
    >>> gan.fit(images, labels, epochs=30, callbacks=[SampleGrid("samples"), TrainingGuard()])
    >>> gan.generate(10, labels=range(10), seed=0)

The callbacks, `slerp` and the `ImageGenerativeModel` base come from `keras_models.generative`; the
shared layers from `keras_models.layers`; the GAN's own layers are in `keras_models.gan.gan_layers`.

Variants: gan, dcgan, cgan, infogan, lsgan, wgan, wgan_gp, pix2pix, cyclegan, srgan, stylegan, biggan.
"""

from __future__ import annotations

from keras_models.gan import gan_layers, losses
from keras_models.gan.base import GAN
from keras_models.gan.models import SRGAN, CycleGAN, InfoGAN, Pix2Pix, StyleGAN
from keras_models.gan.variants import BUILDERS, CONFIGS
from keras_models.generative import SampleGrid, TrainingFailure, TrainingGuard, image_grid, slerp

__all__ = [
    "BUILDERS",
    "CONFIGS",
    "CycleGAN",
    "GAN",
    "InfoGAN",
    "Pix2Pix",
    "SRGAN",
    "SampleGrid",
    "StyleGAN",
    "TrainingFailure",
    "TrainingGuard",
    "image_grid",
    "gan_layers",
    "losses",
    "slerp",
]
