"""Support vector machines trained in Keras: a linear SVM and an RBF SVM through random Fourier features.

Both minimize the multiclass hinge loss of Crammer and Singer ("On the Algorithmic Implementation of
Multiclass Kernel-based Vector Machines", JMLR 2001) plus an L2 penalty, with `fit()` and XLA. The RBF
kernel is approximated by random Fourier features (Rahimi and Recht, "Random Features for Large-Scale
Kernel Machines", NIPS 2007): `z(x) = sqrt(2 / D) cos(x W + b)`, `W ~ N(0, 2 gamma)`, `b ~ U(0, 2 pi)`,
so that `z(x) . z(y)` approximates `exp(-gamma |x - y|^2)` and a linear SVM on `z` is a kernel SVM.
"""

from __future__ import annotations

import math

import keras

from keras_models import optimizers
from keras_models.registry import register_model
from keras_models.training import compile_model


@keras.saving.register_keras_serializable(package="keras_models")
class MulticlassHinge(keras.losses.Loss):
    """`max(0, 1 + max_{k != y} s_k - s_y)` for integer labels `y` and scores `s` `(batch, classes)`."""

    def __init__(self, name="multiclass_hinge", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        ops = keras.ops
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        one_hot = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        true_score = ops.sum(y_pred * one_hot, axis=-1, keepdims=True)
        margins = y_pred - true_score + 1.0 - one_hot  # the true class contributes exactly 0
        return ops.max(margins, axis=-1)  # (batch,), >= 0

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_models")
class RandomFourierFeatures(keras.layers.Layer):
    """Random Fourier features of the RBF kernel `exp(-gamma |x - y|^2)` (Rahimi and Recht, 2007).

    Args:
        output_dim: the number of features `D`.
        gamma: the RBF kernel's `gamma` (> 0).
        seed: the seed of the fixed random projection.
    """

    def __init__(self, output_dim, gamma=1.0, seed=0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(output_dim, int) or output_dim < 1:
            raise ValueError(f"output_dim must be a positive integer; got output_dim={output_dim!r}.")
        if not gamma > 0:
            raise ValueError(f"gamma must be positive; got gamma={gamma!r}.")
        if not isinstance(seed, int):
            raise ValueError(f"seed must be an integer; got seed={seed!r}.")
        self.output_dim = output_dim
        self.gamma = float(gamma)
        self.seed = seed

    def build(self, input_shape):
        self.projection = self.add_weight(
            name="projection",
            shape=(input_shape[-1], self.output_dim),
            initializer=keras.initializers.RandomNormal(stddev=math.sqrt(2.0 * self.gamma), seed=self.seed),
            trainable=False,
        )
        self.phase = self.add_weight(
            name="phase",
            shape=(self.output_dim,),
            initializer=keras.initializers.RandomUniform(0.0, 2.0 * math.pi, seed=self.seed + 1),
            trainable=False,
        )

    def call(self, x):
        scale = math.sqrt(2.0 / self.output_dim)
        return scale * keras.ops.cos(keras.ops.matmul(x, self.projection) + self.phase)  # (batch, D)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(output_dim=self.output_dim, gamma=self.gamma, seed=self.seed)
        return config


def _svm(features_fn, input_shape, num_classes, name, l2, learning_rate, compile, jit_compile):
    """The shared builder: inputs -> features -> linear scores, compiled with the hinge loss."""
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2; got num_classes={num_classes!r}.")
    if not l2 >= 0:
        raise ValueError(f"l2 must be non-negative; got l2={l2!r}.")
    inputs = keras.Input(shape=tuple(input_shape), name=name + "_input")
    features = features_fn(inputs)
    scores = keras.layers.Dense(
        num_classes, kernel_regularizer=keras.regularizers.L2(l2) if l2 else None, name=name + "_scores"
    )(features)  # (batch, classes); argmax is the predicted class
    model = keras.Model(inputs, scores, name=name)
    if compile:
        compile_model(
            model,
            optimizer=optimizers.Adam(learning_rate),
            loss=MulticlassHinge(),
            metrics=["sparse_categorical_accuracy"],
            jit_compile=jit_compile,
            family="classical",
        )
    return model


@register_model("linear_svm", family="classical", description="Linear SVM trained in Keras with the hinge loss")
def linear_svm(input_shape=(30,), num_classes: int = 2, name: str = "linear_svm", *, l2: float = 1e-3,
               learning_rate: float = 1e-2, compile: bool = True, jit_compile: bool | None = None):
    """A linear support vector machine: scores `x W + b`, multiclass hinge loss, L2 penalty.

    Args:
        input_shape: `(features,)`.
        num_classes: the number of classes (2 or more); the output has one score per class.
        name: the model name and prefix of its layer names.
        l2: the L2 penalty on `W` (the SVM's `1 / (2 C n)`).
        learning_rate: Adam's learning rate.
        compile: compile with the hinge loss and the library's XLA policy.
        jit_compile: override the XLA default (see `keras_models.compile_model`).
    """
    return _svm(lambda x: x, input_shape, num_classes, name, l2, learning_rate, compile, jit_compile)


@register_model("rff_svm", family="classical", description="RBF SVM through random Fourier features, in Keras")
def rff_svm(input_shape=(30,), num_classes: int = 2, name: str = "rff_svm", *, num_features: int = 512,
            gamma: float | None = None, seed: int = 0, l2: float = 1e-3, learning_rate: float = 1e-2,
            compile: bool = True, jit_compile: bool | None = None):
    """An RBF-kernel SVM: random Fourier features, then a linear SVM on them.

    Args:
        input_shape: `(features,)`.
        num_classes: the number of classes (2 or more).
        name: the model name and prefix of its layer names.
        num_features: the number of random Fourier features.
        gamma: the RBF kernel's `gamma`; `None` for `1 / features` (standardized inputs).
        seed: the seed of the random projection.
        l2, learning_rate, compile, jit_compile: as for `linear_svm`.
    """
    gamma = 1.0 / input_shape[-1] if gamma is None else gamma
    features = RandomFourierFeatures(num_features, gamma=gamma, seed=seed, name=name + "_fourier_features")
    return _svm(features, input_shape, num_classes, name, l2, learning_rate, compile, jit_compile)
