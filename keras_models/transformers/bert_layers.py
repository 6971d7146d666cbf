"""BERT's private layers: the masked-LM head's gather and transform, and the output bias of its tied logits."""

from __future__ import annotations

import keras
from keras import ops

from keras_models.checks import check_positive_float


@keras.saving.register_keras_serializable(package="keras_models")
class MaskedLMHead(keras.layers.Layer):
    """The vectors of the masked positions, transformed for the tied output embedding: a dense layer with
    GELU, then a layer normalization (BERT's "transform" before the logits).

    Args:
        activation: of the dense layer (BERT: `"gelu"`).
        epsilon: of the layer normalization.
        kernel_initializer: of the dense layer.

    Call arguments:
        sequence: `(batch, steps, hidden_dim)`, the encoder's vectors.
        mask_positions: int32 `(batch, predictions)`, the steps whose tokens are predicted.

    Returns:
        `(batch, predictions, hidden_dim)`.
    """

    def __init__(self, activation="gelu", epsilon=1e-12, kernel_initializer="glorot_uniform", **kwargs):
        self.epsilon = check_positive_float(epsilon, "epsilon")
        super().__init__(**kwargs)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, sequence_shape, mask_positions_shape=None):
        width = sequence_shape[-1]
        if width is None:
            raise ValueError(f"MaskedLMHead needs a known last axis; got shape {tuple(sequence_shape)}.")
        self.dense = keras.layers.Dense(int(width), activation=self.activation,
                                        kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy,
                                        name="dense")
        self.dense.build((None, None, int(width)))
        self.norm = keras.layers.LayerNormalization(epsilon=self.epsilon, dtype=self.dtype_policy, name="norm")
        self.norm.build((None, None, int(width)))

    def call(self, sequence, mask_positions):
        positions = ops.expand_dims(ops.cast(mask_positions, "int32"), -1)  # (batch, predictions, 1)
        gathered = ops.take_along_axis(sequence, positions, axis=1)  # (batch, predictions, hidden_dim)
        return self.norm(self.dense(gathered))

    def compute_output_shape(self, sequence_shape, mask_positions_shape):
        return (*mask_positions_shape, sequence_shape[-1])

    def get_config(self):
        return {**super().get_config(), "activation": keras.activations.serialize(self.activation),
                "epsilon": self.epsilon, "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


@keras.saving.register_keras_serializable(package="keras_models")
class OutputBias(keras.layers.Layer):
    """Adds a learned bias per unit of the last axis (the per-token bias of BERT's tied MLM logits)."""

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"OutputBias needs a known last axis; got shape {tuple(input_shape)}.")
        self.bias = self.add_weight(shape=(int(input_shape[-1]),), initializer="zeros", name="bias")

    def call(self, inputs):
        return inputs + ops.cast(self.bias, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape
