"""`SinusoidalPositionEmbedding`: the fixed sine and cosine position signal of the original transformer."""

from __future__ import annotations

import keras
from keras import ops

from keras_models.checks import check_positive_float


@keras.saving.register_keras_serializable(package="keras_models")
class SinusoidalPositionEmbedding(keras.layers.Layer):
    """Position `p`, feature `2i` is `sin(p / max_wavelength ** (2i / width))`, feature `2i + 1` its
    cosine (Vaswani et al., 2017, "Attention Is All You Need"). No weights, any number of positions.

    Args:
        max_wavelength: the longest wavelength (10,000 in the paper).

    Call arguments:
        inputs: `(batch, steps, width)`; only its shape is read.
        start_index: the position of the first step (an int or an int32 scalar tensor).

    Returns:
        The signal of positions `start_index ... start_index + steps - 1`, broadcast to the shape of
        `inputs`, in the layer's compute dtype.
    """

    def __init__(self, max_wavelength: float = 10000.0, **kwargs):
        max_wavelength = check_positive_float(max_wavelength, "max_wavelength")
        super().__init__(**kwargs)
        self.max_wavelength = max_wavelength

    def call(self, inputs, start_index=0):
        width = inputs.shape[-1]
        if width is None:
            raise ValueError(f"SinusoidalPositionEmbedding needs a known last axis; got shape {inputs.shape}.")
        features = ops.arange(width, dtype="float32")
        pair = ops.floor(features / 2.0) * 2.0  # 2i for features 2i and 2i + 1
        inverse_wavelengths = ops.power(self.max_wavelength, -pair / float(width))  # (width,)
        positions = ops.arange(ops.shape(inputs)[1], dtype="float32") + ops.cast(start_index, "float32")
        angles = ops.outer(positions, inverse_wavelengths)  # (steps, width)
        even = ops.equal(ops.mod(ops.arange(width), 2), 0)
        signal = ops.where(ops.expand_dims(even, 0), ops.sin(angles), ops.cos(angles))
        return ops.broadcast_to(ops.expand_dims(ops.cast(signal, self.compute_dtype), 0), ops.shape(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}
