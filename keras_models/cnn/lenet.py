"""LeNet-5 (LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 1998)."""

from __future__ import annotations

import keras

from keras_models.cnn._common import check_common, finish_model
from keras_models.layers.conv2d import Conv2D
from keras_models.layers.pooling import AveragePooling2D, MaxPooling2D
from keras_models.registry import register_model

_ACTIVATIONS = ("relu", "tanh")
_SUBSAMPLING = ("max", "average")


@register_model("lenet5", family="cnn", description="LeNet-5 (LeCun et al., 1998) for 32x32 digits")
def lenet5(
    input_shape=(32, 32, 1),
    num_classes: int = 10,
    head: str = "softmax",
    include_top: bool = True,
    pooling: str | None = None,
    name: str = "lenet5",
    compile: bool = True,
    jit_compile: bool | None = None,
    *,
    activation: str = "relu",
    subsampling: str = "max",
):
    """LeNet-5: C1 6@5x5, S2, C3 16@5x5, S4, C5 120, F6 84, output.

    The layer sizes are the paper's (61,706 parameters for 10 classes on 32x32x1). C3 connects to all
    six S2 maps (the paper's sparse connection table saved compute in 1998 and is dropped by every
    modern rendition), the radial-basis output is the chosen `head`, and the defaults are ReLU and
    max-pooling; `activation="tanh", subsampling="average"` gives the paper's squashing and averaging.

    Args:
        input_shape: `(height, width, channels)`, at least 16x16 (32x32 in the paper).
        num_classes: output units.
        head: `"softmax"`, `"sigmoid"` or `"linear"`.
        include_top: `False` returns the S4 feature map, pooled as `pooling` says.
        pooling: with `include_top=False`: `None`, `"avg"` or `"max"`.
        name: the model name and the prefix of every layer name.
        compile: compile with the head's loss and the library's XLA policy.
        jit_compile: override the XLA default.
        activation: `"relu"` or `"tanh"`.
        subsampling: `"max"` or `"average"` for S2 and S4.

    Returns:
        A `keras.Model`.
    """
    shape = check_common(input_shape, num_classes, head, include_top, pooling, name, min_size=16)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}; got activation={activation!r}.")
    if subsampling not in _SUBSAMPLING:
        raise ValueError(f"subsampling must be one of {_SUBSAMPLING}; got subsampling={subsampling!r}.")
    pool = MaxPooling2D if subsampling == "max" else AveragePooling2D

    inputs = keras.Input(shape=shape, name=name + "_input")
    x = Conv2D(6, 5, activation=activation, name=name + "_c1")(inputs)  # (28, 28, 6)
    x = pool(2, name=name + "_s2")(x)  # (14, 14, 6)
    x = Conv2D(16, 5, activation=activation, name=name + "_c3")(x)  # (10, 10, 16)
    x = pool(2, name=name + "_s4")(x)  # (5, 5, 16)

    def top(features):
        x = keras.layers.Flatten(name=name + "_flatten")(features)  # (400,)
        x = keras.layers.Dense(120, activation=activation, name=name + "_c5")(x)
        return keras.layers.Dense(84, activation=activation, name=name + "_f6")(x)

    return finish_model(inputs, x, top=top, num_classes=num_classes, head=head, include_top=include_top,
                        pooling=pooling, name=name, compile=compile, jit_compile=jit_compile)
