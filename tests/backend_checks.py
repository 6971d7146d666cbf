"""Train anywhere, ship through TensorFlow: the shared model check for the JAX and PyTorch backends.

`run_worker(backend, names, out_dir)` trains and saves the cases of `model_cases` in one
`KERAS_BACKEND=<backend>` subprocess (`backend_worker.py`; one process per backend pays the import once);
`WorkerRun` starts one without waiting, so the backends train side by side.
`check_shipped(name, out_dir, tmp_path)` then runs here, under TensorFlow: it loads `NAME.keras` in safe
mode with no `custom_objects`, takes the shipped model (a GAN's generator), and asserts that its outputs,
and those of its TFLite and ONNX exports run in LiteRT and onnxruntime, equal the training backend's.
`check_on_backend(backend, names, tmp_path)` does both for several names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
from model_cases import CASES, GAN
from model_checks import check_export

import export

ATOL = 1e-5
WORKER = Path(__file__).parent / "backend_worker.py"


class WorkerError(RuntimeError):
    """The worker process died before it recorded results."""


class WorkerRun:
    """A `backend_worker.py` process training `names` under `backend`, started and not waited for."""

    def __init__(self, backend: str, names, out_dir: Path):
        if backend not in ("jax", "torch", "tensorflow"):
            raise ValueError(f"backend must be 'jax', 'torch' or 'tensorflow'; got backend={backend!r}.")
        self.backend, self.names, self.out_dir = backend, tuple(names), Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        if backend == "jax":
            # JAX's default partitionable Threefry makes XLA:CPU take 5-20 s to compile the random
            # initializer of each 4-D kernel shape (1 s without); the numbers drawn differ, nothing else.
            env["JAX_THREEFRY_PARTITIONABLE"] = "0"
        self._log = open(self.out_dir / "worker.log", "w")
        command = [sys.executable, str(WORKER), "--cases", ",".join(self.names), "--out", str(self.out_dir)]
        self._process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                         cwd=Path(__file__).parent.parent)
        self._results = None

    def results(self, timeout: float = 1800) -> dict:
        """Waits for the worker; returns {name: result} from its results.json."""
        if self._results is None:
            try:
                status = self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.close()
                raise WorkerError(f"the {self.backend} worker ran over {timeout} s") from None
            self._log.close()
            self._results = self._read(status)
        return self._results

    def result(self, name: str, timeout: float = 1800) -> dict:
        """Waits until the worker has recorded `name` (it records each case when done); returns it."""
        deadline = time.monotonic() + timeout
        results_file = self.out_dir / "results.json"
        while self._process.poll() is None:
            if results_file.is_file():
                cases = self._check_backend(json.loads(results_file.read_text()))
                if name in cases:
                    return cases[name]
            if time.monotonic() > deadline:
                self.close()
                raise WorkerError(f"the {self.backend} worker did not reach {name} in {timeout} s")
            time.sleep(0.5)
        return self.results()[name]

    def close(self):
        """Stops the worker if it still runs (its results were never asked for)."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._log.close()

    def _read(self, status) -> dict:
        results_file = self.out_dir / "results.json"
        if status != 0 or not results_file.is_file():
            log = (self.out_dir / "worker.log").read_text()[-4000:]
            raise WorkerError(f"the {self.backend} worker exited with status {status}:\n{log}")
        cases = self._check_backend(json.loads(results_file.read_text()))
        missing = set(self.names) - set(cases)
        if missing:
            raise WorkerError(f"the {self.backend} worker recorded no result for {sorted(missing)}")
        return cases

    def _check_backend(self, results: dict) -> dict:
        if results["backend"] != self.backend:
            raise WorkerError(f"the worker ran on {results['backend']!r}, not {self.backend!r}")
        return results["cases"]


def run_worker(backend: str, names, out_dir: Path, timeout: float = 1800) -> dict:
    """Trains `names` under `backend` in one subprocess; returns {name: result}."""
    return WorkerRun(backend, names, out_dir).results(timeout)


def _saved_arrays(path: Path):
    with np.load(path) as saved:
        inputs = [saved[f"input_{i}"] for i in range(sum(k.startswith("input_") for k in saved.files))]
        outputs = [saved[f"output_{i}"] for i in range(sum(k.startswith("output_") for k in saved.files))]
    return (inputs if len(inputs) > 1 else inputs[0]), outputs


def _keras_outputs(model, inputs):
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(model(inputs, training=False))]


def _max_difference(expected, actual) -> float:
    assert len(expected) == len(actual), f"{len(actual)} outputs, expected {len(expected)}"
    for e, a in zip(expected, actual):
        assert e.shape == a.shape, f"output shape {a.shape}, expected {e.shape}"
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - e), initial=0.0)) for e, a in zip(expected, actual))


def check_shipped(name: str, out_dir: Path, tmp_path: Path) -> dict:
    """Reloads what the worker saved for `name` and asserts equal outputs in Keras, LiteRT and onnxruntime.

    Returns the largest absolute difference to the training backend's outputs, by runtime.
    """
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    loaded = keras.saving.load_model(Path(out_dir) / f"{name}.keras", safe_mode=True)
    model = loaded.generator if CASES[name].kind == GAN else loaded
    inputs, expected = _saved_arrays(Path(out_dir) / f"{name}.npz")
    differences = {"keras": _max_difference(expected, _keras_outputs(model, inputs))}
    assert differences["keras"] <= ATOL, (
        f"{name} reloaded in TensorFlow differs from the training backend by {differences['keras']:.3g}"
    )
    for runtime, result in check_export(model, inputs, tmp_path, atol=ATOL).items():
        differences[runtime] = _max_difference(expected, export.run_artifact(result.path, inputs))
        assert differences[runtime] <= ATOL, (
            f"{name}'s {runtime} export differs from the training backend by {differences[runtime]:.3g}"
        )
    return differences


def assert_trained(result: dict, name: str):
    """Fails with the worker's error and traceback when `name` failed on the training backend."""
    assert result["status"] == "passed", f"{name} failed in the worker: {result['error']}\n{result['traceback']}"


def check_on_backend(backend: str, names, tmp_path: Path) -> dict:
    """Trains `names` on `backend` in one subprocess, then checks each here; returns {name: differences}.

    Raises `AssertionError` naming every model that failed (training or shipping), with the reasons.
    """
    out_dir = Path(tmp_path) / f"{backend}_worker"
    results = run_worker(backend, names, out_dir)
    checked, failures = {}, {}
    for name in names:
        try:
            assert_trained(results[name], name)
            checked[name] = check_shipped(name, out_dir, Path(tmp_path) / name)
        except Exception as error:  # noqa: BLE001 - collect every model's failure, then report them all
            failures[name] = f"{type(error).__name__}: {error}"
    assert not failures, f"on {backend}: " + "\n".join(f"{n}: {e}" for n, e in failures.items())
    return checked
