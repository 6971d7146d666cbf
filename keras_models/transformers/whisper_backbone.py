"""`WhisperBackbone`: Whisper's encoder-decoder transformer, log-mel features and decoder token ids to
decoder hidden states."""

from __future__ import annotations

import types

import keras

from keras_models.checks import check_positive_float, check_positive_int, check_rate
from keras_models.layers.position_embedding import PositionEmbedding
from keras_models.layers.reversible_embedding import ReversibleEmbedding
from keras_models.layers.sinusoidal_position_embedding import SinusoidalPositionEmbedding
from keras_models.layers.transformer_block import TransformerBlock
from keras_models.layers.transformer_decoder_block import TransformerDecoderBlock
from keras_models.transformers.presets import ConfigFromAttributes

PADDING_ID = 0


def check_whisper_config(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim, num_mels,
                         max_encoder_sequence_length, max_decoder_sequence_length, dropout, layer_norm_epsilon=1e-5):
    """Raises a `ValueError` naming the first bad argument of a Whisper configuration."""
    for value, what in ((vocabulary_size, "vocabulary_size"), (num_layers, "num_layers"), (num_heads, "num_heads"),
                        (hidden_dim, "hidden_dim"), (intermediate_dim, "intermediate_dim"), (num_mels, "num_mels"),
                        (max_encoder_sequence_length, "max_encoder_sequence_length"),
                        (max_decoder_sequence_length, "max_decoder_sequence_length")):
        check_positive_int(value, what)
    if hidden_dim % num_heads:
        raise ValueError(
            f"hidden_dim must be divisible by num_heads (every head is hidden_dim / num_heads wide); got "
            f"hidden_dim={hidden_dim}, num_heads={num_heads}."
        )
    if vocabulary_size < 3:
        raise ValueError(
            f"vocabulary_size must be at least 3 (padding 0, a start and an end id); got "
            f"vocabulary_size={vocabulary_size}."
        )
    if max_encoder_sequence_length < 2:
        raise ValueError(
            f"max_encoder_sequence_length counts log-mel frames, halved by the stride-2 convolution: it must be "
            f"at least 2; got max_encoder_sequence_length={max_encoder_sequence_length}."
        )
    check_rate(dropout, "dropout")
    check_positive_float(layer_norm_epsilon, "layer_norm_epsilon")


def _layers(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim, max_decoder_sequence_length,
            dropout, epsilon, initializer, name):
    """Every layer of the network, by the attribute name `encode` and `decode` read."""

    def norm(part):
        return keras.layers.LayerNormalization(epsilon=epsilon, name=f"{name}_{part}")

    block = dict(num_heads=num_heads, intermediate_dim=intermediate_dim, activation="gelu", dropout=dropout,
                 normalization="layer_norm", norm_first=True, epsilon=epsilon, kernel_initializer=initializer)
    return types.SimpleNamespace(
        encoder_conv1=keras.layers.Conv1D(hidden_dim, 3, padding="same", activation="gelu",
                                          name=name + "_encoder_conv1"),
        encoder_conv2_padding=keras.layers.ZeroPadding1D(1, name=name + "_encoder_conv2_padding"),
        encoder_conv2=keras.layers.Conv1D(hidden_dim, 3, strides=2, activation="gelu",
                                          name=name + "_encoder_conv2"),
        encoder_position_embedding=SinusoidalPositionEmbedding(name=name + "_encoder_position_embedding"),
        encoder_dropout=keras.layers.Dropout(dropout, name=name + "_encoder_dropout"),
        encoder_blocks=[TransformerBlock(**block, causal=False, name=f"{name}_encoder_block{index + 1}")
                        for index in range(num_layers)],
        encoder_final_norm=norm("encoder_final_norm"),
        token_embedding=ReversibleEmbedding(vocabulary_size, hidden_dim, embeddings_initializer=initializer,
                                            name=name + "_token_embedding"),
        decoder_position_embedding=PositionEmbedding(max_decoder_sequence_length, initializer=initializer,
                                                     name=name + "_decoder_position_embedding"),
        decoder_dropout=keras.layers.Dropout(dropout, name=name + "_decoder_dropout"),
        decoder_blocks=[TransformerDecoderBlock(**block, name=f"{name}_decoder_block{index + 1}")
                        for index in range(num_layers)],
        decoder_final_norm=norm("decoder_final_norm"),
    )


# -- the two halves, functions of the backbone's layers (the backbone itself, or the namespace its
# constructor builds the graph from), shared by the whole network and step-by-step generation ----------

def encode(parts, features, training=None):
    """Log-mel features `(batch, frames, num_mels)` to the encoder's outputs `(batch, ceil(frames / 2),
    hidden_dim)`."""
    x = parts.encoder_conv1(features)  # (batch, frames, hidden_dim)
    x = parts.encoder_conv2(parts.encoder_conv2_padding(x))  # (batch, ceil(frames / 2), hidden_dim)
    x = x + parts.encoder_position_embedding(x)
    x = parts.encoder_dropout(x, training=training)
    for block in parts.encoder_blocks:
        x = block(x, training=training)
    return parts.encoder_final_norm(x)


def decode(parts, decoder_ids, encoder_outputs, training=None):
    """Decoder input ids `(batch, steps)` to hidden states `(batch, steps, hidden_dim)`, attending to
    `encoder_outputs`."""
    x = parts.token_embedding(decoder_ids)  # (batch, steps, hidden_dim)
    x = x + parts.decoder_position_embedding(x)
    x = parts.decoder_dropout(x, training=training)
    for block in parts.decoder_blocks:
        x = block(x, encoder_outputs, training=training)
    return parts.decoder_final_norm(x)


@keras.saving.register_keras_serializable(package="keras_models")
class WhisperBackbone(ConfigFromAttributes, keras.Model):
    """Whisper's network (Radford et al., 2022, "Robust Speech Recognition via Large-Scale Weak
    Supervision"), a functional `keras.Model`: `[features, decoder_input_ids]` (log-mel features
    `(batch, max_encoder_sequence_length, num_mels)`, token ids `(batch, steps)`) to the decoder's
    hidden states `(batch, steps, hidden_dim)`.

    Encoder: two width-3 convolutions with GELU, the second with stride 2 (padding one frame at each
    end, as Whisper's, so 3,000 frames give 1,500 positions), fixed sinusoidal positions, `num_layers`
    pre-norm `TransformerBlock`s (not causal, GELU feed-forward) and a final layer normalization.
    Decoder: a token embedding plus a learned position embedding, `num_layers` pre-norm
    `TransformerDecoderBlock`s (causal self-attention, cross-attention to the encoder) and a final layer
    normalization. The token table is a `ReversibleEmbedding`, so the task reads logits through it
    (tied embeddings, as Whisper's).

    Differences from the released Whisper, none of which changes the architecture's capacity: the
    sinusoidal positions interleave sines and cosines (`SinusoidalPositionEmbedding`) where Whisper
    concatenates them, the key projections carry a bias (Whisper's have none: 384 more weights per
    attention layer at Whisper-tiny's width), and the blocks' feed-forward GELU is the tanh
    approximation of the shared `FeedForward` (the convolutions' GELU is exact, as Whisper's).

    Inputs are fixed-length, as Whisper's (every utterance padded to 30 s): the task pads shorter
    waveforms with silence. No padding mask is needed on the decoder side: it is causal, and padding
    after a target's end id is left out of the loss.

    Args:
        vocabulary_size: the number of token ids (0 is padding; the task adds a start and an end id).
        num_layers: blocks in the encoder and, as many, in the decoder.
        num_heads: attention heads; `hidden_dim` must be divisible by it.
        hidden_dim: the width of the hidden states.
        intermediate_dim: the width inside each feed-forward network (4 * hidden_dim in Whisper).
        num_mels: mel bands of the features.
        max_encoder_sequence_length: log-mel frames of the input (3,000: 30 s in 10 ms hops); the
            encoder has half as many positions (rounded up).
        max_decoder_sequence_length: decoder positions (448 in Whisper).
        dropout: dropout rate on the embeddings, the attention weights and every residual branch.
        layer_norm_epsilon: of every layer normalization.
        name: the model name and the prefix of every layer name.
    """

    config_names = ("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim", "num_mels",
                    "max_encoder_sequence_length", "max_decoder_sequence_length", "dropout",
                    "layer_norm_epsilon")

    def __init__(self, vocabulary_size=1000, num_layers=2, num_heads=4, hidden_dim=128, intermediate_dim=512,
                 num_mels=80, max_encoder_sequence_length=200, max_decoder_sequence_length=64, dropout=0.0,
                 layer_norm_epsilon=1e-5, name="whisper", **kwargs):
        check_whisper_config(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim, num_mels,
                             max_encoder_sequence_length, max_decoder_sequence_length, dropout, layer_norm_epsilon)
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string; got name={name!r}.")
        initializer = keras.initializers.RandomNormal(stddev=0.02)
        parts = _layers(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim,
                             max_decoder_sequence_length, dropout, layer_norm_epsilon, initializer, name)

        features = keras.Input((max_encoder_sequence_length, num_mels), name=name + "_features")
        decoder_ids = keras.Input((None,), dtype="int32", name=name + "_decoder_input_ids")
        encoder_outputs = encode(parts, features)  # (batch, ceil(frames / 2), hidden_dim)
        hidden = decode(parts, decoder_ids, encoder_outputs)  # (batch, steps, hidden_dim)
        super().__init__(inputs=[features, decoder_ids], outputs=hidden, name=name, **kwargs)

        self.vocabulary_size = int(vocabulary_size)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.hidden_dim = int(hidden_dim)
        self.intermediate_dim = int(intermediate_dim)
        self.num_mels = int(num_mels)
        self.max_encoder_sequence_length = int(max_encoder_sequence_length)
        self.max_decoder_sequence_length = int(max_decoder_sequence_length)
        self.dropout = float(dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        for key, value in vars(parts).items():
            setattr(self, key, value)

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads

    @property
    def encoder_length(self) -> int:
        """The encoder's positions: half the frames, rounded up (the stride-2 convolution)."""
        return (self.max_encoder_sequence_length + 1) // 2

    def encode(self, features, training=None):
        """The encoder alone: features `(batch, frames, num_mels)` to `(batch, encoder_length, hidden_dim)`."""
        return encode(self, keras.ops.convert_to_tensor(features, dtype=self.compute_dtype), training=training)
