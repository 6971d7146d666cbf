"""Recurrent classifiers and taggers: a sequence to one prediction (many-to-one) or to one per step
(many-to-many, aligned).

Both read token ids through an embedding (id 0 is padding) or float features (masked where every
feature equals `mask_value`), run a stack of SimpleRNN, LSTM or GRU layers (Elman 1990; Hochreiter and
Schmidhuber 1997; Cho et al. 2014), optionally bidirectional (Schuster and Paliwal 1997), and end in
the library's classifier head. Padded steps change nothing: a padded sequence gives the outputs of the
unpadded one.
"""

from __future__ import annotations

from keras_models.checks import CheckedModel
from keras_models.heads import check_head, check_num_classes, classifier_head, head_loss
from keras_models.recurrent._common import (
    check_name,
    check_recurrent,
    check_sequence_shape,
    recurrent_stack,
    sequence_input,
)
from keras_models.registry import register_model
from keras_models.training import compile_model

_DOC = """{summary}

    Inputs are token ids `(batch, steps)` when `vocab_size` is given (embedded, id 0 is padding and
    masked), else float features `(batch, steps, features)` (masked where every feature of a step
    equals `mask_value`). Masked steps leave every recurrent state unchanged, so a padded sequence
    gives {padded}.

    Args:
        input_shape: `(steps,)` for token ids, `(steps, features)` for features; `steps` may be `None`
            (any length: ONNX export keeps it dynamic, TFLite export needs a fixed one, see
            `export.to_tflite`). `None` means
            `(None,)` for token ids and `(None, 1)` for features.
        num_classes: output units (1 for a binary sigmoid or a single regression target).
        head: `"softmax"`, `"sigmoid"` or `"linear"` (a value).
        cell: `"simple"` (SimpleRNN), `"lstm"` or `"gru"`.
        units: the width of every recurrent layer (of each direction when bidirectional).
        num_layers: stacked recurrent layers.
        dropout: dropout rate on the inputs of every recurrent layer.
        recurrent_dropout: dropout rate on the recurrent state of every layer.
        bidirectional: read each sequence both ways (outputs of the two directions concatenated).
        vocab_size: the number of token ids; `None` for float features.
        embedding_dim: the width of the token embedding.
        mask_value: for features, the value that marks a padded step; `None` masks nothing.
        name: the model name and the prefix of every layer name.
        compile: compile with the head's loss and the library's XLA policy (family "recurrent").
        jit_compile: override the XLA default (see `keras_models.compile_model`).

    Returns:
        A `CheckedModel` (a functional `keras.Model` whose `fit` checks its arrays) with output
        {output}.
"""


def _sequence_model(*, input_shape, num_classes, head, cell, units, num_layers, dropout, recurrent_dropout,
                    bidirectional, vocab_size, embedding_dim, mask_value, name, compile, jit_compile,
                    return_sequences):
    check_name(name)
    check_recurrent(cell, units, num_layers, dropout, recurrent_dropout, bidirectional)
    check_head(head)
    check_num_classes(num_classes, head)
    shape = check_sequence_shape(input_shape, vocab_size, embedding_dim, mask_value)
    inputs, x = sequence_input(shape, vocab_size, embedding_dim, mask_value, name)
    x = recurrent_stack(x, cell=cell, units=units, num_layers=num_layers, dropout=dropout,
                        recurrent_dropout=recurrent_dropout, bidirectional=bidirectional,
                        return_sequences=return_sequences, name=name)
    outputs = classifier_head(x, num_classes, head, name)  # a Dense: per step on (batch, steps, width)
    model = CheckedModel(inputs, outputs, name=name)
    if compile:
        loss, metrics = head_loss(head, num_classes)
        compile_model(model, loss=loss, metrics=metrics, jit_compile=jit_compile, family="recurrent")
    return model


def _builder(kind, return_sequences):
    """The public builder `kind`: the shared sequence model, returning one prediction per sequence or,
    with `return_sequences`, one per step."""

    def builder(
        input_shape=None,
        num_classes: int = 2,
        head: str = "softmax",
        cell: str = "lstm",
        units: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        bidirectional: bool = False,
        name: str = kind,
        compile: bool = True,
        jit_compile: bool | None = None,
        *,
        vocab_size: int | None = None,
        embedding_dim: int = 32,
        mask_value: float | None = None,
    ):
        return _sequence_model(
            input_shape=input_shape, num_classes=num_classes, head=head, cell=cell, units=units,
            num_layers=num_layers, dropout=dropout, recurrent_dropout=recurrent_dropout,
            bidirectional=bidirectional, vocab_size=vocab_size, embedding_dim=embedding_dim,
            mask_value=mask_value, name=name, compile=compile, jit_compile=jit_compile,
            return_sequences=return_sequences,
        )

    builder.__name__ = builder.__qualname__ = kind
    return builder


rnn_classifier = _builder("rnn_classifier", return_sequences=False)
rnn_tagger = _builder("rnn_tagger", return_sequences=True)


rnn_classifier.__doc__ = _DOC.format(
    summary="A recurrent network reading a sequence to one class or value (many-to-one).",
    padded="the prediction of the unpadded one (the last layer returns its state after the last "
    "unmasked step)",
    output="`(batch, num_classes)`",
)
rnn_tagger.__doc__ = _DOC.format(
    summary="A recurrent network giving a class or value for every step of a sequence (many-to-many).",
    padded="at every unpadded step the prediction of the unpadded one (predictions at padded steps "
    "are not used: the mask reaches the loss, which skips them)",
    output="`(batch, steps, num_classes)`",
)

rnn_classifier = register_model(
    "rnn_classifier", family="recurrent",
    description="Recurrent sequence classifier or regressor (many-to-one): SimpleRNN, LSTM or GRU")(rnn_classifier)
rnn_tagger = register_model(
    "rnn_tagger", family="recurrent", description="Recurrent sequence tagger (many-to-many, a label for every step)"
)(rnn_tagger)
