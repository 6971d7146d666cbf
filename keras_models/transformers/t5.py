"""The `t5` and `t5_seq2seq_lm` builders, and T5's sizes as presets.

Presets are data: `CONFIGS` maps a preset name to a T5 configuration, read by one private function
(`t5_config`), so a new size is one entry. `t5_parameter_count` gives the parameter count of a
configuration from the formula, without building the weights.
"""

from __future__ import annotations

from keras_models.recurrent.language_model import language_model_loss
from keras_models.registry import register_model
from keras_models.training import compile_model
from keras_models.transformers.presets import resolve_config
from keras_models.transformers.t5_backbone import T5Backbone, check_t5_config
from keras_models.transformers.t5_seq2seq_lm import FAMILY, T5Seq2SeqLM

# T5's SentencePiece vocabulary of 32,000 pieces, padded to 32,128 rows; 32 buckets of relative positions
# up to 128 apart; dropout 0.1 (Raffel et al., 2020). T5 v1.1: GeGLU feed-forward, untied output layer.
_T5 = {"vocabulary_size": 32128, "key_value_dim": 64, "dropout": 0.1, "activation": "relu",
       "use_gated_activation": False, "tie_embedding_weights": True}
_T5_V1_1 = {**_T5, "activation": "gelu", "use_gated_activation": True, "tie_embedding_weights": False}
CONFIGS = {
    "t5_small": {**_T5, "num_layers": 6, "num_heads": 8, "hidden_dim": 512, "intermediate_dim": 2048},
    "t5_base": {**_T5, "num_layers": 12, "num_heads": 12, "hidden_dim": 768, "intermediate_dim": 3072},
    "t5_v1_1_small": {**_T5_V1_1, "num_layers": 8, "num_heads": 6, "hidden_dim": 512, "intermediate_dim": 1024},
}

# The configuration without a preset: small enough to train on a CPU in seconds.
DEFAULT_CONFIG = {"vocabulary_size": 1000, "num_layers": 2, "num_heads": 4, "hidden_dim": 128,
                     "intermediate_dim": 512, "key_value_dim": None, "dropout": 0.0, "activation": "relu",
                     "use_gated_activation": False, "layer_norm_epsilon": 1e-6, "tie_embedding_weights": True,
                     "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
                     "source_length": None}


def t5_config(preset=None, **overrides):
    """The configuration of `preset` (`DEFAULT_CONFIG` for `None`, whose values also fill what a
    preset leaves out) with the arguments in `overrides` that are not `None` replacing its values."""
    config = resolve_config("T5", preset, CONFIGS, DEFAULT_CONFIG, overrides)
    check_t5_config(**config)
    return config


def t5_parameter_count(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim, key_value_dim=None,
                       use_gated_activation=False, tie_embedding_weights=True, relative_attention_num_buckets=32,
                       **unused):
    """The number of weights of a T5, from the formula (no biases anywhere, RMSNorm scales only).

    The token table (and an output layer of the same size when embeddings are not tied); per encoder
    block two RMSNorms, four attention projections `hidden_dim x num_heads * key_value_dim` and the
    feed-forward projections (two, three when gated); per decoder block three RMSNorms, eight attention
    projections and the feed-forward; one relative position table `(buckets, heads)` and one final
    RMSNorm per stack. `t5_parameter_count(**CONFIGS["t5_small"])` is 60,506,624, the count of the
    released T5-small with its tied embeddings (the paper's "60 million").
    """
    d, f = hidden_dim, intermediate_dim
    inner = num_heads * (key_value_dim or hidden_dim // num_heads)
    attention = 4 * d * inner
    feed_forward = (3 if use_gated_activation else 2) * d * f
    encoder_block = attention + feed_forward + 2 * d
    decoder_block = 2 * attention + feed_forward + 3 * d
    stacks = num_layers * (encoder_block + decoder_block) + 2 * (relative_attention_num_buckets * num_heads + d)
    return (1 if tie_embedding_weights else 2) * vocabulary_size * d + stacks


_ARGUMENTS_DOC = """
    Configuration names follow keras-hub's T5; each `None` takes the preset's value, or without a
    preset the small default (`DEFAULT_CONFIG`: vocabulary 1,000, 2 + 2 layers, 4 heads, width 128,
    feed-forward 512, ReLU, tied embeddings, no dropout).

    Args:
        vocabulary_size: the number of token ids, shared by source and target (0 is padding).
        num_layers: blocks in the encoder and, as many, in the decoder.
        num_heads: attention heads.
        hidden_dim: the width of the hidden states.
        intermediate_dim: the width inside each feed-forward network.
        key_value_dim: the width of a head; `None` for `hidden_dim // num_heads`.
        dropout: dropout rate on embeddings, attention weights, residual branches and stack outputs.
        activation: `"relu"` (T5) or `"gelu"`.
        use_gated_activation: the GELU-gated feed-forward of T5 v1.1 (needs `activation="gelu"`).
        layer_norm_epsilon: of every RMSNorm.
        tie_embedding_weights: logits through the token table (T5) or a separate output layer (T5 v1.1).
        relative_attention_num_buckets: buckets of relative positions (32).
        relative_attention_max_distance: the distance from which relative positions share a bucket (128).
        source_length: a fixed number of source steps, which exported encoders need; `None` takes any.
        preset: `None` or a key of `CONFIGS` (`"t5_small"`: T5-small's 60M; `"t5_base"`: 220M;
            `"t5_v1_1_small"`: T5 v1.1 small, 77M). No weights are downloaded: a preset is a size.
        name: the model name and the prefix of every layer name.
        compile: `False` returns the model uncompiled.
        jit_compile: `None` for the family's default on this backend and device; `True`/`False` force it.
"""


def _backbone(name, preset, **overrides):
    return T5Backbone(**t5_config(preset, **overrides), name=name)


@register_model("t5", family=FAMILY,
                description="T5 encoder-decoder backbone (relative position bias, RMSNorm): ids to decoder states")
def t5(vocabulary_size=None, num_layers=None, num_heads=None, hidden_dim=None, intermediate_dim=None,
       key_value_dim=None, dropout=None, activation=None, use_gated_activation=None, layer_norm_epsilon=None,
       tie_embedding_weights=None, relative_attention_num_buckets=None, relative_attention_max_distance=None,
       source_length=None, preset=None, name="t5", compile=True, jit_compile=None):
    model = _backbone(name, preset, vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=num_heads,
                      hidden_dim=hidden_dim, intermediate_dim=intermediate_dim, key_value_dim=key_value_dim,
                      dropout=dropout, activation=activation, use_gated_activation=use_gated_activation,
                      layer_norm_epsilon=layer_norm_epsilon, tie_embedding_weights=tie_embedding_weights,
                      relative_attention_num_buckets=relative_attention_num_buckets,
                      relative_attention_max_distance=relative_attention_max_distance, source_length=source_length)
    if compile:
        compile_model(model, jit_compile=jit_compile, family=FAMILY)
    return model


t5.__doc__ = """A `T5Backbone`: `[source_ids (batch, source_steps), decoder_input_ids (batch, target_steps)]`
    to the decoder's hidden states `(batch, target_steps, hidden_dim)`, compiled without a loss (a feature
    extractor; `t5_seq2seq_lm` is the trainable task).
""" + _ARGUMENTS_DOC


@register_model("t5_seq2seq_lm", family=FAMILY,
                description="T5 text-to-text model: next-token logits with teacher forcing, cached generate()")
def t5_seq2seq_lm(vocabulary_size=None, num_layers=None, num_heads=None, hidden_dim=None, intermediate_dim=None,
                  key_value_dim=None, dropout=None, activation=None, use_gated_activation=None,
                  layer_norm_epsilon=None, tie_embedding_weights=None, relative_attention_num_buckets=None,
                  relative_attention_max_distance=None, source_length=None, start_id=1, end_id=2, preset=None,
                  name="t5_seq2seq_lm", compile=True, jit_compile=None):
    backbone = _backbone(name + "_backbone", preset, vocabulary_size=vocabulary_size, num_layers=num_layers,
                         num_heads=num_heads, hidden_dim=hidden_dim, intermediate_dim=intermediate_dim,
                         key_value_dim=key_value_dim, dropout=dropout, activation=activation,
                         use_gated_activation=use_gated_activation, layer_norm_epsilon=layer_norm_epsilon,
                         tie_embedding_weights=tie_embedding_weights,
                         relative_attention_num_buckets=relative_attention_num_buckets,
                         relative_attention_max_distance=relative_attention_max_distance,
                         source_length=source_length)
    model = T5Seq2SeqLM(backbone, start_id=start_id, end_id=end_id, name=name)
    if compile:
        compile_model(model, loss=language_model_loss(), jit_compile=jit_compile, family=FAMILY)
    return model


t5_seq2seq_lm.__doc__ = """A `T5Seq2SeqLM`: `[source_ids, decoder_input_ids]` to next-token logits `(batch,
    target_steps, vocabulary_size)`, compiled (Adam, the next-token cross-entropy leaving padding out) for
    `fit(*teacher_forcing_pairs(source_ids, target_ids))`, with `generate(source_ids, max_length, ...)`.
    `start_id` (1) starts every decoded sequence and `end_id` (2) ends it.
""" + _ARGUMENTS_DOC
