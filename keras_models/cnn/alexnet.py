"""AlexNet (Krizhevsky, Sutskever and Hinton, "ImageNet classification with deep convolutional neural
networks", NeurIPS 2012)."""

from __future__ import annotations

import keras

from keras_models.cnn._common import check_common, check_width, finish_model, scaled
from keras_models.layers.conv2d import Conv2D
from keras_models.layers.pooling import MaxPooling2D
from keras_models.registry import register_model


@register_model("alexnet", family="cnn", description="AlexNet (Krizhevsky et al., 2012), one or two towers")
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
    towers: int = 1,
):
    """AlexNet: five convolutions (96, 256, 384, 384, 256), three max-pools, two dense layers of 4096 and
    the head.

    The paper split the network across two GPUs: conv2, conv4 and conv5 saw only their own GPU's half of
    the previous layer's channels, while conv3 and the dense layers read both. `towers=2` builds that
    form, those three layers as grouped convolutions (`groups=2`; 60,965,224 parameters at the paper's
    sizes, the figure of the two-tower network); `towers=1` (the default) makes every layer one
    ungrouped convolution, the form most re-implementations use (62,378,344). Both export: the exporter
    writes a grouped convolution as one convolution per group. The paper's local response normalisation
    after conv1 and conv2 is left out, as in later renditions (it had no parameters and a small effect).

    Args:
        input_shape: `(height, width, channels)`, at least 67x67 (227x227 for the paper's sizes).
        num_classes, head, include_top, pooling, name, compile, jit_compile: as for every builder of
            the family (see `simple_cnn`).
        width_multiplier: scales every convolution's filters (1.0 is the paper's).
        dense_units: width of the two dense layers.
        dropout: the dropout rate after each dense layer.
        towers: 1, or 2 for the paper's two towers (grouped conv2, conv4, conv5).

    Returns:
        A `keras.Model`.
    """
    shape = check_common(input_shape, num_classes, head, include_top, pooling, name, min_size=67)
    check_width(width_multiplier)
    if not isinstance(dense_units, int) or dense_units < 1:
        raise ValueError(f"dense_units must be a positive integer; got dense_units={dense_units!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got dropout={dropout!r}.")
    if towers not in (1, 2) or isinstance(towers, bool):
        raise ValueError(f"towers must be 1 or 2; got towers={towers!r}.")
    widths = {index: scaled(filters, width_multiplier) for index, filters in
              ((1, 96), (2, 256), (3, 384), (4, 384), (5, 256))}
    if towers == 2 and any(width % 2 for width in widths.values()):
        raise ValueError(
            f"towers=2 splits every layer's filters in two halves; width_multiplier={width_multiplier!r} gives "
            f"odd widths {widths}."
        )
    groups = {2: towers, 3: 1, 4: towers, 5: towers}  # conv3 reads both towers, as in the paper

    inputs = keras.Input(shape=shape, name=name + "_input")
    x = Conv2D(widths[1], 11, strides=4, activation="relu", name=name + "_conv1")(inputs)  # (55, 55, 96)
    x = MaxPooling2D(3, strides=2, name=name + "_pool1")(x)  # (27, 27, 96)
    x = Conv2D(widths[2], 5, padding="same", activation="relu", groups=groups[2],
                            name=name + "_conv2")(x)
    x = MaxPooling2D(3, strides=2, name=name + "_pool2")(x)  # (13, 13, 256)
    for index in (3, 4, 5):
        x = Conv2D(widths[index], 3, padding="same", activation="relu", groups=groups[index],
                                name=f"{name}_conv{index}")(x)
    x = MaxPooling2D(3, strides=2, name=name + "_pool5")(x)  # (6, 6, 256)

    def top(features):
        x = keras.layers.Flatten(name=name + "_flatten")(features)  # (9216,)
        for index in (6, 7):
            x = keras.layers.Dense(dense_units, activation="relu", name=f"{name}_fc{index}")(x)
            if dropout:
                x = keras.layers.Dropout(dropout, name=f"{name}_dropout{index}")(x)
        return x

    return finish_model(inputs, x, top=top, num_classes=num_classes, head=head, include_top=include_top,
                        pooling=pooling, name=name, compile=compile, jit_compile=jit_compile)
