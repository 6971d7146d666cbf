"""Generative adversarial networks trained by `fit()` through custom `train_step`s.

    >>> import keras_models
    >>> gan = keras_models.build("cgan", image_shape=(8, 8, 1), num_classes=10)
    >>> gan.fit(images, labels, epochs=30, callbacks=[SampleGrid("samples"), TrainingGuard()])
    >>> gan.generate(10, labels=range(10), seed=0)

Variants: gan, dcgan, cgan, infogan, lsgan, wgan, wgan_gp, pix2pix, cyclegan, srgan, stylegan, biggan.
"""

from __future__ import annotations

import time

from keras_models.gan import layers, losses
from keras_models.gan.base import GAN, slerp
from keras_models.gan.callbacks import SampleGrid, TrainingFailure, TrainingGuard, image_grid
from keras_models.gan.models import SRGAN, CycleGAN, InfoGAN, Pix2Pix, StyleGAN
from keras_models.gan.variants import BUILDERS, CONFIGS
from keras_models.tour import TourResult, tour_case

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
    "layers",
    "losses",
    "slerp",
]


@tour_case("gan", "cgan")
def _tour_cgan(verbose: bool):
    """cgan on 8x8 digits; the metric is how often a logistic-regression judge trained on real digits
    reads generated samples as the class they were asked for."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from keras_models.data import load_digits
    from keras_models.gan.variants import BUILDERS

    (x_train, y_train), (x_test, y_test) = load_digits(8)
    judge = LogisticRegression(max_iter=2000).fit(x_train.reshape(len(x_train), -1), y_train)
    gan = BUILDERS["cgan"](image_shape=(8, 8, 1), num_classes=10, seed=0)
    start = time.perf_counter()
    gan.fit(x_train, y_train, epochs=40, batch_size=64, verbose=1 if verbose else 0)
    seconds = time.perf_counter() - start
    labels = np.arange(500) % 10
    samples = gan.generate(500, labels=labels, seed=1)
    accuracy = float(np.mean(judge.predict(samples.reshape(len(samples), -1)) == labels))
    rng = np.random.default_rng(2)
    sample_inputs = [rng.standard_normal((8, gan.latent_dim)).astype("float32"), (np.arange(8) % 10).astype("int32")]
    return TourResult(
        "gan", "cgan", gan.generator, "judge accuracy of generated digits", accuracy, seconds, sample_inputs,
        trained_model=gan,
    )
