"""`GPTBackbone`: the decoder-only transformer of GPT-2, token ids to hidden states."""

from __future__ import annotations

import keras

from keras_models.checks import check_positive_float, check_positive_int, check_rate
from keras_models.layers.position_embedding import PositionEmbedding
from keras_models.layers.reversible_embedding import ReversibleEmbedding
from keras_models.layers.transformer_block import TransformerBlock
from keras_models.transformers.presets import ConfigFromAttributes


def check_gpt_config(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim, max_sequence_length,
                     dropout, layer_norm_epsilon=1e-5):
    """Raises a `ValueError` naming the first bad argument of a GPT configuration."""
    for value, what in ((vocabulary_size, "vocabulary_size"), (num_layers, "num_layers"), (num_heads, "num_heads"),
                        (hidden_dim, "hidden_dim"), (intermediate_dim, "intermediate_dim"),
                        (max_sequence_length, "max_sequence_length")):
        check_positive_int(value, what)
    if hidden_dim % num_heads:
        raise ValueError(
            f"hidden_dim must be divisible by num_heads (every head is hidden_dim / num_heads wide); got "
            f"hidden_dim={hidden_dim}, num_heads={num_heads}."
        )
    check_rate(dropout, "dropout")
    check_positive_float(layer_norm_epsilon, "layer_norm_epsilon")


@keras.saving.register_keras_serializable(package="keras_models")
class GPTBackbone(ConfigFromAttributes, keras.Model):
    """GPT-2's network (Radford et al., 2019, "Language Models are Unsupervised Multitask Learners"),
    a functional `keras.Model`: token ids `(batch, steps)` to hidden states `(batch, steps, hidden_dim)`.

    A token embedding plus a learned position embedding, dropout, `num_layers` pre-norm causal
    `TransformerBlock`s (GELU feed-forward) and a final layer normalization. Embeddings and projection
    kernels start from N(0, 0.02), as GPT-2's. There is no padding id: every id is a token, and
    position i sees positions 0 ... i. The token table is a `ReversibleEmbedding`, so a task can read
    logits through it (tied embeddings, `GPTCausalLM`).

    Args:
        vocabulary_size: the number of token ids.
        num_layers: transformer blocks.
        num_heads: attention heads; `hidden_dim` must be divisible by it.
        hidden_dim: the width of the hidden states.
        intermediate_dim: the width inside each feed-forward network (4 * hidden_dim in GPT-2).
        max_sequence_length: the number of positions (the longest sequence the model reads).
        dropout: dropout rate on the embeddings, the attention weights and every residual branch.
        layer_norm_epsilon: of every layer normalization.
        name: the model name and the prefix of every layer name.
    """

    config_names = ("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                    "max_sequence_length", "dropout", "layer_norm_epsilon")

    def __init__(self, vocabulary_size=1000, num_layers=2, num_heads=4, hidden_dim=128, intermediate_dim=512,
                 max_sequence_length=256, dropout=0.0, layer_norm_epsilon=1e-5, name="gpt", **kwargs):
        check_gpt_config(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim, max_sequence_length,
                         dropout, layer_norm_epsilon)
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string; got name={name!r}.")
        initializer = keras.initializers.RandomNormal(stddev=0.02)
        token_embedding = ReversibleEmbedding(vocabulary_size, hidden_dim, embeddings_initializer=initializer,
                                              name=name + "_token_embedding")
        position_embedding = PositionEmbedding(max_sequence_length, initializer=initializer,
                                               name=name + "_position_embedding")
        blocks = [
            TransformerBlock(num_heads, intermediate_dim, activation="gelu", dropout=dropout,
                             normalization="layer_norm", norm_first=True, epsilon=layer_norm_epsilon, causal=True,
                             kernel_initializer=initializer, name=f"{name}_block{index + 1}")
            for index in range(num_layers)
        ]
        final_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name=name + "_final_norm")

        token_ids = keras.Input((None,), dtype="int32", name=name + "_token_ids")
        tokens = token_embedding(token_ids)  # (batch, steps, hidden_dim)
        x = keras.layers.Add(name=name + "_embeddings")([tokens, position_embedding(tokens)])
        x = keras.layers.Dropout(dropout, name=name + "_embedding_dropout")(x)
        for block in blocks:
            x = block(x)
        x = final_norm(x)  # (batch, steps, hidden_dim)
        super().__init__(inputs=token_ids, outputs=x, name=name, **kwargs)

        self.vocabulary_size = int(vocabulary_size)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.hidden_dim = int(hidden_dim)
        self.intermediate_dim = int(intermediate_dim)
        self.max_sequence_length = int(max_sequence_length)
        self.dropout = float(dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.token_embedding = token_embedding
        self.position_embedding = position_embedding
        self.transformer_layers = blocks
        self.final_norm = final_norm

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads
