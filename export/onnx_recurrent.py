"""Whole-sequence ONNX export with ONNX's own `LSTM`, `GRU` and `RNN` operators and a dynamic time axis.

tf2onnx does not produce these operators from Keras 3 graphs (a plain conversion gives a `Loop` over
resource variables), so `export.to_onnx` unrolls recurrent layers over one fixed length. This module
writes the ONNX graph itself, with `onnx.helper`, from the layers' weights, for sequence models made of
the layers that map; the file takes sequences of any length:

    InputLayer, Embedding (`Gather`; `mask_zero`), Masking, SimpleRNN / LSTM / GRU (`return_sequences`
    true or false, stacked, `go_backwards`, `initial_state`, an explicit `mask=`), Bidirectional
    (one `direction="bidirectional"` node; `merge_mode` concat, sum, ave, mul or None), Dense (on
    vectors and on sequences), Activation, TimeDistributed of those, Dropout-like layers (identity at
    inference), Concatenate on the last axis, Add, nested functional or Sequential models, and
    `keras.ops.not_equal` / `keras.ops.equal` against a number (a mask computed from token ids).

Weights: Keras orders an LSTM's gates i, f, c, o, ONNX i, o, f, c; GRU gates are z, r, h in both, and a
Keras GRU with `reset_after=True` (the default) is ONNX's `linear_before_reset=1`, with the input and
recurrent biases as ONNX's `Wb` and `Rb`. Cell activations map to ONNX's list (tanh, sigmoid, relu,
linear as `Affine`, hard_sigmoid as `HardSigmoid(1/6, 1/2)`, softsign, softplus, elu, leaky_relu).
`dropout` and `recurrent_dropout` do nothing at inference; `unroll` and `unit_forget_bias` do not
change the maths.

Masks: Keras skips a masked step (the states pass through unchanged) and outputs the previous output
there (zeros before the first unmasked step, or zeros everywhere masked with `zero_output_for_mask`,
which `Bidirectional` sets when it returns sequences). ONNX's `sequence_lens` only skips steps at the
end. So the graph moves each sequence's unmasked steps to the front (a scatter over the mask's running
count), runs the operator with `sequence_lens` = the number of unmasked steps, and gathers every
output back to its time step with the same count. This is exact for any mask, not only right padding:
left padding and holes give what Keras gives, padded positions included.

What does not map, named with the reason in the message (`recurrent="auto"` then exports unrolled
over a fixed length, as before, and says why in the report; `recurrent="native"` raises
`ExportError`): stateful layers, `return_state=True`, cells other than SimpleRNN/LSTM/GRU cells
(custom cells, `StackedRNNCells`, ConvLSTM), cell activations ONNX's operators lack (gelu, swish, selu,
relu6, ...), a Bidirectional layer with different forward and backward cells or with `initial_state`,
a recurrent layer's mask computed by operations other than the ones above, non-float32 weights (mixed
precision, quantized layers), layers outside the list above, subclassed models, opsets below 13.
"""

from __future__ import annotations

import collections
import dataclasses

import keras
import numpy as np

from export._common import ExportError, input_specs, is_functional, output_names

RECURRENT_MODES = ("auto", "native", "unrolled")
MIN_OPSET = 13  # axes as inputs of Unsqueeze, Squeeze and ReduceSum; Softmax over one axis

_INT64_MIN = np.iinfo(np.int64).min


class NotMapped(Exception):
    """A layer whose maths has no ONNX recurrent-operator form here; `str()` names it and says why."""

    def __init__(self, layer, reason):
        name = getattr(layer, "name", str(layer))
        super().__init__(f"layer {name!r} ({type(layer).__name__}) {reason}")


def _classes(*names):
    return tuple(getattr(keras.layers, name) for name in names if hasattr(keras.layers, name))


_IDENTITY = _classes(
    "Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
    "Identity",
)
_CELL_OPS = {keras.layers.SimpleRNNCell: "RNN", keras.layers.LSTMCell: "LSTM", keras.layers.GRUCell: "GRU"}


# --------------------------------------------------------------------------------------------------
# Graph building


@dataclasses.dataclass
class _Tensor:
    """A value of the ONNX graph standing for a Keras tensor.

    `shape` holds ints or the names of dynamic axes ("batch", "steps"); `mask` is the ONNX name of the
    `(batch, steps)` boolean mask Keras would attach to the tensor, or None.
    """

    name: str
    shape: tuple
    dtype: np.dtype
    mask: str | None = None


class _Graph:
    """Nodes and initializers of the ONNX graph being written, with unique names."""

    def __init__(self, opset):
        self.opset = opset
        self.nodes, self.initializers = [], []
        self.memo = {}  # values computed once and shared, such as the counts of a mask
        self._used = collections.Counter()

    def name(self, hint):
        self._used[hint] += 1
        return hint if self._used[hint] == 1 else f"{hint}_{self._used[hint] - 1}"

    def const(self, array, hint):
        from onnx import numpy_helper

        array = np.asarray(array)
        key = ("const", hint, array.dtype.str, array.shape, array.tobytes()) if array.size <= 16 else None
        if key in self.memo:  # small constants (axes, zeros, ones) are written once
            return self.memo[key]
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        if key is not None:
            self.memo[key] = name
        return name

    def int64(self, values, hint="const"):
        return self.const(np.asarray(values, dtype=np.int64), hint)

    def op(self, op_type, inputs, hint, outputs=1, unused=(), **attributes):
        """Adds one node; returns its output name (or the list of them when `outputs` > 1). Optional
        outputs listed in `unused` are left out (named ""), so the runtime need not compute them."""
        from onnx import helper

        names = ["" if i in unused else self.name(f"{hint}_{i}" if outputs > 1 else hint) for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=self.name(hint + "_node"), **attributes))
        return names if outputs > 1 else names[0]

    # Small compositions used everywhere.

    def dim(self, x, axis, hint):
        """The size of axis `axis` of `x` as an int64 scalar."""
        return self.op("Gather", [self.op("Shape", [x], hint + "_shape"), self.int64(axis, "axis")], hint)

    def flip_time(self, x, hint):
        """`x` reversed along axis 1 (the time axis of batch-major tensors)."""
        # starts, ends, axes, steps
        bounds = [self.int64([-1]), self.int64([_INT64_MIN]), self.int64([1]), self.int64([-1])]
        return self.op("Slice", [x, *bounds], hint)

    def unsqueeze(self, x, axes, hint):
        return self.op("Unsqueeze", [x, self.int64(axes, "axes")], hint)

    def squeeze(self, x, axes, hint):
        return self.op("Squeeze", [x, self.int64(axes, "axes")], hint)

    def cast(self, x, to, hint):
        from onnx import helper

        return self.op("Cast", [x], hint, to=helper.np_dtype_to_tensor_dtype(np.dtype(to)))


def _float32_weights(layer, variables):
    arrays = [keras.ops.convert_to_numpy(variable) for variable in variables]
    other = sorted({str(array.dtype) for array in arrays if array.dtype != np.float32})
    if other:
        raise NotMapped(layer, f"has {', '.join(other)} weights; native recurrent export writes float32")
    return arrays


# --------------------------------------------------------------------------------------------------
# Activations


def _activation(name):
    return keras.activations.get(name)


def _elementwise(g, x, function, layer, hint):
    """`function(x)` for the activations Dense and Activation layers use (any rank, last axis for softmax)."""
    if function is None or function is _activation("linear"):
        return x
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus", "softsign": "Softsign",
              "exponential": "Exp", "selu": "Selu"}
    for name, op in simple.items():
        if function is _activation(name):
            return g.op(op, [x], hint)
    if function is _activation("softmax"):
        return g.op("Softmax", [x], hint, axis=-1)
    if function is _activation("log_softmax"):
        return g.op("LogSoftmax", [x], hint, axis=-1)
    if function is _activation("elu"):
        return g.op("Elu", [x], hint, alpha=1.0)
    if function is _activation("leaky_relu"):
        return g.op("LeakyRelu", [x], hint, alpha=0.2)
    if function is _activation("hard_sigmoid"):
        return g.op("HardSigmoid", [x], hint, alpha=1.0 / 6.0, beta=0.5)
    if function is _activation("relu6"):
        return g.op("Clip", [x, g.const(np.float32(0), "zero"), g.const(np.float32(6), "six")], hint)
    if function is _activation("silu"):
        return g.op("Mul", [x, g.op("Sigmoid", [x], hint + "_sigmoid")], hint)
    if function is _activation("gelu"):  # Keras' default, exact: x / 2 * (1 + erf(x / sqrt(2)))
        scaled = g.op("Mul", [x, g.const(np.float32(1 / np.sqrt(2)), "rsqrt2")], hint + "_scaled")
        erf = g.op("Erf", [scaled], hint + "_erf")
        half = g.op("Mul", [x, g.const(np.float32(0.5), "half")], hint + "_half")
        return g.op("Mul", [half, g.op("Add", [erf, g.const(np.float32(1), "one")], hint + "_one_plus")], hint)
    raise NotMapped(layer, f"uses activation {getattr(function, '__name__', function)!r}, which is not mapped")


# Cell activations ONNX's recurrent operators take: Keras function -> (ONNX name, alpha, beta).
def _cell_activation_table():
    return {
        _activation("tanh"): ("Tanh", None, None),
        _activation("sigmoid"): ("Sigmoid", None, None),
        _activation("relu"): ("Relu", None, None),
        _activation("linear"): ("Affine", 1.0, 0.0),
        _activation("hard_sigmoid"): ("HardSigmoid", 1.0 / 6.0, 0.5),  # relu6(x + 3) / 6
        _activation("softsign"): ("Softsign", None, None),
        _activation("softplus"): ("Softplus", None, None),
        _activation("elu"): ("Elu", 1.0, None),
        _activation("leaky_relu"): ("LeakyRelu", 0.2, None),
    }


def _cell_activations(layer, cell):
    """ONNX's `activations`, `activation_alpha` and `activation_beta` for `cell`.

    Alphas and betas are listed in the order of the activations that take them, which is how
    onnxruntime reads them (tested against Keras with leaky_relu after sigmoid, and after hard_sigmoid).
    """
    table = _cell_activation_table()
    op = _CELL_OPS[type(cell)]
    if op == "RNN":
        functions = [cell.activation]
    else:  # the gates' function, then the candidate's (and an LSTM's output's, the same in Keras)
        functions = [cell.recurrent_activation, cell.activation] + ([cell.activation] if op == "LSTM" else [])
    names, alphas, betas = [], [], []
    for function in functions:
        function = function or _activation("linear")
        if function not in table:
            raise NotMapped(layer, f"uses activation {getattr(function, '__name__', function)!r}, which ONNX's "
                            "recurrent operators lack")
        name, alpha, beta = table[function]
        names.append(name)
        alphas += [] if alpha is None else [alpha]
        betas += [] if beta is None else [beta]
    return names, alphas, betas


# --------------------------------------------------------------------------------------------------
# Recurrent layers


def _check_cell_layer(layer):
    """The cell of a SimpleRNN/LSTM/GRU layer, or NotMapped saying why not."""
    if getattr(layer, "stateful", False):
        raise NotMapped(layer, "is stateful (its state lives in variables between calls)")
    if getattr(layer, "return_state", False):
        raise NotMapped(layer, "returns its states (return_state=True)")
    cell = getattr(layer, "cell", None)
    if type(cell) not in _CELL_OPS:
        raise NotMapped(layer, f"has a {type(cell).__name__}; ONNX's operators are SimpleRNN, LSTM and GRU cells")
    return cell


def _cell_weights(layer, cell):
    """(W, R, B) of one direction in ONNX's layout and gate order: `(gates * units, features)`,
    `(gates * units, units)` and `(2 * gates * units,)` (input bias, then recurrent bias)."""
    units = cell.units
    variables = [cell.kernel, cell.recurrent_kernel] + ([cell.bias] if cell.use_bias else [])
    kernel, recurrent, *bias = _float32_weights(layer, variables)
    op = _CELL_OPS[type(cell)]
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    # Keras: kernel (features, gates * units), columns grouped by gate.
    order = [0, 3, 1, 2] if op == "LSTM" else list(range(gates))  # Keras i, f, c, o -> ONNX i, o, f, c

    def reorder(rows):
        return np.concatenate([rows[k * units:(k + 1) * units] for k in order], axis=0)

    w, r = reorder(kernel.T), reorder(recurrent.T)
    zeros = np.zeros(gates * units, np.float32)
    if not bias:
        input_bias, recurrent_bias = zeros, zeros
    elif op == "GRU" and cell.reset_after:  # (2, 3 * units): input bias, recurrent bias
        input_bias, recurrent_bias = bias[0][0], bias[0][1]
    else:
        input_bias, recurrent_bias = bias[0], zeros
    return w, r, np.concatenate([reorder(input_bias), reorder(recurrent_bias)])


def _direction_weights(g, layers, cells, hint):
    weights = [_cell_weights(layer, cell) for layer, cell in zip(layers, cells)]
    return [g.const(np.stack([w[i] for w in weights]), f"{hint}_{part}") for i, part in enumerate("WRB")]


def _mask_counts(g, mask):
    """What every recurrent layer reading `mask` `(batch, steps)` needs, written once per mask: the mask
    as int64, the running count of unmasked steps up to each step (inclusive), the number of unmasked
    steps `(batch,)`, and the step each step moves to when the unmasked ones move to the front."""
    if ("counts", mask) not in g.memo:
        hint = mask + "_counts"
        m = g.cast(mask, np.int64, hint + "_int")
        counted = g.op("CumSum", [m, g.int64(1, "axis")], hint + "_running")
        total = g.op("ReduceSum", [m, g.int64([1], "axes")], hint + "_lengths", keepdims=0)
        steps = g.op("Range", [g.int64(0, "zero"), g.dim(mask, 1, hint + "_steps"), g.int64(1, "one")], hint + "_t")
        # An unmasked step goes to (unmasked steps before it); a masked one after every unmasked step, in
        # order: a permutation, so a scatter writes every position once.
        to_front = g.op("Sub", [counted, g.int64(1, "one")], hint + "_front")
        shifted = g.op("Add", [steps, g.unsqueeze(total, [1], hint + "_total")], hint + "_shifted")
        to_back = g.op("Sub", [shifted, counted], hint + "_back")
        target = g.op("Where", [mask, to_front, to_back], hint + "_target")
        g.memo[("counts", mask)] = m, counted, total, g.unsqueeze(target, [2], hint + "_target3")
    return g.memo[("counts", mask)]


def _compaction(g, x, mask, hint):
    """`x` `(batch, steps, features)` with each sequence's unmasked steps moved to the front in order,
    and `_mask_counts(g, mask)`."""
    m, counted, total, target = _mask_counts(g, mask)
    shape = g.op("Shape", [x], hint + "_xshape")
    indices = g.op("Expand", [target, shape], hint + "_indices")
    zeros = g.op("ConstantOfShape", [shape], hint + "_zeros")
    compact = g.op("ScatterElements", [zeros, indices, x], hint + "_compact", axis=1)
    return compact, counted, m, total


def _run_recurrent(g, layers, x, mask, initial_state, hint, return_sequences):
    """Runs one ONNX recurrent node over the batch-major sequence `x` (an ONNX name).

    `layers` holds one layer (forward) or two (forward, backward: `direction="bidirectional"`).
    Returns every step `(batch, steps, directions, units)` as Keras' layers output them (the backward
    direction in time order) with `return_sequences`, else the last output `(batch, directions, units)`.
    """
    cells = [_check_cell_layer(layer) for layer in layers]
    op = _CELL_OPS[type(cells[0])]
    units = cells[0].units
    activations, alphas, betas = [], [], []
    for layer, cell in zip(layers, cells):
        names, a, b = _cell_activations(layer, cell)
        activations += names
        alphas += a
        betas += b
    attributes = {"hidden_size": units, "activations": activations,
                  "direction": "bidirectional" if len(layers) == 2 else "forward"}
    if alphas:
        attributes["activation_alpha"] = alphas
    if betas:
        attributes["activation_beta"] = betas
    if op == "GRU":
        attributes["linear_before_reset"] = int(bool(cells[0].reset_after))
    w, r, b = _direction_weights(g, layers, cells, hint)

    sequence_lens = ""
    if mask is not None:
        x, counted, m, total = _compaction(g, x, mask, hint)
        sequence_lens = g.cast(total, np.int32, hint + "_sequence_lens")
    x_time_major = g.op("Transpose", [x], hint + "_time_major", perm=[1, 0, 2])  # (steps, batch, features)
    states = ["", ""]
    for i, state in enumerate(initial_state or []):
        states[i] = g.unsqueeze(state.name, [0], f"{hint}_initial_{'hc'[i]}")  # (1, batch, units)
    inputs = [x_time_major, w, r, b, sequence_lens, *states[: 2 if op == "LSTM" else 1]]
    while inputs[-1] == "":
        inputs.pop()
    y, y_h = g.op(op, inputs, hint + "_" + op.lower(), outputs=2, unused=() if return_sequences else (0,),
                  **attributes)
    if not return_sequences:
        last = g.op("Transpose", [y_h], hint + "_last", perm=[1, 0, 2])  # (batch, dirs, units)
        if mask is None:
            return last
        # A sequence without unmasked steps: Keras' last output is zeros (its states stay the initial ones).
        any_step = g.op("Greater", [total, g.int64(0, "zero")], hint + "_any_step")
        return g.op("Where", [g.unsqueeze(any_step, [1, 2], hint + "_any_step3"), last,
                              g.const(np.float32(0), "zero_f")], hint + "_last_masked")
    sequence = g.op("Transpose", [y], hint + "_batch_major", perm=[2, 0, 1, 3])  # (batch, steps, dirs, units)
    if mask is None:
        return sequence
    # Back to time steps: the forward output at step t is the compact output after `counted[t]` unmasked
    # steps (zeros before the first: a zero row in front); the backward one, the compact output at the
    # first unmasked step at or after t, which ONNX leaves zero past the sequence length.
    batch = g.dim(x, 0, hint + "_batch")
    zero_row_shape = g.op("Concat", [g.unsqueeze(batch, [0], hint + "_b1"), g.int64([1, len(layers), units])],
                          hint + "_zero_row_shape", axis=0)
    zero_row = g.op("ConstantOfShape", [zero_row_shape], hint + "_zero_row")
    padded = g.op("Concat", [zero_row, sequence], hint + "_padded", axis=1)  # (batch, steps + 1, dirs, units)
    index = [counted]
    if len(layers) == 2:
        before = g.op("Sub", [counted, m], hint + "_before")  # unmasked steps before t
        index.append(g.op("Add", [before, g.int64(1, "one")], hint + "_at_or_after"))
    index = [g.unsqueeze(i, [2, 3], hint + "_index4") for i in index]
    index = index[0] if len(index) == 1 else g.op("Concat", index, hint + "_index", axis=2)  # (batch, steps, dirs, 1)
    shape = g.op("Shape", [sequence], hint + "_sequence_shape")
    return g.op("GatherElements", [padded, g.op("Expand", [index, shape], hint + "_gather_index")],
                hint + "_in_time", axis=1)


def _zero_masked(g, sequence, mask, hint):
    keep = g.cast(g.unsqueeze(mask, [2, 3], hint + "_keep"), np.float32, hint + "_keep_f")
    return g.op("Mul", [sequence, keep], hint + "_zeroed")


def _recurrent_outputs(g, layers, x, mask, initial_state, hint, return_sequences, zero_output):
    """The ONNX recurrent node of `layers` and the `(batch, steps, dirs, units)` or `(batch, dirs, units)`
    output Keras gives."""
    sequence = _run_recurrent(g, layers, x, mask, initial_state, hint, return_sequences)
    if not return_sequences:
        return sequence
    if zero_output and mask is not None:
        sequence = _zero_masked(g, sequence, mask, hint)
    return sequence


def _state_tensors(layer, kwargs):
    state = kwargs.get("initial_state")
    if state is None:
        return None
    state = list(state) if isinstance(state, (list, tuple)) else [state]
    if not all(isinstance(s, _Tensor) for s in state):
        raise NotMapped(layer, "takes an initial state that is not a tensor of the model")
    return state


def _explicit_mask(g, layer, kwargs, implicit):
    """The ONNX name of the mask a recurrent layer reads: `mask=` when given, else its input's."""
    mask = kwargs.get("mask")
    if mask is None:
        return implicit
    if isinstance(mask, _Unmapped):
        if implicit is None:
            raise NotMapped(mask.operation, f"computes the mask of {layer.name!r} and is not mapped")
        return implicit
    if not isinstance(mask, _Tensor) or len(mask.shape) != 2:
        raise NotMapped(layer, "takes a mask that is not a (batch, steps) tensor of the model")
    return mask.name if mask.dtype == np.bool_ else g.cast(mask.name, np.bool_, layer.name + "_mask")


def _convert_recurrent(g, layer, x, kwargs):
    if len(x.shape) != 3:
        raise NotMapped(layer, f"reads a tensor of rank {len(x.shape)}")
    mask = out_mask = _explicit_mask(g, layer, kwargs, x.mask)
    state = _state_tensors(layer, kwargs)
    hint = layer.name
    source = x.name
    if layer.go_backwards:  # Keras reads the reversed sequence and returns the outputs in that order
        source = g.flip_time(source, hint + "_reversed")
        mask = None if mask is None else g.flip_time(mask, hint + "_mask_reversed")
    output = _recurrent_outputs(g, [layer], source, mask, state, hint, layer.return_sequences,
                                layer.zero_output_for_mask)
    units = layer.cell.units
    if layer.return_sequences:  # Keras passes the mask on, in time order even after go_backwards
        name = g.squeeze(output, [2], hint + "_output")
        return _Tensor(name, (*x.shape[:2], units), np.dtype("float32"), out_mask)
    return _Tensor(g.squeeze(output, [1], hint + "_output"), (x.shape[0], units), np.dtype("float32"))


def _convert_bidirectional(g, layer, x, kwargs):
    forward, backward = layer.forward_layer, layer.backward_layer
    if kwargs.get("initial_state") is not None:
        raise NotMapped(layer, "takes an initial state")
    if len(x.shape) != 3:
        raise NotMapped(layer, f"reads a tensor of rank {len(x.shape)}")
    cells = [_check_cell_layer(forward), _check_cell_layer(backward)]
    if forward.go_backwards or not backward.go_backwards:
        raise NotMapped(layer, "has a forward layer reading backwards")
    same = (type(cells[0]) is type(cells[1]) and cells[0].units == cells[1].units
            and getattr(cells[0], "reset_after", None) == getattr(cells[1], "reset_after", None)
            and forward.return_sequences == backward.return_sequences)
    if not same:
        raise NotMapped(layer, "has forward and backward layers of different kinds or sizes")
    mask = _explicit_mask(g, layer, kwargs, x.mask)
    hint = layer.name
    output = _recurrent_outputs(g, [forward, backward], x.name, mask, None, hint, layer.return_sequences,
                                forward.zero_output_for_mask)
    units = cells[0].units
    sequence = layer.return_sequences
    direction_axis = 2 if sequence else 1
    shape = (*x.shape[:2], units) if sequence else (x.shape[0], units)
    out_mask = mask if sequence else None
    mode = layer.merge_mode
    if mode == "concat":
        merged = g.op("Reshape", [output, g.int64([0, 0, 2 * units] if sequence else [0, 2 * units])], hint + "_concat")
        return _Tensor(merged, (*shape[:-1], 2 * units), np.dtype("float32"), out_mask)
    if mode in ("sum", "ave"):
        merged = g.op("ReduceSum", [output, g.int64([direction_axis], "axes")], hint + "_sum", keepdims=0)
        if mode == "ave":
            merged = g.op("Mul", [merged, g.const(np.float32(0.5), "half")], hint + "_ave")
        return _Tensor(merged, shape, np.dtype("float32"), out_mask)
    halves = g.op("Split", [output, g.int64([1, 1], "split")], hint + "_directions", outputs=2, axis=direction_axis)
    halves = [g.squeeze(h, [direction_axis], f"{hint}_direction") for h in halves]
    if mode == "mul":
        return _Tensor(g.op("Mul", halves, hint + "_mul"), shape, np.dtype("float32"), out_mask)
    if mode is None:
        return [_Tensor(h, shape, np.dtype("float32"), out_mask) for h in halves]
    raise NotMapped(layer, f"has merge_mode={mode!r}")


# --------------------------------------------------------------------------------------------------
# Other layers


def _convert_embedding(g, layer, x):
    if getattr(layer, "quantization_mode", None):
        raise NotMapped(layer, f"is quantized ({layer.quantization_mode})")
    (table,) = _float32_weights(layer, [layer.embeddings])
    ids = x.name
    if not np.issubdtype(x.dtype, np.integer):
        ids = g.cast(ids, np.int32, layer.name + "_ids")  # as Keras casts float ids
    output = g.op("Gather", [g.const(table, layer.name + "_table"), ids], layer.name + "_output", axis=0)
    mask = None  # Keras' Embedding gives a mask only with mask_zero
    if layer.mask_zero:
        zero = g.const(np.zeros((), x.dtype if np.issubdtype(x.dtype, np.integer) else np.int32), "zero_id")
        mask = g.op("Not", [g.op("Equal", [ids, zero], layer.name + "_padding")], layer.name + "_mask")
    return _Tensor(output, (*x.shape, table.shape[1]), np.dtype("float32"), mask)


def _convert_masking(g, layer, x):
    hint = layer.name
    value = g.const(np.asarray(layer.mask_value, x.dtype), hint + "_value")
    differs = g.cast(g.op("Not", [g.op("Equal", [x.name, value], hint + "_equal")], hint + "_differs"),
                     np.float32, hint + "_differs_f")
    kept = g.op("Greater", [g.op("ReduceSum", [differs, g.int64([-1], "axes")], hint + "_count", keepdims=1),
                            g.const(np.float32(0), "zero_f")], hint + "_kept")  # (batch, steps, 1)
    output = g.op("Mul", [x.name, g.cast(kept, x.dtype, hint + "_kept_f")], hint + "_output")
    return _Tensor(output, x.shape, x.dtype, g.squeeze(kept, [-1], hint + "_mask"))


def _convert_dense(g, layer, x):
    if getattr(layer, "quantization_mode", None):
        raise NotMapped(layer, f"is quantized ({layer.quantization_mode})")
    variables = [layer.kernel] + ([layer.bias] if layer.use_bias else [])
    kernel, *bias = _float32_weights(layer, variables)
    y = g.op("MatMul", [x.name, g.const(kernel, layer.name + "_kernel")], layer.name + "_matmul")
    if bias:
        y = g.op("Add", [y, g.const(bias[0], layer.name + "_bias")], layer.name + "_bias_add")
    y = _elementwise(g, y, layer.activation, layer, layer.name + "_activation")
    return _Tensor(y, (*x.shape[:-1], kernel.shape[1]), np.dtype("float32"), x.mask)


def _convert_activation(g, layer, x):
    return _Tensor(_elementwise(g, x.name, layer.activation, layer, layer.name + "_output"), x.shape, x.dtype, x.mask)


def _merged_mask(g, tensors, hint):
    """Keras' merge of masks: the OR of the inputs' masks. Where an input has none, Add gives none and
    Concatenate a mask that is true everywhere, which a recurrent layer reads as no mask."""
    masks = [t.mask for t in tensors]
    if any(m is None for m in masks):
        return None
    merged = masks[0]
    for m in masks[1:]:
        merged = g.op("Or", [merged, m], hint + "_mask")
    return merged


def _convert_merge(g, layer, tensors):
    if isinstance(layer, keras.layers.Concatenate):
        rank = len(tensors[0].shape)
        if layer.axis not in (-1, rank - 1):
            raise NotMapped(layer, f"concatenates along axis {layer.axis}; only the last axis is mapped")
        name = g.op("Concat", [t.name for t in tensors], layer.name + "_output", axis=-1)
        width = sum(t.shape[-1] for t in tensors) if all(isinstance(t.shape[-1], int) for t in tensors) else "width"
        return _Tensor(name, (*tensors[0].shape[:-1], width), tensors[0].dtype,
                       _merged_mask(g, tensors, layer.name))
    name = tensors[0].name
    for t in tensors[1:]:
        name = g.op("Add", [name, t.name], layer.name + "_output")
    return _Tensor(name, tensors[0].shape, tensors[0].dtype, _merged_mask(g, tensors, layer.name))


@dataclasses.dataclass
class _Unmapped:
    """The result of a non-layer operation that is not mapped. Keras records the mask computations of
    Masking and Embedding(mask_zero=True) as such operations feeding recurrent layers' `mask=`; a
    recurrent layer then reads the mask its input carries, and anything else that uses one is refused."""

    operation: object


def _convert_operation(g, operation, args):
    """The `keras.ops` calls on model tensors that are mapped: `not_equal` and `equal` against a number
    (a mask from token ids) and `any` over the last axis (Masking's mask); others give `_Unmapped`."""
    kind = type(operation).__name__
    x = args[0] if args else None
    if not isinstance(x, _Tensor):
        return _Unmapped(operation)
    if kind in ("NotEqual", "Equal") and len(args) == 2 and isinstance(args[1], (int, float, np.number)):
        name = g.op("Equal", [x.name, g.const(np.asarray(args[1], x.dtype), operation.name + "_value")], operation.name)
        if kind == "NotEqual":
            name = g.op("Not", [name], operation.name + "_not")
        return _Tensor(name, x.shape, np.dtype(bool))
    if kind == "Any" and x.dtype == np.bool_ and list(operation.axis or []) in ([-1], [len(x.shape) - 1]):
        count = g.op("ReduceSum", [g.cast(x.name, np.float32, operation.name + "_f"), g.int64([-1], "axes")],
                     operation.name + "_count", keepdims=int(bool(operation.keepdims)))
        name = g.op("Greater", [count, g.const(np.float32(0), "zero_f")], operation.name)
        shape = x.shape[:-1] + ((1,) if operation.keepdims else ())
        return _Tensor(name, shape, np.dtype(bool))
    return _Unmapped(operation)


# --------------------------------------------------------------------------------------------------
# The model


def _functional(model):
    if isinstance(model, keras.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None:
            raise NotMapped(model, "has no input shape")
        return graph
    if not is_functional(model):
        raise NotMapped(model, "is a subclassed model, whose call() cannot be read layer by layer")
    return model


class _Converter:
    """Runs a functional model's graph with `_Tensor`s in place of Keras tensors, writing ONNX nodes."""

    def __init__(self, graph):
        self.g = graph
        self.recurrent = []  # names of the layers written as ONNX recurrent operators

    def run(self, model, inputs):
        return _functional(model)._run_through_graph(inputs, call_fn=self._call)

    def _call(self, operation, *args, **kwargs):
        g = self.g
        if not isinstance(operation, keras.layers.Layer):
            return _convert_operation(g, operation, args)
        recurrent = isinstance(operation, (keras.layers.RNN, keras.layers.Bidirectional))
        mask_argument = kwargs.get("mask") if recurrent else None
        for value in keras.tree.flatten((args, kwargs)):
            if isinstance(value, _Unmapped) and value is not mask_argument:
                raise NotMapped(value.operation, f"feeds layer {operation.name!r}; the operation is not mapped")
        if isinstance(operation, keras.Model):
            return self.run(operation, keras.tree.flatten(args))
        if isinstance(operation, (keras.layers.Concatenate, keras.layers.Add)):
            tensors = list(args[0])
            if kwargs.get("mask") is not None:
                raise NotMapped(operation, "is called with an explicit mask")
            return _convert_merge(g, operation, tensors)
        x = args[0]
        if not isinstance(x, _Tensor) or (len(args) > 1 and not isinstance(operation, keras.layers.RNN)):
            raise NotMapped(operation, "is called on several tensors")
        if isinstance(operation, keras.layers.Bidirectional):
            self.recurrent.append(operation.name)
            return _convert_bidirectional(g, operation, x, kwargs)
        if isinstance(operation, keras.layers.RNN):
            if len(args) > 1:
                kwargs = {**kwargs, "initial_state": args[1]}
            self.recurrent.append(operation.name)
            return _convert_recurrent(g, operation, x, kwargs)
        mask = kwargs.get("mask")
        if isinstance(mask, _Tensor):  # Keras passes the mask on to layers whose call takes one
            x = dataclasses.replace(x, mask=_explicit_mask(g, operation, kwargs, x.mask))
        return self._feature_layer(operation, x)

    def _feature_layer(self, layer, x):
        g = self.g
        if isinstance(layer, keras.layers.TimeDistributed):
            if len(x.shape) != 3:
                raise NotMapped(layer, f"reads a tensor of rank {len(x.shape)}")
            inner = layer.layer
            if not isinstance(inner, (keras.layers.Dense, keras.layers.Activation, *_IDENTITY)):
                raise NotMapped(layer, f"wraps a {type(inner).__name__}; TimeDistributed of Dense, Activation or "
                                "dropout is mapped")
            return self._feature_layer(inner, x)
        if isinstance(layer, keras.layers.Embedding):
            return _convert_embedding(g, layer, x)
        if isinstance(layer, keras.layers.Masking):
            return _convert_masking(g, layer, x)
        if isinstance(layer, keras.layers.Dense):
            return _convert_dense(g, layer, x)
        if isinstance(layer, keras.layers.Activation):
            return _convert_activation(g, layer, x)
        if isinstance(layer, _IDENTITY):
            return x
        raise NotMapped(layer, "is not mapped to ONNX by the native recurrent writer")


def _onnx_dtype(dtype):
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def native_model_proto(model, specs, opset):
    """The ONNX `ModelProto` of `model` with ONNX recurrent operators, and the recurrent layers' names.

    `specs` are the model's input specs (`export._common.input_specs`); each sequence input's time
    axis is written as the dynamic axis "steps" unless `specs` fix it.

    Raises:
        NotMapped: naming the first layer whose maths does not map.
    """
    from onnx import helper

    if opset < MIN_OPSET:
        raise NotMapped(model, f"is asked for opset {opset}; native recurrent export writes opset {MIN_OPSET} or later")
    graph = _Graph(opset)
    output_count = len(keras.tree.flatten(_functional(model).outputs))
    for name in [spec.name for spec in specs] + [f"output_{i}" for i in range(output_count)]:
        graph.name(name)  # reserved: no node output takes these names
    inputs, input_infos = [], []
    for spec in specs:
        dtype = np.dtype(spec.dtype.as_numpy_dtype)
        shape = ["batch" if spec.shape[0] is None else int(spec.shape[0])]
        shape += ["steps" if d is None and i == 1 else d for i, d in enumerate(spec.shape[1:], 1)]
        if any(d is None for d in shape):
            raise NotMapped(model, f"has input {spec.name!r} with an undefined axis other than batch and time")
        inputs.append(_Tensor(spec.name, tuple(shape), dtype))
        input_infos.append(helper.make_tensor_value_info(spec.name, _onnx_dtype(dtype), list(shape)))
    converter = _Converter(graph)
    outputs = keras.tree.flatten(converter.run(model, inputs))
    for tensor in outputs:
        if isinstance(tensor, _Unmapped):
            raise NotMapped(tensor.operation, "computes an output and is an operation that is not mapped")
    output_infos = []
    for i, tensor in enumerate(outputs):
        name = f"output_{i}"
        graph.nodes.append(helper.make_node("Identity", [tensor.name], [name], name=graph.name(name + "_node")))
        output_infos.append(helper.make_tensor_value_info(name, _onnx_dtype(tensor.dtype), list(tensor.shape)))
    onnx_graph = helper.make_graph(graph.nodes, model.name, input_infos, output_infos, graph.initializers)
    proto = helper.make_model_gen_version(onnx_graph, opset_imports=[helper.make_opsetid("", opset)],
                                          producer_name="keras-models")
    return proto, converter.recurrent


# --------------------------------------------------------------------------------------------------
# Routing from export.to_onnx


@dataclasses.dataclass
class NativeExport:
    """What `export_native` decided: the report of the native file, or why the unrolled path runs."""

    report: object = None  # ExportReport when the native file was written
    notes: list[str] = dataclasses.field(default_factory=list)  # for the unrolled path's report


def check_recurrent_mode(recurrent, streaming):
    if recurrent not in RECURRENT_MODES:
        raise ExportError(f"recurrent must be one of {RECURRENT_MODES}; got recurrent={recurrent!r}.")
    if streaming and recurrent == "native":
        raise ExportError("streaming=True writes the one-step model, which has no recurrent operators; "
                          "recurrent='native' applies to whole-sequence export.")


def _has_recurrent_layers(model):
    return any(isinstance(layer, keras.layers.RNN) for layer in model._flatten_layers())


def _undefined_time_axis(specs):
    return any(len(spec.shape) >= 2 and spec.shape[1] is None for spec in specs)


def export_native(model, path, *, recurrent, streaming, opset, batch_size, input_signature) -> NativeExport:
    """Writes `model` with ONNX recurrent operators when `recurrent` asks for it and its layers map.

    `recurrent="unrolled"` and streaming export leave the model to tf2onnx. `"auto"` writes natively a
    model that has recurrent layers all of whose layers map, and otherwise returns a note saying why
    not (the unrolled export then needs a fixed sequence length: without one this raises, naming the
    layer that does not map). `"native"` raises `ExportError` naming that layer.
    """
    from export._common import atomic_write, loadable_onnx
    from export.onnx import describe_onnx

    check_recurrent_mode(recurrent, streaming)
    if streaming or recurrent == "unrolled":
        return NativeExport()
    if recurrent == "auto" and not _has_recurrent_layers(model):
        return NativeExport()
    specs = input_specs(model, batch_size=batch_size, input_signature=input_signature)
    if input_signature is None:  # the model's own time axis: the native file takes any length
        import tensorflow as tf

        specs = [tf.TensorSpec((s.shape[0], None, *s.shape[2:]) if len(s.shape) >= 2 and _is_sequence(s) else s.shape,
                               s.dtype, name=s.name) for s in specs]
    try:
        proto, recurrent_layers = native_model_proto(model, specs, opset)
    except NotMapped as error:
        if recurrent == "native":
            raise ExportError(f"Model {model.name!r} does not map to ONNX's recurrent operators: {error}.") from None
        original = input_specs(model, batch_size=batch_size, input_signature=input_signature)
        if _undefined_time_axis(original):
            raise ExportError(
                f"Model {model.name!r} has an undefined time axis and does not map to ONNX's recurrent operators "
                f"({error}); the unrolled export needs a fixed sequence length: build the model with one, e.g. "
                "keras.Input((steps, features)), or pass input_signature with one."
            ) from None
        return NativeExport(notes=[f"native ONNX recurrent operators not used: {error}"])
    content = loadable_onnx(proto, f"the ONNX graph of {model.name!r}")
    with atomic_write(path) as tmp:
        tmp.write_bytes(content)
    report = describe_onnx(proto, path, len(content))
    report.notes.append(f"opset {opset}")
    for tensor, name in zip(report.outputs, output_names(model, len(report.outputs))):
        tensor.name = f"{tensor.name} ({name})"
    if recurrent_layers:
        report.notes.append(f"recurrent layers as ONNX recurrent operators, any sequence length: {recurrent_layers}")
    return NativeExport(report=report)


def _is_sequence(spec):
    """A sequence input: token ids `(batch, steps)` or features `(batch, steps, features)`."""
    integer = spec.dtype.is_integer
    return (integer and len(spec.shape) == 2) or (not integer and len(spec.shape) == 3)
