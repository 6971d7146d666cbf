"""`InstanceNormalization`: per-sample, per-channel normalization over the spatial axes."""

from __future__ import annotations

import keras
from keras import ops

_PACKAGE = "keras_models"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class InstanceNormalization(keras.layers.Layer):
    """Per-sample, per-channel normalization over the spatial axes (Ulyanov et al., 2016), with scale
    and offset. Used by CycleGAN's generators and pix2pix-style discriminators."""

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        if not epsilon > 0:
            raise ValueError(f"epsilon must be positive; got epsilon={epsilon!r}.")
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, inputs):
        mean = ops.mean(inputs, axis=(1, 2), keepdims=True)
        variance = ops.mean(ops.square(inputs - mean), axis=(1, 2), keepdims=True)
        return (inputs - mean) * ops.rsqrt(variance + self.epsilon) * self.gamma + self.beta

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
