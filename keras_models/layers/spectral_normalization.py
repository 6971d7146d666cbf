"""`SpectralNorm`: a Dense, Conv2D or Embedding kernel divided by its largest singular value."""

from __future__ import annotations

import keras
from keras import ops

_PACKAGE = "keras_models"


def _l2_normalize(x, eps=1e-12):
    return x / ops.sqrt(ops.sum(ops.square(x)) + eps)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpectralNorm(keras.layers.Wrapper):
    """Spectral normalization of a `Dense`, `Conv2D` or `Embedding` layer's kernel.

    The kernel is divided by its largest singular value, estimated by power iteration with a persistent
    vector `u` that takes one step per training call (Miyato et al., 2018, "Spectral Normalization for
    Generative Adversarial Networks"). At inference `u` is read, never updated, so the layer is a pure
    function of its weights and exports as one.

    Args:
        layer: the `keras.layers.Dense`, `keras.layers.Conv2D` or `keras.layers.Embedding` to wrap.
        power_iterations: power-iteration steps per training call (1 in the paper).
        epsilon: added under square roots.
    """

    _SUPPORTED = (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Embedding)

    def __init__(self, layer, power_iterations: int = 1, epsilon: float = 1e-12, **kwargs):
        if not isinstance(layer, self._SUPPORTED):
            raise ValueError(
                "SpectralNorm wraps Dense, Conv2D or Embedding layers; got "
                f"layer={type(layer).__name__}."
            )
        if not isinstance(power_iterations, int) or power_iterations < 1:
            raise ValueError(f"power_iterations must be a positive integer; got {power_iterations!r}.")
        super().__init__(layer, **kwargs)
        self.power_iterations = power_iterations
        self.epsilon = epsilon

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        kernel = self._kernel()
        # The matrix is (fan_in, units): rows index inputs, columns outputs.
        rows = int(kernel.shape[-1]) if not isinstance(self.layer, keras.layers.Embedding) else int(kernel.shape[0])
        self.vector_u = self.add_weight(
            shape=(1, rows),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            trainable=False,
            name="vector_u",
        )
        self.built = True

    def _kernel(self):
        if isinstance(self.layer, keras.layers.Embedding):
            return self.layer.embeddings
        return self.layer.kernel

    def _matrix(self, kernel):
        # (out, fan_in): the top singular vector u lives in the output space.
        if isinstance(self.layer, keras.layers.Embedding):
            return kernel  # (vocabulary, dim)
        return ops.transpose(ops.reshape(kernel, (-1, kernel.shape[-1])))

    def normalized_kernel(self, training=False):
        """The kernel divided by its spectral norm; updates `u` when `training`."""
        kernel = self._kernel()
        matrix = self._matrix(kernel)  # (out, fan_in)
        u = ops.convert_to_tensor(self.vector_u)
        if training:
            for _ in range(self.power_iterations):
                v = _l2_normalize(ops.matmul(u, matrix), self.epsilon)  # (1, fan_in)
                u = _l2_normalize(ops.matmul(v, ops.transpose(matrix)), self.epsilon)  # (1, out)
        u = ops.stop_gradient(u)
        v = ops.stop_gradient(_l2_normalize(ops.matmul(u, matrix), self.epsilon))
        sigma = ops.sum(ops.matmul(u, matrix) * v)
        if training:
            self.vector_u.assign(u)
        return kernel / sigma

    def call(self, inputs, training=False):
        kernel = self.normalized_kernel(training=bool(training))
        layer = self.layer
        if isinstance(layer, keras.layers.Embedding):
            return ops.take(kernel, ops.cast(inputs, "int32"), axis=0)
        if isinstance(layer, keras.layers.Dense):
            outputs = ops.matmul(inputs, kernel)
        else:
            outputs = ops.conv(
                inputs,
                kernel,
                strides=layer.strides,
                padding=layer.padding,
                dilation_rate=layer.dilation_rate,
                data_format=layer.data_format,
            )
        if layer.use_bias:
            outputs = outputs + layer.bias
        if layer.activation is not None:
            outputs = layer.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"power_iterations": self.power_iterations, "epsilon": self.epsilon})
        return config
