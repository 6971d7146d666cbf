"""Compiling models for training, with XLA where it measures faster.

Keras quietly turns `jit_compile=True` off when a layer declares `supports_jit = False`, and
`jit_compile="auto"` means "no XLA" on a CPU-only machine. `compile_model` makes the choice explicit:
it picks a default per device and family from the measurements in BENCHMARKS.md, accepts an override,
and raises instead of downgrading. `xla_step_report` proves that the step `fit()` runs is compiled.
"""

from __future__ import annotations

import contextlib
import functools

import keras
import tensorflow as tf

# Whether XLA is the default on a CPU-only machine, per family. Measured by
# `benchmarks/xla_vs_default.py` on two CPU cores (BENCHMARKS.md, "XLA or not"); XLA is the default only
# where a representative model trained at least 1.10 times as fast with it. It did for the LSTM (x1.5:
# XLA fuses the per-step loop) and the DCGAN generator + discriminator (x1.55). It lost for convolutions
# (x0.6, oneDNN's kernels are faster), for small dense and linear models (x0.7-0.9, inside the noise at
# best), and badly for every model that draws random numbers in its step (MLP with dropout x0.11,
# transformer block with dropout x0.09, VAE sampling x0.58): Keras' Dropout and `keras.random.*` use
# TensorFlow's stateless RNG with its default algorithm, which XLA compiles into a generator about 50
# times slower on CPU. On a GPU, XLA is the default for every family.
CPU_XLA_DEFAULTS = {
    "dense": False,
    "statistical": False,
    "classical": False,
    "recurrent": True,
    "transformer": False,
    "cnn": False,
    "gan": True,
    "vae": False,
}


class XLACompileError(RuntimeError):
    """Raised when XLA was requested but the step cannot or will not be XLA-compiled."""


@functools.lru_cache(maxsize=None)
def has_accelerator() -> bool:
    """True when TensorFlow sees a GPU or TPU."""
    return any(d.device_type != "CPU" for d in tf.config.list_physical_devices())


_OVERRIDE: list[bool] = []  # a stack: the innermost `jit_compile_default(...)` block wins


@contextlib.contextmanager
def jit_compile_default(value: bool):
    """Within the block, builders that are not given `jit_compile` use `value` instead of the default.

    `keras-models tour` uses it to train every family with XLA (the default) or with each family's
    measured CPU default (`--xla default`).
    """
    if value not in (True, False):
        raise ValueError(f"jit_compile_default takes True or False; got {value!r}.")
    _OVERRIDE.append(value)
    try:
        yield
    finally:
        _OVERRIDE.pop()


def default_jit_compile(family: str | None = None) -> bool:
    """The XLA default for `family` on this machine: always on a GPU, per measurements on a CPU."""
    if family is not None and family not in CPU_XLA_DEFAULTS:
        raise ValueError(
            f"Unknown family {family!r} for default_jit_compile; known: {sorted(CPU_XLA_DEFAULTS)}."
        )
    if _OVERRIDE:
        return _OVERRIDE[-1]
    if has_accelerator() or family is None:
        return True
    return CPU_XLA_DEFAULTS[family]


def layers_without_xla(model: keras.Model) -> list[str]:
    """Names of the layers of `model` (nested too) that declare `supports_jit = False`."""
    return [layer.name for layer in model._flatten_layers() if not layer.supports_jit]


def compile_model(
    model: keras.Model,
    *,
    optimizer="adam",
    loss=None,
    metrics=None,
    jit_compile: bool | None = None,
    family: str | None = None,
    **compile_kwargs,
) -> keras.Model:
    """Compiles `model` with the library's XLA policy and returns it.

    Args:
        model: the Keras model to compile.
        optimizer, loss, metrics: as for `keras.Model.compile`.
        jit_compile: `True` or `False` to force XLA on or off; `None` for the default of `family` on
            this device (`default_jit_compile`).
        family: the model family, used for the default.
        **compile_kwargs: passed to `keras.Model.compile`.

    Raises:
        XLACompileError: `jit_compile=True` was asked for and Keras would silently run without XLA.
    """
    if jit_compile not in (None, True, False):
        raise ValueError(f"jit_compile must be True, False or None; got {jit_compile!r}.")
    if compile_kwargs.get("run_eagerly") and jit_compile:
        raise ValueError("jit_compile=True cannot be combined with run_eagerly=True.")
    requested = default_jit_compile(family) if jit_compile is None else jit_compile
    if requested:
        blocking = layers_without_xla(model)
        if blocking:
            if jit_compile is None:
                requested = False  # the default yields to layers that cannot compile; explicit asks fail.
            else:
                raise XLACompileError(
                    f"jit_compile=True was requested but these layers do not support XLA: {blocking}."
                )
    model.compile(
        optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=requested, **compile_kwargs
    )
    if bool(model.jit_compile) != requested:
        raise XLACompileError(
            f"Keras changed jit_compile from {requested} to {model.jit_compile} for {model.name!r}."
        )
    return model


def _step_functions(train_function):
    """The `tf.function`s reachable through the closures of Keras' train function."""
    found, stack, seen = [], [train_function], set()
    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        if isinstance(fn, tf.types.experimental.PolymorphicFunction):
            found.append(fn)
            fn = getattr(fn, "_python_function", None)
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            if callable(value):
                stack.append(value)
    return found


def xla_step_report(model: keras.Model, data) -> dict:
    """Proves whether the training step that `fit()` runs is XLA-compiled.

    Runs one `train_on_batch` on `data` (a `(x, y)` tuple or `x` alone) if the train function does not
    exist yet, finds the per-step `tf.function` inside Keras' train function, and asks XLA for its HLO.

    Returns:
        A dict with `jit_compile` (the model's flag), `step_jit_compile` (the flag of the step function
        `fit()` calls), and `hlo_instructions` (the number of HLO instructions XLA produced, 0 when the
        step is not compiled).
    """
    if model.train_function is None:
        if isinstance(data, tuple):
            model.train_on_batch(*data)
        else:
            model.train_on_batch(data)
    functions = _step_functions(model.train_function)
    compiled = [fn for fn in functions if getattr(fn, "_jit_compile", False)]
    report = {
        "jit_compile": bool(model.jit_compile),
        "step_jit_compile": bool(compiled),
        "hlo_instructions": 0,
    }
    if compiled:
        step = compiled[0]
        batch = data if isinstance(data, tuple) else (data,)
        batch = tuple(tf.convert_to_tensor(part) for part in batch)
        hlo = step.experimental_get_compiler_ir(batch)(stage="hlo")
        report["hlo_instructions"] = sum(1 for line in hlo.splitlines() if " = " in line)
    return report


def assert_xla_compiled(model: keras.Model, data) -> dict:
    """Like `xla_step_report`, but raises `XLACompileError` unless the step is really compiled."""
    report = xla_step_report(model, data)
    if not (report["jit_compile"] and report["step_jit_compile"] and report["hlo_instructions"]):
        raise XLACompileError(f"The training step of {model.name!r} is not XLA-compiled: {report}.")
    return report
