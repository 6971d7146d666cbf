"""The `whisper` and `whisper_speech_to_text` builders, and Whisper's sizes as presets.

Presets are data: `CONFIGS` maps a preset name to a Whisper configuration, read by one private function
(`whisper_config`), so a new size is one entry. `whisper_parameter_count` gives the parameter count of
a configuration from the formula, without building the weights.
"""

from __future__ import annotations

from keras_models.checks import check_special_ids
from keras_models.recurrent.language_model import language_model_loss
from keras_models.recurrent.seq2seq import END_ID, START_ID
from keras_models.registry import register_model
from keras_models.training import compile_model
from keras_models.transformers.presets import resolve_config
from keras_models.transformers.whisper_backbone import WhisperBackbone, check_whisper_config
from keras_models.transformers.whisper_speech_to_text import FAMILY, WhisperSpeechToText

# Whisper's sizes (Radford et al., 2022, Table 1): 80 mel bands, 3,000 frames (30 s; 1,500 encoder
# positions), 448 decoder positions, the multilingual vocabulary of 51,865 tokens, 4 * width feed-forward.
_WHISPER = {"vocabulary_size": 51865, "num_mels": 80, "max_encoder_sequence_length": 3000,
            "max_decoder_sequence_length": 448, "dropout": 0.0}
CONFIGS = {
    "whisper_tiny": {**_WHISPER, "num_layers": 4, "num_heads": 6, "hidden_dim": 384, "intermediate_dim": 1536},
    "whisper_base": {**_WHISPER, "num_layers": 6, "num_heads": 8, "hidden_dim": 512, "intermediate_dim": 2048},
    "whisper_small": {**_WHISPER, "num_layers": 12, "num_heads": 12, "hidden_dim": 768, "intermediate_dim": 3072},
}

# The configuration without a preset: 2 s of audio, small enough to train on a CPU in minutes.
DEFAULT_CONFIG = {"vocabulary_size": 1000, "num_layers": 2, "num_heads": 4, "hidden_dim": 128,
                  "intermediate_dim": 512, "num_mels": 80, "max_encoder_sequence_length": 200,
                  "max_decoder_sequence_length": 64, "dropout": 0.0}


def whisper_config(preset=None, **overrides):
    """The configuration of `preset` (`DEFAULT_CONFIG` for `None`) with the arguments in `overrides`
    that are not `None` replacing its values."""
    config = resolve_config("Whisper", preset, CONFIGS, DEFAULT_CONFIG, overrides)
    check_whisper_config(**config)
    return config


def whisper_parameter_count(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim, num_mels,
                            max_encoder_sequence_length, max_decoder_sequence_length, dropout=0.0):
    """The number of weights of a Whisper backbone (and task: the log-mel layer and the tied output
    have none), from the formula.

    Encoder: two width-3 convolutions with biases (`num_mels` then `hidden_dim` channels in), per block
    two layer normalizations (scale and offset), four attention projections with biases and two
    feed-forward projections with biases, a final layer normalization; the sinusoidal positions have
    no weights. Decoder: the token table, the position table, per block three layer normalizations,
    eight attention projections (self and cross) and the feed-forward, a final layer normalization.

    `whisper_parameter_count(**CONFIGS["whisper_tiny"])` is 37,189,248: the released Whisper-tiny's
    37,184,640 weights plus the 4,608 key biases it lacks (12 attention layers of width 384); the
    released count leaves out the encoder's fixed position table, as this model has none (Hugging
    Face's copy stores the table as a weight: 37,760,640). The paper rounds tiny to "39M".
    """
    d, f = hidden_dim, intermediate_dim
    attention = 4 * (d * d + d)
    feed_forward = (d * f + f) + (f * d + d)
    stem = (3 * num_mels * d + d) + (3 * d * d + d)
    encoder = stem + num_layers * (2 * (2 * d) + attention + feed_forward) + 2 * d
    decoder = ((vocabulary_size + max_decoder_sequence_length) * d
               + num_layers * (3 * (2 * d) + 2 * attention + feed_forward) + 2 * d)
    return encoder + decoder


_ARGUMENTS_DOC = """
    Configuration names follow keras-hub's Whisper; each `None` takes the preset's value, or without a
    preset the small default (`DEFAULT_CONFIG`: vocabulary 1,000, 2 + 2 layers, 4 heads, width 128,
    feed-forward 512, 80 mel bands, 200 frames (2 s of audio), 64 decoder positions, no dropout).

    Args:
        vocabulary_size: the number of token ids (0 is padding).
        num_layers: blocks in the encoder and, as many, in the decoder.
        num_heads: attention heads; `hidden_dim` must be divisible by it.
        hidden_dim: the width of the hidden states.
        intermediate_dim: the width inside each feed-forward network.
        num_mels: mel bands of the log-mel features.
        max_encoder_sequence_length: log-mel frames of the input, 10 ms each (the task reads
            `160 * max_encoder_sequence_length` samples at 16 kHz; the encoder has half as many
            positions).
        max_decoder_sequence_length: decoder positions, the longest transcript (start and end ids
            included).
        dropout: dropout rate on embeddings, attention weights and residual branches.
        preset: `None` or a key of `CONFIGS` (`"whisper_tiny"`: Whisper-tiny's 37M, `"whisper_base"`,
            `"whisper_small"`). No weights are downloaded: a preset is a size.
        name: the model name and the prefix of every layer name.
        compile: `False` returns the model uncompiled.
        jit_compile: `None` for the family's default on this backend and device; `True`/`False` force it.
"""


@register_model("whisper", family=FAMILY,
                description="Whisper encoder-decoder backbone: log-mel features and token ids to decoder states")
def whisper(vocabulary_size=None, num_layers=None, num_heads=None, hidden_dim=None, intermediate_dim=None,
            num_mels=None, max_encoder_sequence_length=None, max_decoder_sequence_length=None, dropout=None,
            preset=None, name="whisper", compile=True, jit_compile=None):
    config = whisper_config(preset, vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=num_heads,
                            hidden_dim=hidden_dim, intermediate_dim=intermediate_dim, num_mels=num_mels,
                            max_encoder_sequence_length=max_encoder_sequence_length,
                            max_decoder_sequence_length=max_decoder_sequence_length, dropout=dropout)
    model = WhisperBackbone(**config, name=name)
    if compile:
        compile_model(model, jit_compile=jit_compile, family=FAMILY)
    return model


whisper.__doc__ = """A `WhisperBackbone`: `[features, decoder_input_ids]` (log-mel features `(batch,
    max_encoder_sequence_length, num_mels)`, token ids `(batch, steps)`) to decoder hidden states
    `(batch, steps, hidden_dim)`, compiled without a loss (`whisper_speech_to_text` is the trainable
    task, on waveforms).
""" + _ARGUMENTS_DOC


@register_model("whisper_speech_to_text", family=FAMILY,
                description="Whisper speech to text: 16 kHz waveforms (log-mel in the graph) to token logits, "
                            "KV-cache generate()")
def whisper_speech_to_text(vocabulary_size=None, num_layers=None, num_heads=None, hidden_dim=None,
                           intermediate_dim=None, num_mels=None, max_encoder_sequence_length=None,
                           max_decoder_sequence_length=None, dropout=None, preset=None, start_id=START_ID,
                           end_id=END_ID, name="whisper_speech_to_text", compile=True, jit_compile=None):
    config = whisper_config(preset, vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=num_heads,
                            hidden_dim=hidden_dim, intermediate_dim=intermediate_dim, num_mels=num_mels,
                            max_encoder_sequence_length=max_encoder_sequence_length,
                            max_decoder_sequence_length=max_decoder_sequence_length, dropout=dropout)
    check_special_ids(start_id, end_id, config["vocabulary_size"])  # before building the weights
    model = WhisperSpeechToText(WhisperBackbone(**config, name=name + "_backbone"), start_id=start_id, end_id=end_id,
                                name=name)
    if compile:
        compile_model(model, loss=language_model_loss(), jit_compile=jit_compile, family=FAMILY)
    return model


whisper_speech_to_text.__doc__ = """A `WhisperSpeechToText`: `[waveforms, decoder_input_ids]` (16 kHz float
    waveforms `(batch, 160 * max_encoder_sequence_length)`, token ids `(batch, steps)`) to next-token
    logits `(batch, steps, vocabulary_size)`, compiled (Adam, the next-token cross-entropy with padding
    left out) for `fit(*speech_to_text_pairs(waveforms, targets))`, with `generate(waveforms,
    max_length)`. `start_id` starts every transcript (never generated), `end_id` ends it.
""" + _ARGUMENTS_DOC
