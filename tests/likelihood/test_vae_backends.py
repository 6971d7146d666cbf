"""The VAE on JAX and PyTorch, where the log-densities are keras.ops, not TFP: a model saved here
gives the same ELBO and importance-weighted bound there, for the same noise, and trains there.

(`tests/test_backends.py` already trains the `model_cases` VAEs on both backends and exports what they
save; this checks the likelihood code path those backends take.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_models

_SCRIPT = """
import json, sys
import numpy as np, keras, keras_models
assert "tensorflow" not in sys.modules, "keras_models imported TensorFlow"
vae = keras.saving.load_model(sys.argv[1], safe_mode=True)
data = np.load(sys.argv[2])
images, labels = data["images"], data["labels"]
result = {
    "backend": keras.backend.backend(),
    "elbo": vae.elbo(images, labels, num_samples=3, seed=0).tolist(),
    "log_likelihood": vae.log_likelihood(images, labels, num_samples=5, seed=0).tolist(),
    "tensorflow_imported": "tensorflow" in sys.modules,
}
history = vae.fit(images, labels, batch_size=8, epochs=1, verbose=0)
result["loss"] = history.history["loss"][-1]
print("RESULT " + json.dumps(result))
"""


@pytest.mark.slow  # two subprocesses importing JAX and PyTorch: about a minute on two busy cores
@pytest.mark.timeout(600)
def test_bounds_on_jax_and_torch_equal_tensorflow_probability(tmp_path):
    vae = keras_models.build("conditional_vae", image_shape=(8, 8, 1), num_classes=3, latent_dim=4, width=8,
                             likelihood="logistic_mixture", num_mixtures=2, jit_compile=False)
    images = np.random.default_rng(0).uniform(0.0, 1.0, (8, 8, 8, 1)).astype("float32")
    labels = (np.arange(8) % 3).astype("int32")
    vae.save(tmp_path / "vae.keras")
    np.savez(tmp_path / "data.npz", images=images, labels=labels)
    expected = {"elbo": vae.elbo(images, labels, num_samples=3, seed=0),
                "log_likelihood": vae.log_likelihood(images, labels, num_samples=5, seed=0)}
    processes = {}
    for backend in ("jax", "torch"):
        env = {**os.environ, "KERAS_BACKEND": backend, "JAX_THREEFRY_PARTITIONABLE": "0"}
        processes[backend] = subprocess.Popen(
            [sys.executable, "-c", _SCRIPT, str(tmp_path / "vae.keras"), str(tmp_path / "data.npz")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=Path(__file__).parents[2])
    for backend, process in processes.items():
        output, _ = process.communicate(timeout=540)
        lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
        assert process.returncode == 0 and lines, output[-3000:]
        result = json.loads(lines[-1][len("RESULT "):])
        assert result["backend"] == backend and not result["tensorflow_imported"]
        for key in ("elbo", "log_likelihood"):
            np.testing.assert_allclose(result[key], expected[key], rtol=1e-5, atol=1e-4, err_msg=f"{key} on {backend}")
        assert np.isfinite(result["loss"])
