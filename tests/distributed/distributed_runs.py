"""Runs `distributed_worker.py` the ways the tests need: one process over virtual CPU devices, or
several processes through the library's launcher; and compares what an `equal` run recorded."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from keras_models import distributed

WORKER = Path(__file__).parent / "distributed_worker.py"
ROOT = Path(__file__).parent.parent.parent
ATOL = 1e-5


def environment(devices: int) -> dict:
    """A JAX subprocess's environment with `devices` virtual CPU devices and no job settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KERAS_DISTRIBUTION_")}
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env.update({"KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2",
                "XLA_FLAGS": " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"]),
                # Threefry's partitionable form makes XLA:CPU compile random initializers of 4-D kernels
                # for seconds each; the numbers differ, nothing else does.
                "JAX_THREEFRY_PARTITIONABLE": "0"})
    return env


def run_devices(mode: str, names, out_dir: Path, devices: int, *extra, timeout: float = 900) -> None:
    """`distributed_worker.py MODE` in one process over `devices` virtual CPU devices."""
    command = [sys.executable, str(WORKER), mode, "--cases", ",".join(names), "--out", str(out_dir), *extra]
    done = subprocess.run(command, env=environment(devices), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"the worker failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


def run_processes(mode: str, names, out_dir: Path, processes: int, *extra, timeout: float = 600) -> list:
    """`distributed_worker.py MODE` as `processes` local processes (one CPU device each) via `launch`."""
    args = [mode, "--cases", ",".join(names), "--out", str(out_dir), *extra]
    return distributed.launch(str(WORKER), processes, args, timeout=timeout, devices_per_process=1,
                              env=environment(1), cwd=str(ROOT), echo=False)


def assert_equal_runs(name: str, out_dir: Path, atol: float = ATOL) -> dict:
    """The distributed run's weights and reported metrics equal the one-device run's; returns the report."""
    weights = np.load(out_dir / f"{name}.npz")
    count = len(weights.files) // 2
    assert count > 0, f"{name}: no weights recorded"
    for i in range(count):
        np.testing.assert_allclose(weights[f"distributed_{i}"], weights[f"reference_{i}"], atol=atol, rtol=0,
                                   err_msg=f"{name}: weight {i} differs between distributed and one-device runs")
    report = json.loads((out_dir / f"{name}.json").read_text())
    assert report["distributed"].keys() == report["reference"].keys()
    for key, values in report["reference"].items():
        np.testing.assert_allclose(report["distributed"][key], values, atol=atol, rtol=0,
                                   err_msg=f"{name}: reported {key} differs")
    return report


def assert_trained_on_two_replicas(results, names):
    """What `mirrored_worker.py` recorded: two replicas; every case trained (its weights moved, its
    losses finite); and where the step draws no random numbers, one device's weights (1e-5)."""
    assert results["replicas"] == 2
    for name in names:
        case = results["cases"][name]
        assert "error" not in case, f"{name}: {case.get('error')}\n{case.get('traceback')}"
        assert case["moved"], name
        assert all(math.isfinite(value) for value in case["logs"].values()), (name, case["logs"])
        if "max_weight_difference" in case:
            assert case["max_weight_difference"] <= 1e-5, (name, case["max_weight_difference"])
