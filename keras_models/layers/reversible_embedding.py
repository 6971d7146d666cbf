"""`ReversibleEmbedding`: a token embedding whose table also maps hidden states back to token logits."""

from __future__ import annotations

import keras
from keras import ops

from keras_models.checks import check_positive_int


@keras.saving.register_keras_serializable(package="keras_models")
class ReversibleEmbedding(keras.layers.Layer):
    """Token ids to vectors, and with `reverse=True` vectors to one logit per token through the same
    table: tied input and output embeddings (Press and Wolf, 2017; GPT-2, T5).

    Args:
        input_dim: the number of token ids.
        output_dim: the width of a vector.
        embeddings_initializer: of the table `(input_dim, output_dim)`.

    Call arguments:
        inputs: int token ids `(...)`, or with `reverse=True` vectors `(..., output_dim)`.
        reverse: `False` looks the ids up (`(..., output_dim)`); `True` multiplies by the transposed
            table (`(..., input_dim)`).
    """

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer="uniform", **kwargs):
        input_dim = check_positive_int(input_dim, "input_dim")
        output_dim = check_positive_int(output_dim, "output_dim")
        super().__init__(**kwargs)
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(shape=(self.input_dim, self.output_dim),
                                          initializer=self.embeddings_initializer, name="embeddings")

    def call(self, inputs, reverse=False):
        table = ops.cast(self.embeddings, self.compute_dtype)
        if reverse:
            return ops.matmul(inputs, ops.transpose(table))  # (..., input_dim)
        return ops.take(table, ops.cast(inputs, "int32"), axis=0)  # (..., output_dim)

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer)}
