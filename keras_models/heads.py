"""Classifier heads: the output layer of every classifier and regressor, and the loss that goes with it."""

from __future__ import annotations

import keras

HEADS = ("softmax", "sigmoid", "linear")


def check_head(head: str) -> str:
    """Returns `head`, or raises `ValueError` naming the known heads."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}; got head={head!r}.")
    return head


def check_num_classes(num_classes, head: str, include_top: bool = True) -> int:
    """Returns `num_classes` if it is a positive integer; refuses the one-unit softmax of a model with
    its classifier (`include_top`), which always predicts 1.0."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer; got num_classes={num_classes!r}.")
    if head == "softmax" and num_classes == 1 and include_top:
        raise ValueError(
            "num_classes=1 with head='softmax' always predicts 1.0; use head='sigmoid' for a binary classifier."
        )
    return num_classes


def classifier_head(x, num_classes: int, head: str, name: str):
    """The output layer shared by every builder: softmax, sigmoid (binary/multi-label) or linear.

    Args:
        x: the feature tensor.
        num_classes: output units (1 for a binary sigmoid or a single regression target).
        head: `"softmax"`, `"sigmoid"` or `"linear"`.
        name: the model name; the layer is called `name + "_predictions"`.
    """
    check_head(head)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer; got num_classes={num_classes!r}.")
    # Under a mixed-precision policy the output layer computes in float32 (Keras' advice for softmax).
    mixed = keras.config.dtype_policy().compute_dtype != keras.config.dtype_policy().variable_dtype
    return keras.layers.Dense(num_classes, activation=head, name=name + "_predictions",
                              dtype="float32" if mixed else None)(x)


def head_loss(head: str, num_classes: int):
    """The loss and metrics that go with a head, for the default compile of a builder."""
    check_head(head)
    if head == "softmax":
        return "sparse_categorical_crossentropy", ["accuracy"]
    if head == "sigmoid":
        return "binary_crossentropy", ["binary_accuracy"]
    return "mse", ["mae"]
