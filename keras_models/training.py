"""Compiling models for training: whether `fit` compiles its step, on every backend, and the proof.

Keras quietly turns `jit_compile=True` off when a layer declares `supports_jit = False` or TensorFlow's
op determinism is on, and `jit_compile="auto"` means "no XLA" on a CPU-only TensorFlow machine.
`decide_jit_compile` makes the choice explicit: it takes the default of the family on this backend and
device from `keras_models.families` (measured, see BENCHMARKS.md), accepts an override, yields to what
Keras can do in the user's context, and says what it chose and why (`model.jit_compile_reason`; a
`JitCompileWarning` when an explicit `jit_compile=True` cannot be honoured). It never refuses to build.
`compile_model` and every model with its own `compile` go through it.
`xla_step_report` proves what it can about the step `fit()` runs: its HLO on TensorFlow and JAX, that it
is `torch.compile`d on PyTorch.

TensorFlow is imported only on the TensorFlow backend.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import types
import warnings

import keras

from keras_models.families import FAMILIES, JitDefaults, get_family

# A model of no family compiles its step wherever a compiled step is the rule: XLA on TensorFlow (CPU
# too), jit on JAX, eager on PyTorch.
_NO_FAMILY = JitDefaults(tensorflow_cpu=True)

# Whether XLA is the default on a CPU-only TensorFlow machine, per family: a read-only view of
# `keras_models.families.FAMILIES`, where the values and their measurements live.
CPU_XLA_DEFAULTS = types.MappingProxyType({name: family.jit.tensorflow_cpu for name, family in FAMILIES.items()})


class XLACompileError(RuntimeError):
    """Raised when a compiled step was requested but the step cannot or will not be compiled."""


@functools.lru_cache(maxsize=None)
def has_accelerator() -> bool:
    """True when the Keras backend sees a GPU or TPU (asked of TensorFlow, JAX or PyTorch itself)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return any(device.device_type != "CPU" for device in tf.config.list_physical_devices())
    if backend == "jax":
        import jax

        return any(device.platform != "cpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def default_jit_compile(family: str | None = None) -> bool:
    """Whether `fit` compiles the step of a `family` model by default, on this backend and device.

    TensorFlow: XLA on a GPU or TPU, on a CPU per the family's measurements. JAX: always jitted.
    PyTorch: eager. `family=None` (a model of no family) follows XLA on TensorFlow's CPU too.
    See `keras_models.families`.
    """
    jit = _NO_FAMILY if family is None else get_family(family).jit
    return jit.value(keras.backend.backend(), has_accelerator())


def layers_without_xla(model: keras.Model) -> list[str]:
    """Names of the layers of `model` (nested too) that declare `supports_jit = False`."""
    return [layer.name for layer in model._flatten_layers() if not layer.supports_jit]


class JitCompileWarning(UserWarning):
    """`jit_compile=True` was asked for where Keras cannot compile the step; the model trains without."""


@dataclasses.dataclass(frozen=True)
class JitDecision:
    """What `decide_jit_compile` chose and why.

    Attributes:
        jit_compile: the value passed to `keras.Model.compile`.
        reason: one sentence saying why, e.g. "TensorFlow op determinism is enabled ...".
        requested: what the caller asked for (`True`, `False` or `None` for the default).
    """

    jit_compile: bool
    reason: str
    requested: bool | None = None


def jit_blockers(model: keras.Model) -> list[str]:
    """Why Keras would run `model`'s step without compiling it in this context, one reason per cause.

    Keras (`keras.src.trainers.trainer.model_supports_jit`) turns `jit_compile=True` off when a layer
    declares `supports_jit = False`, when TensorFlow's op determinism is enabled, and for TensorFlow on
    an Apple-silicon GPU. Under a `tf.distribute` strategy with several replicas Keras keeps the flag,
    but its compiled step fails at the first batch (a plain `keras.Sequential` too, Keras 3.15 with
    TensorFlow 2.21), so that context is a blocker as well. An empty list means the step can be compiled.
    """
    reasons = []
    blocking = layers_without_xla(model)
    if blocking:
        reasons.append(f"these layers do not support a compiled step: {blocking}")
    if keras.backend.backend() == "tensorflow":
        from tensorflow.python.framework.config import is_op_determinism_enabled

        if is_op_determinism_enabled():
            reasons.append("TensorFlow op determinism is enabled (tf.config.experimental.enable_op_determinism), "
                           "and Keras runs no XLA under it")
        strategy = getattr(model, "distribute_strategy", None)
        if strategy is not None and strategy.num_replicas_in_sync > 1:
            name = type(strategy).__name__
            if strategy.extended._in_multi_worker_mode():
                name = "MultiWorkerMirroredStrategy"
                why = ("TensorFlow's XLA compiles no cross-worker collectives on CPU devices (\"Collectives are "
                       "not yet implemented for CPU devices when compiling with XLA\"), and a compiled "
                       "multi-worker step is untested on GPUs")
            else:
                why = ("Keras' XLA-compiled TensorFlow step cannot run there (each replica's compiled step "
                       "reads the other devices' copies of the variables)")
            reasons.append(f"the model is distributed over {strategy.num_replicas_in_sync} replicas by "
                           f"{name}: {why}; keras.distribution on the JAX backend compiles "
                           "data-parallel steps")
        if platform.system() == "Darwin" and "arm" in platform.processor().lower():
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                reasons.append("Keras runs no XLA for TensorFlow on an Apple-silicon GPU")
    return reasons


def _default_reason(family: str | None, value: bool) -> str:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        if has_accelerator():
            return f"XLA {'on' if value else 'off'}: the default on a GPU or TPU"
        whose = "a model of no family" if family is None else f"the {family!r} family"
        return (f"XLA {'on' if value else 'off'}: the measured default of {whose} on a CPU-only "
                f"TensorFlow machine (keras_models.families, BENCHMARKS.md)")
    if backend == "jax":
        return f"jax.jit {'on' if value else 'off'}: the default on JAX"
    if backend == "torch":
        return (f"torch.compile {'on' if value else 'off'}: the default on PyTorch "
                f"(compiling costs minutes per model on a CPU)")
    return f"no compiled step on the {backend} backend"


def decide_jit_compile(model: keras.Model, jit_compile: bool | None, family: str | None, *,
                       run_eagerly: bool = False, blockers=()) -> JitDecision:
    """Whether `fit` compiles `model`'s step, chosen from what was asked and what Keras can do here.

    Args:
        model: the model about to be compiled.
        jit_compile: `True` or `False` to ask for a compiled step or not; `None` for
            `default_jit_compile(family)`.
        family: the model's family (a key of `keras_models.families.FAMILIES`) or `None`.
        run_eagerly: as for `keras.Model.compile`; an eager step is never compiled.
        blockers: further reasons, from the model itself, why its step cannot be compiled here.

    Returns:
        A `JitDecision`. A compiled step asked for (or defaulted to) where Keras cannot compile it, as
        `jit_blockers` and `blockers` say (op determinism, layers, device), becomes an uncompiled step
        whose reason names the cause; an explicit `jit_compile=True` then also warns
        (`JitCompileWarning`). The model always builds.

    Raises:
        ValueError: `jit_compile` is not `True`, `False` or `None`; `jit_compile=True` with
            `run_eagerly=True`; an unknown `family`.
    """
    if not (jit_compile is None or isinstance(jit_compile, bool)):
        raise ValueError(f"jit_compile must be True, False or None; got jit_compile={jit_compile!r}.")
    if run_eagerly and jit_compile:
        raise ValueError("jit_compile=True cannot be combined with run_eagerly=True.")
    default = default_jit_compile(family)
    if run_eagerly:
        return JitDecision(False, "run_eagerly=True: the step runs eagerly", jit_compile)
    if jit_compile is False:
        return JitDecision(False, "jit_compile=False was asked for", jit_compile)
    if jit_compile is None and not default:
        return JitDecision(False, _default_reason(family, False), jit_compile)
    reasons = [*jit_blockers(model), *blockers]
    if reasons:
        reason = f"not compiled: {'; '.join(reasons)}"
        if jit_compile:
            warnings.warn(f"jit_compile=True was asked for {model.name!r}, but {reason}. It trains without.",
                          JitCompileWarning, stacklevel=3)
        return JitDecision(False, reason, jit_compile)
    if jit_compile:
        return JitDecision(True, "jit_compile=True was asked for", jit_compile)
    return JitDecision(True, _default_reason(family, True), jit_compile)


def resolve_jit_compile(model: keras.Model, jit_compile: bool | None, family: str | None, *,
                        run_eagerly: bool = False, blockers=()) -> bool:
    """The `jit_compile` to pass to `keras.Model.compile` for `model`: `decide_jit_compile(...).jit_compile`.

    The decision is also kept on the model as `model.jit_compile_reason`.
    """
    decision = decide_jit_compile(model, jit_compile, family, run_eagerly=run_eagerly, blockers=blockers)
    model.jit_compile_reason = decision.reason
    return decision.jit_compile


def check_jit_compile_kept(model: keras.Model, requested: bool) -> None:
    """Raises `XLACompileError` if Keras changed `model.jit_compile` from `requested` while compiling."""
    if bool(model.jit_compile) != requested:
        raise XLACompileError(
            f"Keras changed jit_compile from {requested} to {model.jit_compile} for {model.name!r}."
        )


def compile_model(
    model: keras.Model,
    *,
    optimizer=None,
    loss=None,
    metrics=None,
    jit_compile: bool | None = None,
    family: str | None = None,
    **compile_kwargs,
) -> keras.Model:
    """Compiles `model` with the library's jit policy and returns it.

    Args:
        model: the Keras model to compile.
        optimizer: as for `keras.Model.compile`; `None` for `keras_models.optimizers.Adam()` (Keras'
            Adam with its defaults, one fused update per step eagerly on PyTorch).
        loss, metrics: as for `keras.Model.compile`.
        jit_compile: `True` or `False` to force a compiled step on or off; `None` for the default of
            `family` on this backend and device (`default_jit_compile`).
        family: the model family, used for the default.
        **compile_kwargs: passed to `keras.Model.compile`.

    Raises:
        XLACompileError: `jit_compile=True` was asked for and Keras would silently run without it.
    """
    if optimizer is None:
        from keras_models.optimizers import Adam

        optimizer = Adam()
    requested = resolve_jit_compile(
        model, jit_compile, family, run_eagerly=bool(compile_kwargs.get("run_eagerly"))
    )
    model.compile(
        optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=requested, **compile_kwargs
    )
    check_jit_compile_kept(model, requested)
    return model


# --------------------------------------------------------------------------------------------------
# Proving that the step fit() runs is compiled


def _reachable_callables(function):
    """`function` and every callable reachable through closures (and `tf.function`s' Python code)."""
    stack, seen = [function], set()
    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        yield fn
        inner = getattr(fn, "_python_function", None)  # a tf.function's traced Python function
        if inner is not None:
            stack.append(inner)
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            if callable(value):
                stack.append(value)


def _step_functions(train_function):
    """The `tf.function`s reachable through the closures of Keras' TensorFlow train function."""
    import tensorflow as tf

    return [fn for fn in _reachable_callables(train_function)
            if isinstance(fn, tf.types.experimental.PolymorphicFunction)]


def _count_hlo(hlo_text: str) -> int:
    return sum(1 for line in hlo_text.splitlines() if " = " in line)


def _batch(data):
    return data if isinstance(data, tuple) else (data,)


def _tensorflow_report(model, data):
    import tensorflow as tf

    compiled = [fn for fn in _step_functions(model.train_function) if getattr(fn, "_jit_compile", False)]
    report = {"step_jit_compile": bool(compiled), "hlo_instructions": 0,
              "proof": "HLO of the XLA-compiled tf.function that fit() calls"}
    if compiled:
        # Each part may be a structure (a list of inputs); convert its leaves.
        batch = tuple(keras.tree.map_structure(tf.convert_to_tensor, part) for part in _batch(data))
        hlo = compiled[0].experimental_get_compiler_ir(batch)(stage="hlo")
        report["hlo_instructions"] = _count_hlo(hlo)
    return report


def _jax_report(model, data):
    # Keras' JAX trainer wraps `jax.jit(train_step)` in the train function when the step is compiled
    # (keras/src/backend/jax/trainer.py, make_train_function); a jitted function has `.lower`.
    jitted = [fn for fn in _reachable_callables(model.train_function) if callable(getattr(fn, "lower", None))]
    report = {"step_jit_compile": bool(jitted), "hlo_instructions": 0,
              "proof": "HLO of the jax.jit-compiled step that fit() calls"}
    if jitted:
        state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                     optimizer_variables=True, metrics_variables=True)
        batch = tuple(keras.tree.map_structure(keras.ops.convert_to_tensor, part) for part in _batch(data))
        lowered = jitted[0].lower(state, batch)
        report["hlo_instructions"] = _count_hlo(lowered.as_text(dialect="hlo"))
    return report


def _torch_report(model, data):
    # Keras' PyTorch trainer sets `train_function = torch.compile(one_step_on_data)` when jit_compile is
    # on; torch.compile marks the callable it returns with `_torchdynamo_orig_callable`. Its graphs are
    # Inductor's, not XLA's: there is no HLO to count.
    compiled = any(hasattr(fn, "_torchdynamo_orig_callable") for fn in _reachable_callables(model.train_function))
    return {"step_jit_compile": compiled, "hlo_instructions": 0,
            "proof": "the train function fit() calls is torch.compile'd (no HLO on PyTorch)"}


_REPORTS = {"tensorflow": _tensorflow_report, "jax": _jax_report, "torch": _torch_report}


def xla_step_report(model: keras.Model, data) -> dict:
    """Says whether the training step that `fit()` runs is compiled, with what proof this backend allows.

    If the train function does not exist yet, it is made the way `fit()` makes it: by one
    `train_on_batch` on `data` (a `(x, y)` tuple or `x` alone) on TensorFlow and JAX, by
    `make_train_function()` alone on PyTorch (running it would start a `torch.compile`).

    Returns:
        A dict with `backend` (the Keras backend), `jit_compile` (the model's flag), `step_jit_compile`
        (whether the step `fit()` calls is compiled: an XLA `tf.function` on TensorFlow, a `jax.jit`
        function on JAX, a `torch.compile`d function on PyTorch), `hlo_instructions` (the number of
        HLO instructions of the compiled step on TensorFlow and JAX; 0 when it is not compiled, and
        always 0 on PyTorch), and `proof` (what the report rests on, in words).
    """
    backend = keras.backend.backend()
    if backend not in _REPORTS:
        raise ValueError(f"xla_step_report supports the tensorflow, jax and torch backends; got {backend!r}.")
    if model.train_function is None:
        if backend == "torch":
            model.make_train_function()
        else:
            model.train_on_batch(*_batch(data))
    report = {"backend": backend, "jit_compile": bool(model.jit_compile)}
    report.update(_REPORTS[backend](model, data))
    return report


def assert_xla_compiled(model: keras.Model, data) -> dict:
    """Like `xla_step_report`, but raises `XLACompileError` unless the step is really compiled.

    On TensorFlow and JAX that means HLO instructions were found; on PyTorch, that the step is
    `torch.compile`d.
    """
    report = xla_step_report(model, data)
    proven = report["hlo_instructions"] > 0 or report["backend"] == "torch"
    if not (report["jit_compile"] and report["step_jit_compile"] and proven):
        raise XLACompileError(f"The training step of {model.name!r} is not XLA-compiled: {report}.")
    return report
