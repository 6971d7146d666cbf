"""`PixelShuffle`: sub-pixel convolution's rearrangement of channels into space."""

from __future__ import annotations

import keras
from keras import ops

_PACKAGE = "keras_models"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PixelShuffle(keras.layers.Layer):
    """Sub-pixel convolution's rearrangement (Shi et al., 2016): `(b, h, w, c * r^2)` to
    `(b, h * r, w * r, c)`, in the channel order of TensorFlow's `depth_to_space`.

    On TensorFlow (the export backend) it is `depth_to_space`, one builtin TFLite and ONNX operator; on
    the other backends the same permutation as a reshape and a transpose.

    Args:
        scale: the upsampling factor `r`.
    """

    def __init__(self, scale: int = 2, **kwargs):
        if not isinstance(scale, int) or scale < 2:
            raise ValueError(f"scale must be an integer >= 2; got scale={scale!r}.")
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, inputs):
        r = self.scale
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            return tf.nn.depth_to_space(inputs, r)
        _, h, w, c = inputs.shape
        x = ops.reshape(inputs, (-1, h, w, r, r, c // (r * r)))  # channel index = (dy * r + dx) * c' + k
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))  # (b, h, dy, w, dx, c')
        return ops.reshape(x, (-1, h * r, w * r, c // (r * r)))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        r = self.scale
        return (b, None if h is None else h * r, None if w is None else w * r, c // (r * r))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}
