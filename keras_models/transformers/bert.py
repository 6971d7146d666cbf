"""The `bert`, `bert_classifier` and `bert_masked_lm` builders, and BERT's sizes as presets.

Presets are data: `CONFIGS` maps a preset name to a BERT configuration, read by one private function
(`bert_config`), so a new size is one entry. `bert_parameter_count` gives the parameter count of a
backbone from the formula, without building the weights.
"""

from __future__ import annotations

from keras_models import optimizers
from keras_models.heads import head_loss
from keras_models.registry import register_model
from keras_models.training import compile_model
from keras_models.transformers.bert_backbone import BertBackbone, check_bert_config
from keras_models.transformers.bert_classifier import BertClassifier
from keras_models.transformers.bert_masked_lm import BertMaskedLM, masked_lm_loss
from keras_models.transformers.presets import resolve_config

FAMILY = "transformer"

# BERT's sizes (Devlin et al., 2019): the uncased English WordPiece vocabulary of 30,522 tokens, 512
# positions, 2 segments, dropout 0.1, feed-forward 4x the width.
_BERT = {"vocabulary_size": 30522, "max_sequence_length": 512, "num_segments": 2, "dropout": 0.1}
CONFIGS = {
    "bert_tiny": {**_BERT, "num_layers": 2, "num_heads": 2, "hidden_dim": 128, "intermediate_dim": 512},
    "bert_small": {**_BERT, "num_layers": 4, "num_heads": 8, "hidden_dim": 512, "intermediate_dim": 2048},
    "bert_base": {**_BERT, "num_layers": 12, "num_heads": 12, "hidden_dim": 768, "intermediate_dim": 3072},
    "bert_large": {**_BERT, "num_layers": 24, "num_heads": 16, "hidden_dim": 1024, "intermediate_dim": 4096},
}

# The configuration without a preset: small enough to train on a CPU in seconds.
DEFAULT_CONFIG = {"vocabulary_size": 1000, "num_layers": 2, "num_heads": 4, "hidden_dim": 128,
                  "intermediate_dim": 512, "max_sequence_length": 128, "num_segments": 2, "dropout": 0.0}


def bert_config(preset=None, **overrides):
    """The configuration of `preset` (`DEFAULT_CONFIG` for `None`) with the arguments in `overrides`
    that are not `None` replacing its values."""
    config = resolve_config("BERT", preset, CONFIGS, DEFAULT_CONFIG, overrides)
    check_bert_config(**config)
    return config


def bert_parameter_count(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim, max_sequence_length,
                         num_segments, dropout=0.0):
    """The number of weights of a `BertBackbone`, from the formula.

    Token, position and segment tables and the embeddings' layer normalization; per block four
    attention projections with biases (query, key, value, output), two feed-forward projections with
    biases and two layer normalizations (scale and offset); the pooler's dense layer. The masked-LM
    and classifier heads are not counted (BERT's own count is the encoder's):
    `bert_parameter_count(**CONFIGS["bert_base"])` is 109,482,240, BERT-base's "110M" (0.5% below; the
    count of the released uncased checkpoint's encoder).
    """
    d, f = hidden_dim, intermediate_dim
    embeddings = (vocabulary_size + max_sequence_length + num_segments) * d + 2 * d
    block = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 2 * (2 * d)
    return embeddings + num_layers * block + (d * d + d)


_ARGUMENTS_DOC = """
    Configuration names follow keras-hub's; each `None` takes the preset's value, or without a preset
    the small default (`DEFAULT_CONFIG`: vocabulary 1,000, 2 layers, 4 heads, width 128, feed-forward
    512, 128 positions, 2 segments, no dropout).

    Args:
        vocabulary_size: the number of token ids (a `WordPieceTokenizer`'s `vocabulary_size`).
        num_layers: transformer blocks.
        num_heads: attention heads; `hidden_dim` must be divisible by it.
        hidden_dim: the width of the hidden states.
        intermediate_dim: the width inside each feed-forward network.
        dropout: dropout rate on embeddings, attention weights and residual branches.
        max_sequence_length: the number of positions.
        num_segments: the number of segment ids.
        preset: `None` or a key of `CONFIGS` (`"bert_base"`: BERT-base's 110M; `"bert_tiny"`,
            `"bert_small"`, `"bert_large"`). No weights are downloaded: a preset is a size.
        name: the model name and the prefix of every layer name.
        compile: `False` returns the model uncompiled.
        jit_compile: `None` for the family's default on this backend and device; `True`/`False` force it.
"""


def _backbone(name, preset, **overrides):
    return BertBackbone(**bert_config(preset, **overrides), name=name)


@register_model("bert", family=FAMILY,
                description="BERT encoder backbone (BERT-base as a preset): token and segment ids to vectors")
def bert(vocabulary_size=None, num_layers=None, num_heads=None, hidden_dim=None, intermediate_dim=None, dropout=None,
         max_sequence_length=None, num_segments=None, preset=None, name="bert", compile=True, jit_compile=None):
    model = _backbone(name, preset, vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=num_heads,
                      hidden_dim=hidden_dim, intermediate_dim=intermediate_dim, dropout=dropout,
                      max_sequence_length=max_sequence_length, num_segments=num_segments)
    if compile:
        compile_model(model, jit_compile=jit_compile, family=FAMILY)
    return model


bert.__doc__ = """A `BertBackbone`: `[token_ids, segment_ids, padding_mask]` to `{"sequence_output": (batch,
    steps, hidden_dim), "pooled_output": (batch, hidden_dim)}`, compiled without a loss (a feature
    extractor; `bert_classifier` and `bert_masked_lm` are the trainable tasks).
""" + _ARGUMENTS_DOC


@register_model("bert_classifier", family=FAMILY,
                description="BERT text classifier: the pooled [CLS] vector to class probabilities")
def bert_classifier(num_classes=2, head="softmax", vocabulary_size=None, num_layers=None, num_heads=None,
                    hidden_dim=None, intermediate_dim=None, dropout=None, max_sequence_length=None, num_segments=None,
                    preset=None, backbone=None, learning_rate=1e-3, name="bert_classifier", compile=True,
                    jit_compile=None):
    given = {"vocabulary_size": vocabulary_size, "num_layers": num_layers, "num_heads": num_heads,
             "hidden_dim": hidden_dim, "intermediate_dim": intermediate_dim, "dropout": dropout,
             "max_sequence_length": max_sequence_length, "num_segments": num_segments, "preset": preset}
    if backbone is not None and any(value is not None for value in given.values()):
        raise ValueError(f"A given backbone carries its configuration; leave these None: "
                         f"{sorted(key for key, value in given.items() if value is not None)}.")
    if backbone is None:
        backbone = _backbone(name + "_backbone", preset, vocabulary_size=vocabulary_size, num_layers=num_layers,
                             num_heads=num_heads, hidden_dim=hidden_dim, intermediate_dim=intermediate_dim,
                             dropout=dropout, max_sequence_length=max_sequence_length, num_segments=num_segments)
    model = BertClassifier(backbone, num_classes=num_classes, head=head, name=name)
    if compile:
        loss, metrics = head_loss(head, num_classes)
        compile_model(model, optimizer=optimizers.Adam(learning_rate), loss=loss, metrics=metrics,
                      jit_compile=jit_compile, family=FAMILY)
    return model


bert_classifier.__doc__ = """A `BertClassifier`: `[token_ids, segment_ids, padding_mask]` to `(batch,
    num_classes)` through the pooled `[CLS]` vector, compiled (Adam, the head's loss and metrics) for
    `fit(x, labels)`.

    `num_classes` and `head` (`"softmax"`, `"sigmoid"`, `"linear"`) are the library's classifier
    arguments. `backbone` fine-tunes a given (pretrained) `BertBackbone`, such as a trained
    `bert_masked_lm`'s `.backbone`; the configuration arguments then must be `None`.
    `learning_rate` is Adam's (1e-3 suits a small model from scratch; fine-tuning a large pretrained
    one takes about 2e-5 to 5e-5).
""" + _ARGUMENTS_DOC


@register_model("bert_masked_lm", family=FAMILY,
                description="BERT masked language model: logits of masked tokens (tied embeddings)")
def bert_masked_lm(vocabulary_size=None, num_layers=None, num_heads=None, hidden_dim=None, intermediate_dim=None,
                   dropout=None, max_sequence_length=None, num_segments=None, preset=None, learning_rate=1e-3,
                   name="bert_masked_lm", compile=True, jit_compile=None):
    backbone = _backbone(name + "_backbone", preset, vocabulary_size=vocabulary_size, num_layers=num_layers,
                         num_heads=num_heads, hidden_dim=hidden_dim, intermediate_dim=intermediate_dim,
                         dropout=dropout, max_sequence_length=max_sequence_length, num_segments=num_segments)
    model = BertMaskedLM(backbone, name=name)
    if compile:
        compile_model(model, optimizer=optimizers.Adam(learning_rate), loss=masked_lm_loss(),
                      weighted_metrics=["sparse_categorical_accuracy"], jit_compile=jit_compile, family=FAMILY)
    return model


bert_masked_lm.__doc__ = """A `BertMaskedLM`: `[token_ids, segment_ids, padding_mask, mask_positions]` to
    the logits of the masked tokens `(batch, predictions, vocabulary_size)`, compiled (Adam,
    `masked_lm_loss()`, accuracy over the slots in use) for `fit(x, y, sample_weight=...)` on
    `keras_models.text.mask_tokens(...)`.
""" + _ARGUMENTS_DOC
