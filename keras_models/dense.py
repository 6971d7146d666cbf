"""Fully connected networks: the multi-layer perceptron every other family is compared with."""

from __future__ import annotations

import keras

from keras_models.checks import CheckedModel, check_shape
from keras_models.heads import classifier_head, head_loss
from keras_models.registry import register_model
from keras_models.training import compile_model


@register_model("mlp", family="dense", description="Multi-layer perceptron classifier or regressor")
def mlp(
    input_shape=(64,),
    num_classes: int = 10,
    hidden_units=(128, 64),
    dropout: float = 0.1,
    head: str = "softmax",
    name: str = "mlp",
    compile: bool = True,
    jit_compile: bool | None = None,
):
    """A multi-layer perceptron with ReLU hidden layers.

    Args:
        input_shape: the shape of one sample (flattened if it has more than one axis).
        num_classes: output units.
        hidden_units: width of each hidden layer.
        dropout: dropout rate after each hidden layer.
        head: `"softmax"`, `"sigmoid"` or `"linear"`.
        name: the model name and the prefix of every layer name.
        compile: compile with the head's default loss and the library's XLA policy.
        jit_compile: override the XLA default (see `keras_models.compile_model`).

    Returns:
        A `CheckedModel` (a functional `keras.Model` whose `fit` checks its arrays).
    """
    input_shape = check_shape(input_shape, "input_shape")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got dropout={dropout!r}.")
    inputs = keras.Input(shape=input_shape, name=name + "_input")
    x = inputs
    if len(input_shape) > 1:
        x = keras.layers.Flatten(name=name + "_flatten")(x)
    for index, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"{name}_dense{index + 1}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{name}_dropout{index + 1}")(x)
    outputs = classifier_head(x, num_classes, head, name)
    model = CheckedModel(inputs, outputs, name=name)
    if compile:
        loss, metrics = head_loss(head, num_classes)
        compile_model(model, loss=loss, metrics=metrics, jit_compile=jit_compile, family="dense")
    return model
