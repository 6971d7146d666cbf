"""`keras-models tour` on JAX and PyTorch (export in a TensorFlow subprocess) and without TensorFlow."""

import os
import subprocess
import sys

import numpy as np
import pytest

from export.tour import export_saved

# Runs the CLI after making `import tensorflow` fail, as on a machine where it is not installed
# (`importlib.util.find_spec("tensorflow")` is then None as well).
_WITHOUT_TENSORFLOW = (
    "import sys\n"
    "sys.modules['tensorflow'] = None\n"
    "from export.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _tour(backend, output, *extra, hide_tensorflow=False):
    argv = ["tour", "--families", "dense", "--epochs", "2", "--quiet", "--output", str(output), *extra]
    command = [sys.executable, "-c", _WITHOUT_TENSORFLOW] if hide_tensorflow else [sys.executable, "-m", "export.cli"]
    return subprocess.run([*command, *argv], env=dict(os.environ, KERAS_BACKEND=backend), capture_output=True,
                          text=True, timeout=900)


def _row(table: str, family: str):
    """The cells of `family`'s row; the metric cell ("accuracy 0.95") is split in two."""
    (line,) = [line for line in table.splitlines() if line.split()[:1] == [family]]
    return line.split()


def _check_exported_against_training_backend(done, output, backend_name, compiler):
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"trained on {backend_name}" in done.stdout and f"Trained on {backend_name}. {compiler}:" in done.stdout
    cells = _row(done.stdout, "dense")
    tflite_diff, onnx_diff = float(cells[-3]), float(cells[-1])
    assert np.isfinite(tflite_diff) and np.isfinite(onnx_diff)
    assert tflite_diff <= 1e-5 and onnx_diff <= 1e-5
    # The table's figures are those of the files against the outputs the training backend saved.
    stem = output / "dense_mlp"
    measured = export_saved(stem)
    assert measured["tflite_bytes"] == (output / "dense_mlp.tflite").stat().st_size == int(cells[-4].replace(",", ""))
    assert float(f"{measured['tflite_diff']:.2e}") == tflite_diff
    assert float(f"{measured['onnx_diff']:.2e}") == onnx_diff
    return cells


def test_tour_on_jax_exports_in_tensorflow_and_matches_jax(tmp_path):
    done = _tour("jax", tmp_path)
    cells = _check_exported_against_training_backend(done, tmp_path, "JAX", "jit")
    assert cells[3] == "yes"  # the tour's default off TensorFlow is the library's: every JAX step jitted
    assert "== export on TensorFlow" not in done.stdout  # --quiet hides the subprocess' own output


@pytest.mark.slow
def test_tour_on_torch_exports_in_tensorflow_and_matches_torch(tmp_path):
    done = _tour("torch", tmp_path)
    cells = _check_exported_against_training_backend(done, tmp_path, "PyTorch", "torch.compile")
    assert cells[3] == "no"  # eager: the library's default on PyTorch


def test_tour_without_tensorflow_trains_and_says_export_was_skipped(tmp_path):
    done = _tour("jax", tmp_path, hide_tensorflow=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "export skipped: TensorFlow is not installed" in done.stdout
    cells = _row(done.stdout, "dense")
    assert cells[5] == "accuracy" and float(cells[6]) > 0.5  # trained: better than a coin
    assert cells[-4:] == ["-", "-", "-", "-"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dense_mlp.keras", "dense_mlp_samples.npz"]
