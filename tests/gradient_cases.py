"""Cases for the gradient seam (`keras_models.gradients`), run on whichever Keras backend is active.

`python tests/gradient_cases.py` prints one JSON object: for each case, the values the seam produced and
the values worked out by hand in float64 numpy. `tests/test_gradients.py` runs it on TensorFlow in
process and on JAX and PyTorch in subprocesses.
"""

from __future__ import annotations

import json

import keras
import numpy as np
from keras import ops

from keras_models import gradients
from keras_models.optimizer_group import OptimizerGroup

X = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5], [-2.0, 1.0]], np.float32)
Y = np.array([[1.0], [0.0], [2.0], [-1.0]], np.float32)
LEARNING_RATE, MOMENTUM = 0.1, 0.9


class TwoOptimizers(keras.Model):
    """Two linear maps trained by two optimizers in one step: `first` by plain SGD on the squared error,
    `second` by SGD with momentum on an input-gradient penalty of `(second(x) * first(x).detach())`,
    after a batch normalization in training mode (whose moving mean must be updated too)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", name="first")
        self.second = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", name="second")
        self.norm = keras.layers.BatchNormalization(momentum=0.5, center=False, scale=False, name="norm")
        self.first_loss = keras.metrics.Mean(name="first_loss")
        self.penalty = keras.metrics.Mean(name="penalty")

    def build(self, input_shape):
        for layer in (self.first, self.second, self.norm):
            layer.build(input_shape)

    def call(self, x):
        return self.first(x)

    @property
    def metrics(self):
        return [self.first_loss, self.penalty]

    def compile(self, jit_compile):
        self.opt_first = keras.optimizers.SGD(LEARNING_RATE)
        self.opt_second = keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM)
        self.opt_first.build(self.first.trainable_variables)
        self.opt_second.build(self.second.trainable_variables)
        super().compile(optimizer=OptimizerGroup([self.opt_first, self.opt_second]), jit_compile=jit_compile)

    def train_step(self, *args):
        return gradients.train_step(self, self.step, args)

    def step(self, data):
        x, y = data

        def first_loss():
            return ops.mean(ops.square(self.first(x) - y))

        loss, _ = gradients.minimize(first_loss, self.first.trainable_variables, self.opt_first)
        scale = ops.stop_gradient(self.first(x))  # (batch, 1)

        def penalty():
            normalized = self.norm(x, training=True)
            grad = gradients.input_gradient(lambda inputs: self.second(inputs) * scale, normalized)
            return ops.mean(ops.sum(ops.square(grad), axis=1))

        value, _ = gradients.minimize(penalty, self.second.trainable_variables, self.opt_second)
        self.first_loss.update_state(loss)
        self.penalty.update_state(value)
        return {m.name: m.result() for m in self.metrics}


def expected(batches):
    """The same two updates per batch, worked out by hand in float64."""
    w1, w2, velocity, moving_mean = np.ones((2, 1)), np.ones((2, 1)), np.zeros((2, 1)), np.zeros(2)
    for x, y in batches:
        x, y = x.astype(np.float64), y.astype(np.float64)
        w1 = w1 - LEARNING_RATE * (2.0 / len(x)) * x.T @ (x @ w1 - y)
        scale = x @ w1  # (batch, 1), after the first update as in the step
        # penalty = mean_i |d/dn (n . w2) * s_i|^2 = mean_i s_i^2 |w2|^2; gradient 2 mean(s^2) w2
        gradient = 2.0 * np.mean(scale**2) * w2
        velocity = MOMENTUM * velocity - LEARNING_RATE * gradient
        w2 = w2 + velocity
        moving_mean = 0.5 * moving_mean + 0.5 * x.mean(axis=0)
    return w1, w2, moving_mean


def run(jit_compile):
    keras.utils.set_random_seed(0)
    model = TwoOptimizers()
    model.build((None, 2))
    model.compile(jit_compile=jit_compile)
    history = model.fit(X, Y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    w1, w2, moving_mean = expected([(X[:2], Y[:2]), (X[2:], Y[2:])])
    return {
        "backend": keras.backend.backend(),
        "first": ops.convert_to_numpy(model.first.kernel).ravel().tolist(),
        "first_expected": w1.ravel().tolist(),
        "second": ops.convert_to_numpy(model.second.kernel).ravel().tolist(),
        "second_expected": w2.ravel().tolist(),
        "moving_mean": ops.convert_to_numpy(model.norm.moving_mean).ravel().tolist(),
        "moving_mean_expected": moving_mean.tolist(),
        "iterations": [int(model.opt_first.iterations), int(model.opt_second.iterations)],
        "history_keys": sorted(history.history),
    }


if __name__ == "__main__":
    import sys

    jit = sys.argv[1] == "jit" if len(sys.argv) > 1 else False
    print("RESULT " + json.dumps(run(jit)))
