"""The VAE's encoder and decoder, dense or convolutional, as separate functional Keras models.

The encoder maps images (and labels) to the posterior's `mean` and `log_variance` `(batch, latent_dim)`;
the decoder maps latents `z` (and labels) to the parameters of the pixel likelihood. Neither draws
random numbers: the reparameterisation noise is the decoder's input `z = mean + exp(log_variance / 2) *
noise`, drawn outside, so both export to TFLite and ONNX with no random ops.
"""

from __future__ import annotations

import keras
from keras import layers

# The decoder's outputs per likelihood, in order (see `distributions.image_log_prob`).
DECODER_OUTPUTS = {
    "bernoulli": ("logits",),
    "gaussian": ("mean", "log_scale"),
    "logistic_mixture": ("mixture_logits", "loc", "log_scale"),
}


def _label_input(num_classes, name):
    labels = keras.Input(shape=(), dtype="int32", name=name + "_labels")
    embedded = layers.Embedding(num_classes, 16, name=name + "_label_embedding")(labels)  # (batch, 16)
    return labels, embedded


def check_conv_shape(image_shape, num_downsamples):
    factor = 2**num_downsamples
    if image_shape[0] % factor or image_shape[1] % factor:
        raise ValueError(
            f"image_shape {tuple(image_shape)} must have height and width divisible by {factor} for the "
            f"convolutional VAE with {num_downsamples} stride-2 layers; use architecture='dense' or pad."
        )


def encoder(image_shape, latent_dim, num_classes=None, architecture="dense", width=64, name="encoder"):
    """Images `(batch, *image_shape)` (and int labels) -> `[mean, log_variance]` `(batch, latent_dim)`.

    Dense: two hidden layers of `2 * width` and `width` units. Convolutional: stride-2 3x3 convolutions
    of `width / 2` and `width` filters, then a dense layer of `2 * width`.
    """
    images = keras.Input(shape=image_shape, name=name + "_images")
    inputs = [images]
    if architecture == "conv":
        x = images
        for index, filters in enumerate((max(width // 2, 1), width)):
            x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", name=f"{name}_conv{index + 1}")(x)
        x = layers.Flatten(name=name + "_flatten")(x)  # (batch, h/4 * w/4 * width)
        hidden = (2 * width,)
    else:
        x = layers.Flatten(name=name + "_flatten")(images)
        hidden = (2 * width, width)
    if num_classes:
        labels, embedded = _label_input(num_classes, name)
        inputs.append(labels)
        x = layers.Concatenate(name=name + "_concat")([x, embedded])
    for index, units in enumerate(hidden):
        x = layers.Dense(units, activation="relu", name=f"{name}_dense{index + 1}")(x)
    mean = layers.Dense(latent_dim, name=name + "_mean")(x)
    log_variance = layers.Dense(latent_dim, name=name + "_log_variance")(x)
    return keras.Model(inputs if len(inputs) > 1 else images, [mean, log_variance], name=name)


def decoder(image_shape, latent_dim, likelihood, num_classes=None, architecture="dense", width=64,
            num_mixtures=5, name="decoder"):
    """Latents `(batch, latent_dim)` (and int labels) -> the likelihood's parameters per pixel.

    Outputs (`DECODER_OUTPUTS`): Bernoulli logits `(batch, h, w, c)`; Gaussian mean and log-scale
    `(batch, h, w, c)` each; mixture logits, locations on [-1, 1] and log-scales `(batch, h, w, c, k)`.
    """
    height, width_px, channels = image_shape
    z = keras.Input(shape=(latent_dim,), name=name + "_z")
    inputs, x = [z], z
    if num_classes:
        labels, embedded = _label_input(num_classes, name)
        inputs.append(labels)
        x = layers.Concatenate(name=name + "_concat")([z, embedded])
    per_pixel = {"bernoulli": 1, "gaussian": 1, "logistic_mixture": num_mixtures}[likelihood]
    heads = DECODER_OUTPUTS[likelihood]
    if architecture == "conv":
        small = (height // 4, width_px // 4)
        x = layers.Dense(2 * width, activation="relu", name=name + "_dense1")(x)
        x = layers.Dense(small[0] * small[1] * width, activation="relu", name=name + "_project")(x)
        x = layers.Reshape((*small, width), name=name + "_reshape")(x)  # (batch, h/4, w/4, width)
        x = layers.Conv2DTranspose(width, 3, strides=2, padding="same", activation="relu", name=name + "_up1")(x)
        x = layers.Conv2DTranspose(max(width // 2, 1), 3, strides=2, padding="same", activation="relu",
                                   name=name + "_up2")(x)  # (batch, h, w, width / 2)
        outputs = [layers.Conv2D(channels * per_pixel, 3, padding="same", name=f"{name}_{head}")(x) for head in heads]
    else:
        for index, units in enumerate((width, 2 * width)):
            x = layers.Dense(units, activation="relu", name=f"{name}_dense{index + 1}")(x)
        outputs = [layers.Dense(height * width_px * channels * per_pixel, name=f"{name}_{head}")(x) for head in heads]
    shape = (height, width_px, channels, per_pixel) if per_pixel > 1 else (height, width_px, channels)
    outputs = [layers.Reshape(shape, name=f"{name}_{head}_pixels")(o) for head, o in zip(heads, outputs)]
    return keras.Model(inputs if len(inputs) > 1 else z, outputs if len(outputs) > 1 else outputs[0], name=name)
