"""What the TFLite and ONNX exporters share: input signatures, tracing and atomic writes."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_models.files import atomic_write, create_temporary  # noqa: F401 - atomic_write is re-exported


class ExportError(ValueError):
    """Raised when a model cannot be exported as asked; the message says what to change."""


@dataclasses.dataclass
class TensorInfo:
    """One input or output of an exported artifact."""

    name: str
    shape: tuple  # -1 or None marks a dynamic axis
    dtype: str
    quantization: tuple | None = None  # (scale, zero_point) for quantized tensors

    def __str__(self):
        shape = "x".join("?" if d in (None, -1) else str(d) for d in self.shape) or "scalar"
        quant = f" scale={self.quantization[0]:.4g} zero_point={self.quantization[1]}" if self.quantization else ""
        return f"{self.name}: {self.dtype}[{shape}]{quant}"


@dataclasses.dataclass
class ExportReport:
    """What `to_tflite`, `to_onnx` and `inspect` return."""

    path: Path
    format: str  # "tflite" or "onnx"
    size_bytes: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    operators: dict[str, int]  # operator name -> count
    quantization: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    files: list[Path] = dataclasses.field(default_factory=list)  # every file written, when several are

    def __str__(self):
        lines = [
            f"{self.format} artifact {self.path} ({self.size_bytes:,} bytes"
            + (f", {self.quantization} quantization)" if self.quantization else ")"),
            "inputs:",
            *(f"  {t}" for t in self.inputs),
            "outputs:",
            *(f"  {t}" for t in self.outputs),
            f"operators ({sum(self.operators.values())}): "
            + ", ".join(f"{name} x{count}" for name, count in sorted(self.operators.items())),
        ]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Input signatures


def _sanitize(name: str, index: int) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", name or "")
    if not name or not (name[0].isalpha()):
        name = f"input_{index}" if not name else f"input_{name}"
    return name


def _check_built(model):
    if not isinstance(model, keras.Model):
        raise ExportError(f"Expected a keras.Model; got {type(model).__name__}.")
    if not model.built:
        raise ExportError(
            f"Model {model.name!r} is not built: call it on a batch of data or call "
            "model.build(input_shape) before exporting."
        )


def input_specs(model, *, batch_size=None, input_signature=None) -> list[tf.TensorSpec]:
    """The flat list of `tf.TensorSpec`s the exported function takes, in the model's input order.

    Functional and Sequential models give their signature themselves; subclassed models give the shapes
    they were built or called with. `input_signature` (specs or `(shape, dtype)` pairs, shapes with the
    batch axis) overrides both; `batch_size` fixes the batch axis (None keeps it dynamic).
    """
    _check_built(model)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ExportError(f"batch_size must be a positive integer or None; got {batch_size!r}.")
    if input_signature is not None:
        raw = list(input_signature) if isinstance(input_signature, (list, tuple)) else [input_signature]
        specs = []
        for i, item in enumerate(raw):
            if isinstance(item, tf.TensorSpec):
                specs.append(item)
            elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], (tuple, list)):
                specs.append(tf.TensorSpec(tuple(item[0]), tf.as_dtype(item[1])))
            else:
                raise ExportError(
                    f"input_signature[{i}] must be a tf.TensorSpec or a (shape, dtype) pair; got {item!r}."
                )
        if is_functional(model) or isinstance(model, keras.Sequential):
            _check_signature(model, specs)
    else:
        specs = _model_specs(model)
    result = []
    for i, spec in enumerate(specs):
        shape = list(spec.shape)
        if not shape:
            raise ExportError(f"Input {i} of {model.name!r} is a scalar; inputs need a batch axis.")
        if batch_size is not None:
            shape[0] = batch_size
        result.append(tf.TensorSpec(shape, spec.dtype, name=_sanitize(spec.name or "", i)))
    names = [s.name for s in result]
    if len(set(names)) != len(names):
        result = [tf.TensorSpec(s.shape, s.dtype, name=f"{s.name}_{i}") for i, s in enumerate(result)]
    return result


def _shape_text(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _check_signature(model, specs):
    """Raises unless `specs` match the inputs of a functional model in number, rank and fixed axes."""
    expected = _model_specs(model)
    if len(specs) != len(expected):
        raise ExportError(
            f"input_signature has {len(specs)} input(s); model {model.name!r} takes {len(expected)}: "
            + ", ".join(f"{_shape_text(tuple(e.shape))}" for e in expected) + "."
        )
    for i, (spec, want) in enumerate(zip(specs, expected)):
        got, wanted = tuple(spec.shape), tuple(want.shape)
        fixed_differs = any(w is not None and g is not None and w != g for g, w in zip(got, wanted))
        if len(got) != len(wanted) or fixed_differs:
            raise ExportError(
                f"input_signature[{i}] has shape {_shape_text(got)}; input {i} of {model.name!r} takes "
                f"{_shape_text(wanted)} (None is any size)."
            )


def is_functional(model) -> bool:
    """True for functional models (Keras 3 has no public flag; `_is_graph_network` was Keras 2's)."""
    from keras.src.models.functional import Functional

    return isinstance(model, Functional)


def _model_specs(model):
    if is_functional(model) or isinstance(model, keras.Sequential):
        if isinstance(model, keras.Sequential) and not model.inputs:
            raise ExportError(f"Sequential model {model.name!r} has no input shape; build it first.")
        return [
            tf.TensorSpec(tuple(t.shape), tf.as_dtype(t.dtype), name=t.name) for t in keras.tree.flatten(model.inputs)
        ]
    from keras.src.export.export_utils import get_input_signature

    try:
        signature = get_input_signature(model)
    except Exception as error:  # Keras raises several types here
        raise ExportError(
            f"Cannot infer the inputs of subclassed model {model.name!r} ({error}). Pass "
            "input_signature=[tf.TensorSpec(shape, dtype), ...]."
        ) from error
    flat = keras.tree.flatten(signature)
    specs = []
    for i, spec in enumerate(flat):
        specs.append(tf.TensorSpec(tuple(spec.shape), tf.as_dtype(spec.dtype), name=getattr(spec, "name", None) or f"input_{i}"))
    return specs


def output_names(model, count: int) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != count:
        names = [f"output_{i}" for i in range(count)]
    return names


# --------------------------------------------------------------------------------------------------
# Tracing


def _recurrent_layers(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.RNN)]


@contextlib.contextmanager
def unrolled_recurrent_layers(model):
    """Temporarily unrolls every Keras RNN layer of `model` and turns cuDNN kernels off.

    An unrolled LSTM/GRU/SimpleRNN is a fixed chain of matmuls and activations: it converts to builtin
    TFLite ops and plain ONNX ops with frozen weights. A plain conversion of Keras 3 recurrent layers
    gives a `WHILE` loop reading resource variables (`VAR_HANDLE`, `READ_VARIABLE`), which fails when
    the LiteRT interpreter invokes it, or `TensorList` ops that exist only as Flex ops. Unrolling covers
    LSTM, GRU, SimpleRNN, `Bidirectional` wrappers of them (any `merge_mode`), stacks of them,
    `return_sequences` true or false, `go_backwards`, and masks (`Embedding(mask_zero=True)`, `Masking`).

    Limits:
        - The time axis must be fixed: a model built with `Input((None, features))` cannot be
          unrolled. `trace` (and so `to_tflite`, and `to_onnx(recurrent="unrolled")`; ONNX's
          default writes its own RNN/LSTM/GRU operators over any length, see
          `export.onnx_recurrent`) raises `ExportError` naming the layers;
          rebuild with a fixed length or pass `input_signature` with one. Shorter sequences are
          padded (and masked) by the caller.
        - The graph grows linearly with the sequence length: every step is a copy of the cell's ops
          (an LSTM step is about 14 TFLite ops; the weights are shared, not copied), so operator
          count, file size and conversion time grow with it. Measured on two CPU cores for an
          LSTM(32) on 8 features: 50 steps give 706 TFLite ops, 162 KB, 7 s to TFLite and 12 s to
          ONNX; 200 steps give 2,806 ops, 582 KB, 22 s and 66 s. Outputs still agree to 1e-6.
          Thousands of steps are impractical: use a fixed window, or a convolutional or attention
          model.
        - Stateful layers (`stateful=True`) keep their state in variables between calls; an exported
          file is a pure function, so they are refused with `ExportError`.
        - Only `keras.layers.RNN` subclasses are unrolled. A hand-written `while` loop in a custom
          layer, or a cell that is not a Keras RNN cell, is exported as written and may need Flex ops.

    Yields:
        The recurrent layers that were unrolled (restored on exit, also on error).
    """
    layers = _recurrent_layers(model)
    stateful = [layer.name for layer in layers if getattr(layer, "stateful", False)]
    if stateful:
        raise ExportError(
            f"Stateful recurrent layers {stateful} keep their state between calls in variables, which an "
            "exported file cannot carry; rebuild them with stateful=False (and pass states as inputs if "
            "they must persist)."
        )
    saved = []
    for layer in layers:
        saved.append((layer, layer.unroll, getattr(layer, "use_cudnn", None)))
        layer.unroll = True
        if hasattr(layer, "use_cudnn"):
            layer.use_cudnn = False
    from keras.src import backend as keras_backend

    original_rnn = keras_backend.rnn
    keras_backend.rnn = _rnn_with_backward_mask_fixed(original_rnn)
    try:
        yield [layer for layer, _, _ in saved]
    finally:
        keras_backend.rnn = original_rnn
        for layer, unroll, use_cudnn in saved:
            layer.unroll = unroll
            if use_cudnn is not None:
                layer.use_cudnn = use_cudnn


def _rnn_with_backward_mask_fixed(original_rnn):
    """Keras' unrolled TensorFlow loop zeroes the padded outputs of a `go_backwards` layer with the mask
    in forward order while its outputs are in reversed order (a `Bidirectional` layer over padded
    sequences turns that zeroing on), so the wrong steps come out zero. This runs the loop without its
    zeroing and zeroes with the reversed mask, as the loop that is not unrolled does."""

    def rnn(step_function, inputs, initial_states, go_backwards=False, mask=None, constants=None, unroll=False,
            input_length=None, time_major=False, zero_output_for_mask=False, return_all_outputs=True):
        if not (unroll and go_backwards and zero_output_for_mask and mask is not None):
            return original_rnn(step_function, inputs, initial_states, go_backwards=go_backwards, mask=mask,
                                constants=constants, unroll=unroll, input_length=input_length,
                                time_major=time_major, zero_output_for_mask=zero_output_for_mask,
                                return_all_outputs=return_all_outputs)
        last_output, outputs, states = original_rnn(
            step_function, inputs, initial_states, go_backwards=True, mask=mask, constants=constants, unroll=True,
            input_length=input_length, time_major=time_major, zero_output_for_mask=False,
            return_all_outputs=return_all_outputs)
        time_axis = 0 if time_major else 1
        mask = tf.reverse(tf.cast(mask, tf.bool), [time_axis])  # processing order, as the outputs are

        def zero(value, step_mask):
            while len(step_mask.shape) < len(value.shape):
                step_mask = step_mask[..., None]
            return tf.where(step_mask, value, tf.zeros_like(value))

        last_step = mask[-1] if time_major else mask[:, -1]  # the last step processed: the first in time
        last_output = tf.nest.map_structure(lambda v: zero(v, last_step), last_output)
        if return_all_outputs:
            outputs = tf.nest.map_structure(lambda v: zero(v, mask), outputs)
        else:
            outputs = tf.nest.map_structure(lambda v: zero(v, mask[-1:] if time_major else mask[:, -1:]), outputs)
        return last_output, outputs, states

    return rnn


def undefined_time_axis_error(recurrent, error) -> ExportError | None:
    """The clear error for an unrolled recurrent layer whose time axis is undefined, else None."""
    if recurrent and "unroll" in str(error).lower():
        return ExportError(
            f"Recurrent layers {[l.name for l in recurrent]} need a fixed sequence length to export as "
            "builtin ops (they are unrolled step by step); build the model with a fixed time axis, "
            "e.g. keras.Input((steps, features)), or pass input_signature with one."
        )
    return None


def _pack_inputs(model, flat):
    struct = getattr(model, "_inputs_struct", None)
    if struct is not None and is_functional(model):
        return keras.tree.pack_sequence_as(struct, list(flat))
    return flat[0] if len(flat) == 1 else list(flat)


def serving_function(model, specs):
    """A `tf.function` over `specs` returning the model's outputs as a flat tuple (inference mode)."""

    @tf.autograph.experimental.do_not_convert
    def serve(*args):
        outputs = model(_pack_inputs(model, args), training=False)
        return tuple(keras.tree.flatten(outputs))

    return tf.function(serve, input_signature=specs, autograph=False)


def trace(model, specs):
    """Traces `model` (recurrent layers unrolled, layers without builtin TFLite ops rewritten, see
    `export.rewrites`) and returns the concrete function and the unrolled layers' names."""
    from export.rewrites import rewritten_layers

    with unrolled_recurrent_layers(model) as recurrent, rewritten_layers(model, "tflite"):
        fn = serving_function(model, specs)
        try:
            concrete = fn.get_concrete_function()
        except (ValueError, TypeError) as error:
            clear = undefined_time_axis_error(recurrent, error)
            if clear is not None:
                raise clear from error
            raise ExportError(f"Tracing {model.name!r} for export failed: {plain_message(error)}") from error
    return fn, concrete, [l.name for l in recurrent]


def loadable_onnx(proto, what: str) -> bytes:
    """`proto` serialized, after the ONNX checker and onnxruntime have both accepted it; else an
    `ExportError` saying that `what` (e.g. "the ONNX graph of 'model'") does not load."""
    import onnx
    import onnxruntime

    content = proto.SerializeToString()
    try:
        onnx.checker.check_model(proto)
        onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    except Exception as error:
        raise ExportError(f"{what[0].upper()}{what[1:]} does not load in onnxruntime: {error}") from error
    return content


def write_tokenizer_beside(model, path, report):
    """Writes the tokenizer a language model carries (`model.preprocessor`) beside its exported file,
    as `<stem>.tokenizer.json` in the `tokenizers` library's format, and lists it in `report`: the
    tokenizer runs on the host, so it travels beside the file."""
    from keras_models.text import save_tokenizer_beside

    written = save_tokenizer_beside(model, path)
    if written is not None:
        report.files = [*(report.files or [path]), written]
        report.notes.append(f"tokenizer beside the model: {written.name} (runs on the host)")
    return report


def plain_message(error) -> str:
    """The message of `error` without Keras' call context and terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    text = re.sub(r"^Exception encountered when calling [^\n]*\n+", "", text)
    return text.split("\n\nArguments received by", 1)[0].strip()


@contextlib.contextmanager
def captured_stderr():
    """Holds back what native code prints to file descriptor 2; yields a list that receives the text.

    TensorFlow's converter and the LiteRT interpreter print from C++ straight to the descriptor, out of
    reach of Python's `sys.stderr`, so the descriptor itself is pointed at a temporary file for the
    block. Callers quote the lines that matter in their errors. Anything else written to descriptor 2
    meanwhile (other threads) is held back with it.
    """
    captured = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no descriptor 2 (embedded interpreters): nothing to redirect
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


# --------------------------------------------------------------------------------------------------
# Files


def _create_temporary(path: Path) -> Path:
    """`keras_models.files.create_temporary`, with an `ExportError` naming the path the user gave."""
    try:
        return create_temporary(path)
    except OSError as error:
        raise ExportError(
            f"Cannot write {str(path)!r}: folder {str(path.parent)!r} is not writable ({error.strerror or error})."
        ) from None


def check_destination(path) -> Path:
    """`path` as a `Path`, after checking that an export can be written there.

    Runs before any conversion, so a bad destination fails in a moment and names the path given.
    """
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ExportError(f"Export path {str(path)!r} is a directory; give a file name.")
    if not path.parent.exists():
        raise ExportError(f"Folder {str(path.parent)!r} for export path {str(path)!r} does not exist.")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ExportError(f"Cannot write {str(path)!r}: folder {str(path.parent)!r} is not writable.")
    # os.access answers for permission bits only (root passes, a read-only mount may not): try it.
    _create_temporary(path).unlink()
    return path


def as_input_list(model_or_names, inputs, count: int) -> list[np.ndarray]:
    """Normalizes user inputs (array, list, tuple or dict by input name) to a list of arrays."""
    if isinstance(inputs, dict):
        names = model_or_names
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ExportError(f"inputs is missing {missing}; expected keys {names}.")
        inputs = [inputs[n] for n in names]
    elif not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    if len(inputs) != count:
        raise ExportError(f"The model takes {count} input(s); got {len(inputs)}.")
    return [np.asarray(x) for x in inputs]
