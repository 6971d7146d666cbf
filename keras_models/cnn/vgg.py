"""VGG (Simonyan and Zisserman, "Very deep convolutional networks for large-scale image recognition",
ICLR 2015)."""

from __future__ import annotations

import keras

from keras_models.cnn._common import check_common, check_width, finish_model, scaled
from keras_models.layers.conv2d import Conv2D
from keras_models.layers.pooling import MaxPooling2D
from keras_models.registry import register_model

# Convolutions per block; each block doubles the width up to 512 and ends with a 2x2 max-pool.
CONFIGS = {
    "vgg16": {"convs": (2, 2, 3, 3, 3), "filters": (64, 128, 256, 512, 512)},
    "vgg19": {"convs": (2, 2, 4, 4, 4), "filters": (64, 128, 256, 512, 512)},
}

_DOC = """{title} (Simonyan and Zisserman, 2015): {convs} 3x3 convolutions in five blocks, each closed by
    a 2x2 max-pool, then two dense layers of 4096 and the head. With `include_top=True`, 1000 classes and
    224x224x3 inputs it has exactly the parameters of `keras.applications.{keras_name}`.

    Args:
        input_shape: `(height, width, channels)`, at least 32x32 (224x224 in the paper).
        num_classes: output units.
        head: `"softmax"`, `"sigmoid"` (binary or multi-label) or `"linear"`.
        include_top: `False` returns the block-5 feature map, pooled as `pooling` says.
        pooling: with `include_top=False`: `None`, `"avg"` or `"max"`.
        name: the model name and the prefix of every layer name.
        compile: compile with the head's loss and the library's XLA policy.
        jit_compile: override the XLA default.
        width_multiplier: scales every convolution's filters (1.0 is the paper's).
        dense_units: the width of the two dense layers (4096 in the paper).
        dropout: dropout after each dense layer (0.5 in the paper's training; 0 keeps the Keras graph).

    Returns:
        A `keras.Model`.
"""


def vgg_block(x, filters, convs, name):
    """`convs` 3x3 same-padded ReLU convolutions then a 2x2 max-pool: (h, w, c) -> (h/2, w/2, filters)."""
    for index in range(1, convs + 1):
        x = Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv{index}")(x)
    return MaxPooling2D(2, strides=2, name=name + "_pool")(x)


def _vgg(config, input_shape, num_classes, head, include_top, pooling, name, compile, jit_compile,
         width_multiplier, dense_units, dropout):
    shape = check_common(input_shape, num_classes, head, include_top, pooling, name, min_size=32)
    check_width(width_multiplier)
    if not isinstance(dense_units, int) or dense_units < 1:
        raise ValueError(f"dense_units must be a positive integer; got dense_units={dense_units!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got dropout={dropout!r}.")
    inputs = keras.Input(shape=shape, name=name + "_input")
    x = inputs
    for index, (convs, filters) in enumerate(zip(config["convs"], config["filters"]), start=1):
        x = vgg_block(x, scaled(filters, width_multiplier), convs, f"{name}_block{index}")  # (h/2^i, w/2^i, f)

    def top(features):
        x = keras.layers.Flatten(name=name + "_flatten")(features)  # (7 * 7 * 512,) at 224x224
        for index in (1, 2):
            x = keras.layers.Dense(dense_units, activation="relu", name=f"{name}_fc{index}")(x)
            if dropout:
                x = keras.layers.Dropout(dropout, name=f"{name}_dropout{index}")(x)
        return x

    return finish_model(inputs, x, top=top, num_classes=num_classes, head=head, include_top=include_top,
                        pooling=pooling, name=name, compile=compile, jit_compile=jit_compile)


def _variant(variant, keras_name):
    config = CONFIGS[variant]

    def builder(
        input_shape=(224, 224, 3),
        num_classes: int = 1000,
        head: str = "softmax",
        include_top: bool = True,
        pooling: str | None = None,
        name: str = variant,
        compile: bool = True,
        jit_compile: bool | None = None,
        *,
        width_multiplier: float = 1.0,
        dense_units: int = 4096,
        dropout: float = 0.0,
    ):
        return _vgg(config, input_shape, num_classes, head, include_top, pooling, name, compile,
                    jit_compile, width_multiplier, dense_units, dropout)

    builder.__name__ = builder.__qualname__ = variant
    builder.__doc__ = _DOC.format(title=variant.upper(), convs=sum(config["convs"]), keras_name=keras_name)
    depth = sum(config["convs"]) + 3
    return register_model(variant, family="cnn",
                          description=f"VGG-{depth} (Simonyan and Zisserman, 2015)")(builder)


vgg16 = _variant("vgg16", "VGG16")
vgg19 = _variant("vgg19", "VGG19")
