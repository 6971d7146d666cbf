"""Export keras-models (and any Keras model) to TFLite and ONNX, and verify the files in real runtimes.

    >>> import export
    >>> export.to_tflite(model, "model.tflite")
    >>> export.to_onnx(model, "model.onnx")
    >>> export.verify(model, "model.tflite", x).max_abs
    >>> export.to_tflite(language_model, "lm.tflite", generation=True, max_length=64)
    >>> export.generate("lm.tflite", prompts)
    >>> lm = export.load_parts("lm.tflite"); export.generate(lm, prompts)   # load once, generate often
    >>> export.save_denoiser(diffusion_model, "denoiser.tflite")     # then export.diffusion.sample(...)

This package sits above `keras_models`: it may import it, never the reverse. Its names load on first
use (PEP 562), so `export.cli` and `export.tour_cases` start without importing TensorFlow.
"""

import importlib as _importlib
import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Public name -> the submodule that defines it.
_NAMES = {
    "ExportError": "export._common",
    "ExportReport": "export._common",
    "TensorInfo": "export._common",
    "DEFAULT_OPSET": "export.onnx",
    "to_onnx": "export.onnx",
    "FlexOpsError": "export.tflite",
    "QUANTIZATIONS": "export.tflite",
    "to_tflite": "export.tflite",
    "generate": "export.generation",
    "load_parts": "export.generation",
    "save_denoiser": "export.diffusion",
    "load_denoiser": "export.diffusion",
    "VerifyResult": "export.verification",
    "inspect": "export.verification",
    "run_artifact": "export.verification",
    "verify": "export.verification",
}


def __getattr__(name):
    if name in _NAMES:
        value = getattr(_importlib.import_module(_NAMES[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'export' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_NAMES])


__all__ = [
    "DEFAULT_OPSET",
    "ExportError",
    "ExportReport",
    "FlexOpsError",
    "QUANTIZATIONS",
    "TensorInfo",
    "VerifyResult",
    "generate",
    "inspect",
    "load_denoiser",
    "load_parts",
    "run_artifact",
    "save_denoiser",
    "to_onnx",
    "to_tflite",
    "verify",
]
