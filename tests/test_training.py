import keras
import numpy as np
import pytest

import keras_models
from keras_models import training


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 5)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")


def _model():
    inputs = keras.Input((5,))
    return keras.Model(inputs, keras.layers.Dense(1)(inputs))


def test_requested_xla_step_is_really_compiled():
    x, y = _data()
    model = keras_models.compile_model(_model(), loss="mse", jit_compile=True)
    model.fit(x, y, epochs=1, verbose=0)
    report = keras_models.assert_xla_compiled(model, (x[:8], y[:8]))
    assert report["step_jit_compile"] and report["hlo_instructions"] > 0


def test_step_without_xla_is_reported_as_such():
    x, y = _data()
    model = keras_models.compile_model(_model(), loss="mse", jit_compile=False)
    model.fit(x, y, epochs=1, verbose=0)
    report = keras_models.xla_step_report(model, (x[:8], y[:8]))
    assert report == {"jit_compile": False, "step_jit_compile": False, "hlo_instructions": 0}
    with pytest.raises(keras_models.XLACompileError, match="not XLA-compiled"):
        keras_models.assert_xla_compiled(model, (x[:8], y[:8]))


class _NoJitDense(keras.layers.Dense):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.supports_jit = False


def test_silent_keras_downgrade_is_caught():
    inputs = keras.Input((5,))
    model = keras.Model(inputs, _NoJitDense(1, name="stubborn")(inputs))
    # Plain Keras quietly runs without XLA here...
    with pytest.warns(UserWarning, match="jit_compile"):
        model.compile(loss="mse", jit_compile=True)
    assert model.jit_compile is False
    # ...the library refuses, naming the layer.
    with pytest.raises(keras_models.XLACompileError, match="stubborn"):
        keras_models.compile_model(model, loss="mse", jit_compile=True)


def test_default_follows_family_table_on_cpu(monkeypatch):
    monkeypatch.setattr(training, "has_accelerator", lambda: False)
    for family, value in training.CPU_XLA_DEFAULTS.items():
        assert keras_models.default_jit_compile(family) is value
    monkeypatch.setattr(training, "has_accelerator", lambda: True)
    assert all(keras_models.default_jit_compile(f) for f in training.CPU_XLA_DEFAULTS)
    with pytest.raises(ValueError, match="Unknown family"):
        keras_models.default_jit_compile("nonsense")


def test_bad_jit_compile_value():
    with pytest.raises(ValueError, match="jit_compile must be"):
        keras_models.compile_model(_model(), loss="mse", jit_compile="auto")


def test_jit_compile_default_block_overrides_family_defaults(monkeypatch):
    monkeypatch.setattr(training, "has_accelerator", lambda: False)
    with training.jit_compile_default(True):
        assert keras_models.default_jit_compile("cnn") is True
        with training.jit_compile_default(False):
            assert keras_models.default_jit_compile("gan") is False
        assert keras_models.default_jit_compile("dense") is True
        model = keras_models.build("mlp", input_shape=(4,), num_classes=2)
        assert model.jit_compile is True
    assert keras_models.default_jit_compile("cnn") is training.CPU_XLA_DEFAULTS["cnn"]
    explicit = keras_models.build("mlp", input_shape=(4,), num_classes=2, jit_compile=False)
    assert explicit.jit_compile is False
    with pytest.raises(ValueError, match="True or False"):
        with training.jit_compile_default("yes"):
            pass
