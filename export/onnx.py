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
)
from export.layout import channels_last_model
from export.streaming import step_function

DEFAULT_OPSET = 17


_HANDLERS_REGISTERED = False


def _register_missing_handlers():
    """Teaches tf2onnx the TensorFlow ops Keras emits that it lacks.

    `Erfc` comes from Keras' exact GELU (`keras.activations.gelu(x, approximate=False)`, the default of
    `activation="gelu"`), used by every transformer feed-forward block; tf2onnx 1.17 has no handler
    for it. ONNX has `Erf` from opset 9, and erfc(x) = 1 - erf(x) loses nothing that matters in float32
    for GELU: where erfc is tiny, GELU multiplies it by 0.5 * x and the absolute error stays near 1e-7.
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

    Returns:
        An `ExportReport`.
    """
    import onnx
    import onnxruntime
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
    path = check_destination(path)
    model = channels_last_model(model)  # TFLite and ONNX files are channels-last
    step = None
    if streaming:
        step = step_function(model, batch_size=batch_size, input_signature=input_signature)
        specs = step.specs
    else:
        specs = input_specs(model, batch_size=batch_size, input_signature=input_signature)
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    _register_missing_handlers()
    with unrolled_recurrent_layers(model) as recurrent:
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
    content = model_proto.SerializeToString()
    try:
        onnx.checker.check_model(model_proto)
        onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    except Exception as error:
        raise ExportError(f"The ONNX graph of {model.name!r} does not load in onnxruntime: {error}") from error
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
    return report
