"""Starts a training script as several local processes joined by `jax.distributed`.

    python -m keras_models.distributed --processes 2 train.py --epochs 3
    python -m keras_models.distributed --processes 2 -m my_package.train

Every process gets the settings Keras' own `keras.distribution.initialize()` reads, as environment
variables: `KERAS_DISTRIBUTION_JOB_ADDRESSES` (the coordinator, 127.0.0.1 on a free port),
`KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID`, and `KERAS_BACKEND=jax`.
The script calls `keras_models.distributed.initialize()` before it builds a model. On a real cluster
the scheduler sets the same three variables (README: Slurm and Kubernetes recipes) and the script is
unchanged. With `--backend tensorflow` every process gets a port of its own, the addresses variable
lists them all, `KERAS_BACKEND=tensorflow`, and the script calls
`keras_models.distributed.multi_worker_strategy()`.

This module imports nothing but the standard library: the launching process never starts JAX.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Sequence

JOB_ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
NUM_PROCESSES = "KERAS_DISTRIBUTION_NUM_PROCESSES"
PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"

_TAIL_LINES = 40  # lines of a failed process's output quoted in the error
_GRACE_SECONDS = 5.0  # between SIGTERM and SIGKILL when the others are stopped


class WorkerFailed(RuntimeError):
    """A launched process exited with a non-zero code, or the run passed its time limit.

    Attributes:
        process_id: the process that failed first (None when the time limit was reached).
        returncode: its exit code (negative: killed by that signal); None on a timeout.
        results: every process's `ProcessResult` as far as it got.
    """

    def __init__(self, message, process_id=None, returncode=None, results=()):
        super().__init__(message)
        self.process_id = process_id
        self.returncode = returncode
        self.results = list(results)


@dataclasses.dataclass
class ProcessResult:
    """What one launched process did: its id, exit code and output (stdout and stderr interleaved)."""

    process_id: int
    returncode: int | None
    output: str


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the operating system's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


BACKENDS = ("jax", "tensorflow")


def worker_environment(process_id: int, processes: int, coordinator: str, devices_per_process: int | None = None,
                       base: dict | None = None, backend: str = "jax") -> dict:
    """The environment of one process: `base` (default: this one's) and the distribution settings.

    `coordinator`: the coordinator's `host:port` (JAX), or every process's address separated by commas
    (TensorFlow's multi-worker strategy needs them all)."""
    env = dict(os.environ if base is None else base)
    env.update({JOB_ADDRESSES: coordinator, NUM_PROCESSES: str(processes), PROCESS_ID: str(process_id),
                "KERAS_BACKEND": backend, "PYTHONUNBUFFERED": "1"})
    if devices_per_process is not None:
        # Virtual CPU devices: each process shows this many, so N processes form N * k devices.
        flag = "--xla_force_host_platform_device_count"
        flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(flag)]
        env["XLA_FLAGS"] = " ".join([*flags, f"{flag}={devices_per_process}"])
    return env


def _check_arguments(processes, timeout, devices_per_process, backend="jax"):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
        raise ValueError(f"processes must be a positive integer, got {processes!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    if devices_per_process is not None and (not isinstance(devices_per_process, int) or devices_per_process < 1):
        raise ValueError(f"devices_per_process must be a positive integer or None, got {devices_per_process!r}")


def _pump(stream, process_id, lines, echo):
    """Copies one process's output into `lines`, and to this process's stdout with a prefix if `echo`."""
    for line in iter(stream.readline, ""):
        lines.append(line)
        if echo:
            sys.stdout.write(f"[process {process_id}] {line}")
            sys.stdout.flush()
    stream.close()


def _stop(procs):
    """SIGTERM to every process still running, SIGKILL to those still running after a grace period."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_SECONDS
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def launch(script: str, processes: int = 2, args: Sequence[str] = (), *, module: bool = False,
           timeout: float | None = None, devices_per_process: int | None = None, env: dict | None = None,
           cwd: str | None = None, echo: bool = True, host: str = "127.0.0.1",
           backend: str = "jax") -> list[ProcessResult]:
    """Runs `script` as `processes` local processes that form one `jax.distributed` job (or, with
    `backend="tensorflow"`, one `tf.distribute.MultiWorkerMirroredStrategy` cluster).

    Each process runs `python script *args` (or `python -m script *args` with `module=True`) with
    `KERAS_DISTRIBUTION_JOB_ADDRESSES=host:PORT` (a free port), `KERAS_DISTRIBUTION_NUM_PROCESSES`,
    `KERAS_DISTRIBUTION_PROCESS_ID` and `KERAS_BACKEND=jax` set; the script calls
    `keras_models.distributed.initialize()`. With `backend="tensorflow"` every process gets a free port,
    `KERAS_DISTRIBUTION_JOB_ADDRESSES` lists all of them and `KERAS_BACKEND=tensorflow`; the script
    calls `keras_models.distributed.multi_worker_strategy()`. Output is collected per process and, with `echo`, printed
    line by line prefixed by `[process i]`. When one process exits with a non-zero code the others are
    stopped (SIGTERM, then SIGKILL) and `WorkerFailed` names it; so does reaching `timeout`.

    Args:
        script: path of a Python file, or a module name with `module=True`.
        processes: how many processes (>= 1).
        args: command-line arguments given to every process.
        module: run `script` as a module (`python -m`).
        timeout: seconds for the whole run; None waits as long as it takes.
        devices_per_process: virtual CPU devices per process (`--xla_force_host_platform_device_count`);
            None leaves `XLA_FLAGS` as it is.
        env: the environment to start from (default: this process's).
        cwd: working folder of the processes.
        echo: print the processes' output as it comes.
        host: the coordinator's address (process 0 runs there).
        backend: `"jax"` (`keras.distribution`) or `"tensorflow"` (`tf.distribute`).

    Returns:
        One `ProcessResult` per process, in process-id order, all with exit code 0.

    Raises:
        ValueError: bad `processes`, `timeout`, `devices_per_process` or `backend`.
        WorkerFailed: a process failed (its id, exit code and last lines of output in the message), or
            the time limit was reached.
    """
    _check_arguments(processes, timeout, devices_per_process, backend)
    ports = [free_port(host) for _ in range(processes if backend == "tensorflow" else 1)]
    coordinator = ",".join(f"{host}:{port}" for port in ports)
    command = [sys.executable, *(["-m"] if module else []), str(script), *map(str, args)]
    procs, outputs, pumps = [], [], []
    try:
        for process_id in range(processes):
            proc = subprocess.Popen(
                command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                env=worker_environment(process_id, processes, coordinator, devices_per_process, env, backend))
            lines = collections.deque()
            pump = threading.Thread(target=_pump, args=(proc.stdout, process_id, lines, echo), daemon=True)
            pump.start()
            procs.append(proc)
            outputs.append(lines)
            pumps.append(pump)
        failed, deadline = None, None if timeout is None else time.monotonic() + timeout
        while failed is None:
            codes = [proc.poll() for proc in procs]
            failed = next((i for i, code in enumerate(codes) if code not in (None, 0)), None)
            if failed is None and all(code == 0 for code in codes):
                break
            if failed is None and deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        _stop(procs)
        for pump in pumps:
            pump.join(timeout=_GRACE_SECONDS)
    results = [ProcessResult(i, proc.returncode, "".join(lines)) for i, (proc, lines) in enumerate(zip(procs, outputs))]
    if failed is not None:
        code = procs[failed].returncode
        why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        tail = "".join(list(outputs[failed])[-_TAIL_LINES:])
        raise WorkerFailed(f"process {failed} of {processes} failed ({why}) running {' '.join(command[1:])}; "
                           f"the others were stopped. Its last output:\n{tail}", failed, code, results)
    if any(result.returncode != 0 for result in results):
        raise WorkerFailed(f"the {processes} processes did not finish within timeout={timeout} s and were stopped",
                           None, None, results)
    return results


def main(argv=None, prog: str = "python -m keras_models.distributed") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a training script as several local processes joined by jax.distributed "
                    "(or, with --backend tensorflow, by tf.distribute.MultiWorkerMirroredStrategy).")
    parser.add_argument("--processes", type=int, default=2, help="how many processes (default 2)")
    parser.add_argument("--devices-per-process", type=int, default=None,
                        help="virtual CPU devices per process (XLA's host device count)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds for the whole run")
    parser.add_argument("--backend", choices=BACKENDS, default="jax",
                        help="jax: keras.distribution (default); tensorflow: tf.distribute multi-worker")
    parser.add_argument("-m", dest="module", action="store_true", help="run SCRIPT as a module")
    parser.add_argument("script", help="the Python file (or module, with -m) every process runs")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments given to the script")
    options = parser.parse_args(argv)
    try:
        launch(options.script, options.processes, options.args, module=options.module, timeout=options.timeout,
               devices_per_process=options.devices_per_process, backend=options.backend)
    except ValueError as error:
        parser.error(str(error))
    except WorkerFailed as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0

