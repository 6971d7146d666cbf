"""Likelihood-based generative models: variational autoencoders trained by `fit()` on their ELBO.

    >>> import keras_models
    >>> vae = keras_models.build("vae", image_shape=(8, 8, 1), latent_dim=8)
    >>> vae.fit(images, epochs=30)
    >>> vae.elbo(test_images), vae.log_likelihood(test_images, num_samples=100)   # nats per image
    >>> vae.generate(16, seed=0)

Variants: vae, conditional_vae, beta_vae. Pixel likelihoods (`distributions`): Bernoulli, Gaussian
with learned variance, discretized logistic mixture; TensorFlow Probability on TensorFlow, `keras.ops`
on JAX and PyTorch. Also `ddpm` (diffusion, `diffusion`) and `pixelcnn` (autoregressive, an exact
likelihood, `pixelcnn`).
"""

from __future__ import annotations

from keras_models.likelihood import (diffusion_sampling, diffusion_schedules, diffusion_unet, distributions, networks,
                                     pixelcnn_network)
from keras_models.likelihood.diffusion import DiffusionModel, ddpm
from keras_models.likelihood.diffusion_schedules import NoiseSchedule
from keras_models.likelihood.pixelcnn import PixelCNN, pixelcnn
from keras_models.likelihood.vae import VAE, bits_per_dimension
from keras_models.likelihood.variants import BUILDERS, CONFIGS

__all__ = ["BUILDERS", "CONFIGS", "VAE", "bits_per_dimension", "distributions", "networks",
           "DiffusionModel", "NoiseSchedule", "ddpm", "diffusion_sampling", "diffusion_schedules", "diffusion_unet",
           "PixelCNN", "pixelcnn", "pixelcnn_network"]
