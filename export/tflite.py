"""Keras model -> TFLite flatbuffer with builtin ops, optional quantization."""

from __future__ import annotations

import collections
import contextlib
import logging
import re
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from export._common import (
    ExportError,
    ExportReport,
    TensorInfo,
    atomic_write,
    captured_stderr,
    check_destination,
    input_specs,
    output_names,
    plain_message,
    trace,
    write_tokenizer_beside,
)
from export.layout import channels_last_model, float32_model
from export.streaming import step_function

QUANTIZATIONS = (None, "dynamic", "float16", "int8")

_BUILTIN_NAMES = {
    value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}
_TENSOR_TYPES = {
    value: name.lower() for name, value in vars(schema.TensorType).items() if not name.startswith("_")
}


class FlexOpsError(ExportError):
    """The model needs TensorFlow (Flex) or custom ops that edge runtimes do not have."""

    def __init__(self, ops: dict[str, list[str]]):
        self.ops = ops
        detail = "; ".join(f"{op} (from {', '.join(layers) or 'unknown layers'})" for op, layers in sorted(ops.items()))
        super().__init__(
            f"Conversion to builtin TFLite ops failed; these ops need Flex (SELECT_TF_OPS) or custom "
            f"kernels: {detail}. Replace those layers, or pass allow_select_tf_ops=True to accept a file "
            "that needs the Flex delegate (it will not run in the plain LiteRT runtime)."
        )


def _operator_name(code) -> str:
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        custom = code.customCode
        return custom.decode() if isinstance(custom, bytes) else str(custom)
    return _BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}")


def describe_tflite(content: bytes, path: Path | None = None, quantization=None) -> ExportReport:
    """Reads inputs, outputs and operators from a TFLite flatbuffer without running it."""
    if bytes(content[4:8]) != b"TFL3":
        raise ExportError(
            f"{path or 'content'} is not a valid TFLite file: {len(content)} bytes without the TFL3 "
            "flatbuffer identifier (truncated, corrupt, or another format)."
        )
    try:
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
        subgraph = model.subgraphs[0]
    except Exception as error:
        raise ExportError(f"{path or 'content'} is not a valid TFLite file ({error}).") from error

    def info(index):
        tensor = subgraph.tensors[index]
        shape = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
        quant = None
        q = tensor.quantization
        if q is not None and q.scale is not None and len(q.scale) == 1 and q.zeroPoint is not None:
            quant = (float(q.scale[0]), int(q.zeroPoint[0]))
        return TensorInfo(name, tuple(int(d) for d in (shape if shape is not None else [])), _TENSOR_TYPES[tensor.type], quant)

    counts = collections.Counter()
    for graph in model.subgraphs:
        for op in graph.operators or []:
            counts[_operator_name(model.operatorCodes[op.opcodeIndex])] += 1
    return ExportReport(
        path=path,
        format="tflite",
        size_bytes=len(content),
        inputs=[info(i) for i in subgraph.inputs],
        outputs=[info(i) for i in subgraph.outputs],
        operators=dict(counts),
        quantization=quantization,
    )


class _DeprecatedPathWarning(logging.Filter):
    """Drops the converter's "Please consider providing the trackable_obj argument" line.

    `from_concrete_functions` logs it through absl on every call without a `trackable_obj`; the
    frozen function converted here has no variables left to track, so the advice does not apply.
    """

    def filter(self, record):
        return "trackable_obj argument" not in record.getMessage()


@contextlib.contextmanager
def _quiet_converter():
    """Runs the TFLite converter without its chatter; yields a list that receives what it printed.

    The MLIR converter writes diagnostics (`loc(fused[...]): error: ...`, ignored-flag warnings, the
    Flex op list) from C++ straight to file descriptor 2 (see `captured_stderr`), and absl logs the
    `trackable_obj` advice on every call.
    """
    absl_logger = logging.getLogger("absl")
    log_filter = _DeprecatedPathWarning()
    absl_logger.addFilter(log_filter)
    try:
        with captured_stderr() as printed:
            yield printed
    finally:
        absl_logger.removeFilter(log_filter)


def _converter_errors(error, printed: str = "") -> str:
    """The converter's own error lines, without MLIR locations, IR dumps and Python frames."""
    messages = []
    for item in getattr(error, "errors", None) or []:
        text = getattr(item, "error_message", "")
        messages += [line for line in text.splitlines() if line and not line.startswith("see current operation")]
    if not messages:
        for line in (str(error) + "\n" + printed).splitlines():
            if "error:" in line:
                messages.append(line.split("error:", 1)[1].strip())
    if not messages:
        messages = [plain_message(error).splitlines()[0]] if str(error) else [type(error).__name__]
    return "; ".join(dict.fromkeys(m.strip() for m in messages if m.strip()))


def _representative_dataset(data, specs):
    """Turns arrays, a list of arrays (one per input) or a callable into the converter's generator."""
    if callable(data):
        return data
    arrays = list(data) if isinstance(data, (list, tuple)) else [data]
    if len(arrays) != len(specs):
        raise ExportError(
            f"representative_data must hold one array per model input ({len(specs)}); got {len(arrays)}."
        )
    arrays = [np.asarray(a) for a in arrays]
    count = len(arrays[0])
    if count == 0 or any(len(a) != count for a in arrays):
        raise ExportError("representative_data arrays must be non-empty and of equal length.")
    for a, spec in zip(arrays, specs):
        expected = tuple(spec.shape)[1:]
        if a.ndim != len(expected) + 1 or any(e is not None and e != d for e, d in zip(expected, a.shape[1:])):
            wanted = "x".join("?" if e is None else str(e) for e in (None, *expected))
            raise ExportError(
                f"representative_data for input {spec.name!r} has shape {a.shape}; the model takes {wanted} "
                "(samples first)."
            )
        if not np.all(np.isfinite(a.astype(np.float64))):
            raise ExportError(f"representative_data for input {spec.name!r} contains NaN or infinity.")
    batch = specs[0].shape[0] or 1

    def generator():
        for start in range(0, count - batch + 1, batch):
            yield [a[start : start + batch].astype(spec.dtype.as_numpy_dtype) for a, spec in zip(arrays, specs)]

    return generator


def _configure(converter, quantization, representative_data, specs, int8_io, allow_select_tf_ops):
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization in ("dynamic", "float16", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        converter.representative_dataset = _representative_dataset(representative_data, specs)
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    if allow_select_tf_ops:
        ops = ops + [tf.lite.OpsSet.SELECT_TF_OPS]
    converter.target_spec.supported_ops = ops


def _graph_node_names(concrete):
    """(op type, node or function name) for every node, function bodies included."""
    graph_def = concrete.graph.as_graph_def()
    pairs = [(node.op, node.name) for node in graph_def.node]
    for function in graph_def.library.function:
        pairs += [(node.op, function.signature.name + "/" + node.name) for node in function.node_def]
    return pairs


def _locate_layers(op_type, pairs, layer_names):
    layers = set()
    for node_op, node_name in pairs:
        if node_op != op_type:
            continue
        matches = [n for n in layer_names if re.search(rf"(^|[/_]){re.escape(n)}([/_]|$)", node_name)]
        if matches:
            layers.add(max(matches, key=len))
    return sorted(layers)


def _flex_ops(frozen, specs, quantization, representative_data, int8_io, model):
    """Converts once more with SELECT_TF_OPS to learn which ops the builtin set lacks, and their layers."""
    try:
        with _quiet_converter():
            converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
            _configure(converter, quantization, representative_data, specs, int8_io, True)
            converter.allow_custom_ops = True
            content = converter.convert()
    except Exception:
        return None
    report = describe_tflite(content)
    unsupported = [op for op in report.operators if op.startswith("Flex") or op not in _BUILTIN_NAMES.values()]
    pairs = _graph_node_names(frozen)
    layer_names = [layer.name for layer in model._flatten_layers(include_self=False)]
    return {op: _locate_layers(op[4:] if op.startswith("Flex") else op, pairs, layer_names) for op in unsupported}


def _named_signature(content: bytes, input_names, output_names) -> bytes:
    """`content` with one `serving_default` signature naming the inputs and outputs, in function order.

    Converting a frozen function keeps its input and output order in the subgraph but writes no
    signature; the interpreter's `get_signature_runner()` reads the names from this one.
    """
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    subgraph = model.subgraphs[0]
    signature = schema.SignatureDefT()
    signature.signatureKey = "serving_default"
    signature.subgraphIndex = 0
    signature.inputs, signature.outputs = [], []
    for names, indices, maps in ((input_names, subgraph.inputs, signature.inputs),
                                 (output_names, subgraph.outputs, signature.outputs)):
        if len(names) != len(indices):
            raise ExportError(f"The converted file has {len(indices)} tensors where {len(names)} were traced: {names}.")
        for name, index in zip(names, indices):
            tensor_map = schema.TensorMapT()
            tensor_map.name, tensor_map.tensorIndex = name, int(index)
            maps.append(tensor_map)
    model.signatureDefs = [signature]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def to_tflite(
    model,
    path,
    *,
    quantization: str | None = None,
    representative_data=None,
    batch_size: int | None = None,
    input_signature=None,
    int8_io: bool = False,
    allow_select_tf_ops: bool = False,
    streaming: bool = False,
    generation: bool = False,
    max_length: int | None = None,
) -> ExportReport:
    """Exports `model` to a TFLite file that runs in the LiteRT interpreter.

    Args:
        model: a built Keras model: functional, Sequential or subclassed; any number of inputs and
            outputs; float or integer inputs.
        path: the `.tflite` file to write. Written atomically: a failed export leaves nothing there.
        quantization: `None` (float32), `"dynamic"` (int8 weights, float activations), `"float16"`
            (float16 weights) or `"int8"` (full-integer; needs `representative_data`).
        representative_data: calibration inputs for `"int8"`: an array (or one array per input) of
            samples, or a callable yielding lists of input batches.
        batch_size: fix the batch axis; `None` keeps it dynamic (resize the interpreter's input).
        input_signature: override the inputs: a list of `tf.TensorSpec` or `(shape, dtype)` pairs.
        int8_io: with `"int8"`, make the file's inputs and outputs int8 too (else they stay float32).
        allow_select_tf_ops: accept TensorFlow (Flex) ops that the builtin set lacks. Off by default:
            such files do not run in the plain LiteRT runtime or on most edge targets.
        streaming: write the model's one-step function (see `export.streaming`): inputs are the step
            inputs (each sequence input without its time axis) and `state_0`, `state_1`, ...; outputs
            the step outputs and `state_0_out`, `state_1_out`, ...; all named in the `serving_default`
            signature. Zero states start a sequence. Takes quantization None, "dynamic" or "float16".
        generation: write what a device needs to generate tokens with a model of the library that
            generates (`rnn_language_model`, `rnn_seq2seq`, `gpt_causal_lm`, ...): one file whose
            signatures are the parts `encode` (models with a source) and `decode` (one token and the
            states in, the logits and the next states out; see `export.generation`). Run it with
            `export.generate(path, ...)`. Takes quantization None, "dynamic" or "float16".
        max_length: with `generation=True`, the longest sequence to generate (it sizes a KV cache).

    Returns:
        An `ExportReport` with the path, size, inputs, outputs and operator counts.

    Raises:
        ExportError: bad arguments, an unbuilt model, or a missing destination folder; with
            `streaming=True`, a layer that mixes time steps (named in the message).
        FlexOpsError: builtin ops cannot express the model; the message names the ops and layers.
    """
    if quantization not in QUANTIZATIONS:
        raise ExportError(f"quantization must be one of {QUANTIZATIONS}; got quantization={quantization!r}.")
    if not isinstance(streaming, bool):
        raise ExportError(f"streaming must be True or False; got streaming={streaming!r}.")
    if streaming and quantization == "int8":
        raise ExportError(
            'streaming=True takes quantization None, "dynamic" or "float16"; full-integer "int8" would '
            "quantize the recurrent states with calibration data that does not cover long streams."
        )
    if not isinstance(generation, bool):
        raise ExportError(f"generation must be True or False; got generation={generation!r}.")
    model = float32_model(model)  # a mixed-precision model exports in float32
    if generation:
        return _generation_tflite(model, path, max_length, quantization, batch_size, streaming, input_signature,
                                  allow_select_tf_ops)
    if max_length is not None:
        raise ExportError(f"max_length={max_length!r} applies only with generation=True.")
    if quantization == "int8" and representative_data is None:
        raise ExportError('quantization="int8" needs representative_data: a few hundred typical inputs.')
    if int8_io and quantization != "int8":
        raise ExportError('int8_io=True needs quantization="int8".')
    path = check_destination(path)
    model = channels_last_model(model)  # TFLite and ONNX files are channels-last
    step = None
    if streaming:
        step = step_function(model, batch_size=batch_size, input_signature=input_signature)
        specs, concrete, recurrent = step.specs, step.concrete, []
    else:
        specs = input_specs(model, batch_size=batch_size, input_signature=input_signature)
        _, concrete, recurrent = trace(model, specs)
    frozen = None
    try:
        with _quiet_converter() as printed:
            frozen = convert_variables_to_constants_v2(concrete)
            converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
            _configure(converter, quantization, representative_data, specs, int8_io, allow_select_tf_ops)
            content = converter.convert()
    except ExportError:
        raise
    except Exception as error:
        if frozen is not None and not allow_select_tf_ops:
            ops = _flex_ops(frozen, specs, quantization, representative_data, int8_io, model)
            if ops:
                raise FlexOpsError(ops) from error
        detail = _converter_errors(error, "".join(printed))
        raise ExportError(f"TFLite conversion of {model.name!r} failed: {detail}") from error
    if step is not None:
        content = _named_signature(content, step.input_names, step.output_names)
    report = describe_tflite(content, path, quantization)
    flex = sorted(op for op in report.operators if op.startswith("Flex"))
    if flex:
        report.notes.append(f"needs the Flex delegate (not in the plain LiteRT runtime) for {', '.join(flex)}")
    names = step.output_names if step is not None else output_names(model, len(report.outputs))
    for tensor, name in zip(report.outputs, names):
        tensor.name = name
    if step is not None:
        for tensor, name in zip(report.inputs, step.input_names):
            tensor.name = name
        report.notes.append(step.note())
    if recurrent:
        report.notes.append(f"recurrent layers unrolled over a fixed sequence length: {recurrent}")
    with atomic_write(path) as tmp:
        tmp.write_bytes(content)
    return write_tokenizer_beside(model, path, report)


def _generation_tflite(model, path, max_length, quantization, batch_size, streaming, input_signature,
                       allow_select_tf_ops) -> ExportReport:
    """`to_tflite(..., generation=True)`: the parts as signatures of one file (see `export.generation`)."""
    from ai_edge_litert.interpreter import Interpreter

    from export import generation

    if streaming:
        raise ExportError("generation=True and streaming=True are different files: choose one.")
    if quantization == "int8":
        raise ExportError('generation=True takes quantization None, "dynamic" or "float16".')
    if input_signature is not None:
        raise ExportError("generation=True takes no input_signature: the parts' inputs follow from the model.")
    path = check_destination(path)
    parts = generation.generation_parts(model, max_length, batch_size)
    try:
        with _quiet_converter() as printed, generation.saved_parts(parts) as folder:
            converter = tf.lite.TFLiteConverter.from_saved_model(str(folder), signature_keys=[p.name for p in parts])
            _configure(converter, quantization, None, None, False, allow_select_tf_ops)
            content = converter.convert()
    except ExportError:
        raise
    except Exception as error:
        detail = _converter_errors(error, "".join(printed))
        raise ExportError(f"TFLite conversion of the generation parts of {model.name!r} failed: {detail}") from error
    content = generation.with_tflite_metadata(content, generation.metadata(model, max_length, parts))
    report = describe_tflite(content, path, quantization)
    flex = sorted(op for op in report.operators if op.startswith("Flex"))
    if flex and not allow_select_tf_ops:
        raise ExportError(f"The generation parts of {model.name!r} need TensorFlow (Flex) ops {flex}.")
    signatures = Interpreter(model_content=content).get_signature_list()
    runner = Interpreter(model_content=content).get_signature_runner("decode")
    for kind, details in (("inputs", runner.get_input_details()), ("outputs", runner.get_output_details())):
        setattr(report, kind, [TensorInfo(name, tuple(int(d) for d in detail["shape_signature"]),
                                          np.dtype(detail["dtype"]).name) for name, detail in details.items()])
    report.files = [path]
    report.notes.append(f"generation parts (signatures): {generation.signature_infos(signatures)}")
    report.notes.append(f"max_length {max_length}; stop_token_ids {list(model.stop_token_ids)}; "
                        "zero states start a sequence unless an encode part computes them")
    with atomic_write(path) as tmp:
        tmp.write_bytes(content)
    return write_tokenizer_beside(model, path, report)
