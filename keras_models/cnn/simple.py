"""The textbook convolutional network: conv-ReLU-pool blocks, a dense layer and a classifier."""

from __future__ import annotations

import keras

from keras_models.cnn._common import check_common, finish_model
from keras_models.layers.conv2d import Conv2D
from keras_models.layers.pooling import AveragePooling2D, MaxPooling2D
from keras_models.registry import register_model

_PADDINGS = ("same", "valid")
_POOL_TYPES = ("max", "average")


def _block_filters(filters, depth):
    """`filters` as one width per block: an int doubles per block, a sequence is taken as it is."""
    if isinstance(filters, int) and not isinstance(filters, bool):
        if filters < 1:
            raise ValueError(f"filters must be positive; got filters={filters!r}.")
        depth = 2 if depth is None else depth
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be a positive integer; got depth={depth!r}.")
        return [filters * 2**i for i in range(depth)]
    try:
        widths = [int(f) for f in filters]
    except (TypeError, ValueError):
        raise ValueError(f"filters must be an int or a sequence of ints; got filters={filters!r}.")
    if not widths or any(w < 1 for w in widths) or any(w != f for w, f in zip(widths, filters)):
        raise ValueError(f"filters must be positive integers; got filters={filters!r}.")
    if depth is not None and depth != len(widths):
        raise ValueError(f"depth={depth!r} disagrees with the {len(widths)} widths in filters={filters!r}.")
    return widths


@register_model("simple_cnn", family="cnn", description="Configurable conv-ReLU-pool network (textbook CNN)")
def simple_cnn(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    head: str = "softmax",
    include_top: bool = True,
    pooling: str | None = None,
    name: str = "simple_cnn",
    compile: bool = True,
    jit_compile: bool | None = None,
    *,
    filters=(32, 64),
    depth: int | None = None,
    kernel_size: int = 3,
    strides: int = 1,
    padding: str = "same",
    pool_type: str = "max",
    dense_units: int = 128,
    dropout: float = 0.0,
):
    """The configurable textbook CNN: `depth` blocks of conv + ReLU + 2x2 pooling, dense + ReLU, head.

    The default is the network of most introductions (conv 32 3x3, max-pool, conv 64 3x3, max-pool,
    flatten, dense 128, softmax).

    Args:
        input_shape: `(height, width, channels)`.
        num_classes: output units (1 for a binary sigmoid or a single regression target).
        head: `"softmax"`, `"sigmoid"` (binary or multi-label) or `"linear"` (regression).
        include_top: `False` returns the last feature map, pooled as `pooling` says.
        pooling: with `include_top=False`: `None`, `"avg"` or `"max"`.
        name: the model name and the prefix of every layer name.
        compile: compile with the head's loss and the library's XLA policy.
        jit_compile: override the XLA default (see `keras_models.compile_model`).
        filters: the width of each block, or one int doubled from block to block.
        depth: the number of blocks when `filters` is an int (default 2).
        kernel_size: the square kernel size of every convolution.
        strides: the stride of every convolution.
        padding: `"same"` or `"valid"`.
        pool_type: `"max"` or `"average"` pooling after each convolution.
        dense_units: the width of the dense layer before the head; 0 for none.
        dropout: the dropout rate before the head.

    Returns:
        A `keras.Model`.
    """
    widths = _block_filters(filters, depth)
    shape = check_common(input_shape, num_classes, head, include_top, pooling, name)
    if padding not in _PADDINGS:
        raise ValueError(f"padding must be one of {_PADDINGS}; got padding={padding!r}.")
    if pool_type not in _POOL_TYPES:
        raise ValueError(f"pool_type must be one of {_POOL_TYPES}; got pool_type={pool_type!r}.")
    for arg, value in (("kernel_size", kernel_size), ("strides", strides)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{arg} must be a positive integer; got {arg}={value!r}.")
    if not isinstance(dense_units, int) or dense_units < 0:
        raise ValueError(f"dense_units must be a non-negative integer; got dense_units={dense_units!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got dropout={dropout!r}.")

    # Check that the map never shrinks below one pixel, so the error names the arguments to change.
    size = list(shape[:2])
    for _ in widths:
        size = [(s - (kernel_size if padding == "valid" else 1)) // strides + 1 for s in size]
        size = [s // 2 for s in size]
        if min(size) < 1:
            raise ValueError(
                f"input_shape={input_shape!r} is too small for {len(widths)} blocks with kernel_size="
                f"{kernel_size}, strides={strides}, padding={padding!r}: the feature map vanishes."
            )

    pool_layer = MaxPooling2D if pool_type == "max" else AveragePooling2D
    inputs = keras.Input(shape=shape, name=name + "_input")
    x = inputs
    for index, width in enumerate(widths, start=1):
        x = Conv2D(width, kernel_size, strides=strides, padding=padding, activation="relu",
                                name=f"{name}_conv{index}")(x)
        x = pool_layer(2, name=f"{name}_pool{index}")(x)

    def top(features):
        x = keras.layers.Flatten(name=name + "_flatten")(features)
        if dense_units:
            x = keras.layers.Dense(dense_units, activation="relu", name=name + "_dense")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=name + "_dropout")(x)
        return x

    return finish_model(inputs, x, top=top, num_classes=num_classes, head=head, include_top=include_top,
                        pooling=pooling, name=name, compile=compile, jit_compile=jit_compile)
