"""`SelfAttention2D`: self-attention over the positions of a feature map."""

from __future__ import annotations

import keras
from keras import ops

from keras_models.layers.spectral_normalization import SpectralNorm

_PACKAGE = "keras_models"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SelfAttention2D(keras.layers.Layer):
    """Self-attention over the positions of a feature map (Zhang et al., 2019, "Self-Attention
    Generative Adversarial Networks").

    `x + gamma * attention(x)`, with 1x1 query/key projections to `channels // reduction` channels, a
    1x1 value projection and a learned `gamma` starting at 0, so a fresh layer is the identity.

    Args:
        reduction: the channel reduction of queries and keys (8 in the paper).
        use_spectral_norm: spectrally normalize the projections (SAGAN and BigGAN do).
    """

    def __init__(self, reduction: int = 8, use_spectral_norm: bool = True, **kwargs):
        if not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"reduction must be a positive integer; got reduction={reduction!r}.")
        super().__init__(**kwargs)
        self.reduction = reduction
        self.use_spectral_norm = use_spectral_norm

    def _projection(self, filters, name):
        conv = keras.layers.Conv2D(filters, 1, use_bias=False, name=name)
        return SpectralNorm(conv, name=name + "_sn") if self.use_spectral_norm else conv

    def build(self, input_shape):
        channels = int(input_shape[-1])
        inner = max(1, channels // self.reduction)
        self.query = self._projection(inner, "query")
        self.key = self._projection(inner, "key")
        self.value = self._projection(channels, "value")
        for projection in (self.query, self.key, self.value):
            projection.build(input_shape)
        self.gamma = self.add_weight(shape=(), initializer="zeros", name="gamma")

    def call(self, inputs, training=False):
        height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        positions = height * width
        query = ops.reshape(self.query(inputs, training=training), (-1, positions, self.query.compute_output_shape(inputs.shape)[-1]))
        key = ops.reshape(self.key(inputs, training=training), (-1, positions, query.shape[-1]))
        value = ops.reshape(self.value(inputs, training=training), (-1, positions, channels))
        attention = ops.softmax(ops.matmul(query, ops.transpose(key, (0, 2, 1))), axis=-1)  # (b, hw, hw)
        attended = ops.reshape(ops.matmul(attention, value), (-1, height, width, channels))
        return inputs + self.gamma * attended

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction, "use_spectral_norm": self.use_spectral_norm}
