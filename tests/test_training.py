import json
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest

import keras_models
from keras_models import families, training


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 5)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")


def _model(layer=None):
    inputs = keras.Input((5,))
    return keras.Model(inputs, (layer or keras.layers.Dense(1))(inputs))


def test_requested_xla_step_is_really_compiled():
    x, y = _data()
    model = keras_models.compile_model(_model(), loss="mse", jit_compile=True)
    model.fit(x, y, epochs=1, verbose=0)
    report = keras_models.assert_xla_compiled(model, (x[:8], y[:8]))
    assert report["backend"] == "tensorflow"
    assert report["step_jit_compile"] and report["hlo_instructions"] > 0


def test_step_without_xla_is_reported_as_such():
    x, y = _data()
    model = keras_models.compile_model(_model(), loss="mse", jit_compile=False)
    model.fit(x, y, epochs=1, verbose=0)
    report = keras_models.xla_step_report(model, (x[:8], y[:8]))
    assert {k: report[k] for k in ("backend", "jit_compile", "step_jit_compile", "hlo_instructions")} == {
        "backend": "tensorflow", "jit_compile": False, "step_jit_compile": False, "hlo_instructions": 0,
    }
    assert "HLO" in report["proof"]
    with pytest.raises(keras_models.XLACompileError, match="not XLA-compiled"):
        keras_models.assert_xla_compiled(model, (x[:8], y[:8]))


class _NoJitDense(keras.layers.Dense):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.supports_jit = False


def test_silent_keras_downgrade_is_caught():
    model = _model(_NoJitDense(1, name="stubborn"))
    # Plain Keras quietly runs without XLA here...
    with pytest.warns(UserWarning, match="jit_compile"):
        model.compile(loss="mse", jit_compile=True)
    assert model.jit_compile is False
    # ...the library builds without it too, but says so, naming the layer.
    with pytest.warns(keras_models.JitCompileWarning, match="stubborn"):
        keras_models.compile_model(model, loss="mse", jit_compile=True)
    assert model.jit_compile is False and "['stubborn']" in model.jit_compile_reason
    with pytest.raises(keras_models.XLACompileError, match="changed jit_compile from True to False"):
        training.check_jit_compile_kept(model, True)
    training.check_jit_compile_kept(model, False)  # what Keras kept


def test_resolve_jit_compile_validates_and_falls_back(monkeypatch):
    monkeypatch.setattr(training, "has_accelerator", lambda: False)
    model = _model()
    for bad in ("auto", 1, 0, np.True_):
        with pytest.raises(ValueError, match=f"jit_compile must be True, False or None; got jit_compile={bad!r}"):
            training.resolve_jit_compile(model, bad, "dense")
    with pytest.raises(ValueError, match="run_eagerly=True"):
        training.resolve_jit_compile(model, True, "dense", run_eagerly=True)
    with pytest.raises(ValueError, match="Unknown family 'nonsense'"):
        training.resolve_jit_compile(model, False, "nonsense")
    # None takes each family's measured CPU default; on an accelerator every family compiles.
    for name, family in families.FAMILIES.items():
        assert training.resolve_jit_compile(model, None, name) is family.jit.tensorflow_cpu
    monkeypatch.setattr(training, "has_accelerator", lambda: True)
    assert training.resolve_jit_compile(model, None, "gan") is True
    assert training.resolve_jit_compile(model, False, "gan") is False
    assert training.resolve_jit_compile(model, None, "gan", run_eagerly=True) is False
    blocked = _model(_NoJitDense(1, name="stubborn"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default yields without a warning
        assert training.resolve_jit_compile(blocked, None, "gan") is False
    assert blocked.jit_compile_reason.startswith("not compiled: these layers do not support a compiled step")
    with pytest.warns(keras_models.JitCompileWarning, match=r"\['stubborn'\]"):
        assert training.resolve_jit_compile(blocked, True, "cnn") is False


def test_default_follows_family_table(monkeypatch):
    monkeypatch.setattr(training, "has_accelerator", lambda: False)
    for name, family in families.FAMILIES.items():
        assert keras_models.default_jit_compile(name) is family.jit.tensorflow_cpu
    assert keras_models.default_jit_compile("gan") is True and keras_models.default_jit_compile("recurrent") is False
    monkeypatch.setattr(training, "has_accelerator", lambda: True)
    assert all(keras_models.default_jit_compile(name) for name in families.FAMILIES)
    with pytest.raises(ValueError, match="Unknown family 'nonsense'"):
        keras_models.default_jit_compile("nonsense")


def test_table_answers_for_every_backend_and_device():
    for family in families.FAMILIES.values():
        jit = family.jit
        assert jit.value("tensorflow", accelerator=True) is True
        assert jit.value("tensorflow", accelerator=False) is jit.tensorflow_cpu
        assert jit.value("jax", accelerator=False) is True and jit.value("jax", accelerator=True) is True
        assert jit.value("torch", accelerator=False) is False and jit.value("torch", accelerator=True) is False
        assert jit.value("numpy", accelerator=False) is False


def test_cpu_xla_defaults_is_a_read_only_view_of_the_table():
    assert dict(training.CPU_XLA_DEFAULTS) == {n: f.jit.tensorflow_cpu for n, f in families.FAMILIES.items()}
    with pytest.raises(TypeError):
        training.CPU_XLA_DEFAULTS["dense"] = True


def test_bad_jit_compile_value():
    with pytest.raises(ValueError, match="jit_compile must be"):
        keras_models.compile_model(_model(), loss="mse", jit_compile="auto")


def test_builders_pass_jit_compile_through():
    assert keras_models.build("mlp", input_shape=(4,), num_classes=2, jit_compile=True).jit_compile is True
    assert keras_models.build("mlp", input_shape=(4,), num_classes=2, jit_compile=False).jit_compile is False
    default = keras_models.build("mlp", input_shape=(4,), num_classes=2)
    assert default.jit_compile is keras_models.default_jit_compile("dense")


# What the policy and the proof say on Keras' JAX and PyTorch backends, each in one subprocess.
_BACKEND_SCRIPT = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    import keras_models
    from keras_models import training

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 5)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")

    def model():
        inputs = keras.Input((5,))
        return keras.Model(inputs, keras.layers.Dense(1)(inputs))

    out = {"defaults": {f: keras_models.default_jit_compile(f) for f in ("dense", "cnn", "gan")}}
    for flag in (True, False):
        m = keras_models.compile_model(model(), loss="mse", jit_compile=flag)
        if keras.backend.backend() == "jax":
            m.fit(x, y, epochs=1, verbose=0)
        out[str(flag)] = keras_models.xla_step_report(m, (x[:8], y[:8]))
        try:
            keras_models.assert_xla_compiled(m, (x[:8], y[:8]))
            out[str(flag)]["asserted"] = True
        except keras_models.XLACompileError:
            out[str(flag)]["asserted"] = False
    out["tensorflow_imported"] = "tensorflow" in sys.modules
    print("RESULT" + json.dumps(out))
""")


def _run_on(backend):
    env = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run([sys.executable, "-c", _BACKEND_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def test_jax_step_is_jitted_and_its_hlo_counted():
    out = _run_on("jax")
    assert out["defaults"] == {"dense": True, "cnn": True, "gan": True}
    jitted, eager = out["True"], out["False"]
    assert jitted["backend"] == "jax" and jitted["step_jit_compile"] and jitted["asserted"]
    assert jitted["hlo_instructions"] > 20
    assert eager["jit_compile"] is False and eager["step_jit_compile"] is False
    assert eager["hlo_instructions"] == 0 and eager["asserted"] is False
    assert out["tensorflow_imported"] is False


def test_torch_step_is_torch_compiled_only_when_asked():
    out = _run_on("torch")
    assert out["defaults"] == {"dense": False, "cnn": False, "gan": False}
    compiled, eager = out["True"], out["False"]
    assert compiled["backend"] == "torch" and "torch.compile" in compiled["proof"]
    assert compiled["step_jit_compile"] and compiled["hlo_instructions"] == 0 and compiled["asserted"]
    assert eager["step_jit_compile"] is False and eager["asserted"] is False
    assert out["tensorflow_imported"] is False


def test_xla_proof_takes_a_model_with_several_inputs():
    a, b = keras.Input((3,)), keras.Input((2,))
    model = keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Concatenate()([a, b])))
    keras_models.compile_model(model, loss="mse", jit_compile=True)
    x = [np.ones((4, 3), "float32"), np.ones((4, 2), "float32")]
    model.fit(x, np.zeros((4, 1), "float32"), verbose=0)
    report = keras_models.assert_xla_compiled(model, (x, np.zeros((4, 1), "float32")))
    assert report["step_jit_compile"] and report["hlo_instructions"] > 10


_DETERMINISM_SCRIPT = textwrap.dedent("""
    import json, warnings
    import numpy as np
    import tensorflow as tf
    import keras
    import keras_models

    tf.config.experimental.enable_op_determinism()
    images = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 1)).astype("float32")
    out = {}

    def trained(**kwargs):
        keras.utils.set_random_seed(0)
        gan = keras_models.build("dcgan", image_shape=(8, 8, 1), width=4, **kwargs)
        gan.fit(images, epochs=1, batch_size=8, verbose=0, shuffle=False)
        return gan

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        default = trained()
        out["default"] = [default.jit_compile, default.jit_compile_reason, [str(w.message) for w in caught]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asked = trained(jit_compile=True)
        out["asked"] = [asked.jit_compile, [(w.category.__name__, str(w.message)) for w in caught]]
    again = trained(jit_compile=True)
    out["bitwise_equal"] = all(np.array_equal(a, b) for a, b in zip(asked.get_weights(), again.get_weights()))
    print("RESULT" + json.dumps(out))
""")


def test_op_determinism_builds_without_xla_and_says_why():
    """Keras runs no XLA under TensorFlow's op determinism: the GAN (XLA by default) builds and trains
    without it, says why, warns only when XLA was asked for, and two seeded runs agree bit for bit."""
    done = subprocess.run([sys.executable, "-c", _DETERMINISM_SCRIPT], env=dict(os.environ, KERAS_BACKEND="tensorflow"),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))[len("RESULT"):])
    jit, reason, default_warnings = out["default"]
    assert jit is False and "op determinism" in reason
    assert not [message for message in default_warnings if "jit_compile" in message]
    jit, asked_warnings = out["asked"]
    assert jit is False
    assert [category for category, message in asked_warnings if "op determinism" in message] == ["JitCompileWarning"]
    assert out["bitwise_equal"] is True
