"""Convolutional sentence classification (Kim, "Convolutional neural networks for sentence
classification", EMNLP 2014)."""

from __future__ import annotations

import keras

from keras_models.cnn._common import check_common, finish_model
from keras_models.registry import register_model


@register_model("text_cnn", family="cnn", description="Text CNN: Conv1D n-gram filters over embeddings (Kim, 2014)")
def text_cnn(
    input_shape=(100,),
    num_classes: int = 2,
    head: str = "softmax",
    include_top: bool = True,
    pooling: str | None = "max",
    name: str = "text_cnn",
    compile: bool = True,
    jit_compile: bool | None = None,
    *,
    vocab_size: int = 20000,
    embedding_dim: int = 128,
    ngram_sizes=(3, 4, 5),
    filters: int = 100,
    dropout: float = 0.5,
):
    """Token ids -> embeddings -> one ReLU Conv1D per n-gram width -> pooling over time -> concat -> head.

    Inputs are integer token ids `(batch, sequence_length)`, 0 allowed as padding; ids outside
    `[0, vocab_size)` are the caller's bug (the embedding lookup clips or fails depending on the runtime).

    Args:
        input_shape: `(sequence_length,)`, at least the widest n-gram.
        num_classes: output units.
        head: `"softmax"`, `"sigmoid"` (binary or multi-label) or `"linear"`.
        include_top: `False` returns the pooled n-gram features `(batch, len(ngram_sizes) * filters)`.
        pooling: the pooling over time of each n-gram map: `"max"` (the paper's) or `"avg"`; `None`
            means `"max"`, since the maps of different widths have different lengths.
        name: the model name and the prefix of every layer name.
        compile: compile with the head's loss and the library's XLA policy.
        jit_compile: override the XLA default.
        vocab_size: the number of token ids.
        embedding_dim: the embedding width (300 in the paper, with word2vec vectors).
        ngram_sizes: the convolution widths (3, 4, 5 in the paper).
        filters: feature maps per width (100 in the paper).
        dropout: dropout on the pooled features (0.5 in the paper).

    Returns:
        A `keras.Model`.
    """
    try:
        widths = [int(n) for n in ngram_sizes]
    except (TypeError, ValueError):
        raise ValueError(f"ngram_sizes must be a sequence of positive ints; got ngram_sizes={ngram_sizes!r}.")
    if not widths or any(n < 1 for n in widths) or len(set(widths)) != len(widths):
        raise ValueError(f"ngram_sizes must be distinct positive ints; got ngram_sizes={ngram_sizes!r}.")
    shape = check_common(input_shape, num_classes, head, include_top, pooling, name, rank=1,
                         min_size=max(widths))
    for arg, value in (("vocab_size", vocab_size), ("embedding_dim", embedding_dim), ("filters", filters)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{arg} must be a positive integer; got {arg}={value!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got dropout={dropout!r}.")
    pool = keras.layers.GlobalAveragePooling1D if pooling == "avg" else keras.layers.GlobalMaxPooling1D

    inputs = keras.Input(shape=shape, dtype="int32", name=name + "_input")
    embedded = keras.layers.Embedding(vocab_size, embedding_dim, name=name + "_embedding")(inputs)  # (b, t, e)
    pooled = []
    for width in widths:
        x = keras.layers.Conv1D(filters, width, activation="relu", name=f"{name}_conv{width}")(embedded)
        pooled.append(pool(name=f"{name}_pool{width}")(x))  # (b, filters)
    features = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name=name + "_concat")(pooled)

    def top(features):
        if dropout:
            return keras.layers.Dropout(dropout, name=name + "_dropout")(features)
        return features

    # The features are already pooled over time, so include_top=False returns them as they are.
    return finish_model(inputs, features, top=top, num_classes=num_classes, head=head,
                        include_top=include_top, pooling=None, name=name, compile=compile,
                        jit_compile=jit_compile)
