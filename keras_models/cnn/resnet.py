"""Residual networks: He, Zhang, Ren and Sun, "Deep residual learning for image recognition" (CVPR 2016),
and the pre-activation "v2" of "Identity mappings in deep residual networks" (ECCV 2016)."""

from __future__ import annotations

import keras

from keras_models.cnn._common import (channel_axis, check_common, check_width, finish_model, resolve_data_format,
                                      scaled, to_internal_layout)
from keras_models.layers.batch_normalization import BatchNormalization
from keras_models.layers.conv2d import Conv2D
from keras_models.layers.pooling import MaxPooling2D
from keras_models.registry import register_model

# Blocks per stage; the stages have 64, 128, 256 and 512 filters (x4 at a bottleneck's output).
CONFIGS = {
    "resnet18": {"block": "basic", "blocks": (2, 2, 2, 2), "preact": False, "keras": None},
    "resnet34": {"block": "basic", "blocks": (3, 4, 6, 3), "preact": False, "keras": None},
    "resnet50": {"block": "bottleneck", "blocks": (3, 4, 6, 3), "preact": False, "keras": "ResNet50"},
    "resnet101": {"block": "bottleneck", "blocks": (3, 4, 23, 3), "preact": False, "keras": "ResNet101"},
    "resnet152": {"block": "bottleneck", "blocks": (3, 8, 36, 3), "preact": False, "keras": "ResNet152"},
    "resnet50v2": {"block": "bottleneck", "blocks": (3, 4, 6, 3), "preact": True, "keras": "ResNet50V2"},
    "resnet101v2": {"block": "bottleneck", "blocks": (3, 4, 23, 3), "preact": True, "keras": "ResNet101V2"},
    "resnet152v2": {"block": "bottleneck", "blocks": (3, 8, 36, 3), "preact": True, "keras": "ResNet152V2"},
}
STAGE_FILTERS = (64, 128, 256, 512)
# Batch-norm epsilon of the reference Keras implementation, so that parameter layouts and numerics match.
_EPSILON = 1.001e-5


def _bn(x, name, data_format="channels_last"):
    return BatchNormalization(axis=channel_axis(data_format), epsilon=_EPSILON, name=name + "_bn")(x)


def basic_block(x, filters, stride, name, data_format="channels_last"):
    """Two 3x3 convolutions and a shortcut (ResNet-18/34): (h, w, c) -> (h/stride, w/stride, filters)."""
    fmt, axis = data_format, channel_axis(data_format)
    if stride != 1 or x.shape[axis] != filters:
        shortcut = Conv2D(filters, 1, strides=stride, data_format=fmt, name=name + "_0_conv")(x)
        shortcut = _bn(shortcut, name + "_0", fmt)
    else:
        shortcut = x
    if stride != 1:
        # Symmetric padding as in the paper's implementations ("same" would pad only bottom/right).
        x = keras.layers.ZeroPadding2D(1, data_format=fmt, name=name + "_1_pad")(x)
        x = Conv2D(filters, 3, strides=stride, data_format=fmt, name=name + "_1_conv")(x)
    else:
        x = Conv2D(filters, 3, padding="same", data_format=fmt, name=name + "_1_conv")(x)
    x = keras.layers.Activation("relu", name=name + "_1_relu")(_bn(x, name + "_1", fmt))
    x = _bn(Conv2D(filters, 3, padding="same", data_format=fmt, name=name + "_2_conv")(x),
            name + "_2", fmt)
    x = keras.layers.Add(name=name + "_add")([shortcut, x])
    return keras.layers.Activation("relu", name=name + "_out")(x)


def bottleneck_block(x, filters, stride, name, data_format="channels_last"):
    """1x1 reduce, 3x3, 1x1 expand to 4 * filters, with a shortcut (ResNet-50/101/152).

    The stride sits on the first 1x1 convolution, as in the paper and `keras.applications`.
    """
    fmt, axis = data_format, channel_axis(data_format)
    if stride != 1 or x.shape[axis] != 4 * filters:
        shortcut = Conv2D(4 * filters, 1, strides=stride, data_format=fmt, name=name + "_0_conv")(x)
        shortcut = _bn(shortcut, name + "_0", fmt)
    else:
        shortcut = x
    x = Conv2D(filters, 1, strides=stride, data_format=fmt, name=name + "_1_conv")(x)
    x = keras.layers.Activation("relu", name=name + "_1_relu")(_bn(x, name + "_1", fmt))
    x = Conv2D(filters, 3, padding="same", data_format=fmt, name=name + "_2_conv")(x)
    x = keras.layers.Activation("relu", name=name + "_2_relu")(_bn(x, name + "_2", fmt))
    x = _bn(Conv2D(4 * filters, 1, data_format=fmt, name=name + "_3_conv")(x), name + "_3", fmt)
    x = keras.layers.Add(name=name + "_add")([shortcut, x])
    return keras.layers.Activation("relu", name=name + "_out")(x)


def preact_bottleneck_block(x, filters, stride, projection, name, data_format="channels_last"):
    """The pre-activation bottleneck of ResNet v2: BN-ReLU before each convolution, nothing after the add.

    As in `keras.applications`' v2, a stage downsamples in its last block, by the 3x3 convolution.
    """
    fmt = data_format
    preact = keras.layers.Activation("relu", name=name + "_preact_relu")(_bn(x, name + "_preact", fmt))
    if projection:
        shortcut = Conv2D(4 * filters, 1, strides=stride, data_format=fmt,
                                       name=name + "_0_conv")(preact)
    elif stride != 1:
        shortcut = MaxPooling2D(1, strides=stride, data_format=fmt, name=name + "_0_pool")(x)
    else:
        shortcut = x
    y = Conv2D(filters, 1, use_bias=False, data_format=fmt, name=name + "_1_conv")(preact)
    y = keras.layers.Activation("relu", name=name + "_1_relu")(_bn(y, name + "_1", fmt))
    y = keras.layers.ZeroPadding2D(1, data_format=fmt, name=name + "_2_pad")(y)
    y = Conv2D(filters, 3, strides=stride, use_bias=False, data_format=fmt, name=name + "_2_conv")(y)
    y = keras.layers.Activation("relu", name=name + "_2_relu")(_bn(y, name + "_2", fmt))
    y = Conv2D(4 * filters, 1, data_format=fmt, name=name + "_3_conv")(y)
    return keras.layers.Add(name=name + "_out")([shortcut, y])


def _stage(x, config, stage, filters, name, data_format):
    blocks = config["blocks"][stage - 2]
    for index in range(1, blocks + 1):
        block_name = f"{name}_conv{stage}_block{index}"
        if config["preact"]:
            stride = 2 if index == blocks and stage < 5 else 1
            x = preact_bottleneck_block(x, filters, stride, projection=index == 1, name=block_name,
                                        data_format=data_format)
        else:
            stride = 2 if index == 1 and stage > 2 else 1
            block = basic_block if config["block"] == "basic" else bottleneck_block
            x = block(x, filters, stride, block_name, data_format)
    return x


def _resnet(config, input_shape, num_classes, head, include_top, pooling, name, compile, jit_compile,
            width_multiplier, data_format):
    shape = check_common(input_shape, num_classes, head, include_top, pooling, name, min_size=32)
    check_width(width_multiplier)
    fmt = resolve_data_format(data_format)
    inputs = keras.Input(shape=shape, name=name + "_input")
    x = to_internal_layout(inputs, fmt, name)
    x = keras.layers.ZeroPadding2D(3, data_format=fmt, name=name + "_conv1_pad")(x)
    x = Conv2D(scaled(64, width_multiplier), 7, strides=2, data_format=fmt,
                            name=name + "_conv1_conv")(x)  # (h/2, w/2)
    if not config["preact"]:
        x = keras.layers.Activation("relu", name=name + "_conv1_relu")(_bn(x, name + "_conv1", fmt))
    x = keras.layers.ZeroPadding2D(1, data_format=fmt, name=name + "_pool1_pad")(x)
    x = MaxPooling2D(3, strides=2, data_format=fmt, name=name + "_pool1_pool")(x)  # (h/4, w/4)
    for stage, filters in enumerate(STAGE_FILTERS, start=2):
        x = _stage(x, config, stage, scaled(filters, width_multiplier), name, fmt)  # (h/32, w/32) after stage 5
    if config["preact"]:
        x = _bn(x, name + "_post", fmt)
        x = keras.layers.Activation("relu", name=name + "_post_relu")(x)

    def top(features):
        return keras.layers.GlobalAveragePooling2D(data_format=fmt, name=name + "_avg_pool")(features)

    return finish_model(inputs, x, top=top, num_classes=num_classes, head=head, include_top=include_top,
                        pooling=pooling, name=name, compile=compile, jit_compile=jit_compile, data_format=fmt)


_DOC = """ResNet-{depth}{version} ({paper}): a 7x7 stride-2 stem, a 3x3 max-pool and four stages of
    {blocks} {kind} blocks (64, 128, 256, 512 filters), global average pooling and the head.{keras_note}

    Args:
        input_shape: `(height, width, channels)`, at least 32x32 (224x224 in the paper).
        num_classes: output units.
        head: `"softmax"`, `"sigmoid"` (binary or multi-label) or `"linear"`.
        include_top: `False` returns the last feature map, pooled as `pooling` says.
        pooling: with `include_top=False`: `None`, `"avg"` or `"max"`.
        name: the model name and the prefix of every layer name.
        compile: compile with the head's loss and the library's XLA policy.
        jit_compile: override the XLA default.
        width_multiplier: scales every convolution's filters (1.0 is the paper's).
        data_format: the layout the convolutions compute in, `"channels_last"` or `"channels_first"`.
            Inputs and outputs are channels-last either way (one transpose at each end), and the
            exporters write channels-last files. Channels-first did not train faster on Keras'
            PyTorch backend on a CPU (BENCHMARKS.md), since Keras stores kernels channels-last and
            transposes them for every convolution in both layouts.

    Returns:
        A `keras.Model`.
"""


def _variant(variant):
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
        data_format: str = "channels_last",
    ):
        return _resnet(config, input_shape, num_classes, head, include_top, pooling, name, compile,
                       jit_compile, width_multiplier, data_format)

    per_block = 2 if config["block"] == "basic" else 3
    depth = per_block * sum(config["blocks"]) + 2
    version = " v2" if config["preact"] else ""
    paper = "He et al., 2016, pre-activation" if config["preact"] else "He et al., 2016"
    keras_note = (
        f" With `include_top=True`, 1000 classes and 224x224x3 inputs it has exactly the parameters of "
        f"`keras.applications.{config['keras']}`." if config["keras"] else ""
    )
    builder.__name__ = builder.__qualname__ = variant
    builder.__doc__ = _DOC.format(depth=depth, version=version, paper=paper, blocks=config["blocks"],
                                  kind=config["block"], keras_note=keras_note)
    return register_model(variant, family="cnn", description=f"ResNet-{depth}{version} ({paper})")(builder)


resnet18 = _variant("resnet18")
resnet34 = _variant("resnet34")
resnet50 = _variant("resnet50")
resnet101 = _variant("resnet101")
resnet152 = _variant("resnet152")
resnet50v2 = _variant("resnet50v2")
resnet101v2 = _variant("resnet101v2")
resnet152v2 = _variant("resnet152v2")
