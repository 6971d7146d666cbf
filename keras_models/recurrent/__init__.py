"""Recurrent networks: sequence classifiers (many-to-one), taggers (many-to-many), language models
(one-to-many) and encoder-decoders with attention (many-to-many, unaligned), built from SimpleRNN,
LSTM or GRU layers, and `Forecaster`, a time-series forecaster with statsmodels' `forecast(steps)`
contract.

    >>> import keras_models
    >>> model = keras_models.build("rnn_classifier", vocab_size=20000, num_classes=2, cell="gru")
    >>> lm = keras_models.build("rnn_language_model", vocab_size=5000, units=256)
    >>> lm.fit(*next_token_pairs(sequences))
    >>> lm.generate(prompts, max_length=40, sampler="top_p", top_p=0.9, seed=0)

Every builder shares `cell, units, num_layers, dropout, recurrent_dropout, name, compile, jit_compile`
and masks padded steps. One-to-one (a vector to a prediction) is a feedforward network: `mlp`.
"""

from __future__ import annotations

from keras_models.recurrent.language_model import (
    RNNLanguageModel,
    language_model_loss,
    next_token_pairs,
    rnn_language_model,
)
from keras_models.recurrent.forecaster import Forecaster
from keras_models.recurrent.models import rnn_classifier, rnn_tagger
from keras_models.recurrent.seq2seq import RNNSeq2Seq, rnn_seq2seq, teacher_forcing_pairs

__all__ = [
    "Forecaster",
    "RNNLanguageModel",
    "RNNSeq2Seq",
    "language_model_loss",
    "next_token_pairs",
    "rnn_classifier",
    "rnn_language_model",
    "rnn_seq2seq",
    "rnn_tagger",
    "teacher_forcing_pairs",
]
