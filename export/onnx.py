"""Keras model -> ONNX through tf2onnx, recurrent layers unrolled, checked by onnxruntime."""

from __future__ import annotations

import collections
import logging
from pathlib import Path

from export._common import (
    ExportError,
    ExportReport,
    TensorInfo,
    atomic_write,
    check_destination,
    input_specs,
    output_names,
    plain_message,
    unrolled_recurrent_layers,
    serving_function,
    undefined_time_axis_error,
    write_tokenizer_beside,
    loadable_onnx,
)
from export.layout import channels_last_model, float32_model
from export.onnx_recurrent import export_native
from export.streaming import step_function

DEFAULT_OPSET = 17


_HANDLERS_REGISTERED = False


def _register_missing_handlers():
    """Teaches tf2onnx the TensorFlow ops Keras emits that it lacks.

    `Erfc` comes from Keras' exact GELU (`keras.activations.gelu(x, approximate=False)`, the default of
    `activation="gelu"`), used by every transformer feed-forward block; tf2onnx 1.17 has no handler
    for it. ONNX has `Erf` from opset 9, and erfc(x) = 1 - erf(x) loses nothing that matters in float32
    for GELU: where erfc is tiny, GELU multiplies it by 0.5 * x and the absolute error stays near 1e-7.
    `XlaDynamicUpdateSlice` is `keras.ops.slice_update` (a transformer's KV cache written in place).
    """
    global _HANDLERS_REGISTERED
    if _HANDLERS_REGISTERED:
        return
    import numpy as np
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    def rewrite_as_sub(ctx, node, onnx_op, one_minus):
        """Replaces `node` by `1 - onnx_op(x)` (one_minus) or `onnx_op(x) - 1`."""
        dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
        one = ctx.make_const(utils.make_name(node.name + "_one"), np.array(1, dtype=dtype))
        inner = ctx.make_node(onnx_op, [node.input[0]], op_name_scope=node.name, name=onnx_op.lower())
        output, shapes, dtypes = node.output[0], node.output_shapes, node.output_dtypes
        ctx.remove_node(node.name)
        operands = [one.output[0], inner.output[0]] if one_minus else [inner.output[0], one.output[0]]
        ctx.make_node("Sub", operands, outputs=[output], name=node.name, shapes=shapes, dtypes=dtypes)

    @tf_op("Erfc")
    class _Erfc:  # noqa: F841 - registered by the decorator
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            rewrite_as_sub(ctx, node, "Erf", one_minus=True)

    @tf_op("Expm1")
    class _Expm1:  # noqa: F841 - registered by the decorator
        """expm1(x) = exp(x) - 1, from Keras' CELU and ELU-like activations; absolute error ~1e-7."""

        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            rewrite_as_sub(ctx, node, "Exp", one_minus=False)

    @tf_op("XlaDynamicUpdateSlice")
    class _DynamicUpdateSlice:  # noqa: F841 - registered by the decorator
        """`keras.ops.slice_update` on TensorFlow (a KV cache written at the current position):
        ScatterND of the update at the indices `start + position within the update`, the start clamped
        as XLA clamps it (the update always fits inside the operand). Exact: values are moved, not
        computed."""

        @classmethod
        def version_13(cls, ctx, node, **kwargs):
            operand, update, starts = node.input
            rank = len(ctx.get_shape(operand))

            def const(name, value):
                return ctx.make_const(utils.make_name(f"{node.name}_{name}"), np.array(value, np.int64)).output[0]

            def op(op_type, inputs, **attr):
                return ctx.make_node(op_type, inputs, attr=attr, op_name_scope=node.name).output[0]

            update_shape = op("Shape", [update])
            limit = op("Sub", [op("Shape", [operand]), update_shape])
            start = op("Min", [op("Max", [op("Cast", [starts], to=7), const("zero", [0] * rank)]), limit])
            axes = []
            for axis in range(rank):
                size = op("Gather", [update_shape, const(f"axis{axis}", axis)], axis=0)
                steps = op("Range", [const(f"first{axis}", 0), size, const(f"step{axis}", 1)])
                view = [1] * rank
                view[axis] = -1
                steps = op("Reshape", [steps, const(f"view{axis}", view)])
                offset = op("Gather", [start, const(f"offset{axis}", axis)], axis=0)
                index = op("Expand", [op("Add", [steps, offset]), update_shape])
                axes.append(op("Unsqueeze", [index, const(f"last{axis}", [-1])]))
            indices = op("Concat", axes, axis=-1)  # (*update.shape, rank)
            output, shapes, dtypes = node.output[0], node.output_shapes, node.output_dtypes
            ctx.remove_node(node.name)
            ctx.make_node("ScatterND", [operand, indices, update], outputs=[output], name=node.name, shapes=shapes,
                          dtypes=dtypes)

    _HANDLERS_REGISTERED = True


def _supported_opsets() -> range:
    """Opsets both tf2onnx (the converter) and the installed onnx (the checker) know."""
    import onnx
    from tf2onnx import constants

    return range(9, min(max(constants.OPSET_TO_IR_VERSION), onnx.defs.onnx_opset_version()) + 1)


def _dims(value_info):
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else -1)
    return tuple(dims)


def describe_onnx(model_proto, path: Path | None = None, size: int | None = None) -> ExportReport:
    """Reads inputs, outputs and operators from an ONNX `ModelProto`."""
    from onnx import helper

    def info(value_info):
        dtype = helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type)
        return TensorInfo(value_info.name, _dims(value_info), str(dtype))

    initializer_names = {i.name for i in model_proto.graph.initializer}
    counts = collections.Counter(node.op_type for node in model_proto.graph.node)
    return ExportReport(
        path=path,
        format="onnx",
        size_bytes=size if size is not None else model_proto.ByteSize(),
        inputs=[info(v) for v in model_proto.graph.input if v.name not in initializer_names],
        outputs=[info(v) for v in model_proto.graph.output],
        operators=dict(counts),
    )


def _rename_values(graph, input_names, output_names):
    """Gives the graph's inputs and outputs, in order, the names in `input_names` and `output_names`."""
    renames = dict(zip([v.name for v in graph.input], input_names))
    renames.update(zip([v.name for v in graph.output], output_names))
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = renames.get(value.name, value.name)


def to_onnx(
    model,
    path,
    *,
    opset: int | None = None,
    batch_size: int | None = None,
    input_signature=None,
    streaming: bool = False,
    generation: bool = False,
    max_length: int | None = None,
    recurrent: str = "auto",
) -> ExportReport:
    """Exports `model` to an ONNX file and checks that onnxruntime loads it.

    Args:
        model: a built Keras model (functional, Sequential or subclassed, any inputs and outputs).
        path: the `.onnx` file to write, atomically.
        opset: the ONNX opset; `None` for 17, which current runtimes (onnxruntime, TensorRT, OpenVINO)
            all support.
        batch_size: fix the batch axis; `None` keeps it dynamic.
        input_signature: override the inputs (list of `tf.TensorSpec` or `(shape, dtype)` pairs).
        streaming: write the model's one-step function (see `export.streaming`), with inputs named
            after the model's inputs and `state_0`, `state_1`, ..., outputs after the model's outputs
            and `state_0_out`, `state_1_out`, ...
        generation: write what a device needs to generate tokens with a model of the library that
            generates (see `export.generation`): ONNX holds one graph per file, so each part goes to its
            own file beside `path`, `<stem>.decode.onnx` (and `<stem>.encode.onnx` for models with a
            source); `path` itself is not written. Run them with `export.generate(path, ...)`.
        max_length: with `generation=True`, the longest sequence to generate (it sizes a KV cache).
        recurrent: `"native"` writes recurrent layers as ONNX's `LSTM`/`GRU`/`RNN` operators with a
            dynamic time axis (see `export.onnx_recurrent`; `ExportError` naming a layer that does not
            map), `"unrolled"` unrolls them over the fixed sequence length, `"auto"` is native when every
            layer maps and unrolled otherwise (the report's notes say which and why).

    Returns:
        An `ExportReport` (with `generation=True`, of the decode part; `files` lists every file).
    """
    import tf2onnx

    opset = DEFAULT_OPSET if opset is None else opset
    supported = _supported_opsets()
    if not isinstance(opset, int) or opset not in supported:
        raise ExportError(
            f"opset={opset!r} is not supported; tf2onnx and onnxruntime here support opsets "
            f"{supported.start} to {supported.stop - 1}."
        )
    if not isinstance(streaming, bool):
        raise ExportError(f"streaming must be True or False; got streaming={streaming!r}.")
    if not isinstance(generation, bool):
        raise ExportError(f"generation must be True or False; got generation={generation!r}.")
    model = float32_model(model)  # a mixed-precision model exports in float32
    if generation:
        return _generation_onnx(model, path, max_length, opset, batch_size, streaming, input_signature)
    if max_length is not None:
        raise ExportError(f"max_length={max_length!r} applies only with generation=True.")
    path = check_destination(path)
    model = channels_last_model(model)  # TFLite and ONNX files are channels-last
    native = export_native(model, path, recurrent=recurrent, streaming=streaming, opset=opset,
                           batch_size=batch_size, input_signature=input_signature)
    if native.report is not None:
        return write_tokenizer_beside(model, path, native.report)
    step = None
    if streaming:
        step = step_function(model, batch_size=batch_size, input_signature=input_signature)
        specs = step.specs
    else:
        specs = input_specs(model, batch_size=batch_size, input_signature=input_signature)
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    _register_missing_handlers()
    from export.rewrites import rewritten_layers

    with unrolled_recurrent_layers(model) as recurrent, rewritten_layers(model, "onnx"):
        fn = step.function if step is not None else serving_function(model, specs)
        recurrent = [] if step is not None else recurrent
        try:
            model_proto, _ = tf2onnx.convert.from_function(fn, input_signature=specs, opset=opset)
        except Exception as error:
            clear = undefined_time_axis_error(recurrent, error)
            if clear is not None:
                raise clear from error
            raise ExportError(f"ONNX conversion of {model.name!r} failed: {plain_message(error)}") from error
    if step is not None:
        _rename_values(model_proto.graph, step.input_names, step.output_names)
    content = loadable_onnx(model_proto, f"the ONNX graph of {model.name!r}")
    with atomic_write(path) as tmp:
        tmp.write_bytes(content)
    report = describe_onnx(model_proto, path, len(content))
    report.notes.append(f"opset {opset}")
    if step is not None:
        report.notes.append(step.note())
    else:
        for tensor, name in zip(report.outputs, output_names(model, len(report.outputs))):
            tensor.name = f"{tensor.name} ({name})"
    if recurrent:
        report.notes.append(f"recurrent layers unrolled over a fixed sequence length: {[l.name for l in recurrent]}")
    report.notes += native.notes
    return write_tokenizer_beside(model, path, report)


def _generation_onnx(model, path, max_length, opset, batch_size, streaming, input_signature) -> ExportReport:
    """`to_onnx(..., generation=True)`: one file per part beside `path` (see `export.generation`)."""
    import json

    import tf2onnx

    from export import generation

    if streaming:
        raise ExportError("generation=True and streaming=True are different files: choose one.")
    if input_signature is not None:
        raise ExportError("generation=True takes no input_signature: the parts' inputs follow from the model.")
    path = check_destination(path)
    parts = generation.generation_parts(model, max_length, batch_size)
    meta = json.dumps(generation.metadata(model, max_length, parts))
    targets = generation.part_paths(path)
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    _register_missing_handlers()
    protos = {}
    for part in parts:  # every part converts and loads before any file is written
        try:
            proto, _ = tf2onnx.convert.from_function(part.function, input_signature=part.specs, opset=opset)
        except Exception as error:
            raise ExportError(
                f"ONNX conversion of the {part.name} part of {model.name!r} failed: {plain_message(error)}"
            ) from error
        _rename_values(proto.graph, part.input_names, part.output_names)
        proto.metadata_props.add(key=generation.METADATA_KEY, value=meta)
        protos[part.name] = proto, loadable_onnx(proto, f"the {part.name} part of {model.name!r}")
    for name, (_, content) in protos.items():
        with atomic_write(targets[name]) as tmp:
            tmp.write_bytes(content)
    decode, content = protos["decode"]
    report = describe_onnx(decode, targets["decode"], len(content))
    report.files = [targets[name] for name in protos]
    report.notes.append(f"opset {opset}")
    report.notes.append("generation parts (one file each): " + "; ".join(
        f"{part.name}({', '.join(part.input_names)}) -> {', '.join(part.output_names)}" for part in parts))
    report.notes.append(f"max_length {max_length}; stop_token_ids {list(model.stop_token_ids)}")
    return write_tokenizer_beside(model, path, report)
