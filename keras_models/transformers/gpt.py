"""The `gpt` and `gpt_causal_lm` builders, and GPT-2's sizes as presets.

Presets are data: `CONFIGS` maps a preset name to a GPT configuration, read by one private function
(`gpt_config`), so a new size is one entry. `gpt_parameter_count` gives the parameter count of a
configuration from the formula, without building the weights.
"""

from __future__ import annotations

from keras_models.registry import register_model
from keras_models.training import compile_model
from keras_models.transformers.gpt_backbone import GPTBackbone, check_gpt_config
from keras_models.transformers.gpt_causal_lm import FAMILY, GPTCausalLM, causal_lm_loss
from keras_models.transformers.presets import resolve_config

# GPT-2's four sizes (Radford et al., 2019): 50,257 byte-level BPE tokens, 1,024 positions, dropout 0.1.
_GPT2 = {"vocabulary_size": 50257, "max_sequence_length": 1024, "dropout": 0.1}
CONFIGS = {
    "gpt2_small": {**_GPT2, "num_layers": 12, "num_heads": 12, "hidden_dim": 768, "intermediate_dim": 3072},
    "gpt2_medium": {**_GPT2, "num_layers": 24, "num_heads": 16, "hidden_dim": 1024, "intermediate_dim": 4096},
    "gpt2_large": {**_GPT2, "num_layers": 36, "num_heads": 20, "hidden_dim": 1280, "intermediate_dim": 5120},
    "gpt2_xl": {**_GPT2, "num_layers": 48, "num_heads": 25, "hidden_dim": 1600, "intermediate_dim": 6400},
}

# The configuration without a preset: small enough to train on a CPU in seconds.
DEFAULT_CONFIG = {"vocabulary_size": 1000, "num_layers": 2, "num_heads": 4, "hidden_dim": 128,
                  "intermediate_dim": 512, "max_sequence_length": 256, "dropout": 0.0}


def gpt_config(preset=None, **overrides):
    """The configuration of `preset` (`DEFAULT_CONFIG` for `None`) with the arguments in `overrides`
    that are not `None` replacing its values."""
    config = resolve_config("GPT", preset, CONFIGS, DEFAULT_CONFIG, overrides)
    check_gpt_config(**config)
    return config


def gpt_parameter_count(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim, max_sequence_length,
                        dropout=0.0):
    """The number of weights of a GPT with tied embeddings, from the formula.

    Token and position tables, then per block two layer normalizations (scale and offset), four
    attention projections with biases (query, key, value, output) and two feed-forward projections with
    biases, then the final layer normalization. `gpt_parameter_count(**CONFIGS["gpt2_small"])` is
    GPT-2's 124,439,808.
    """
    d, f = hidden_dim, intermediate_dim
    block = 2 * (2 * d) + 4 * (d * d + d) + (d * f + f) + (f * d + d)
    return (vocabulary_size + max_sequence_length) * d + num_layers * block + 2 * d


_ARGUMENTS_DOC = """
    Configuration names follow keras-hub's; each `None` takes the preset's value, or without a preset
    the small default (`DEFAULT_CONFIG`: vocabulary 1,000, 2 layers, 4 heads, width 128, feed-forward
    512, 256 positions, no dropout).

    Args:
        vocabulary_size: the number of token ids.
        num_layers: transformer blocks.
        num_heads: attention heads; `hidden_dim` must be divisible by it.
        hidden_dim: the width of the hidden states.
        intermediate_dim: the width inside each feed-forward network.
        max_sequence_length: the number of positions.
        dropout: dropout rate on embeddings, attention weights and residual branches.
        preset: `None` or a key of `CONFIGS` (`"gpt2_small"`: GPT-2's 124M; `"gpt2_medium"`,
            `"gpt2_large"`, `"gpt2_xl"`). No weights are downloaded: a preset is a size.
        name: the model name and the prefix of every layer name.
        compile: `False` returns the model uncompiled.
        jit_compile: `None` for the family's default on this backend and device; `True`/`False` force it.
"""


@register_model("gpt", family=FAMILY,
                description="GPT decoder backbone (GPT-2 sizes as presets): token ids to hidden states")
def gpt(vocabulary_size=None, num_layers=None, num_heads=None, hidden_dim=None, intermediate_dim=None,
        max_sequence_length=None, dropout=None, preset=None, name="gpt", compile=True, jit_compile=None):
    config = gpt_config(preset, vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=num_heads,
                        hidden_dim=hidden_dim, intermediate_dim=intermediate_dim,
                        max_sequence_length=max_sequence_length, dropout=dropout)
    model = GPTBackbone(**config, name=name)
    if compile:
        compile_model(model, jit_compile=jit_compile, family=FAMILY)
    return model


gpt.__doc__ = """A `GPTBackbone`: token ids `(batch, steps)` to hidden states `(batch, steps, hidden_dim)`,
    compiled without a loss (a feature extractor; `gpt_causal_lm` is the trainable task).
""" + _ARGUMENTS_DOC


@register_model("gpt_causal_lm", family=FAMILY,
                description="GPT causal language model: next-token logits (tied embeddings), KV-cache generate()")
def gpt_causal_lm(vocabulary_size=None, num_layers=None, num_heads=None, hidden_dim=None, intermediate_dim=None,
                  max_sequence_length=None, dropout=None, preset=None, stop_token_ids=(), name="gpt_causal_lm",
                  compile=True, jit_compile=None):
    config = gpt_config(preset, vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=num_heads,
                        hidden_dim=hidden_dim, intermediate_dim=intermediate_dim,
                        max_sequence_length=max_sequence_length, dropout=dropout)
    model = GPTCausalLM(GPTBackbone(**config, name=name + "_backbone"), stop_token_ids=stop_token_ids, name=name)
    if compile:
        compile_model(model, loss=causal_lm_loss(), jit_compile=jit_compile, family=FAMILY)
    return model


gpt_causal_lm.__doc__ = """A `GPTCausalLM`: token ids `(batch, steps)` to next-token logits `(batch, steps,
    vocabulary_size)`, compiled (Adam, `causal_lm_loss()`) for `fit(x, y)` on `next_token_pairs(...)`,
    with `generate`. `stop_token_ids` end generated rows by default.
""" + _ARGUMENTS_DOC
