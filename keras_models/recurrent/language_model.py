"""A recurrent language model: next-token logits for training, `generate` for one-to-many generation.

The network is an embedding (id 0 is padding), a stack of SimpleRNN, LSTM or GRU layers and a Dense
layer giving the logits of the next token at every step (Mikolov et al. 2010; Sutskever et al. 2011).
It may be conditioned on a vector, as an image caption is on the image's features (Vinyals et al.
2015, "Show and Tell"): a Dense layer per state maps the condition to the initial states of every
recurrent layer.

Generation runs the same layers one step at a time (`decode_step`), carrying each layer's states, so
the prefix is never re-read; `keras_models.sampling.decode` chooses the tokens.
"""

from __future__ import annotations


import keras
import numpy as np

from keras_models.checks import CheckedModel, as_array
from keras_models.recurrent._common import (
    CELLS,
    check_name,
    check_positive_int,
    check_recurrent,
    check_token_ids,
    layer_name,
    recurrent_stack,
)
from keras_models.registry import register_model
from keras_models.sampling import check_sampling, decode, no_gradients
from keras_models.text import PreprocessorMixin
from keras_models.training import compile_model

PADDING_ID = 0


def next_token_pairs(token_ids):
    """`(inputs, targets)` for training on next-token prediction: `token_ids[:, :-1]` and
    `token_ids[:, 1:]`. Sequences padded at the end with 0 give targets 0 there, which the loss skips."""
    array = np.asarray(token_ids)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ValueError(f"token_ids must be 2-D (batch, steps) with at least 2 steps; got shape {array.shape}.")
    return array[:, :-1], array[:, 1:]


def language_model_loss():
    """Cross-entropy of the next token from logits; target id 0 (padding) is left out."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PADDING_ID)


def _initial_state_name(name, cell, index, state):
    """The Dense layer mapping the condition to state `state` (`"h"` or `"c"`) of recurrent layer `index`."""
    return f"{layer_name(name, cell, index)}_initial_{state}"


@keras.saving.register_keras_serializable(package="keras_models")
class RNNLanguageModel(PreprocessorMixin, CheckedModel):
    """A recurrent language model (a functional `keras.Model`) with `generate`.

    Called on token ids `(batch, steps)` (and, with `condition_dim`, a condition `(batch,
    condition_dim)`), it returns the logits of the next token at every step, `(batch, steps,
    vocab_size)`. Train it with `fit(x, y)` on `next_token_pairs(sequences)`; padding (id 0) is masked
    in the inputs and left out of the loss. Logits at padded steps mean nothing (Keras' backends even
    differ there when the initial state is not zero) and no loss reads them.

    Args:
        vocab_size: the number of token ids, 0 included (the padding id; never generated).
        embedding_dim: the width of the token embedding.
        cell: `"simple"` (SimpleRNN), `"lstm"` or `"gru"`.
        units: the width of every recurrent layer.
        num_layers: stacked recurrent layers.
        dropout: dropout rate on the inputs of every recurrent layer.
        recurrent_dropout: dropout rate on the recurrent state of every layer.
        condition_dim: the width of a conditioning vector mapped (Dense, tanh) to every layer's initial
            states; `None` for an unconditioned model (initial states are zeros).
        sequence_length: a fixed number of steps, which a whole-sequence TFLite export needs (TFLite
            unrolls recurrent layers; ONNX writes its own recurrent operators over any length);
            `None` takes any length, and `generate` and the generation export work either way.
        name: the model name and the prefix of every layer name.
    """

    def __init__(self, vocab_size=10000, embedding_dim=64, cell="lstm", units=128, num_layers=1, dropout=0.0,
                 recurrent_dropout=0.0, condition_dim=None, sequence_length=None, name="rnn_language_model",
                 **kwargs):
        check_name(name)
        check_recurrent(cell, units, num_layers, dropout, recurrent_dropout)
        check_positive_int(vocab_size, "vocab_size")
        check_positive_int(embedding_dim, "embedding_dim")
        if condition_dim is not None:
            check_positive_int(condition_dim, "condition_dim")
        if sequence_length is not None:
            check_positive_int(sequence_length, "sequence_length")
        token_ids = keras.Input((sequence_length,), dtype="int32", name=name + "_token_ids")
        x = keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name=name + "_embedding")(token_ids)
        inputs, initial_states = token_ids, None
        if condition_dim is not None:
            condition = keras.Input((condition_dim,), name=name + "_condition")
            inputs = [token_ids, condition]
            # A cell's output h lies in (-1, 1); tanh starts every state (an LSTM's c too) in that range.
            initial_states = [
                [keras.layers.Dense(units, activation="tanh", name=_initial_state_name(name, cell, index, state))
                 for state in CELLS[cell].states]
                for index in range(num_layers)
            ]
            initial_states = [[dense(condition) for dense in layer] for layer in initial_states]
        x = recurrent_stack(x, cell=cell, units=units, num_layers=num_layers, dropout=dropout,
                            recurrent_dropout=recurrent_dropout, bidirectional=False, return_sequences=True,
                            name=name, initial_states=initial_states,
                            mask=keras.ops.not_equal(token_ids, PADDING_ID))  # (batch, steps)
        logits = keras.layers.Dense(vocab_size, name=name + "_logits")(x)  # (batch, steps, vocab)
        super().__init__(inputs=inputs, outputs=logits, name=name, **kwargs)
        self.vocab_size = int(vocab_size)
        self.embedding_dim = int(embedding_dim)
        self.cell = cell
        self.units = int(units)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.condition_dim = None if condition_dim is None else int(condition_dim)
        self.sequence_length = None if sequence_length is None else int(sequence_length)

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "vocab_size": self.vocab_size,
            "embedding_dim": self.embedding_dim,
            "cell": self.cell,
            "units": self.units,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "condition_dim": self.condition_dim,
            "sequence_length": self.sequence_length,
        }
        return self.with_preprocessor_config(config)

    @classmethod
    def from_config(cls, config):
        config, preprocessor = cls.split_preprocessor_config(config)
        return cls.restore_preprocessor(cls(**config), preprocessor)

    def fit(self, x=None, y=None, *args, **kwargs):
        tokens = x[0] if isinstance(x, (list, tuple)) else x
        if as_array(tokens) is not None:
            check_token_ids(tokens, self.vocab_size, "x")
        if as_array(y) is not None:
            check_token_ids(y, self.vocab_size, "y")
        return super().fit(x, y, *args, **kwargs)

    # -- step-by-step decoding ---------------------------------------------------------------------

    def _recurrent_layer(self, index):
        return self.get_layer(layer_name(self.name, self.cell, index))

    def initial_state(self, batch_size, condition=None):
        """The state before the first token: for every layer, the list of its state tensors
        `(batch_size, units)` (`h`, and `c` for an LSTM): zeros, or mapped from `condition`."""
        batch_size = check_positive_int(batch_size, "batch_size")
        if self.condition_dim is None:
            if condition is not None:
                raise ValueError(f"{self.name!r} was built without condition_dim; got a condition.")
            zeros = keras.ops.zeros((batch_size, self.units), dtype=self.compute_dtype)
            return [[zeros for _ in CELLS[self.cell].states] for _ in range(self.num_layers)]
        if condition is None:
            raise ValueError(f"{self.name!r} is conditioned (condition_dim={self.condition_dim}): pass condition=.")
        array = np.asarray(condition, dtype=np.float32)
        if array.shape != (batch_size, self.condition_dim):
            raise ValueError(
                f"condition must have shape ({batch_size}, {self.condition_dim}), one row per prompt; got "
                f"{array.shape}."
            )
        if not np.all(np.isfinite(array)):
            raise ValueError("condition contains NaN or infinity.")
        condition = keras.ops.convert_to_tensor(array)
        return [
            [self.get_layer(_initial_state_name(self.name, self.cell, index, state))(condition)
             for state in CELLS[self.cell].states]
            for index in range(self.num_layers)
        ]

    def decode_step(self, tokens, state):
        """One step of the network: `tokens` `(batch,)` and `state` (as `initial_state` returns it) to the
        logits of the next token `(batch, vocab_size)` and the new state.

        Stepping through a sequence gives the logits the model gives on the whole sequence. A padding
        token (0) leaves every state unchanged, as the mask does in the full model.
        """
        tokens = keras.ops.convert_to_tensor(tokens, dtype="int32")
        # The table itself: calling the layer would attach its padding mask, which the cells cannot take.
        table = self.get_layer(self.name + "_embedding").embeddings
        x = keras.ops.take(table, tokens, axis=0)  # (batch, embedding_dim)
        real = keras.ops.expand_dims(keras.ops.not_equal(tokens, PADDING_ID), -1)  # (batch, 1)
        new_state = []
        for index, layer_states in enumerate(state):
            layer_states = list(layer_states)
            x, updated = self._recurrent_layer(index).cell(x, layer_states, training=False)  # (batch, units)
            new_state.append([keras.ops.where(real, new, old) for new, old in zip(updated, layer_states)])
        return self.get_layer(self.name + "_logits")(x), new_state

    # -- the generation contract shared by the library's sequence models (export reads it) ------------

    @property
    def generation_source(self):
        """What `generation_start`'s `source` is: the conditioning vector, or nothing."""
        return None if self.condition_dim is None else "features"

    @property
    def generation_source_shape(self):
        """The source's shape without the batch axis: `(condition_dim,)`, or `None` without a source."""
        return None if self.condition_dim is None else (self.condition_dim,)

    stop_token_ids = ()

    def generation_start(self, batch_size, max_length=None, source=None):
        """The flat list of states before the first token (`h`, then `c` for an LSTM, layer by layer),
        each `(batch_size, units)`: zeros, or mapped from the condition `source`. `max_length` does not
        change a recurrent state's size."""
        if self.condition_dim is None:
            if source is not None:
                raise ValueError(f"{self.name!r} was built without condition_dim; got a condition.")
            zeros = keras.ops.zeros((batch_size, self.units), dtype=self.compute_dtype)
            return [zeros for _ in range(self.num_layers) for _ in CELLS[self.cell].states]
        if source is None:
            raise ValueError(f"{self.name!r} is conditioned (condition_dim={self.condition_dim}): pass condition=.")
        return [self.get_layer(_initial_state_name(self.name, self.cell, index, state))(source)
                for index in range(self.num_layers) for state in CELLS[self.cell].states]

    def generation_step(self, tokens, state):
        """`decode_step` on the flat state of `generation_start`, with the padding id ruled out (-inf)."""
        width = len(CELLS[self.cell].states)
        nested = [list(state[index * width:(index + 1) * width]) for index in range(self.num_layers)]
        logits, nested = self.decode_step(tokens, nested)
        padding = keras.ops.full((keras.ops.shape(logits)[0], 1), -np.inf, dtype=logits.dtype)
        logits = keras.ops.concatenate([padding, logits[:, 1:]], axis=1)  # never generate padding
        return logits, [value for layer in nested for value in layer]

    def generate(self, token_ids, max_length, sampler="greedy", temperature=1.0, top_k=None, top_p=None,
                 beam_width=4, seed=None, condition=None, stop_token_ids=None):
        """Extends every prompt to `max_length` tokens.

        Prompts share one length. A shorter prompt is padded on the left with 0: padding steps leave the
        states unchanged, so it generates what the unpadded prompt would. The last token of every prompt
        must be a real token (captioning starts from a start token the training data put first).

        Args:
            token_ids: integer prompts `(batch, prompt_length)`, ids in `[0, vocab_size)`.
            max_length: the length of the result, prompt included.
            sampler: `"greedy"`, `"top_k"`, `"top_p"` or `"beam"` (see `keras_models.sampling`).
            temperature: divides the logits (above 0).
            top_k: tokens `"top_k"` draws from.
            top_p: the nucleus mass `"top_p"` draws from, in (0, 1].
            beam_width: beams of `"beam"`.
            seed: the same seed gives the same tokens.
            condition: `(batch, condition_dim)`, required exactly when the model is conditioned.
            stop_token_ids: ids that end a row; the rest of the row is then padding (0).

        Returns:
            int32 numpy `(batch, max_length)`: the prompts and the generated ids (never 0).
        """
        check_sampling(sampler, temperature, top_k, top_p, beam_width, seed)
        tokens = check_token_ids(token_ids, self.vocab_size)
        if np.any(tokens[:, -1] == PADDING_ID):
            rows = np.flatnonzero(tokens[:, -1] == PADDING_ID).tolist()
            raise ValueError(
                f"token_ids rows {rows} end with the padding id 0; pad shorter prompts on the left, so that "
                "every prompt ends with a real token."
            )
        with no_gradients():
            nested = self.initial_state(len(tokens), condition)  # checks the condition
            state = [value for layer in nested for value in layer]
            return decode(self.generation_step, tokens, state, max_length, sampler=sampler,
                          temperature=temperature, top_k=top_k, top_p=top_p, beam_width=beam_width, seed=seed,
                          stop_token_ids=stop_token_ids)


@register_model("rnn_language_model", family="recurrent",
                description="Recurrent language model (one-to-many): next-token logits, generate(), conditioning")
def rnn_language_model(
    vocab_size: int = 10000,
    embedding_dim: int = 64,
    cell: str = "lstm",
    units: int = 128,
    num_layers: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    bidirectional: bool = False,
    condition_dim: int | None = None,
    sequence_length: int | None = None,
    name: str = "rnn_language_model",
    compile: bool = True,
    jit_compile: bool | None = None,
):
    """A recurrent language model, compiled with the next-token cross-entropy (padding left out).

    See `RNNLanguageModel` for the arguments. `bidirectional` exists for the family's shared signature
    and must stay `False`: a language model predicts each token from the ones before it.

    Returns:
        An `RNNLanguageModel`, compiled (Adam, `language_model_loss()`, the library's XLA policy for
        family "recurrent") unless `compile=False`.
    """
    if bidirectional is not False:
        raise ValueError(
            f"A language model reads left to right: each token is predicted from the ones before it, and a "
            f"backward direction would read the token it predicts. Got bidirectional={bidirectional!r}."
        )
    model = RNNLanguageModel(vocab_size=vocab_size, embedding_dim=embedding_dim, cell=cell, units=units,
                             num_layers=num_layers, dropout=dropout, recurrent_dropout=recurrent_dropout,
                             condition_dim=condition_dim, sequence_length=sequence_length, name=name)
    if compile:
        compile_model(model, loss=language_model_loss(), jit_compile=jit_compile, family="recurrent")
    return model
