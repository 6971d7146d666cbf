"""The U-Net (Ronneberger et al., 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation") as a block: a strided-convolution encoder and a transposed-convolution decoder joined by
skip connections at every resolution. pix2pix's generator is this block between its pixel scalings.
Its convolutions and batch normalizations are the library's (Keras' own, faster on PyTorch; a model of
your own holding the block calls `match_optimizer_layout` after `compile` there).
"""

from __future__ import annotations

import keras

from keras_models.layers.batch_normalization import BatchNormalization
from keras_models.layers.conv2d import Conv2D, Conv2DTranspose

layers = keras.layers


def _down(x, filters, normalize, name):
    x = Conv2D(filters, 4, strides=2, padding="same", use_bias=not normalize, name=name + "_conv")(x)
    if normalize:
        x = BatchNormalization(momentum=0.9, name=name + "_bn")(x)
    return layers.LeakyReLU(0.2, name=name + "_lrelu")(x)


def _up(x, filters, dropout, name):
    x = Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False, name=name + "_conv")(x)
    x = BatchNormalization(momentum=0.9, name=name + "_bn")(x)
    if dropout:
        x = layers.Dropout(dropout, name=name + "_dropout")(x)
    return layers.ReLU(name=name + "_relu")(x)


def unet(x, filters, *, dropout=0.5, dropout_levels=2, name="unet"):
    """Encoder-decoder with skips: `(b, h, w, c)` to `(b, h / 2, w / 2, filters[0] * 2)`.

    Each level halves the resolution with a 4x4 stride-2 convolution (batch norm from the second
    level, leaky ReLU), and the decoder doubles it back with transposed convolutions (batch norm,
    dropout in the innermost levels, ReLU), concatenating the encoder's features of the same size. The
    caller adds the last upsampling to the output channels.

    Args:
        x: the input tensor `(batch, height, width, channels)`; height and width divisible by
            `2 ** len(filters)`.
        filters: filters per level, outermost first; its length is the depth.
        dropout: the dropout rate of the innermost decoder levels (pix2pix's source of noise).
        dropout_levels: how many of the innermost decoder levels get dropout.
        name: the prefix of every layer name (`name + "_down1_conv"`, ...).

    Returns:
        The decoder's last features, at half the input resolution.
    """
    filters = [int(f) for f in filters]
    if not filters or min(filters) < 1:
        raise ValueError(f"filters must be a non-empty list of positive integers; got filters={filters!r}.")
    depth = len(filters)
    skips = []
    for level, width in enumerate(filters):
        x = _down(x, width, level > 0, f"{name}_down{level + 1}")
        skips.append(x)
    for level in reversed(range(depth - 1)):
        up_name = f"{name}_up{level + 1}"
        x = _up(x, filters[level], dropout if level >= depth - 1 - dropout_levels else 0.0, up_name)
        x = layers.Concatenate(name=up_name + "_skip")([x, skips[level]])
    return x
