"""The checks every model of keras-models passes, in one call.

`check_model(model, x, y, tmp_path)` asserts, for any Keras model:
  1. the output shape;
  2. a training step compiled with XLA (`jit_compile=True`, proven through the HLO of the step `fit()`
     runs) that changes the weights and gives finite values for every metric the model reports;
  3. a `.keras` save/load round trip in safe mode with equal outputs;
  4. TFLite (builtin ops) and ONNX exports whose outputs, run in LiteRT and onnxruntime, equal Keras'.
A new model gets all of it by one call from its test.

Models with their own training step (the GANs now; VAEs and diffusion models next) go through the same
call: they train on `x` (and `y`) with their own compile and metric keys, and what is checked at
inference, saved and exported are the networks they deploy (`model.export_targets()`), called on
`inputs`.
"""

from __future__ import annotations

import keras
import numpy as np

import export
import keras_models


def _builtin_operators():
    from tensorflow.lite.python import schema_py_generated as schema

    names = {name for name in vars(schema.BuiltinOperator) if name.isupper()}
    return names - {"CUSTOM", "DELEGATE", "PLACEHOLDER_FOR_GREATER_OP_CODES"}


_BUILTIN_OPERATORS = _builtin_operators()


def _first(batch, n):
    if isinstance(batch, (list, tuple)):
        return [b[:n] for b in batch]
    if isinstance(batch, dict):
        return {k: v[:n] for k, v in batch.items()}
    return batch[:n]


def _flat_outputs(model, x):
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(model(x, training=False))]


def _custom_step(model):
    return hasattr(model, "export_targets")


def _targets(model):
    """`{name: network}`: what is exported and compared; the model itself unless it deploys parts."""
    return model.export_targets() if _custom_step(model) else {model.name: model}


def _inputs_for(targets, inputs):
    if isinstance(inputs, dict) and set(inputs) == set(targets):
        return inputs
    if len(targets) != 1:
        raise ValueError(f"inputs must be a dict with one entry per export target {sorted(targets)}.")
    return {next(iter(targets)): inputs}


def check_training(model, x, y, *, loss=None, optimizer="adam", batch_size=8, compile=True):
    """Trains one epoch with XLA and asserts the step is compiled, every reported value finite, the
    weights moved. A custom-step model keeps its own compile, which must have asked for XLA."""
    if compile and not _custom_step(model):
        keras_models.compile_model(model, optimizer=optimizer, loss=loss, jit_compile=True)
    before = [np.array(w) for w in model.trainable_weights]
    fit_args = (x, y) if y is not None else (x,)
    history = model.fit(*fit_args, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    expected_keys = {metric.name for metric in model.metrics if metric.name != "compile_metrics"}
    if _custom_step(model):
        assert set(history.history) == expected_keys, (sorted(history.history), sorted(expected_keys))
    else:
        assert "loss" in history.history
    for key, values in history.history.items():
        assert np.isfinite(values[-1]), f"{key} is {values[-1]} after training"
    data = (_first(x, batch_size), _first(y, batch_size)) if y is not None else _first(x, batch_size)
    report = keras_models.assert_xla_compiled(model, data)
    after = [np.array(w) for w in model.trainable_weights]
    assert any(not np.array_equal(b, a) for b, a in zip(before, after)), "training did not change any weight"
    return {**{key: values[-1] for key, values in history.history.items()}, **report}


def check_save_load(model, x, tmp_path, atol=1e-6):
    """Saves to .keras, loads with no custom_objects in safe mode, and compares outputs (of every
    export target, for a custom-step model; `x` then holds their inputs)."""
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    original, restored = _targets(model), _targets(loaded)
    for name, inputs in _inputs_for(original, x).items():
        for a, b in zip(_flat_outputs(original[name], inputs), _flat_outputs(restored[name], inputs)):
            np.testing.assert_allclose(a, b, atol=atol, rtol=0)
    return loaded


def check_export(model, x, tmp_path, *, atol=1e-5, formats=("tflite", "onnx"), **tflite_kwargs):
    """Exports to TFLite and ONNX, asserts builtin-only ops, runs both and compares with Keras."""
    results = {}
    if "tflite" in formats:
        report = export.to_tflite(model, tmp_path / f"{model.name}.tflite", **tflite_kwargs)
        # Every operator must be one of TFLite's builtin operators, by the schema's own list of names
        # (custom and Flex operators carry other names).
        not_builtin = sorted(set(report.operators) - _BUILTIN_OPERATORS)
        assert not not_builtin, f"non-builtin TFLite ops: {not_builtin}"
        # A loop over resource variables (how unconverted recurrent layers come out) fails on devices.
        stateful = sorted({"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"} & set(report.operators))
        assert not stateful, f"resource-variable ops in the TFLite file: {stateful}"
        result = export.verify(model, report.path, x)
        assert result.max_abs <= atol, f"TFLite differs from Keras by {result.max_abs}"
        results["tflite"] = result
    if "onnx" in formats:
        report = export.to_onnx(model, tmp_path / f"{model.name}.onnx")
        result = export.verify(model, report.path, x)
        assert result.max_abs <= atol, f"ONNX differs from Keras by {result.max_abs}"
        results["onnx"] = result
    return results


def check_model(
    model,
    x,
    y=None,
    tmp_path=None,
    *,
    inputs=None,
    expected_shape=None,
    loss=None,
    train=True,
    compile=True,
    save=True,
    export_formats=("tflite", "onnx"),
    atol=1e-5,
):
    """Runs every check above on `model` and returns the measurements.

    Args:
        model: a built Keras model.
        x, y: a small batch of training inputs and targets (y None for models whose train_step needs none).
        tmp_path: a folder for the .keras, .tflite and .onnx files (pytest's `tmp_path`).
        inputs: what the model (or, for a custom-step model, each of `model.export_targets()`) is
            called on at inference: one input for a single target, else a dict by target name; `x` when
            `None`.
        expected_shape: the expected shape of the (first) output on `inputs`, or a list for several
            outputs, or a dict by export target.
        loss: the loss to compile with for the training check (ignored when `compile=False` and for
            custom-step models).
        train: run the XLA training check.
        compile: recompile with `loss` and `jit_compile=True`; False keeps the model's own compile,
            which must already have requested XLA.
        save: run the .keras round trip.
        export_formats: which exports to check.
        atol: the largest allowed absolute difference of exported outputs.
    """
    results = {}
    targets = _targets(model)
    inputs = _inputs_for(targets, x if inputs is None else inputs)
    shapes = expected_shape if isinstance(expected_shape, dict) else {name: expected_shape for name in targets}
    for name, target in targets.items():
        outputs = _flat_outputs(target, inputs[name])
        if shapes.get(name) is not None:
            expected = shapes[name] if isinstance(shapes[name], list) else [shapes[name]]
            assert [tuple(o.shape) for o in outputs] == [tuple(s) for s in expected]
        for o in outputs:
            assert np.all(np.isfinite(o)), f"{name} outputs contain NaN or infinity"
    if train:
        results["train"] = check_training(model, x, y, loss=loss, compile=compile)
    if save:
        check_save_load(model, inputs if _custom_step(model) else inputs[model.name], tmp_path)
    if export_formats:
        for name, target in targets.items():
            exported = check_export(target, inputs[name], tmp_path, atol=atol, formats=export_formats)
            if len(targets) == 1:
                results.update(exported)
            else:
                results.update({f"{name}_{runtime}": value for runtime, value in exported.items()})
    return results
