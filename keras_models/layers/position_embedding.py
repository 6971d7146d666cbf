"""`PositionEmbedding`: a learned embedding of positions."""

from __future__ import annotations

import keras
from keras import ops

from keras_models.checks import check_positive_int


@keras.saving.register_keras_serializable(package="keras_models")
class PositionEmbedding(keras.layers.Layer):
    """A learned vector per position, up to `sequence_length` positions (GPT, BERT).

    Args:
        sequence_length: the number of positions it has vectors for.
        initializer: the initializer of the table `(sequence_length, width)`.

    Call arguments:
        inputs: `(batch, steps, width)`; only its shape is read.
        start_index: the position of the first step (an int or an int32 scalar tensor; a KV cache
            passes the number of steps already cached).

    Returns:
        The vectors of positions `start_index ... start_index + steps - 1`, broadcast to the shape of
        `inputs`. More than `sequence_length` steps raise a `ValueError` when the number is known.
    """

    def __init__(self, sequence_length: int, initializer="glorot_uniform", **kwargs):
        sequence_length = check_positive_int(sequence_length, "sequence_length")
        super().__init__(**kwargs)
        self.sequence_length = sequence_length
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        width = input_shape[-1]
        if width is None:
            raise ValueError(f"PositionEmbedding needs a known last axis; got shape {tuple(input_shape)}.")
        self.position_embeddings = self.add_weight(
            shape=(self.sequence_length, int(width)), initializer=self.initializer, name="embeddings"
        )

    def call(self, inputs, start_index=0):
        steps = inputs.shape[1]
        if steps is not None and steps > self.sequence_length:
            raise ValueError(
                f"{self.name!r} has positions for sequences of up to sequence_length={self.sequence_length} "
                f"steps; got {steps} steps."
            )
        table = ops.cast(self.position_embeddings, self.compute_dtype)
        if isinstance(start_index, int) and start_index == 0 and steps is not None:
            positions = table[:steps]
        else:
            length = ops.shape(inputs)[1]
            positions = ops.slice(table, (ops.cast(start_index, "int32"), 0), (length, table.shape[1]))
        return ops.broadcast_to(ops.expand_dims(positions, 0), ops.shape(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "sequence_length": self.sequence_length,
                "initializer": keras.initializers.serialize(self.initializer)}
