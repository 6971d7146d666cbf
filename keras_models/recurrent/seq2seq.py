"""A recurrent encoder-decoder with attention: a sequence to another sequence (many-to-many, unaligned).

The encoder embeds the source token ids (id 0 is padding) and runs a stack of SimpleRNN, LSTM or GRU
layers, optionally bidirectional (Sutskever et al. 2014; Cho et al. 2014). Its final states start the
decoder, a stack of the same cells over the target tokens. At every target step the decoder's output
queries the encoder's outputs (padded source steps masked out) and the context it reads is combined
with that output into the attentional vector `tanh(W_c [context; h])`, from which the logits of the
next target token come (Luong et al. 2015, "Effective Approaches to Attention-based Neural Machine
Translation"). The score of a source step is

- `"luong"`: multiplicative, Luong's "general" score `h^T W_a s`;
- `"bahdanau"`: additive, `v^T tanh(W_1 h + W_2 s)` (Bahdanau et al. 2015);
- `None`: no attention; the logits come from the decoder's output alone.

Attention reads the decoder's current output (Luong's placement, for both scores) and the model feeds
no attentional vector back into the decoder's input, so training with teacher forcing runs every
recurrent layer over the whole target sequence at once.

Generation follows the library's contract (`generation_start`, `generation_step`): the encoder runs
once, then the decoder one step at a time from the start id until the end id.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_models.checks import CheckedModel, as_array, check_special_ids
from keras_models.recurrent._common import (
    CELLS,
    check_name,
    check_positive_int,
    check_recurrent,
    check_token_ids,
    layer_name,
    recurrent_stack,
)
from keras_models.recurrent.language_model import PADDING_ID, language_model_loss
from keras_models.registry import register_model
from keras_models.sampling import check_sampling, decode, no_gradients
from keras_models.training import compile_model

ATTENTIONS = ("luong", "bahdanau", None)
START_ID, END_ID = 1, 2


def _right_padded(rows):
    """A 2-D array as it is; a list of 1-D sequences of different lengths as one array padded with 0."""
    if isinstance(rows, (list, tuple)) and rows and all(np.ndim(row) == 1 for row in rows):
        lengths = {len(row) for row in rows}
        if len(lengths) > 1:
            padded = np.zeros((len(rows), max(lengths)), dtype=np.result_type(*[np.asarray(r) for r in rows]))
            for index, row in enumerate(rows):
                padded[index, :len(row)] = row
            return padded
    return np.asarray(rows)


def teacher_forcing_pairs(source_ids, target_ids, start_id=START_ID, end_id=END_ID):
    """`([source_ids, decoder_inputs], targets)` for training an encoder-decoder with teacher forcing.

    Each row of `target_ids` is a target sequence padded with 0 at the end, holding neither the start nor
    the end id. The decoder reads the start id followed by the sequence and learns to give the sequence
    followed by the end id:

        target_ids      [5, 6, 7, 0]
        decoder_inputs  [1, 5, 6, 7, 0]   (start_id first)
        targets         [5, 6, 7, 2, 0]   (end_id after the last token; padding, 0, is left out of the loss)

    Either argument may also be a list of 1-D sequences of different lengths, padded here with 0 at the end.

    Returns:
        `([source_ids, decoder_inputs], targets)`, int32, both decoder arrays `(batch, target_steps + 1)`.
    """
    source = _right_padded(source_ids)
    target = _right_padded(target_ids)
    for what, array in (("source_ids", source), ("target_ids", target)):
        if array.ndim != 2 or array.shape[1] < 1:
            raise ValueError(f"{what} must be 2-D (batch, steps) with at least one step; got shape {array.shape}.")
        if not np.issubdtype(array.dtype, np.integer) or (array.size and array.min() < 0):
            raise ValueError(f"{what} must hold non-negative integer token ids; got dtype {array.dtype}.")
    if len(source) != len(target):
        raise ValueError(
            f"source_ids and target_ids must hold one row per pair; got {len(source)} and {len(target)} rows."
        )
    reserved = np.isin(target, (start_id, end_id))
    if reserved.any():
        raise ValueError(
            f"target_ids must not hold the start id {start_id} or the end id {end_id} (they are added here); "
            f"rows {np.flatnonzero(reserved.any(axis=1)).tolist()} do."
        )
    real = target != PADDING_ID
    lengths = real.sum(axis=1)
    inside = real & (np.arange(target.shape[1]) >= lengths[:, None])  # a real token after a padding one
    if inside.any():
        raise ValueError(
            f"target_ids must be padded with 0 at the end only; rows {np.flatnonzero(inside.any(axis=1)).tolist()} "
            f"have padding before a token."
        )
    batch, steps = target.shape
    decoder_inputs = np.zeros((batch, steps + 1), np.int32)
    decoder_inputs[:, 0] = start_id
    decoder_inputs[:, 1:] = target
    targets = np.zeros((batch, steps + 1), np.int32)
    targets[:, :steps] = target
    targets[np.arange(batch), lengths] = end_id
    return [source.astype(np.int32), decoder_inputs], targets


# -- the pieces, each a function of the model's layers (looked up by name), shared by the whole
# network and the step-by-step decoder ------------------------------------------------------------

def _encoder_layer_name(name, cell, index, bidirectional):
    return f"{name}_encoder_bi{cell}{index + 1}" if bidirectional else layer_name(name + "_encoder", cell, index)


def _bridge_name(name, cell, index, state):
    """The Dense layer giving state `state` of decoder layer `index` from the two encoder directions."""
    return f"{layer_name(name + '_decoder', cell, index)}_initial_{state}"


def _encode(layer, source_ids, *, name, cell, num_layers, bidirectional):
    """Source ids `(batch, source_steps)` to the encoder's outputs `(batch, source_steps, width)` (width
    `units`, or `2 * units` when bidirectional), the source mask (bool) and the decoder's initial
    states, one list per decoder layer. `layer(name)` gives the model's layer of that name."""
    mask = keras.ops.not_equal(source_ids, PADDING_ID)  # (batch, source_steps)
    x = layer(name + "_source_embedding")(source_ids)
    states = CELLS[cell].states
    initial_states = []
    for index in range(num_layers):
        outputs = layer(_encoder_layer_name(name, cell, index, bidirectional))(x, mask=mask)
        x, final = outputs[0], list(outputs[1:])  # final: the states after the last unmasked step
        if bidirectional:
            # The forward states, then the backward ones; the decoder's state j reads both directions' j.
            forward, backward = final[:len(states)], final[len(states):]
            final = [layer(_bridge_name(name, cell, index, state))(keras.ops.concatenate([f, b], axis=-1))
                     for state, f, b in zip(states, forward, backward)]
        initial_states.append(final)
    return x, mask, initial_states


def _attend(layer, decoder_outputs, encoder_outputs, source_mask, *, name, attention):
    """The logits `(batch, steps, target_vocab)` from the decoder's outputs `(batch, steps, units)`."""
    if attention is None:
        return layer(name + "_logits")(decoder_outputs)
    query = layer(name + "_attention_query")(decoder_outputs)
    values = [query, encoder_outputs]
    if attention == "bahdanau":
        values.append(layer(name + "_attention_keys")(encoder_outputs))
    context = layer(name + "_attention")(values, mask=[None, source_mask])  # (batch, steps, width)
    combined = keras.ops.concatenate([context, decoder_outputs], axis=-1)
    return layer(name + "_logits")(layer(name + "_attentional")(combined))


def _head_layers(name, attention, units, encoder_width, target_vocab_size):
    """The layers after the decoder, by name: the attention's (none for `attention=None`) and the logits."""
    layers = [keras.layers.Dense(target_vocab_size, name=name + "_logits")]
    if attention == "luong":
        layers += [
            keras.layers.Dense(encoder_width, use_bias=False, name=name + "_attention_query"),  # W_a
            keras.layers.Attention(name=name + "_attention"),
        ]
    elif attention == "bahdanau":
        layers += [
            keras.layers.Dense(units, name=name + "_attention_query"),  # W_1 (its bias is Bahdanau's b)
            keras.layers.Dense(units, use_bias=False, name=name + "_attention_keys"),  # W_2
            keras.layers.AdditiveAttention(use_scale=True, name=name + "_attention"),  # v, the scale
        ]
    if attention is not None:
        layers.append(keras.layers.Dense(units, activation="tanh", name=name + "_attentional"))  # W_c
    return {layer.name: layer for layer in layers}


@keras.saving.register_keras_serializable(package="keras_models")
class RNNSeq2Seq(CheckedModel):
    """A recurrent encoder-decoder with attention (a functional `keras.Model`) with `generate`.

    Called on `[source_ids, decoder_input_ids]` (`(batch, source_steps)` and `(batch, target_steps)`,
    id 0 padding in both) it returns the logits of the next target token at every decoder step, `(batch,
    target_steps, target_vocab_size)`: teacher forcing. Train it with `fit(*teacher_forcing_pairs(source,
    target))`; padding is masked in both inputs (padded source steps get no attention) and left out of
    the loss. Logits at padded decoder steps mean nothing and no loss reads them.

    Args:
        source_vocab_size: the number of source token ids, 0 (padding) included.
        target_vocab_size: the number of target token ids, 0 (padding), `start_id` and `end_id` included.
        embedding_dim: the width of both token embeddings.
        cell: `"simple"` (SimpleRNN), `"lstm"` or `"gru"`, for the encoder and the decoder.
        units: the width of every recurrent layer (of each direction of a bidirectional encoder layer).
        num_layers: stacked recurrent layers in the encoder and, as many, in the decoder.
        dropout: dropout rate on the inputs of every recurrent layer.
        recurrent_dropout: dropout rate on the recurrent state of every layer.
        bidirectional: read the source both ways. Encoder layer `i` then ends with a forward and a
            backward state of each kind; a Dense layer (tanh) maps the two, concatenated, to the
            initial state of decoder layer `i` (as Bahdanau et al. start their decoder from the
            backward state), so the decoder keeps `units`. Attention reads both directions' outputs
            (width `2 * units`). Without it, decoder layer `i` starts from encoder layer `i`'s final
            states as they are.
        attention: `"luong"` (multiplicative "general" score), `"bahdanau"` (additive score) or `None`.
        source_length: a fixed number of source steps, which the exported encoder needs (it runs
            unrolled; `export.to_tflite(model, path, generation=True, max_length=N)`); `None` takes
            any length.
        target_length: a fixed number of decoder steps, likewise.
        start_id: the target id the decoder starts from (never generated).
        end_id: the target id that ends a generated sequence.
        name: the model name and the prefix of every layer name.
    """

    def __init__(self, source_vocab_size=10000, target_vocab_size=10000, embedding_dim=64, cell="lstm", units=128,
                 num_layers=1, dropout=0.0, recurrent_dropout=0.0, bidirectional=False, attention="luong",
                 source_length=None, target_length=None, start_id=START_ID, end_id=END_ID, name="rnn_seq2seq",
                 **kwargs):
        check_name(name)
        check_recurrent(cell, units, num_layers, dropout, recurrent_dropout, bidirectional)
        check_positive_int(source_vocab_size, "source_vocab_size")
        check_positive_int(target_vocab_size, "target_vocab_size")
        check_positive_int(embedding_dim, "embedding_dim")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}; got attention={attention!r}.")
        for what, value in (("source_length", source_length), ("target_length", target_length)):
            if value is not None:
                check_positive_int(value, what)
        check_special_ids(start_id, end_id, target_vocab_size, "target_vocab_size")

        encoder_width = units * (2 if bidirectional else 1)
        layers = _head_layers(name, attention, units, encoder_width, target_vocab_size)
        layers[name + "_source_embedding"] = keras.layers.Embedding(
            source_vocab_size, embedding_dim, mask_zero=True, name=name + "_source_embedding")
        for index in range(num_layers):
            recurrent = CELLS[cell].layer(units, return_sequences=True, return_state=True, dropout=dropout,
                                          recurrent_dropout=recurrent_dropout,
                                          name=layer_name(name + "_encoder", cell, index))
            if bidirectional:
                recurrent = keras.layers.Bidirectional(recurrent, name=_encoder_layer_name(name, cell, index, True))
                for state in CELLS[cell].states:
                    bridge = keras.layers.Dense(units, activation="tanh", name=_bridge_name(name, cell, index, state))
                    layers[bridge.name] = bridge
            layers[recurrent.name] = recurrent

        source_ids = keras.Input((source_length,), dtype="int32", name=name + "_source_ids")
        decoder_ids = keras.Input((target_length,), dtype="int32", name=name + "_decoder_input_ids")
        config = dict(name=name, cell=cell, num_layers=num_layers)
        encoder_outputs, source_mask, initial_states = _encode(layers.__getitem__, source_ids,
                                                               bidirectional=bidirectional, **config)
        x = keras.layers.Embedding(target_vocab_size, embedding_dim, mask_zero=True,
                                   name=name + "_target_embedding")(decoder_ids)
        x = recurrent_stack(x, cell=cell, units=units, num_layers=num_layers, dropout=dropout,
                            recurrent_dropout=recurrent_dropout, bidirectional=False, return_sequences=True,
                            name=name + "_decoder", initial_states=initial_states,
                            mask=keras.ops.not_equal(decoder_ids, PADDING_ID))  # (batch, target_steps, units)
        logits = _attend(layers.__getitem__, x, encoder_outputs, source_mask, name=name, attention=attention)
        super().__init__(inputs=[source_ids, decoder_ids], outputs=logits, name=name, **kwargs)
        self.source_vocab_size = int(source_vocab_size)
        self.target_vocab_size = int(target_vocab_size)
        self.embedding_dim = int(embedding_dim)
        self.cell = cell
        self.units = int(units)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.bidirectional = bool(bidirectional)
        self.attention = attention
        self.source_length = None if source_length is None else int(source_length)
        self.target_length = None if target_length is None else int(target_length)
        self.start_id = int(start_id)
        self.end_id = int(end_id)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "source_vocab_size": self.source_vocab_size,
            "target_vocab_size": self.target_vocab_size,
            "embedding_dim": self.embedding_dim,
            "cell": self.cell,
            "units": self.units,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "bidirectional": self.bidirectional,
            "attention": self.attention,
            "source_length": self.source_length,
            "target_length": self.target_length,
            "start_id": self.start_id,
            "end_id": self.end_id,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def fit(self, x=None, y=None, *args, **kwargs):
        if isinstance(x, (list, tuple)) and len(x) == 2:
            for what, ids, vocab in (("x[0] (source ids)", x[0], self.source_vocab_size),
                                     ("x[1] (decoder input ids)", x[1], self.target_vocab_size)):
                if as_array(ids) is not None:
                    check_token_ids(ids, vocab, what)
        if as_array(y) is not None:
            check_token_ids(y, self.target_vocab_size, "y")
        return super().fit(x, y, *args, **kwargs)

    # -- the generation contract shared by the library's sequence models (export reads it) ------------

    generation_source = "token_ids"

    @property
    def stop_token_ids(self):
        return (self.end_id,)

    def generation_start(self, batch_size, max_length=None, source=None):
        """Runs the encoder on `source` (int32 token ids `(batch_size, source_steps)`).

        Returns the flat state list: the encoder's outputs `(batch, source_steps, width)` and the source
        mask as floats `(batch, source_steps)` (only with attention), then every decoder layer's states
        `(batch, units)` (`h`, and `c` for an LSTM), layer by layer. `max_length` does not change them.
        """
        if source is None:
            raise ValueError(f"{self.name!r} is an encoder-decoder: generation_start needs source= (token ids).")
        source = keras.ops.convert_to_tensor(source, dtype="int32")
        encoder_outputs, mask, initial_states = _encode(self.get_layer, source, name=self.name, cell=self.cell,
                                                        num_layers=self.num_layers, bidirectional=self.bidirectional)
        decoder_states = [value for layer in initial_states for value in layer]
        if self.attention is None:
            return decoder_states
        return [encoder_outputs, keras.ops.cast(mask, encoder_outputs.dtype), *decoder_states]

    def generation_step(self, tokens, state):
        """One decoder step: `tokens` int32 `(batch,)` and the flat `state` to the next token's logits
        `(batch, target_vocab_size)`, padding and `start_id` ruled out (-inf), and the new state.

        Stepping through decoder inputs gives the logits of the whole network. A padding token leaves
        the decoder's states unchanged, as the mask does in the whole network.
        """
        tokens = keras.ops.convert_to_tensor(tokens, dtype="int32")
        if self.attention is None:
            encoder_outputs = source_mask = None
            decoder_states = list(state)
        else:
            encoder_outputs, source_mask, *decoder_states = state
            source_mask = keras.ops.greater(source_mask, 0.5)
        # The table itself: calling the layer would attach its padding mask, which the cells cannot take.
        x = keras.ops.take(self.get_layer(self.name + "_target_embedding").embeddings, tokens, axis=0)
        real = keras.ops.expand_dims(keras.ops.not_equal(tokens, PADDING_ID), -1)  # (batch, 1)
        width = len(CELLS[self.cell].states)
        new_states = []
        for index in range(self.num_layers):
            old = decoder_states[index * width:(index + 1) * width]
            layer = self.get_layer(layer_name(self.name + "_decoder", self.cell, index))
            x, updated = layer.cell(x, old, training=False)  # (batch, units)
            new_states += [keras.ops.where(real, new, previous) for new, previous in zip(updated, old)]
        logits = _attend(self.get_layer, keras.ops.expand_dims(x, 1), encoder_outputs, source_mask, name=self.name,
                         attention=self.attention)[:, 0]  # (batch, target_vocab)
        never = np.zeros(self.target_vocab_size, bool)
        never[[PADDING_ID, self.start_id]] = True
        logits = keras.ops.where(keras.ops.convert_to_tensor(never), -np.inf, logits)
        if self.attention is None:
            return logits, new_states
        return logits, [encoder_outputs, state[1], *new_states]

    def generate(self, source_ids, max_length, sampler="greedy", temperature=1.0, top_k=None, top_p=None,
                 beam_width=4, seed=None):
        """Generates a target sequence for every source sequence.

        Args:
            source_ids: integer token ids `(batch, source_steps)` in `[0, source_vocab_size)`, padded
                with 0 (anywhere: padded steps are masked); every row needs a real token.
            max_length: the length of the result, the start id included (at least 1).
            sampler: `"greedy"`, `"beam"`, `"top_k"` or `"top_p"` (see `keras_models.sampling`).
            temperature: divides the logits (above 0).
            top_k: tokens `"top_k"` draws from.
            top_p: the nucleus mass `"top_p"` draws from, in (0, 1].
            beam_width: beams of `"beam"`.
            seed: the same seed gives the same tokens.

        Returns:
            int32 numpy `(batch, max_length)`: `start_id`, then the generated ids; after a row's
            `end_id` the rest of the row is padding (0).
        """
        check_sampling(sampler, temperature, top_k, top_p, beam_width, seed)
        check_positive_int(max_length, "max_length")
        source = check_token_ids(source_ids, self.source_vocab_size, "source_ids")
        empty = ~np.any(source != PADDING_ID, axis=1)
        if empty.any():
            raise ValueError(f"source_ids rows {np.flatnonzero(empty).tolist()} hold only padding (0).")
        start = np.full((len(source), 1), self.start_id, np.int32)
        with no_gradients():
            state = self.generation_start(len(source), max_length, source)
            return decode(self.generation_step, start, state, max_length, sampler=sampler, temperature=temperature,
                          top_k=top_k, top_p=top_p, beam_width=beam_width, seed=seed,
                          stop_token_ids=self.stop_token_ids, pad_id=PADDING_ID)


@register_model("rnn_seq2seq", family="recurrent",
                description="Recurrent encoder-decoder (many-to-many) with Luong or Bahdanau attention, generate()")
def rnn_seq2seq(
    source_vocab_size: int = 10000,
    target_vocab_size: int = 10000,
    embedding_dim: int = 64,
    cell: str = "lstm",
    units: int = 128,
    num_layers: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    bidirectional: bool = False,
    attention: str | None = "luong",
    source_length: int | None = None,
    target_length: int | None = None,
    start_id: int = START_ID,
    end_id: int = END_ID,
    name: str = "rnn_seq2seq",
    compile: bool = True,
    jit_compile: bool | None = None,
):
    """A recurrent encoder-decoder with attention, compiled with the next-token cross-entropy (padding
    left out).

    See `RNNSeq2Seq` for the arguments.

    Returns:
        An `RNNSeq2Seq`, compiled (Adam, `language_model_loss()`, the library's XLA policy for family
        "recurrent") unless `compile=False`.
    """
    model = RNNSeq2Seq(source_vocab_size=source_vocab_size, target_vocab_size=target_vocab_size,
                       embedding_dim=embedding_dim, cell=cell, units=units, num_layers=num_layers, dropout=dropout,
                       recurrent_dropout=recurrent_dropout, bidirectional=bidirectional, attention=attention,
                       source_length=source_length, target_length=target_length, start_id=start_id, end_id=end_id,
                       name=name)
    if compile:
        compile_model(model, loss=language_model_loss(), jit_compile=jit_compile, family="recurrent")
    return model
