"""The checks every model of keras-models passes, in one call.

`check_model(model, x, y, tmp_path)` asserts, for any Keras model:
  1. the output shape;
  2. a training step compiled with XLA (`jit_compile=True`, proven through the HLO of the step `fit()`
     runs) that changes the weights and gives a finite loss;
  3. a `.keras` save/load round trip in safe mode with equal outputs;
  4. TFLite (builtin ops) and ONNX exports whose outputs, run in LiteRT and onnxruntime, equal Keras'.
A new model gets all of it by one call from its test.
"""

from __future__ import annotations

import keras
import numpy as np

import export
import keras_models


def _first(batch, n):
    if isinstance(batch, (list, tuple)):
        return [b[:n] for b in batch]
    if isinstance(batch, dict):
        return {k: v[:n] for k, v in batch.items()}
    return batch[:n]


def _flat_outputs(model, x):
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(model(x, training=False))]


def check_training(model, x, y, *, loss=None, optimizer="adam", batch_size=8, compile=True):
    """Trains one epoch with XLA and asserts the step is compiled, the loss finite, the weights moved."""
    if compile:
        keras_models.compile_model(model, optimizer=optimizer, loss=loss, jit_compile=True)
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert np.isfinite(losses[-1]), f"training loss is {losses[-1]}"
    data = (_first(x, batch_size), _first(y, batch_size)) if y is not None else _first(x, batch_size)
    report = keras_models.assert_xla_compiled(model, data)
    after = [np.array(w) for w in model.trainable_weights]
    assert any(not np.array_equal(b, a) for b, a in zip(before, after)), "training did not change any weight"
    return {"loss": losses[-1], **report}


def check_save_load(model, x, tmp_path, atol=1e-6):
    """Saves to .keras, loads with no custom_objects in safe mode, and compares outputs."""
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    for a, b in zip(_flat_outputs(model, x), _flat_outputs(loaded, x)):
        np.testing.assert_allclose(a, b, atol=atol, rtol=0)
    return loaded


def check_export(model, x, tmp_path, *, atol=1e-5, formats=("tflite", "onnx"), **tflite_kwargs):
    """Exports to TFLite and ONNX, asserts builtin-only ops, runs both and compares with Keras."""
    results = {}
    if "tflite" in formats:
        report = export.to_tflite(model, tmp_path / f"{model.name}.tflite", **tflite_kwargs)
        flex = [op for op in report.operators if op.startswith("Flex") or op.islower()]
        assert not flex, f"non-builtin TFLite ops: {flex}"
        assert "WHILE" not in report.operators or "VAR_HANDLE" not in report.operators
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
        x, y: a small batch of inputs and targets (y None for models whose train_step needs none).
        tmp_path: a folder for the .keras, .tflite and .onnx files (pytest's `tmp_path`).
        expected_shape: the expected shape of the (first) output on `x`, or a list for several outputs.
        loss: the loss to compile with for the training check (ignored when `compile=False`).
        train: run the XLA training check.
        compile: recompile with `loss` and `jit_compile=True`; False keeps the model's own compile
            (custom train_step models), which must already have requested XLA.
        save: run the .keras round trip.
        export_formats: which exports to check.
        atol: the largest allowed absolute difference of exported outputs.
    """
    results = {}
    outputs = _flat_outputs(model, x)
    if expected_shape is not None:
        expected = expected_shape if isinstance(expected_shape, list) else [expected_shape]
        assert [tuple(o.shape) for o in outputs] == [tuple(s) for s in expected]
    for o in outputs:
        assert np.all(np.isfinite(o)), "model outputs contain NaN or infinity"
    if train:
        results["train"] = check_training(model, x, y, loss=loss, compile=compile)
    if save:
        check_save_load(model, x, tmp_path)
    if export_formats:
        results.update(check_export(model, x, tmp_path, atol=atol, formats=export_formats))
    return results
