"""Transformer models: the GPT decoder (backbone and causal language model), on the shared layers of
`keras_models.layers` (`TransformerBlock`, `CachedMultiHeadAttention`, position embeddings).

- `gpt`: `GPTBackbone`, token ids to hidden states.
- `gpt_causal_lm`: `GPTCausalLM`, next-token logits with tied embeddings, trained by `fit(x, y)` on
  `next_token_pairs(sequences)`, generating through `keras_models.sampling.decode` with a fixed-size
  key/value cache.
- `bert`: `BertBackbone`, token ids, segment ids and a padding mask to a vector per token and a pooled
  `[CLS]` vector (bidirectional encoder); `bert_classifier`: `BertClassifier`; `bert_masked_lm`:
  `BertMaskedLM`, masked-token logits with tied embeddings (`keras_models.text.mask_tokens`).
  `keras_models.transformers.bert.CONFIGS` holds BERT's sizes (`preset="bert_base"` is BERT-base's 110M).

- `vit`: `ViTBackbone`, images to patch tokens and a class token (the Vision Transformer).
- `vit_classifier`: `ViTClassifier`, a classifier head on the class token, with the image builders'
  arguments (`input_shape`, `num_classes`, `head`, `include_top`, `pooling`) and a `patch_size`.

- `t5`: `T5Backbone`, source and decoder token ids to decoder hidden states (encoder-decoder, relative
  position bias); `t5_seq2seq_lm`: `T5Seq2SeqLM`, next-token logits trained with teacher forcing
  (`keras_models.recurrent.teacher_forcing_pairs`), `generate(source_ids, max_length, ...)` with cached
  self-attention and precomputed cross-attention keys and values.
  `keras_models.transformers.t5.CONFIGS` holds T5's sizes (`preset="t5_small"` is T5-small's 60M).

- `whisper`: `WhisperBackbone`, log-mel features and decoder token ids to decoder hidden states (a
  convolution stem and an encoder-decoder); `whisper_speech_to_text`: `WhisperSpeechToText`, 16 kHz
  waveforms to next-token logits with the log-mel spectrogram in the graph (`LogMelSpectrogram`),
  trained on `speech_to_text_pairs(waveforms, targets)`, `generate(waveforms, max_length, ...)`.
  `keras_models.transformers.whisper.CONFIGS` holds Whisper's sizes (`preset="whisper_tiny"`).

Sizes are data: `CONFIGS` holds GPT-2's four sizes (`preset="gpt2_small"` is GPT-2's 124M);
`CONFIGS` of `keras_models/transformers/vit.py` the paper's ViT sizes (`preset="vit_b16"` is ViT-B/16's 86M).
"""

from keras_models.recurrent.language_model import next_token_pairs
from keras_models.transformers.bert import bert, bert_classifier, bert_config, bert_masked_lm, bert_parameter_count
from keras_models.transformers.bert_backbone import BertBackbone
from keras_models.transformers.bert_classifier import BertClassifier
from keras_models.transformers.bert_masked_lm import BertMaskedLM, masked_lm_loss
from keras_models.transformers.gpt import CONFIGS, DEFAULT_CONFIG, gpt, gpt_causal_lm, gpt_config, gpt_parameter_count
from keras_models.transformers.gpt_backbone import GPTBackbone
from keras_models.transformers.gpt_causal_lm import GPTCausalLM, causal_lm_loss, check_token_ids
from keras_models.transformers.t5 import t5, t5_config, t5_parameter_count, t5_seq2seq_lm
from keras_models.transformers.t5_backbone import T5Backbone
from keras_models.transformers.t5_seq2seq_lm import T5Seq2SeqLM
from keras_models.transformers.vit import vit, vit_classifier, vit_config, vit_parameter_count
from keras_models.transformers.vit_backbone import ViTBackbone
from keras_models.transformers.vit_classifier import ViTClassifier
from keras_models.transformers.whisper import (
    whisper,
    whisper_config,
    whisper_parameter_count,
    whisper_speech_to_text,
)
from keras_models.transformers.whisper_backbone import WhisperBackbone
from keras_models.transformers.whisper_speech_to_text import WhisperSpeechToText, pad_waveforms, speech_to_text_pairs

__all__ = [
    "BertBackbone",
    "BertClassifier",
    "BertMaskedLM",
    "bert",
    "bert_classifier",
    "bert_config",
    "bert_masked_lm",
    "bert_parameter_count",
    "masked_lm_loss",
    "CONFIGS",
    "DEFAULT_CONFIG",
    "GPTBackbone",
    "GPTCausalLM",
    "ViTBackbone",
    "ViTClassifier",
    "causal_lm_loss",
    "check_token_ids",
    "gpt",
    "gpt_causal_lm",
    "gpt_config",
    "gpt_parameter_count",
    "next_token_pairs",
    "T5Backbone",
    "T5Seq2SeqLM",
    "t5",
    "t5_config",
    "t5_parameter_count",
    "t5_seq2seq_lm",
    "vit",
    "vit_classifier",
    "vit_config",
    "vit_parameter_count",
    "WhisperBackbone",
    "WhisperSpeechToText",
    "pad_waveforms",
    "speech_to_text_pairs",
    "whisper",
    "whisper_config",
    "whisper_parameter_count",
    "whisper_speech_to_text",
]
