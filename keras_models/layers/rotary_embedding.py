"""`RotaryEmbedding`: rotary position embedding of queries and keys (RoPE)."""

from __future__ import annotations

import keras
from keras import ops

from keras_models.checks import check_positive_float


@keras.saving.register_keras_serializable(package="keras_models")
class RotaryEmbedding(keras.layers.Layer):
    """Rotates queries or keys by their positions (Su et al., 2021, "RoFormer: Enhanced Transformer
    with Rotary Position Embedding").

    Feature pairs `(i, i + head_dim / 2)` of a head turn by the angle `position * max_wavelength **
    (-2 i / head_dim) / scaling_factor` (the half-split pairing of GPT-NeoX and Llama). A query at
    position m and a key at position n then score `q . R(n - m) k`: the score depends on positions only
    through their difference. The layer has no weights.

    Args:
        max_wavelength: the longest wavelength of the rotation frequencies.
        scaling_factor: divides the positions (above 1 stretches the context, "position interpolation").

    Call arguments:
        inputs: `(batch, steps, heads, head_dim)` with an even `head_dim`.
        start_index: the position of the first step (an int or an int32 scalar tensor; a KV cache
            passes the number of steps already cached).

    Returns:
        `inputs` rotated, same shape and dtype.
    """

    def __init__(self, max_wavelength: float = 10000.0, scaling_factor: float = 1.0, **kwargs):
        max_wavelength = check_positive_float(max_wavelength, "max_wavelength")
        scaling_factor = check_positive_float(scaling_factor, "scaling_factor")
        super().__init__(**kwargs)
        self.max_wavelength = max_wavelength
        self.scaling_factor = scaling_factor

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None or input_shape[-1] % 2:
            raise ValueError(
                f"RotaryEmbedding takes (batch, steps, heads, head_dim) with an even head_dim; got shape "
                f"{tuple(input_shape)}."
            )

    def angles(self, steps, head_dim, start_index=0):
        """The rotation angles `(steps, head_dim / 2)` of positions `start_index ...` (float32)."""
        exponents = ops.arange(0, head_dim, 2, dtype="float32") / float(head_dim)
        inverse_frequencies = ops.power(self.max_wavelength, -exponents)  # (head_dim / 2,)
        positions = ops.arange(steps, dtype="float32") + ops.cast(start_index, "float32")
        return ops.outer(positions / self.scaling_factor, inverse_frequencies)

    def call(self, inputs, start_index=0):
        angles = self.angles(ops.shape(inputs)[1], inputs.shape[-1], start_index)
        angles = ops.expand_dims(angles, (0, 2))  # (1, steps, 1, head_dim / 2)
        cos, sin = ops.cos(angles), ops.sin(angles)
        x = ops.cast(inputs, "float32")
        first, second = ops.split(x, 2, axis=-1)
        rotated = ops.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
        return ops.cast(rotated, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength,
                "scaling_factor": self.scaling_factor}
