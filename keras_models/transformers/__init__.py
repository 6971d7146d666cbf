"""Transformer models: the GPT decoder (backbone and causal language model), on the shared layers of
`keras_models.layers` (`TransformerBlock`, `CachedMultiHeadAttention`, position embeddings).

- `gpt`: `GPTBackbone`, token ids to hidden states.
- `gpt_causal_lm`: `GPTCausalLM`, next-token logits with tied embeddings, trained by `fit(x, y)` on
  `next_token_pairs(sequences)`, generating through `keras_models.sampling.decode` with a fixed-size
  key/value cache.

Sizes are data: `CONFIGS` holds GPT-2's four sizes (`preset="gpt2_small"` is GPT-2's 124M).
"""

from keras_models.recurrent.language_model import next_token_pairs
from keras_models.transformers.gpt import CONFIGS, DEFAULT_CONFIG, gpt, gpt_causal_lm, gpt_config, gpt_parameter_count
from keras_models.transformers.gpt_backbone import GPTBackbone
from keras_models.transformers.gpt_causal_lm import GPTCausalLM, causal_lm_loss, check_token_ids

__all__ = [
    "CONFIGS",
    "DEFAULT_CONFIG",
    "GPTBackbone",
    "GPTCausalLM",
    "causal_lm_loss",
    "check_token_ids",
    "gpt",
    "gpt_causal_lm",
    "gpt_config",
    "gpt_parameter_count",
    "next_token_pairs",
]
