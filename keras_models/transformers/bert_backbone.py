"""`BertBackbone`: BERT's bidirectional encoder, token and segment ids to contextual vectors, and the
input checks its tasks share."""

from __future__ import annotations

import keras
import numpy as np

from keras_models import checks
from keras_models.checks import check_positive_float, check_positive_int, check_rate
from keras_models.layers.position_embedding import PositionEmbedding
from keras_models.layers.reversible_embedding import ReversibleEmbedding
from keras_models.layers.transformer_block import TransformerBlock
from keras_models.transformers.presets import ConfigFromAttributes

INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")


def check_bert_config(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim, max_sequence_length,
                      num_segments, dropout, layer_norm_epsilon=1e-12):
    """Raises a `ValueError` naming the first bad argument of a BERT configuration."""
    for value, what in ((vocabulary_size, "vocabulary_size"), (num_layers, "num_layers"), (num_heads, "num_heads"),
                        (hidden_dim, "hidden_dim"), (intermediate_dim, "intermediate_dim"),
                        (max_sequence_length, "max_sequence_length"), (num_segments, "num_segments")):
        check_positive_int(value, what)
    if hidden_dim % num_heads:
        raise ValueError(
            f"hidden_dim must be divisible by num_heads (every head is hidden_dim / num_heads wide); got "
            f"hidden_dim={hidden_dim}, num_heads={num_heads}."
        )
    check_rate(dropout, "dropout")
    check_positive_float(layer_norm_epsilon, "layer_norm_epsilon")


def _check_padding_mask(mask, shape, what):
    array = np.asarray(mask)
    if array.shape != shape:
        raise ValueError(f"{what} must have the shape of the token ids {shape}; got {array.shape}.")
    if array.dtype != np.bool_ and not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{what} must hold 1 at tokens and 0 at padding; got dtype {array.dtype}.")
    if array.size and not np.isin(array, (0, 1)).all():
        bad = array[~np.isin(array, (0, 1))].flat[0].item()
        raise ValueError(f"{what} must hold 1 at tokens and 0 at padding; got the value {bad!r}.")
    return array.astype(np.int32)


def check_bert_inputs(x, backbone, what="x", extra=()):
    """BERT's inputs as a list of int32 numpy arrays `[token_ids, segment_ids, padding_mask, *extra]`,
    checked against `backbone`, or `None` when `x` is no array input (a dataset: Keras' own checks).

    `x` is the list (or tuple) in that order, a dict by those names, or token ids alone, `(batch,
    steps)`: segment 0 everywhere and the padding mask `token_ids != 0`. Ids must lie in the vocabulary,
    segment ids in `[0, num_segments)`, the mask be 0 or 1, every array `(batch, steps)` with at most
    `max_sequence_length` steps. `extra` names further inputs (a masked LM's `mask_positions`) that
    are checked by the caller.
    """
    names = (*INPUT_NAMES, *extra)
    if isinstance(x, dict):
        missing = [name for name in names if name not in x]
        unknown = sorted(set(x) - set(names))
        if missing or unknown:
            raise ValueError(f"{what} as a dict must have exactly the keys {list(names)}; missing {missing}, "
                             f"unknown {unknown}.")
        x = [x[name] for name in names]
    elif checks.as_array(x) is not None and extra:
        raise ValueError(f"{what} must be the {len(names)} arrays {list(names)}; got one array of shape "
                         f"{checks.as_array(x).shape}.")
    elif checks.as_array(x) is not None:
        token_ids = checks.check_token_ids(x, backbone.vocabulary_size, what, size_name="vocabulary_size",
                                           max_steps=backbone.max_sequence_length)
        return [token_ids, np.zeros_like(token_ids), (token_ids != 0).astype(np.int32)]
    if not isinstance(x, (list, tuple)):
        return None
    if len(x) != len(names):
        raise ValueError(f"{what} must be the {len(names)} arrays {list(names)}; got {len(x)} inputs.")
    if any(checks.as_array(part) is None and not isinstance(part, (list, tuple)) for part in x):
        return None  # symbolic or dataset inputs: Keras' own checks
    token_ids = checks.check_token_ids(x[0], backbone.vocabulary_size, f"{what} {names[0]}",
                                       size_name="vocabulary_size", max_steps=backbone.max_sequence_length)
    segment_ids = np.asarray(x[1])
    if segment_ids.shape != token_ids.shape:
        raise ValueError(f"{what} {names[1]} must have the shape of the token ids {token_ids.shape}; got "
                         f"{segment_ids.shape}.")
    segment_ids = checks.check_token_ids(segment_ids, backbone.num_segments, f"{what} {names[1]}",
                                         size_name="num_segments")
    padding_mask = _check_padding_mask(x[2], token_ids.shape, f"{what} {names[2]}")
    return [token_ids, segment_ids, padding_mask, *x[3:]]


class BertInputs:
    """Checks BERT's inputs (`check_bert_inputs`) before `fit`, `evaluate` and `predict` of a model class
    that takes it first among its bases; token ids alone, or a dict by input name, are accepted there."""

    extra_inputs: tuple[str, ...] = ()

    def checked_inputs(self, x, what="x"):
        # A method, not a property: Keras' saving walks properties, and the backbone's own would be itself.
        checked = check_bert_inputs(x, getattr(self, "backbone", self), what, self.extra_inputs)
        return x if checked is None else checked

    def fit(self, x=None, y=None, *args, **kwargs):
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and len(validation) >= 2:
            kwargs["validation_data"] = (self.checked_inputs(validation[0], "validation_data x"), *validation[1:])
        return super().fit(self.checked_inputs(x), y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        return super().evaluate(self.checked_inputs(x), y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        return super().predict(self.checked_inputs(x), *args, **kwargs)


@keras.saving.register_keras_serializable(package="keras_models")
class BertBackbone(ConfigFromAttributes, BertInputs, keras.Model):
    """BERT's encoder (Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional Transformers for
    Language Understanding"), a functional `keras.Model`.

    Inputs, in this order (int32, `(batch, steps)` each): `token_ids`; `segment_ids`, 0 for the first
    text of a pair and 1 for the second; `padding_mask`, 1 at tokens and 0 at padding. Outputs, a dict:
    `"sequence_output"` `(batch, steps, hidden_dim)`, a vector per token, and `"pooled_output"`
    `(batch, hidden_dim)`, the first token's (`[CLS]`) vector through a dense tanh layer.

    The sum of token, learned position and segment embeddings is normalized, then `num_layers` post-norm
    bidirectional `TransformerBlock`s (GELU feed-forward) read it. No query attends to a padded step,
    so the vectors of the tokens do not depend on the padding after them. Weights start from a
    normal distribution truncated at two standard deviations of 0.02, as BERT's; layer normalization
    epsilon 1e-12. The token table is a `ReversibleEmbedding`, so a masked language model reads its
    logits through it (tied embeddings, `BertMaskedLM`).

    Args:
        vocabulary_size: the number of token ids.
        num_layers: transformer blocks.
        num_heads: attention heads; `hidden_dim` must be divisible by it.
        hidden_dim: the width of the hidden states.
        intermediate_dim: the width inside each feed-forward network (4 * hidden_dim in BERT).
        max_sequence_length: the number of positions.
        num_segments: the number of segment ids (2 in BERT: a text and the text paired with it).
        dropout: dropout rate on the embeddings, the attention weights and every residual branch.
        layer_norm_epsilon: of every layer normalization.
        name: the model name and the prefix of every layer name.
    """

    config_names = ("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                    "max_sequence_length", "num_segments", "dropout", "layer_norm_epsilon")

    def __init__(self, vocabulary_size=1000, num_layers=2, num_heads=4, hidden_dim=128, intermediate_dim=512,
                 max_sequence_length=128, num_segments=2, dropout=0.0, layer_norm_epsilon=1e-12, name="bert",
                 **kwargs):
        check_bert_config(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim, max_sequence_length,
                          num_segments, dropout, layer_norm_epsilon)
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string; got name={name!r}.")
        initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        token_embedding = ReversibleEmbedding(vocabulary_size, hidden_dim, embeddings_initializer=initializer,
                                              name=name + "_token_embedding")
        position_embedding = PositionEmbedding(max_sequence_length, initializer=initializer,
                                               name=name + "_position_embedding")
        segment_embedding = keras.layers.Embedding(num_segments, hidden_dim, embeddings_initializer=initializer,
                                                   name=name + "_segment_embedding")
        blocks = [
            TransformerBlock(num_heads, intermediate_dim, activation="gelu", dropout=dropout,
                             normalization="layer_norm", norm_first=False, epsilon=layer_norm_epsilon, causal=False,
                             kernel_initializer=initializer, name=f"{name}_block{index + 1}")
            for index in range(num_layers)
        ]

        token_ids = keras.Input((None,), dtype="int32", name=name + "_token_ids")
        segment_ids = keras.Input((None,), dtype="int32", name=name + "_segment_ids")
        padding_mask = keras.Input((None,), dtype="int32", name=name + "_padding_mask")
        tokens = token_embedding(token_ids)  # (batch, steps, hidden_dim)
        x = keras.layers.Add(name=name + "_embeddings")(
            [tokens, position_embedding(tokens), segment_embedding(segment_ids)])
        x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name=name + "_embeddings_norm")(x)
        x = keras.layers.Dropout(dropout, name=name + "_embeddings_dropout")(x)
        for block in blocks:
            x = block(x, padding_mask=padding_mask)  # (batch, steps, hidden_dim)
        pooled = keras.layers.Dense(hidden_dim, activation="tanh", kernel_initializer=initializer,
                                    name=name + "_pooled_dense")(x[:, 0, :])  # (batch, hidden_dim)
        super().__init__(inputs=[token_ids, segment_ids, padding_mask],
                         outputs={"sequence_output": x, "pooled_output": pooled}, name=name, **kwargs)

        self.vocabulary_size = int(vocabulary_size)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.hidden_dim = int(hidden_dim)
        self.intermediate_dim = int(intermediate_dim)
        self.max_sequence_length = int(max_sequence_length)
        self.num_segments = int(num_segments)
        self.dropout = float(dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.token_embedding = token_embedding
        self.position_embedding = position_embedding
        self.segment_embedding = segment_embedding
        self.transformer_layers = blocks
