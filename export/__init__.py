"""Export keras-models (and any Keras model) to TFLite and ONNX, and verify the files in real runtimes.

    >>> import export
    >>> export.to_tflite(model, "model.tflite")
    >>> export.to_onnx(model, "model.onnx")
    >>> export.verify(model, "model.tflite", x).max_abs

This package sits above `keras_models`: it may import it, never the reverse.
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from export._common import ExportError, ExportReport, TensorInfo
from export.onnx import DEFAULT_OPSET, to_onnx
from export.tflite import QUANTIZATIONS, FlexOpsError, to_tflite
from export.verify import VerifyResult, inspect, run_artifact, verify

__all__ = [
    "DEFAULT_OPSET",
    "ExportError",
    "ExportReport",
    "FlexOpsError",
    "QUANTIZATIONS",
    "TensorInfo",
    "VerifyResult",
    "inspect",
    "run_artifact",
    "to_onnx",
    "to_tflite",
    "verify",
]
