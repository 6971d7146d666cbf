"""keras-models: every classic family of models in Keras, ready for TFLite and ONNX.

    >>> import keras_models
    >>> model = keras_models.build("mlp", input_shape=(64,), num_classes=10)
    >>> keras_models.list_models()
"""

import os as _os

# TensorFlow's C++ start-up chatter (CUDA probes on CPU machines) hides real messages from users; set
# before the library imports TensorFlow, on every backend.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_models import losses, optimizers
from keras_models.optimizer_group import OptimizerGroup
from keras_models.registry import ModelInfo, build, get_model_info, list_models, register_model
from keras_models.training import (
    JitCompileWarning,
    JitDecision,
    XLACompileError,
    assert_xla_compiled,
    compile_model,
    decide_jit_compile,
    default_jit_compile,
    xla_step_report,
)

__version__ = "0.1.0"

# Import every family of `keras_models.families` now, so that each of our classes is registered with
# Keras and `keras.saving.load_model(path)` works after a plain `import keras_models`. What that costs
# beyond `import keras` is measured by `benchmarks/import_time.py`. Under the JAX and PyTorch backends
# no family imports TensorFlow; the TensorFlow-only engines import it when they are used.
from keras_models.registry import _load_families as _load

_load()
del _load

__all__ = [
    "JitCompileWarning",
    "JitDecision",
    "ModelInfo",
    "OptimizerGroup",
    "XLACompileError",
    "assert_xla_compiled",
    "build",
    "compile_model",
    "decide_jit_compile",
    "default_jit_compile",
    "get_model_info",
    "list_models",
    "register_model",
    "xla_step_report",
]
