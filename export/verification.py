"""Running exported artifacts in their real runtimes and comparing with Keras."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np

from export._common import ExportError, as_input_list, captured_stderr, is_functional


@dataclasses.dataclass
class VerifyResult:
    """How far an artifact's outputs are from the Keras model's.

    `max_rel` is `|artifact - keras| / max(|keras|, 1e-6)`, so outputs at zero do not blow it up.
    """

    path: Path
    runtime: str
    max_abs: float
    max_rel: float
    per_output: list[dict]

    def __str__(self):
        return f"{self.runtime}: max abs diff {self.max_abs:.3g}, max rel diff {self.max_rel:.3g}"


def _interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    try:
        with captured_stderr():  # the interpreter announces its XNNPACK delegate on stderr
            return Interpreter(model_path=str(path))
    except Exception as error:
        raise ExportError(f"{path} does not load in the LiteRT interpreter: {error}") from error


def _check_shapes(path, names, shapes, arrays):
    """Rank and fixed non-batch axes of each input must match the file; the batch axis may differ."""
    for name, shape, array in zip(names, shapes, arrays):
        shape = tuple(None if d in (None, -1) or not isinstance(d, (int, np.integer)) else int(d) for d in shape)
        fixed = [(i, d) for i, d in enumerate(shape) if d is not None and i > 0]
        if array.ndim != len(shape) or any(array.shape[i] != d for i, d in fixed):
            wanted = "x".join("?" if i == 0 or d is None else str(d) for i, d in enumerate(shape))
            raise ExportError(f"Input {name!r} of {path} takes shape {wanted}; got an array of shape {array.shape}.")


def _check_builtin_ops(path: Path):
    """Raises when the file needs Flex or custom ops, which the plain LiteRT interpreter lacks."""
    from export.tflite import _BUILTIN_NAMES, describe_tflite

    operators = describe_tflite(path.read_bytes(), path).operators
    builtin = set(_BUILTIN_NAMES.values())
    flex = sorted(op for op in operators if op.startswith("Flex"))
    custom = sorted(op for op in operators if op not in builtin and not op.startswith(("Flex", "BUILTIN_")))
    if flex or custom:
        needs = "; ".join(part for part in (
            f"TensorFlow (Flex) ops {', '.join(flex)}" if flex else "",
            f"custom ops {', '.join(custom)}" if custom else "",
        ) if part)
        raise ExportError(
            f"{path} needs {needs}, which the plain LiteRT interpreter does not have, so it cannot be run "
            "here; run it where the Flex delegate (or the custom kernels) is linked, or export it with "
            "builtin ops only (allow_select_tf_ops=False)."
        )


def run_tflite(path, inputs) -> list[np.ndarray]:
    """Runs a TFLite file in the LiteRT interpreter; float inputs are quantized for int8 files."""
    path = Path(path)
    interpreter = _interpreter(path)
    _check_builtin_ops(path)
    details = interpreter.get_input_details()
    arrays = as_input_list([d["name"] for d in details], inputs, len(details))
    _check_shapes(path, [d["name"] for d in details], [d["shape_signature"] for d in details], arrays)
    try:
        for detail, array in zip(details, arrays):
            if tuple(detail["shape"]) != array.shape:
                interpreter.resize_tensor_input(detail["index"], array.shape)
        with captured_stderr():
            interpreter.allocate_tensors()
    except Exception as error:
        raise ExportError(f"{path} cannot be prepared for inputs of shape "
                          f"{[a.shape for a in arrays]} in the LiteRT interpreter: {error}") from error
    for detail, array in zip(interpreter.get_input_details(), arrays):
        dtype = detail["dtype"]
        scale, zero_point = detail["quantization"]
        if np.issubdtype(dtype, np.integer) and scale and np.issubdtype(array.dtype, np.floating):
            info = np.iinfo(dtype)
            array = np.clip(np.round(array / scale + zero_point), info.min, info.max)
        interpreter.set_tensor(detail["index"], array.astype(dtype))
    try:
        interpreter.invoke()
    except Exception as error:
        raise ExportError(f"{path} fails when run in the LiteRT interpreter: {error}") from error
    outputs = []
    for detail in interpreter.get_output_details():
        value = interpreter.get_tensor(detail["index"])
        scale, zero_point = detail["quantization"]
        if np.issubdtype(value.dtype, np.integer) and scale:
            value = (value.astype(np.float32) - zero_point) * scale
        outputs.append(value)
    return outputs


def run_onnx(path, inputs) -> list[np.ndarray]:
    """Runs an ONNX file in onnxruntime (CPU)."""
    import onnxruntime

    path = Path(path)
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:
        raise ExportError(f"{path} does not load in onnxruntime: {error}") from error
    feeds = session.get_inputs()
    arrays = as_input_list([f.name.split(":")[0] for f in feeds], inputs, len(feeds))
    _check_shapes(path, [f.name for f in feeds], [f.shape for f in feeds], arrays)
    type_map = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
                "tensor(double)": np.float64, "tensor(float16)": np.float16, "tensor(bool)": np.bool_,
                "tensor(int8)": np.int8, "tensor(uint8)": np.uint8}
    feed = {f.name: a.astype(type_map.get(f.type, a.dtype)) for f, a in zip(feeds, arrays)}
    return session.run(None, feed)


def run_artifact(path, inputs) -> list[np.ndarray]:
    """Runs a `.tflite` or `.onnx` file on `inputs` and returns its outputs in model order."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"No artifact at {str(path)!r}.")
    if path.suffix == ".tflite":
        return run_tflite(path, inputs)
    if path.suffix == ".onnx":
        return run_onnx(path, inputs)
    raise ExportError(f"Unknown artifact type {path.suffix!r} for {path}; expected .tflite or .onnx.")


def keras_outputs(model, inputs) -> list[np.ndarray]:
    """The model's inference outputs on `inputs` as a flat list of arrays."""
    struct = getattr(model, "_inputs_struct", None)
    names = [t.name for t in keras.tree.flatten(struct)] if struct is not None else []
    count = len(names) if names else (len(inputs) if isinstance(inputs, (list, tuple)) else 1)
    arrays = as_input_list(names, inputs, count)
    if struct is not None and is_functional(model):
        packed = keras.tree.pack_sequence_as(struct, arrays)
    else:
        packed = arrays[0] if len(arrays) == 1 else arrays
    outputs = model(packed, training=False)
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]


def compare(expected: list[np.ndarray], actual: list[np.ndarray]):
    if len(expected) != len(actual):
        raise ExportError(f"The artifact has {len(actual)} outputs; the model has {len(expected)}.")
    per_output = []
    for i, (e, a) in enumerate(zip(expected, actual)):
        e = np.asarray(e, dtype=np.float64)
        a = np.asarray(a, dtype=np.float64)
        if e.shape != a.shape:
            raise ExportError(f"Output {i}: the artifact gives shape {a.shape}, the model {e.shape}.")
        diff = np.abs(a - e)
        per_output.append({
            "index": i,
            "max_abs": float(diff.max(initial=0.0)),
            "max_rel": float((diff / np.maximum(np.abs(e), 1e-6)).max(initial=0.0)),
        })
    return per_output


def verify(model, path, inputs) -> VerifyResult:
    """Runs the artifact at `path` in its real runtime and compares it with `model` on `inputs`.

    Args:
        model: the Keras model the artifact was exported from.
        path: a `.tflite` (LiteRT interpreter) or `.onnx` (onnxruntime) file.
        inputs: an array, a list of arrays (one per input) or a dict by input name.

    Returns:
        A `VerifyResult` with the maximum absolute and relative differences over all outputs.
    """
    flat = list(inputs.values()) if isinstance(inputs, dict) else inputs if isinstance(inputs, (list, tuple)) else [inputs]
    for index, array in enumerate(flat):
        array = np.asarray(array)
        if array.ndim and len(array) == 0:
            raise ExportError(
                f"inputs[{index}] holds no samples (shape {array.shape}); verify needs at least one, or "
                "there would be nothing to compare."
            )
        if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
            raise ExportError(f"inputs[{index}] contains NaN or infinity; differences would be meaningless.")
    # The artifact runs first: its own shape and count checks give the clearest message.
    actual = run_artifact(path, inputs)
    expected = keras_outputs(model, inputs)
    per_output = compare(expected, actual)
    return VerifyResult(
        path=Path(path),
        runtime="LiteRT" if Path(path).suffix == ".tflite" else "onnxruntime",
        max_abs=max(p["max_abs"] for p in per_output),
        max_rel=max(p["max_rel"] for p in per_output),
        per_output=per_output,
    )


def inspect(path):
    """Describes an existing `.tflite` or `.onnx` file: inputs, outputs, operators and size."""
    from export.onnx import describe_onnx
    from export.tflite import describe_tflite

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"No artifact at {str(path)!r}.")
    content = path.read_bytes()
    if path.suffix == ".tflite":
        return describe_tflite(content, path)
    if path.suffix == ".onnx":
        import onnx

        try:
            proto = onnx.load_from_string(content)
            # An empty or foreign byte string can parse as an empty ModelProto; the checker refuses it.
            onnx.checker.check_model(proto)
        except Exception as error:
            raise ExportError(f"{path} is not a valid ONNX file ({error}).") from error
        return describe_onnx(proto, path, len(content))
    raise ExportError(f"Unknown artifact type {path.suffix!r} for {path}; expected .tflite or .onnx.")
