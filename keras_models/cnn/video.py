"""Clip classification with 3D convolutions, after C3D (Tran, Bourdev, Fergus, Torresani and Paluri,
"Learning spatiotemporal features with 3D convolutional networks", ICCV 2015)."""

from __future__ import annotations

import keras

from keras_models.cnn._common import check_common, finish_model
from keras_models.registry import register_model

# C3D: eight 3x3x3 convolutions in five blocks; block 1 pools space only, the others space and time.
C3D_BLOCKS = ((64,), (128,), (256, 256), (512, 512), (512, 512))


@keras.saving.register_keras_serializable(package="keras_models")
class SpatioTemporalMaxPooling(keras.layers.Layer):
    """Non-overlapping max pooling over (frames, height, width), windows equal to strides.

    The same values as `keras.layers.MaxPooling3D(pool_size, padding="valid")`, computed as a 2D max
    pool over each frame and a max over groups of frames, because TFLite has no builtin 3D pooling
    (MaxPool3D needs the Flex delegate) while MAX_POOL_2D, RESHAPE and REDUCE_MAX are builtins.

    Args:
        pool_size: `(frames, height, width)` window; trailing frames or pixels that do not fill a
            window are dropped, as with valid padding.
    """

    def __init__(self, pool_size=(2, 2, 2), **kwargs):
        super().__init__(**kwargs)
        try:
            sizes = tuple(int(p) for p in pool_size)
        except (TypeError, ValueError):
            raise ValueError(f"pool_size must be three positive ints; got pool_size={pool_size!r}.")
        if len(sizes) != 3 or any(p < 1 for p in sizes) or sizes != tuple(pool_size):
            raise ValueError(f"pool_size must be three positive ints; got pool_size={pool_size!r}.")
        self.pool_size = sizes
        self.spatial_pool = keras.layers.MaxPooling2D(sizes[1:], name="spatial")

    def build(self, input_shape):
        if len(input_shape) != 5:
            raise ValueError(f"{self.name} expects (batch, frames, height, width, channels); got {input_shape}.")
        frames, height, width, _ = input_shape[1:]
        if any(d is None for d in (frames, height, width)):
            raise ValueError(f"{self.name} needs known frames, height and width; got {input_shape}.")
        if frames < self.pool_size[0] or height < self.pool_size[1] or width < self.pool_size[2]:
            raise ValueError(f"{self.name}: input {input_shape} is smaller than pool_size={self.pool_size}.")
        self.spatial_pool.build((None, height, width, input_shape[-1]))

    def compute_output_shape(self, input_shape):
        batch, frames, height, width, channels = input_shape
        pt, ph, pw = self.pool_size
        return (batch, frames // pt, height // ph, width // pw, channels)

    def call(self, inputs):
        _, frames, height, width, channels = inputs.shape
        pt, ph, pw = self.pool_size
        x = keras.ops.reshape(inputs, (-1, height, width, channels))  # (b * t, h, w, c)
        x = self.spatial_pool(x)  # (b * t, h / ph, w / pw, c)
        kept = (frames // pt) * pt
        x = keras.ops.reshape(x, (-1, frames, height // ph, width // pw, channels))
        if pt == 1:
            return x
        x = x[:, :kept]
        x = keras.ops.reshape(x, (-1, frames // pt, pt, height // ph, width // pw, channels))
        return keras.ops.max(x, axis=2)  # (b, t / pt, h / ph, w / pw, c)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


@register_model("video_cnn", family="cnn", description="3D CNN for clips, C3D layout (Tran et al., 2015)")
def video_cnn(
    input_shape=(16, 112, 112, 3),
    num_classes: int = 487,
    head: str = "softmax",
    include_top: bool = True,
    pooling: str | None = None,
    name: str = "video_cnn",
    compile: bool = True,
    jit_compile: bool | None = None,
    *,
    blocks=C3D_BLOCKS,
    dense_units: int = 4096,
    dropout: float = 0.5,
):
    """Blocks of 3x3x3 ReLU convolutions, each closed by a max-pool (space only after block 1, space
    and time after the others), then dense layers and the head.

    The defaults are C3D's (16 frames of 112x112, 487 Sports-1M classes, two dense layers of 4096).
    The paper pads its last pool so 112x112 ends at 4x4; here every pool drops what does not fill a
    window, so the last map is 3x3 and fc6 has 4608 inputs instead of 8192.

    Args:
        input_shape: `(frames, height, width, channels)`.
        num_classes, head, include_top, pooling, name, compile, jit_compile: as for every builder of
            the family (see `simple_cnn`).
        blocks: per block, the filters of each convolution.
        dense_units: the width of the two dense layers; 0 for none.
        dropout: dropout after each dense layer.

    Returns:
        A `keras.Model`.
    """
    try:
        widths = [[int(f) for f in block] for block in blocks]
    except (TypeError, ValueError):
        raise ValueError(f"blocks must be a sequence of sequences of ints; got blocks={blocks!r}.")
    if not widths or any(not block or min(block) < 1 for block in widths):
        raise ValueError(f"blocks must be non-empty sequences of positive ints; got blocks={blocks!r}.")
    shape = check_common(input_shape, num_classes, head, include_top, pooling, name, rank=4,
                         min_size=1)
    frames, height, width = shape[:3]
    if height < 2 ** len(widths) or width < 2 ** len(widths) or frames < 2 ** (len(widths) - 1):
        raise ValueError(
            f"input_shape={input_shape!r} is too small for {len(widths)} blocks: each block halves height "
            f"and width (at least {2 ** len(widths)} pixels), each after the first halves frames "
            f"(at least {2 ** (len(widths) - 1)} frames)."
        )
    if not isinstance(dense_units, int) or dense_units < 0:
        raise ValueError(f"dense_units must be a non-negative integer; got dense_units={dense_units!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got dropout={dropout!r}.")

    inputs = keras.Input(shape=shape, name=name + "_input")
    x = inputs
    for index, block in enumerate(widths, start=1):
        for conv, filters in enumerate(block, start=1):
            suffix = chr(ord("a") + conv - 1) if len(block) > 1 else ""
            x = keras.layers.Conv3D(filters, 3, padding="same", activation="relu",
                                    name=f"{name}_conv{index}{suffix}")(x)
        pool = (1, 2, 2) if index == 1 else (2, 2, 2)
        x = SpatioTemporalMaxPooling(pool, name=f"{name}_pool{index}")(x)  # (t / pt, h / 2, w / 2, f)

    def top(features):
        x = keras.layers.Flatten(name=name + "_flatten")(features)
        if dense_units:
            for index in (6, 7):
                x = keras.layers.Dense(dense_units, activation="relu", name=f"{name}_fc{index}")(x)
                if dropout:
                    x = keras.layers.Dropout(dropout, name=f"{name}_dropout{index}")(x)
        return x

    return finish_model(inputs, x, top=top, num_classes=num_classes, head=head, include_top=include_top,
                        pooling=pooling, name=name, compile=compile, jit_compile=jit_compile)
