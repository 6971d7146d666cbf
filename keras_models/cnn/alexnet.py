"""AlexNet (Krizhevsky, Sutskever and Hinton, "ImageNet classification with deep convolutional neural
networks", NeurIPS 2012)."""

from __future__ import annotations

import keras

from keras_models.cnn._common import check_common, check_width, finish_model, scaled
from keras_models.registry import register_model


@register_model("alexnet", family="cnn", description="AlexNet (Krizhevsky et al., 2012), single tower")
def alexnet(
    input_shape=(227, 227, 3),
    num_classes: int = 1000,
    head: str = "softmax",
    include_top: bool = True,
    pooling: str | None = None,
    name: str = "alexnet",
    compile: bool = True,
    jit_compile: bool | None = None,
    *,
    width_multiplier: float = 1.0,
    dense_units: int = 4096,
    dropout: float = 0.5,
):
    """AlexNet in its single-tower form: five convolutions (96, 256, 384, 384, 256), three max-pools,
    two dense layers of 4096 and the head.

    The paper split every layer across two GPUs; here each layer is one ungrouped convolution (the form
    the paper's "one GPU" figures and most re-implementations use), since grouped convolutions do not
    convert to ONNX once XLA-wrapped. The paper's local response normalisation after conv1 and conv2
    is left out, as in later renditions (it had no parameters and a small effect).

    Args:
        input_shape: `(height, width, channels)`, at least 67x67 (227x227 for the paper's sizes).
        num_classes, head, include_top, pooling, name, compile, jit_compile: as for every builder of
            the family (see `simple_cnn`).
        width_multiplier: scales every convolution's filters (1.0 is the paper's).
        dense_units: width of the two dense layers.
        dropout: the dropout rate after each dense layer.

    Returns:
        A `keras.Model`.
    """
    shape = check_common(input_shape, num_classes, head, include_top, pooling, name, min_size=67)
    check_width(width_multiplier)
    if not isinstance(dense_units, int) or dense_units < 1:
        raise ValueError(f"dense_units must be a positive integer; got dense_units={dense_units!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got dropout={dropout!r}.")

    inputs = keras.Input(shape=shape, name=name + "_input")
    x = keras.layers.Conv2D(scaled(96, width_multiplier), 11, strides=4, activation="relu",
                            name=name + "_conv1")(inputs)  # (55, 55, 96)
    x = keras.layers.MaxPooling2D(3, strides=2, name=name + "_pool1")(x)  # (27, 27, 96)
    x = keras.layers.Conv2D(scaled(256, width_multiplier), 5, padding="same", activation="relu",
                            name=name + "_conv2")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name=name + "_pool2")(x)  # (13, 13, 256)
    for index, filters in ((3, 384), (4, 384), (5, 256)):
        x = keras.layers.Conv2D(scaled(filters, width_multiplier), 3, padding="same", activation="relu",
                                name=f"{name}_conv{index}")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name=name + "_pool5")(x)  # (6, 6, 256)

    def top(features):
        x = keras.layers.Flatten(name=name + "_flatten")(features)  # (9216,)
        for index in (6, 7):
            x = keras.layers.Dense(dense_units, activation="relu", name=f"{name}_fc{index}")(x)
            if dropout:
                x = keras.layers.Dropout(dropout, name=f"{name}_dropout{index}")(x)
        return x

    return finish_model(inputs, x, top=top, num_classes=num_classes, head=head, include_top=include_top,
                        pooling=pooling, name=name, compile=compile, jit_compile=jit_compile)
