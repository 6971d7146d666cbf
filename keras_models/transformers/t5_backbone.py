"""`T5Backbone`: T5's encoder-decoder transformer, source and decoder token ids to decoder hidden states."""

from __future__ import annotations

import types

import keras

from keras_models.checks import (
    check_choice,
    check_optional_positive_int,
    check_positive_float,
    check_positive_int,
    check_rate,
)
from keras_models.layers.relative_position_bias import RelativePositionBias
from keras_models.layers.reversible_embedding import ReversibleEmbedding
from keras_models.layers.rms_norm import RMSNorm
from keras_models.layers.transformer_block import TransformerBlock
from keras_models.layers.transformer_decoder_block import TransformerDecoderBlock
from keras_models.transformers.presets import ConfigFromAttributes

PADDING_ID = 0
ACTIVATIONS = ("relu", "gelu")


def check_t5_config(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim, key_value_dim=None,
                    dropout=0.0, activation="relu", use_gated_activation=False, layer_norm_epsilon=1e-6,
                    tie_embedding_weights=True, relative_attention_num_buckets=32,
                    relative_attention_max_distance=128, source_length=None):
    """Raises a `ValueError` naming the first bad argument of a T5 configuration."""
    for value, what in ((vocabulary_size, "vocabulary_size"), (num_layers, "num_layers"), (num_heads, "num_heads"),
                        (hidden_dim, "hidden_dim"), (intermediate_dim, "intermediate_dim")):
        check_positive_int(value, what)
    check_optional_positive_int(key_value_dim, "key_value_dim")
    check_optional_positive_int(source_length, "source_length")
    if key_value_dim is None and hidden_dim % num_heads:
        raise ValueError(
            f"hidden_dim must be divisible by num_heads when key_value_dim is None (every head is hidden_dim / "
            f"num_heads wide); got hidden_dim={hidden_dim}, num_heads={num_heads}."
        )
    if vocabulary_size < 3:
        raise ValueError(
            f"vocabulary_size must be at least 3 (padding 0, a start and an end id); got "
            f"vocabulary_size={vocabulary_size}."
        )
    check_rate(dropout, "dropout")
    check_choice(activation, ACTIVATIONS, "activation")
    for value, what in ((use_gated_activation, "use_gated_activation"),
                        (tie_embedding_weights, "tie_embedding_weights")):
        if value not in (True, False):
            raise ValueError(f"{what} must be True or False; got {what}={value!r}.")
    if use_gated_activation and activation != "gelu":
        raise ValueError(
            f"use_gated_activation=True gates with GELU (T5 v1.1's GeGLU): it needs activation='gelu'; got "
            f"activation={activation!r}."
        )
    check_positive_float(layer_norm_epsilon, "layer_norm_epsilon")
    check_positive_int(relative_attention_num_buckets, "relative_attention_num_buckets")
    check_positive_int(relative_attention_max_distance, "relative_attention_max_distance")


def encode(parts, source_ids, training=None):
    """Source ids `(batch, source_steps)` to the encoder's outputs `(batch, source_steps, hidden_dim)` and the
    source mask (bool, `False` at padding). `parts` holds the backbone's layers by name (the backbone
    itself, or the namespace its constructor builds the graph from)."""
    source_mask = keras.ops.not_equal(source_ids, PADDING_ID)
    x = parts.embedding_dropout(parts.token_embedding(source_ids), training=training)
    bias = parts.encoder_position_bias(x)  # (1, num_heads, source_steps, source_steps), shared by every block
    for block in parts.encoder_blocks:
        x = block(x, padding_mask=source_mask, attention_bias=bias, training=training)
    return parts.encoder_dropout(parts.encoder_final_norm(x), training=training), source_mask


def decode(parts, decoder_ids, encoder_outputs, source_mask, training=None):
    """Decoder input ids `(batch, target_steps)` to hidden states `(batch, target_steps, hidden_dim)`,
    attending to `encoder_outputs` where `source_mask` is `True`."""
    x = parts.embedding_dropout(parts.token_embedding(decoder_ids), training=training)
    bias = parts.decoder_position_bias(x)  # (1, num_heads, target_steps, target_steps), causal buckets
    for block in parts.decoder_blocks:
        x = block(x, encoder_outputs, encoder_padding_mask=source_mask, attention_bias=bias, training=training)
    return parts.decoder_dropout(parts.decoder_final_norm(x), training=training)


@keras.saving.register_keras_serializable(package="keras_models")
class T5Backbone(ConfigFromAttributes, keras.Model):
    """T5's network (Raffel et al., 2020, "Exploring the Limits of Transfer Learning with a Unified
    Text-to-Text Transformer"), a functional `keras.Model`: `[source_ids, decoder_input_ids]` to the
    decoder's hidden states `(batch, target_steps, hidden_dim)`.

    One token table (a `ReversibleEmbedding`) serves the source, the decoder inputs and, with
    `tie_embedding_weights`, the output logits. There are no absolute positions: each stack adds a
    learned `RelativePositionBias` to its self-attention scores, bidirectional in the encoder and causal
    in the decoder, one table per stack shared by its blocks. Blocks are pre-norm with `RMSNorm` and
    no biases: `num_layers` encoder `TransformerBlock`s and as many `TransformerDecoderBlock`s
    (cross-attention to the encoder), each stack ending with an `RMSNorm`. The feed-forward network is
    ReLU (T5) or, with `use_gated_activation`, GELU-gated (`"geglu"`, T5 v1.1). Id 0 is padding: padded
    source steps are masked out of both attentions, so padding changes no real step's output.

    Attention scores are divided by `sqrt(key_value_dim)` (T5 folds that scale into its initialization);
    the parameter count is T5's.

    Args:
        vocabulary_size: the number of token ids (0 is padding).
        num_layers: blocks in the encoder and, as many, in the decoder.
        num_heads: attention heads.
        hidden_dim: the width of the hidden states (T5's `d_model`).
        intermediate_dim: the width inside each feed-forward network (`d_ff`).
        key_value_dim: the width of a head (`d_kv`); `None` for `hidden_dim // num_heads`.
        dropout: dropout rate on the embeddings, attention weights, residual branches and stack outputs.
        activation: `"relu"` or `"gelu"`, of the feed-forward network.
        use_gated_activation: the gated feed-forward (`activation="gelu"` gives T5 v1.1's GeGLU).
        layer_norm_epsilon: of every `RMSNorm`.
        tie_embedding_weights: the task reads logits through the token table (kept by the backbone's
            configuration for the task to read).
        relative_attention_num_buckets, relative_attention_max_distance: of `RelativePositionBias`.
        source_length: a fixed number of source steps (exported encoders need one); `None` takes any.
        name: the model name and the prefix of every layer name.
    """

    config_names = ("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim", "key_value_dim",
                    "dropout", "activation", "use_gated_activation", "layer_norm_epsilon",
                    "tie_embedding_weights", "relative_attention_num_buckets",
                    "relative_attention_max_distance", "source_length")

    def __init__(self, vocabulary_size=1000, num_layers=2, num_heads=4, hidden_dim=128, intermediate_dim=512,
                 key_value_dim=None, dropout=0.0, activation="relu", use_gated_activation=False,
                 layer_norm_epsilon=1e-6, tie_embedding_weights=True, relative_attention_num_buckets=32,
                 relative_attention_max_distance=128, source_length=None, name="t5", **kwargs):
        config = dict(vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=num_heads,
                      hidden_dim=hidden_dim, intermediate_dim=intermediate_dim, key_value_dim=key_value_dim,
                      dropout=dropout, activation=activation, use_gated_activation=use_gated_activation,
                      layer_norm_epsilon=layer_norm_epsilon, tie_embedding_weights=tie_embedding_weights,
                      relative_attention_num_buckets=relative_attention_num_buckets,
                      relative_attention_max_distance=relative_attention_max_distance, source_length=source_length)
        check_t5_config(**config)
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string; got name={name!r}.")
        feed_forward = "geglu" if use_gated_activation else activation
        block = dict(head_dim=key_value_dim, activation=feed_forward, dropout=dropout, normalization="rms_norm",
                     norm_first=True, epsilon=layer_norm_epsilon, use_bias=False)

        def bias(bidirectional, stack):
            return RelativePositionBias(num_heads, relative_attention_num_buckets, relative_attention_max_distance,
                                        bidirectional=bidirectional, embeddings_initializer="random_normal",
                                        name=f"{name}_{stack}_relative_position_bias")

        parts = types.SimpleNamespace(
            token_embedding=ReversibleEmbedding(vocabulary_size, hidden_dim,
                                                embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
                                                name=name + "_token_embedding"),
            embedding_dropout=keras.layers.Dropout(dropout, name=name + "_embedding_dropout"),
            encoder_position_bias=bias(True, "encoder"),
            encoder_blocks=[TransformerBlock(num_heads, intermediate_dim, causal=False, **block,
                                             name=f"{name}_encoder_block{index + 1}") for index in range(num_layers)],
            encoder_final_norm=RMSNorm(layer_norm_epsilon, name=name + "_encoder_final_norm"),
            encoder_dropout=keras.layers.Dropout(dropout, name=name + "_encoder_dropout"),
            decoder_position_bias=bias(False, "decoder"),
            decoder_blocks=[TransformerDecoderBlock(num_heads, intermediate_dim, **block,
                                                    name=f"{name}_decoder_block{index + 1}")
                            for index in range(num_layers)],
            decoder_final_norm=RMSNorm(layer_norm_epsilon, name=name + "_decoder_final_norm"),
            decoder_dropout=keras.layers.Dropout(dropout, name=name + "_decoder_dropout"),
        )
        source_ids = keras.Input((source_length,), dtype="int32", name=name + "_source_ids")
        decoder_ids = keras.Input((None,), dtype="int32", name=name + "_decoder_input_ids")
        encoder_outputs, source_mask = encode(parts, source_ids)
        hidden = decode(parts, decoder_ids, encoder_outputs, source_mask)  # (batch, target_steps, hidden_dim)
        super().__init__(inputs=[source_ids, decoder_ids], outputs=hidden, name=name, **kwargs)

        for key, value in vars(parts).items():
            setattr(self, key, value)
        self.vocabulary_size = int(vocabulary_size)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.hidden_dim = int(hidden_dim)
        self.intermediate_dim = int(intermediate_dim)
        self.key_value_dim = None if key_value_dim is None else int(key_value_dim)
        self.dropout = float(dropout)
        self.activation = activation
        self.use_gated_activation = bool(use_gated_activation)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.tie_embedding_weights = bool(tie_embedding_weights)
        self.relative_attention_num_buckets = int(relative_attention_num_buckets)
        self.relative_attention_max_distance = int(relative_attention_max_distance)
        self.source_length = None if source_length is None else int(source_length)

    @property
    def head_dim(self) -> int:
        return self.key_value_dim or self.hidden_dim // self.num_heads

    def encode(self, source_ids, training=None):
        """The encoder alone: `(encoder_outputs (batch, source_steps, hidden_dim), source_mask)`."""
        return encode(self, keras.ops.convert_to_tensor(source_ids, dtype="int32"), training=training)
