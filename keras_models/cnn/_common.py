"""What every convolutional builder shares: argument checks, the top, feature pooling and compiling.

Every public builder of the family has the signature

    builder(input_shape, num_classes, head, include_top, pooling, name, compile, jit_compile, ...)

and ends with `finish_model`, so heads, feature extraction and the XLA policy behave the same way for
LeNet-5 and for ResNet-152.
"""

from __future__ import annotations

import keras

from keras_models.checks import CheckedModel, check_shape
from keras_models.heads import check_head, check_num_classes, classifier_head, head_loss
from keras_models.layers.batch_normalization import BatchNormalization
from keras_models.layers.conv2d import Conv2D
from keras_models.layers.layout import LAYOUTS, ChannelLayout
from keras_models.training import compile_model

POOLINGS = (None, "avg", "max")


def resolve_data_format(data_format):
    """`data_format`, checked: the layout a builder's convolutions compute in."""
    if data_format not in LAYOUTS:
        raise ValueError(f"data_format must be one of {LAYOUTS}; got data_format={data_format!r}.")
    return data_format


def channel_axis(data_format):
    return 1 if data_format == "channels_first" else -1


def to_internal_layout(inputs, data_format, name):
    """Channels-last `inputs` in the layout the network computes in (a no-op for channels-last)."""
    if data_format == "channels_last":
        return inputs
    return ChannelLayout("channels_first", name=name + "_to_channels_first")(inputs)


def check_common(input_shape, num_classes, head, include_top, pooling, name, *, rank=3, min_size=1):
    """Validates the arguments every builder shares and returns `input_shape` as a tuple.

    Args:
        rank: the number of axes of one sample (3 for images `(height, width, channels)`, 4 for clips
            `(frames, height, width, channels)`, 1 for token sequences).
        min_size: the smallest spatial size (height, width, frames) the architecture can reduce without
            running out of pixels.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string; got name={name!r}.")
    shape = check_shape(input_shape, "input_shape", rank=rank)
    spatial = shape if rank == 1 else shape[:-1]
    if any(d < min_size for d in spatial):
        raise ValueError(
            f"input_shape={input_shape!r} is too small for {name!r}: every spatial axis must be at least "
            f"{min_size}."
        )
    check_head(head)
    check_num_classes(num_classes, head, include_top)
    if include_top not in (True, False):
        raise ValueError(f"include_top must be True or False; got include_top={include_top!r}.")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}; got pooling={pooling!r}.")
    return shape


def check_width(width_multiplier):
    if not isinstance(width_multiplier, (int, float)) or isinstance(width_multiplier, bool) or not width_multiplier > 0:
        raise ValueError(f"width_multiplier must be a positive number; got width_multiplier={width_multiplier!r}.")


def scaled(filters: int, width_multiplier: float) -> int:
    """`filters` scaled by `width_multiplier`, at least 1 (1.0 keeps the published width)."""
    return max(1, int(round(filters * width_multiplier)))


def global_pool(x, pooling, name, data_format="channels_last"):
    """Global average or max pooling over every axis but batch and channels; `None` keeps the map
    (channels-last, whatever layout the network computed in)."""
    rank = len(x.shape) - 2
    layers = {
        ("avg", 1): keras.layers.GlobalAveragePooling1D,
        ("avg", 2): keras.layers.GlobalAveragePooling2D,
        ("avg", 3): keras.layers.GlobalAveragePooling3D,
        ("max", 1): keras.layers.GlobalMaxPooling1D,
        ("max", 2): keras.layers.GlobalMaxPooling2D,
        ("max", 3): keras.layers.GlobalMaxPooling3D,
    }
    if pooling is None:
        if data_format == "channels_first":
            return ChannelLayout("channels_last", name=name + "_to_channels_last")(x)
        return x
    return layers[(pooling, rank)](data_format=data_format, name=f"{name}_{pooling}_pool")(x)


def finish_model(
    inputs,
    features,
    *,
    top,
    num_classes,
    head,
    include_top,
    pooling,
    name,
    compile,
    jit_compile,
    data_format="channels_last",
):
    """Adds the classifier (or the feature pooling), builds the model and compiles it.

    Args:
        inputs: the `keras.Input`.
        features: the last feature map of the backbone.
        top: `fn(features) -> tensor` mapping the feature map to the vector the classifier reads
            (global pooling for ResNet, flatten and two dense layers for VGG).
        include_top: `True` for `top` + `classifier_head`; `False` for `global_pool(features, pooling)`.
        compile: compile with the head's loss through `keras_models.compile_model(family="cnn")`.
        jit_compile: `None` for the library's default, or `True`/`False`.
        data_format: the layout `features` is in; feature maps are returned channels-last.

    Returns:
        A `CheckedModel`: a functional `keras.Model` whose `fit` and `evaluate` check their arrays.
    """
    if include_top:
        outputs = classifier_head(top(features), num_classes, head, name)
    else:
        outputs = global_pool(features, pooling, name, data_format)
    model = CheckedModel(inputs, outputs, name=name)
    if compile:
        if include_top:
            loss, metrics = head_loss(head, num_classes)
        else:
            loss, metrics = None, None  # a feature extractor is compiled by whoever adds a head
        compile_model(model, loss=loss, metrics=metrics, jit_compile=jit_compile, family="cnn")
    return model


def conv_bn(x, filters, kernel_size, *, strides=1, padding="same", activation="relu", use_bias=False,
            scale=True, epsilon=1e-3, name):
    """Conv2D, batch normalisation and an activation, named `name + "_conv" / "_bn" / "_relu"`."""
    x = Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
                            name=name + "_conv")(x)
    x = BatchNormalization(axis=-1, scale=scale, epsilon=epsilon, name=name + "_bn")(x)
    if activation:
        x = keras.layers.Activation(activation, name=name + "_" + activation)(x)
    return x
