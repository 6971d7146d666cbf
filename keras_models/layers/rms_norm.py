"""`RMSNorm`: root-mean-square layer normalization."""

from __future__ import annotations

import keras
from keras import ops

from keras_models.checks import check_positive_float


@keras.saving.register_keras_serializable(package="keras_models")
class RMSNorm(keras.layers.Layer):
    """`x / sqrt(mean(x ** 2) + epsilon) * scale` over the last axis, without centering or offset
    (Zhang and Sennrich, 2019, "Root Mean Square Layer Normalization"; T5, Llama). Computed in float32
    whatever the compute dtype, so bfloat16 activations normalize without overflow.

    Args:
        epsilon: added to the mean square.
    """

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        epsilon = check_positive_float(epsilon, "epsilon")
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"RMSNorm needs a known last axis; got shape {tuple(input_shape)}.")
        self.scale = self.add_weight(shape=(int(input_shape[-1]),), initializer="ones", name="scale")

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        normalized = x * ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + self.epsilon)
        return ops.cast(normalized * ops.cast(self.scale, "float32"), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
