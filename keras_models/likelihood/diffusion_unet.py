"""The diffusion denoiser: a small U-Net of one step, `(x_t, t, label) -> epsilon or v`, as a functional
Keras model (Ho et al., 2020, appendix B, scaled down).

Sinusoidal features of the timestep and a learned label embedding (one extra row for the null label of
classifier-free guidance) are added inside every residual block; residual blocks use group
normalization and swish; self-attention runs at the lowest resolution, between two residual blocks.
The network draws no random numbers and takes the timestep as a float, so it exports to builtin TFLite
operators and plain ONNX.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from keras_models.layers import SelfAttention2D

_PACKAGE = "keras_models"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TimestepEmbedding(keras.layers.Layer):
    """Sinusoidal features of a timestep per example: `(batch,)` -> `(batch, dim)`, the first half
    `sin(t / 10000^(i / half))`, the second half the cosines (Vaswani et al., 2017; Ho et al., 2020).

    Args:
        dim: the number of features (even).
        max_wavelength: the longest wavelength.
    """

    def __init__(self, dim, max_wavelength=10000.0, **kwargs):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even integer >= 2; got dim={dim!r}.")
        super().__init__(**kwargs)
        self.dim = dim
        self.max_wavelength = float(max_wavelength)

    def call(self, times):
        half = self.dim // 2
        frequencies = ops.exp(ops.arange(half, dtype="float32") * (-math.log(self.max_wavelength) / half))
        angles = ops.expand_dims(ops.cast(times, "float32"), -1) * ops.expand_dims(frequencies, 0)  # (batch, half)
        return ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "max_wavelength": self.max_wavelength}


def _group_norm(channels, groups, name):
    return layers.GroupNormalization(groups=math.gcd(groups, channels), epsilon=1e-5, name=name)


def residual_block(x, embedding, filters, groups, dropout, name):
    """GroupNorm, swish, 3x3 convolution, plus the projected time/label embedding, then again; a 1x1
    convolution on the skip path when the width changes."""
    h = layers.Activation("swish", name=name + "_act1")(_group_norm(x.shape[-1], groups, name + "_norm1")(x))
    h = layers.Conv2D(filters, 3, padding="same", name=name + "_conv1")(h)
    projected = layers.Dense(filters, name=name + "_embedding")(layers.Activation("swish", name=name + "_emb_act")(embedding))
    h = layers.Add(name=name + "_add_embedding")([h, layers.Reshape((1, 1, filters), name=name + "_emb_reshape")(projected)])
    h = layers.Activation("swish", name=name + "_act2")(_group_norm(filters, groups, name + "_norm2")(h))
    if dropout:
        h = layers.Dropout(dropout, name=name + "_dropout")(h)
    h = layers.Conv2D(filters, 3, padding="same", name=name + "_conv2")(h)
    skip = x if x.shape[-1] == filters else layers.Conv2D(filters, 1, name=name + "_skip")(x)
    return layers.Add(name=name + "_out")([skip, h])


def check_image_shape(image_shape, levels):
    factor = 2 ** (levels - 1)
    if image_shape[0] % factor or image_shape[1] % factor:
        raise ValueError(
            f"image_shape {tuple(image_shape)} must have height and width divisible by {factor} for a U-Net "
            f"of {levels} resolutions; pad the images or pass fewer channel_multipliers."
        )


def denoiser(image_shape, num_classes=None, width=32, channel_multipliers=(1, 2), num_res_blocks=1, groups=8,
             dropout=0.0, name="denoiser"):
    """The U-Net: inputs `images` `(batch, h, w, c)` on the noise scale, `times` float32 `(batch,)`
    (timestep indices) and, conditional, `labels` int32 `(batch,)` in [0, num_classes] (num_classes is
    the null label); output `(batch, h, w, c)`.

    Args:
        width: channels at full resolution; level `i` has `width * channel_multipliers[i]`.
        channel_multipliers: one per resolution; each level after the first halves height and width.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        groups: groups of the group normalization (fewer when they do not divide the channels).
        dropout: dropout rate inside the residual blocks.
    """
    check_image_shape(image_shape, len(channel_multipliers))
    images = keras.Input(shape=tuple(image_shape), name=name + "_images")
    times = keras.Input(shape=(), dtype="float32", name=name + "_times")
    inputs = [images, times]
    embedding_dim = 4 * width
    embedding = TimestepEmbedding(width, name=name + "_time_features")(times)  # (batch, width)
    embedding = layers.Dense(embedding_dim, activation="swish", name=name + "_time_dense1")(embedding)
    embedding = layers.Dense(embedding_dim, name=name + "_time_dense2")(embedding)  # (batch, 4 * width)
    if num_classes:
        labels = keras.Input(shape=(), dtype="int32", name=name + "_labels")
        inputs.append(labels)
        label_embedding = layers.Embedding(num_classes + 1, embedding_dim, name=name + "_label_embedding")(labels)
        embedding = layers.Add(name=name + "_embedding")([embedding, label_embedding])

    x = layers.Conv2D(width, 3, padding="same", name=name + "_stem")(images)
    skips = [x]
    last = len(channel_multipliers) - 1
    for level, multiplier in enumerate(channel_multipliers):
        for block in range(num_res_blocks):
            x = residual_block(x, embedding, width * multiplier, groups, dropout, f"{name}_down{level}_block{block}")
            skips.append(x)
        if level < last:
            x = layers.Conv2D(x.shape[-1], 3, strides=2, padding="same", name=f"{name}_down{level}_downsample")(x)
            skips.append(x)  # (batch, h / 2^(level + 1), w / 2^(level + 1), channels)

    middle = width * channel_multipliers[-1]
    x = residual_block(x, embedding, middle, groups, dropout, name + "_middle_block0")
    x = SelfAttention2D(reduction=1, use_spectral_norm=False, name=name + "_middle_attention")(x)
    x = residual_block(x, embedding, middle, groups, dropout, name + "_middle_block1")

    for level in reversed(range(len(channel_multipliers))):
        for block in range(num_res_blocks + 1):
            x = layers.Concatenate(name=f"{name}_up{level}_concat{block}")([x, skips.pop()])
            x = residual_block(x, embedding, width * channel_multipliers[level], groups, dropout,
                               f"{name}_up{level}_block{block}")
        if level > 0:
            x = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up{level}_upsample")(x)
            x = layers.Conv2D(x.shape[-1], 3, padding="same", name=f"{name}_up{level}_upsample_conv")(x)

    x = layers.Activation("swish", name=name + "_out_act")(_group_norm(x.shape[-1], groups, name + "_out_norm")(x))
    outputs = layers.Conv2D(image_shape[-1], 3, padding="same", kernel_initializer="zeros", name=name + "_output")(x)
    return keras.Model(inputs, outputs, name=name)
