"""`run_on_torch(code)`: runs a test's worker code in a `KERAS_BACKEND=torch` subprocess (the backend is
chosen when Keras is imported) and returns the JSON object its last line of output prints;
`run_on_backend(code, backend)` likewise on another backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def run_on_torch(code: str, timeout: float = 600) -> dict:
    return run_on_backend(code, "torch", timeout)


def run_on_backend(code: str, backend: str, timeout: float = 600) -> dict:
    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
