"""What every recurrent builder shares: the cells, argument checks, inputs with masks, the layer stack.

Every builder of the family takes

    cell="simple" | "lstm" | "gru", units, num_layers, dropout, recurrent_dropout, name, compile, jit_compile

with the same meaning, and reads token ids (an embedding whose id 0 is padding, `mask_zero=True`) or
float features (`keras.layers.Masking(mask_value)` when `mask_value` is given), so padded steps are
skipped by every recurrent layer: the state is carried over them unchanged.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np

# The family's builders import these from here.
from keras_models.checks import check_positive_int, check_rate, check_token_ids  # noqa: F401


@dataclasses.dataclass(frozen=True)
class Cell:
    """One kind of recurrent cell.

    Attributes:
        layer: the Keras recurrent layer.
        states: the names of its state tensors, each `(batch, units)` (an LSTM carries `h` and `c`).
    """

    layer: type
    states: tuple[str, ...]


CELLS = {
    "simple": Cell(keras.layers.SimpleRNN, ("h",)),
    "lstm": Cell(keras.layers.LSTM, ("h", "c")),
    "gru": Cell(keras.layers.GRU, ("h",)),
}


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_name(name) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string; got name={name!r}.")
    return name


def check_recurrent(cell, units, num_layers, dropout, recurrent_dropout, bidirectional=False):
    """Validates the arguments of the recurrent stack every builder shares."""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {tuple(CELLS)}; got cell={cell!r}.")
    check_positive_int(units, "units")
    check_positive_int(num_layers, "num_layers")
    check_rate(dropout, "dropout")
    check_rate(recurrent_dropout, "recurrent_dropout")
    if bidirectional not in (True, False):
        raise ValueError(f"bidirectional must be True or False; got bidirectional={bidirectional!r}.")


def check_sequence_shape(input_shape, vocab_size, embedding_dim, mask_value):
    """The input shape of one sample, checked: `(steps,)` for token ids, `(steps, features)` for floats.

    `steps` may be `None` (any length); `input_shape=None` means `(None,)` for token ids and `(None, 1)`
    (one value per step) for features.
    """
    tokens = vocab_size is not None
    if tokens:
        check_positive_int(vocab_size, "vocab_size")
        check_positive_int(embedding_dim, "embedding_dim")
        if mask_value is not None:
            raise ValueError(
                f"mask_value applies to float features; token ids mask their padding id 0 themselves. "
                f"Got mask_value={mask_value!r} with vocab_size={vocab_size!r}."
            )
    elif mask_value is not None:
        valid = isinstance(mask_value, (int, float, np.integer, np.floating)) and not isinstance(mask_value, bool)
        if not valid or not math.isfinite(float(mask_value)):
            raise ValueError(f"mask_value must be a finite number or None; got mask_value={mask_value!r}.")
    if input_shape is None:
        return (None,) if tokens else (None, 1)
    rank = 1 if tokens else 2
    form = "(steps,) for token ids" if tokens else "(steps, features) for float features"
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    valid = (
        shape is not None
        and len(shape) == rank
        and (shape[0] is None or (_is_int(shape[0]) and shape[0] > 0))
        and all(_is_int(d) and d > 0 for d in shape[1:])
    )
    if not valid:
        raise ValueError(
            f"input_shape must be {form}, steps a positive integer or None (any length) and features a "
            f"positive integer; got input_shape={input_shape!r}."
        )
    return tuple(None if d is None else int(d) for d in shape)


def sequence_input(shape, vocab_size, embedding_dim, mask_value, name):
    """The `keras.Input` and the masked sequence `(batch, steps, width)` the recurrent stack reads."""
    if vocab_size is not None:
        inputs = keras.Input(shape=shape, dtype="int32", name=name + "_token_ids")
        x = keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name=name + "_embedding")(inputs)
        return inputs, x
    inputs = keras.Input(shape=shape, name=name + "_features")
    x = inputs
    if mask_value is not None:
        x = keras.layers.Masking(mask_value=float(mask_value), name=name + "_masking")(x)
    return inputs, x


def recurrent_layer(cell, units, dropout, recurrent_dropout, return_sequences, name):
    return CELLS[cell].layer(
        units,
        return_sequences=return_sequences,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        name=name,
    )


def layer_name(name: str, cell: str, index: int) -> str:
    """The name of recurrent layer `index` (from 0) of a model: `name + "_lstm1"`, ...; a
    bidirectional wrapper adds `bi`."""
    return f"{name}_{cell}{index + 1}"


def recurrent_stack(x, *, cell, units, num_layers, dropout, recurrent_dropout, bidirectional, return_sequences,
                    name, initial_states=None, mask=None):
    """`num_layers` recurrent layers on the sequence `x`; every layer but the last returns sequences.

    Args:
        return_sequences: what the last layer returns: every step `(batch, steps, units)` or the last
            unmasked one `(batch, units)` (times 2 for `bidirectional`, directions concatenated).
        initial_states: `None`, or one list of state tensors per layer (`CELLS[cell].states`).
        mask: the `(batch, steps)` mask of `x`, given to every layer. Needed with `initial_states`: a
            Keras layer called on several tensors does not pick up the mask of the first by itself.
    """
    for index in range(num_layers):
        last = index == num_layers - 1
        layer = recurrent_layer(cell, units, dropout, recurrent_dropout, return_sequences or not last,
                                layer_name(name, cell, index))
        if bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"{name}_bi{cell}{index + 1}")
        states = None if initial_states is None else list(initial_states[index])
        x = layer(x, initial_state=states, mask=mask)
    return x
