"""Fully connected networks: the multi-layer perceptron every other family is compared with."""

from __future__ import annotations

import time

import keras

from keras_models.registry import register_model
from keras_models.tour import TourResult, tour_case
from keras_models.training import compile_model

_HEADS = ("softmax", "sigmoid", "linear")


def classifier_head(x, num_classes: int, head: str, name: str):
    """The output layer shared by every builder: softmax, sigmoid (binary/multi-label) or linear.

    Args:
        x: the feature tensor.
        num_classes: output units (1 for a binary sigmoid or a single regression target).
        head: `"softmax"`, `"sigmoid"` or `"linear"`.
        name: the model name; the layer is called `name + "_predictions"`.
    """
    if head not in _HEADS:
        raise ValueError(f"head must be one of {_HEADS}; got head={head!r}.")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer; got num_classes={num_classes!r}.")
    return keras.layers.Dense(num_classes, activation=head, name=name + "_predictions")(x)


def head_loss(head: str, num_classes: int):
    """The loss and metrics that go with a head, for the default compile of a builder."""
    if head == "softmax":
        return "sparse_categorical_crossentropy", ["accuracy"]
    if head == "sigmoid":
        return "binary_crossentropy", ["binary_accuracy"]
    return "mse", ["mae"]


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
        A `keras.Model`.
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got dropout={dropout!r}.")
    inputs = keras.Input(shape=tuple(input_shape), name=name + "_input")
    x = inputs
    if len(input_shape) > 1:
        x = keras.layers.Flatten(name=name + "_flatten")(x)
    for index, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"{name}_dense{index + 1}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{name}_dropout{index + 1}")(x)
    outputs = classifier_head(x, num_classes, head, name)
    model = keras.Model(inputs, outputs, name=name)
    if compile:
        loss, metrics = head_loss(head, num_classes)
        compile_model(model, loss=loss, metrics=metrics, jit_compile=jit_compile, family="dense")
    return model


@tour_case("dense", "mlp")
def _tour_mlp(verbose: bool):
    from keras_models.data import load_breast_cancer

    (x_train, y_train), (x_test, y_test) = load_breast_cancer()
    model = mlp(input_shape=(30,), num_classes=1, head="sigmoid", hidden_units=(32, 16), name="mlp")
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=30, batch_size=32, verbose=1 if verbose else 0)
    seconds = time.perf_counter() - start
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    return TourResult("dense", "mlp", model, "accuracy", accuracy, seconds, x_test[:16])
