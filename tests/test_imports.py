"""What `import keras_models` imports on Keras' JAX and PyTorch backends: no TensorFlow until it is needed.

Each backend runs in its own subprocess, since Keras picks its backend once per process.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_models.families import FAMILIES

_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np

    import keras_models
    from keras_models import registry

    report = {"after_import": "tensorflow" in sys.modules, "failed_families": registry._FAILED_FAMILIES,
              "families": sorted({info.family for info in keras_models.list_models()})}
    rng = np.random.default_rng(0)
    model = keras_models.build("mlp", input_shape=(6,), num_classes=3)
    history = model.fit(rng.normal(size=(32, 6)).astype("float32"), np.arange(32) % 3, epochs=1, verbose=0)
    report.update(mlp_output_shape=list(model.output_shape), mlp_loss=history.history["loss"][-1],
                  mlp_jit_compile=bool(model.jit_compile), after_mlp="tensorflow" in sys.modules)

    X = rng.normal(size=(200, 3))
    logits = X @ np.array([1.0, -0.5, 0.25]) + 0.3
    y_binary = (rng.uniform(size=200) < 1 / (1 + np.exp(-logits))).astype(float)
    ols = keras_models.build("linear_regression").fit(X, logits + rng.normal(size=200))
    report.update(ols_params=ols.params_.tolist(), after_ols="tensorflow" in sys.modules)
    if "--logit" in sys.argv:
        logit = keras_models.build("logistic_regression").fit(X, y_binary)
        report.update(logit_params=logit.params_.tolist(), after_logit="tensorflow" in sys.modules)
    print("RESULT" + json.dumps(report))
""")


def _run(backend, *args):
    env = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run([sys.executable, "-c", _SCRIPT, *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def _reference():
    """The same fits in this process (the TensorFlow backend)."""
    from keras_models.statistical import LinearRegression, LogisticRegression

    rng = np.random.default_rng(0)
    rng.normal(size=(32, 6))  # the draws of the MLP's data, to stay in step with the script
    X = rng.normal(size=(200, 3))
    logits = X @ np.array([1.0, -0.5, 0.25]) + 0.3
    y_binary = (rng.uniform(size=200) < 1 / (1 + np.exp(-logits))).astype(float)
    ols = LinearRegression().fit(X, logits + rng.normal(size=200))
    logit = LogisticRegression().fit(X, y_binary)
    return ols.params_.to_numpy(), logit.params_.to_numpy()


@pytest.mark.parametrize("backend, jit_compile", [("jax", True), ("torch", False)])
def test_import_and_build_without_tensorflow(backend, jit_compile):
    report = _run(backend, *(["--logit"] if backend == "jax" else []))
    assert report["after_import"] is False, f"import keras_models imported TensorFlow under {backend}"
    assert report["failed_families"] == {}
    assert report["families"] == sorted(FAMILIES)
    assert report["mlp_output_shape"] == [None, 3] and np.isfinite(report["mlp_loss"])
    assert report["mlp_jit_compile"] is jit_compile  # the compile policy of this backend
    assert report["after_mlp"] is False and report["after_ols"] is False
    ols_params, logit_params = _reference()
    np.testing.assert_allclose(report["ols_params"], ols_params, rtol=1e-10)
    if backend == "jax":
        # The Logit's Newton passes are NumPy: fitting imports no TensorFlow, and gives the TensorFlow
        # backend's estimates.
        assert report["after_logit"] is False
        np.testing.assert_allclose(report["logit_params"], logit_params, rtol=1e-10)
