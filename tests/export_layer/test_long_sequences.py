"""The documented cost of unrolling (export._common.unrolled_recurrent_layers): linear in the steps.

Slow: converting a 50-step LSTM takes tens of seconds on two cores.
"""

import keras
import numpy as np
import pytest

import export

pytestmark = pytest.mark.slow


def _lstm(steps):
    inputs = keras.Input((steps, 8), name="sequence")
    outputs = keras.layers.LSTM(32, name=f"lstm_{steps}")(inputs)
    return keras.Model(inputs, outputs, name=f"lstm_{steps}_steps")


def test_operator_count_grows_linearly_and_outputs_stay_equal(tmp_path):
    reports = {}
    for steps in (10, 30, 50):
        model = _lstm(steps)
        x = np.random.default_rng(steps).normal(size=(3, steps, 8)).astype("float32")
        tflite = export.to_tflite(model, tmp_path / f"{steps}.tflite")
        onnx = export.to_onnx(model, tmp_path / f"{steps}.onnx")
        for report in (tflite, onnx):
            assert export.verify(model, report.path, x).max_abs <= 1e-5
        assert not [op for op in tflite.operators if op in ("WHILE", "VAR_HANDLE") or "TensorList" in op]
        reports[steps] = tflite
    ops = {steps: sum(r.operators.values()) for steps, r in reports.items()}
    # Each extra step adds the same block of ops (the docstring says about 14 for an LSTM step).
    assert ops[50] - ops[30] == ops[30] - ops[10], ops
    per_step = (ops[50] - ops[10]) / 40
    assert 8 <= per_step <= 20, ops
    # The weights are shared by every step: 40 more steps add less than a quarter of what copying the
    # float32 weights 40 times would.
    weights_bytes = 4 * _lstm(10).count_params()
    growth = reports[50].size_bytes - reports[10].size_bytes
    assert growth < 40 * weights_bytes / 4, (growth, weights_bytes)
