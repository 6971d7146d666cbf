"""Inception networks: GoogLeNet / Inception v1 (Szegedy et al., "Going deeper with convolutions",
CVPR 2015) and Inception v3 (Szegedy et al., "Rethinking the Inception architecture for computer
vision", CVPR 2016)."""

from __future__ import annotations

import keras

from keras_models.cnn._common import check_common, check_width, conv_bn, finish_model, scaled
from keras_models.layers.conv2d import Conv2D
from keras_models.layers.pooling import AveragePooling2D, MaxPooling2D
from keras_models.registry import register_model

# GoogLeNet's inception modules (Table 1 of the paper):
# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection); "pool" marks a 3x3/2 max-pool before it.
GOOGLENET_MODULES = (
    ("3a", (64, 96, 128, 16, 32, 32)),
    ("3b", (128, 128, 192, 32, 96, 64)),
    "pool",
    ("4a", (192, 96, 208, 16, 48, 64)),
    ("4b", (160, 112, 224, 24, 64, 64)),
    ("4c", (128, 128, 256, 24, 64, 64)),
    ("4d", (112, 144, 288, 32, 64, 64)),
    ("4e", (256, 160, 320, 32, 128, 128)),
    "pool",
    ("5a", (256, 160, 320, 32, 128, 128)),
    ("5b", (384, 192, 384, 48, 128, 128)),
)


def _conv_relu(x, filters, kernel_size, name, strides=1):
    return Conv2D(filters, kernel_size, strides=strides, padding="same", activation="relu",
                               name=name)(x)


def inception_v1_module(x, widths, name):
    """Four parallel branches concatenated on channels: (h, w, c) -> (h, w, 1x1 + 3x3 + 5x5 + pool)."""
    b1, r3, b3, r5, b5, bp = widths
    branch1 = _conv_relu(x, b1, 1, name + "_1x1")
    branch3 = _conv_relu(_conv_relu(x, r3, 1, name + "_3x3_reduce"), b3, 3, name + "_3x3")
    branch5 = _conv_relu(_conv_relu(x, r5, 1, name + "_5x5_reduce"), b5, 5, name + "_5x5")
    pool = MaxPooling2D(3, strides=1, padding="same", name=name + "_pool")(x)
    branch_pool = _conv_relu(pool, bp, 1, name + "_pool_proj")
    return keras.layers.Concatenate(name=name + "_concat")([branch1, branch3, branch5, branch_pool])


@register_model("googlenet", family="cnn", description="GoogLeNet / Inception v1 (Szegedy et al., 2015)")
def googlenet(
    input_shape=(224, 224, 3),
    num_classes: int = 1000,
    head: str = "softmax",
    include_top: bool = True,
    pooling: str | None = None,
    name: str = "googlenet",
    compile: bool = True,
    jit_compile: bool | None = None,
    *,
    width_multiplier: float = 1.0,
    batch_norm: bool = False,
    dropout: float = 0.4,
):
    """GoogLeNet: a 7x7/2 stem, nine inception modules (Table 1 of the paper), global average pooling,
    40% dropout and the head.

    The two auxiliary classifiers the paper attached during training are left out (they are discarded
    at inference, and the paper credits them with about half a point), as is local response
    normalisation. `batch_norm=True` adds batch normalisation after every convolution of the stem, the
    form that trains without the auxiliary losses at any depth (Inception v2 onwards).

    Args:
        input_shape: `(height, width, channels)`, at least 32x32 (224x224 in the paper).
        num_classes, head, include_top, pooling, name, compile, jit_compile: as for every builder of
            the family (see `simple_cnn`).
        width_multiplier: scales every convolution's filters (1.0 is the paper's).
        batch_norm: batch normalisation in the stem.
        dropout: dropout before the head (0.4 in the paper).

    Returns:
        A `keras.Model`.
    """
    shape = check_common(input_shape, num_classes, head, include_top, pooling, name, min_size=32)
    check_width(width_multiplier)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got dropout={dropout!r}.")

    def stem_conv(x, filters, kernel_size, layer_name, strides=1):
        if batch_norm:
            return conv_bn(x, scaled(filters, width_multiplier), kernel_size, strides=strides,
                           name=layer_name)
        return _conv_relu(x, scaled(filters, width_multiplier), kernel_size, layer_name + "_conv", strides)

    inputs = keras.Input(shape=shape, name=name + "_input")
    x = stem_conv(inputs, 64, 7, name + "_conv1", strides=2)  # (112, 112, 64)
    x = MaxPooling2D(3, strides=2, padding="same", name=name + "_pool1")(x)  # (56, 56, 64)
    x = stem_conv(x, 64, 1, name + "_conv2_reduce")
    x = stem_conv(x, 192, 3, name + "_conv2")
    x = MaxPooling2D(3, strides=2, padding="same", name=name + "_pool2")(x)  # (28, 28, 192)
    pools = 2
    for module in GOOGLENET_MODULES:
        if module == "pool":
            pools += 1
            x = MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool{pools}")(x)
            continue
        label, widths = module
        x = inception_v1_module(x, [scaled(w, width_multiplier) for w in widths], f"{name}_inception{label}")
    # (7, 7, 1024) at 224x224

    def top(features):
        x = keras.layers.GlobalAveragePooling2D(name=name + "_avg_pool")(features)
        if dropout:
            x = keras.layers.Dropout(dropout, name=name + "_dropout")(x)
        return x

    return finish_model(inputs, x, top=top, num_classes=num_classes, head=head, include_top=include_top,
                        pooling=pooling, name=name, compile=compile, jit_compile=jit_compile)


# Inception v3 convolutions: no bias, batch normalisation without scale (ReLU follows), as in the
# paper's released model and `keras.applications.InceptionV3`.
def _cbr(x, filters, kernel_size, name, strides=1, padding="same"):
    return conv_bn(x, filters, kernel_size, strides=strides, padding=padding, scale=False, name=name)


def _avg_pool_branch(x, filters, name):
    x = AveragePooling2D(3, strides=1, padding="same", name=name + "_avgpool")(x)
    return _cbr(x, filters, 1, name + "_proj")


def inception_a(x, pool_filters, w, name):
    """35x35 module (figure 5 of the paper): 1x1, 5x5, double 3x3 and pooled branches."""
    branch1 = _cbr(x, w(64), 1, name + "_b1x1")
    branch5 = _cbr(_cbr(x, w(48), 1, name + "_b5x5_1"), w(64), 5, name + "_b5x5_2")
    branch3 = _cbr(x, w(64), 1, name + "_b3x3dbl_1")
    branch3 = _cbr(_cbr(branch3, w(96), 3, name + "_b3x3dbl_2"), w(96), 3, name + "_b3x3dbl_3")
    pool = _avg_pool_branch(x, w(pool_filters), name + "_bpool")
    return keras.layers.Concatenate(name=name)([branch1, branch5, branch3, pool])


def reduction_a(x, w, name):
    """35x35 -> 17x17 grid reduction (figure 10): strided 3x3, strided double 3x3 and a max-pool."""
    branch3 = _cbr(x, w(384), 3, name + "_b3x3", strides=2, padding="valid")
    dbl = _cbr(_cbr(x, w(64), 1, name + "_b3x3dbl_1"), w(96), 3, name + "_b3x3dbl_2")
    dbl = _cbr(dbl, w(96), 3, name + "_b3x3dbl_3", strides=2, padding="valid")
    pool = MaxPooling2D(3, strides=2, name=name + "_bpool")(x)
    return keras.layers.Concatenate(name=name)([branch3, dbl, pool])


def inception_b(x, mid, w, name):
    """17x17 module with factorised 7x7 convolutions (figure 6), `mid` filters inside the 7x7 chains."""
    branch1 = _cbr(x, w(192), 1, name + "_b1x1")
    b7 = _cbr(x, w(mid), 1, name + "_b7x7_1")
    b7 = _cbr(b7, w(mid), (1, 7), name + "_b7x7_2")
    b7 = _cbr(b7, w(192), (7, 1), name + "_b7x7_3")
    dbl = _cbr(x, w(mid), 1, name + "_b7x7dbl_1")
    dbl = _cbr(dbl, w(mid), (7, 1), name + "_b7x7dbl_2")
    dbl = _cbr(dbl, w(mid), (1, 7), name + "_b7x7dbl_3")
    dbl = _cbr(dbl, w(mid), (7, 1), name + "_b7x7dbl_4")
    dbl = _cbr(dbl, w(192), (1, 7), name + "_b7x7dbl_5")
    pool = _avg_pool_branch(x, w(192), name + "_bpool")
    return keras.layers.Concatenate(name=name)([branch1, b7, dbl, pool])


def reduction_b(x, w, name):
    """17x17 -> 8x8 grid reduction."""
    b3 = _cbr(_cbr(x, w(192), 1, name + "_b3x3_1"), w(320), 3, name + "_b3x3_2", strides=2, padding="valid")
    b7 = _cbr(x, w(192), 1, name + "_b7x7x3_1")
    b7 = _cbr(b7, w(192), (1, 7), name + "_b7x7x3_2")
    b7 = _cbr(b7, w(192), (7, 1), name + "_b7x7x3_3")
    b7 = _cbr(b7, w(192), 3, name + "_b7x7x3_4", strides=2, padding="valid")
    pool = MaxPooling2D(3, strides=2, name=name + "_bpool")(x)
    return keras.layers.Concatenate(name=name)([b3, b7, pool])


def inception_c(x, w, name):
    """8x8 module with expanded filter banks (figure 7): 1x3 and 3x1 branches side by side."""
    branch1 = _cbr(x, w(320), 1, name + "_b1x1")
    b3 = _cbr(x, w(384), 1, name + "_b3x3_1")
    b3 = keras.layers.Concatenate(name=name + "_b3x3_concat")(
        [_cbr(b3, w(384), (1, 3), name + "_b3x3_2a"), _cbr(b3, w(384), (3, 1), name + "_b3x3_2b")])
    dbl = _cbr(_cbr(x, w(448), 1, name + "_b3x3dbl_1"), w(384), 3, name + "_b3x3dbl_2")
    dbl = keras.layers.Concatenate(name=name + "_b3x3dbl_concat")(
        [_cbr(dbl, w(384), (1, 3), name + "_b3x3dbl_3a"), _cbr(dbl, w(384), (3, 1), name + "_b3x3dbl_3b")])
    pool = _avg_pool_branch(x, w(192), name + "_bpool")
    return keras.layers.Concatenate(name=name)([branch1, b3, dbl, pool])


@register_model("inception_v3", family="cnn", description="Inception v3 (Szegedy et al., 2016)")
def inception_v3(
    input_shape=(299, 299, 3),
    num_classes: int = 1000,
    head: str = "softmax",
    include_top: bool = True,
    pooling: str | None = None,
    name: str = "inception_v3",
    compile: bool = True,
    jit_compile: bool | None = None,
    *,
    width_multiplier: float = 1.0,
    dropout: float = 0.0,
):
    """Inception v3: a five-convolution stem, three 35x35, four 17x17 and two 8x8 inception modules
    with two grid reductions, global average pooling and the head. With `include_top=True`, 1000
    classes and 299x299x3 inputs it has exactly the parameters of `keras.applications.InceptionV3`.
    The auxiliary classifier used during the paper's training is left out.

    Args:
        input_shape: `(height, width, channels)`, at least 75x75 (299x299 in the paper).
        num_classes, head, include_top, pooling, name, compile, jit_compile: as for every builder of
            the family (see `simple_cnn`).
        width_multiplier: scales every convolution's filters (1.0 is the paper's).
        dropout: dropout before the head (0 keeps the Keras graph; the paper trained with 0.2).

    Returns:
        A `keras.Model`.
    """
    shape = check_common(input_shape, num_classes, head, include_top, pooling, name, min_size=75)
    check_width(width_multiplier)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got dropout={dropout!r}.")

    def w(filters):
        return scaled(filters, width_multiplier)

    inputs = keras.Input(shape=shape, name=name + "_input")
    x = _cbr(inputs, w(32), 3, name + "_conv1", strides=2, padding="valid")  # (149, 149, 32)
    x = _cbr(x, w(32), 3, name + "_conv2", padding="valid")  # (147, 147, 32)
    x = _cbr(x, w(64), 3, name + "_conv3")  # (147, 147, 64)
    x = MaxPooling2D(3, strides=2, name=name + "_pool1")(x)  # (73, 73, 64)
    x = _cbr(x, w(80), 1, name + "_conv4", padding="valid")
    x = _cbr(x, w(192), 3, name + "_conv5", padding="valid")  # (71, 71, 192)
    x = MaxPooling2D(3, strides=2, name=name + "_pool2")(x)  # (35, 35, 192)
    for index, pool_filters in enumerate((32, 64, 64)):
        x = inception_a(x, pool_filters, w, f"{name}_mixed{index}")  # (35, 35, 256 / 288)
    x = reduction_a(x, w, name + "_mixed3")  # (17, 17, 768)
    for index, mid in zip((4, 5, 6, 7), (128, 160, 160, 192)):
        x = inception_b(x, mid, w, f"{name}_mixed{index}")  # (17, 17, 768)
    x = reduction_b(x, w, name + "_mixed8")  # (8, 8, 1280)
    for index in (9, 10):
        x = inception_c(x, w, f"{name}_mixed{index}")  # (8, 8, 2048)

    def top(features):
        x = keras.layers.GlobalAveragePooling2D(name=name + "_avg_pool")(features)
        if dropout:
            x = keras.layers.Dropout(dropout, name=name + "_dropout")(x)
        return x

    return finish_model(inputs, x, top=top, num_classes=num_classes, head=head, include_top=include_top,
                        pooling=pooling, name=name, compile=compile, jit_compile=jit_compile)
