"""The launcher's contract, with plain Python scripts (no JAX): settings, output, failures, time limits;
and the worker side's checks that need no job."""

import time

import keras
import numpy as np
import pytest

from keras_models import distributed
from keras_models.distributed import launcher, worker

SETTINGS = """
import os, sys
print("settings", os.environ["KERAS_DISTRIBUTION_JOB_ADDRESSES"], os.environ["KERAS_DISTRIBUTION_NUM_PROCESSES"],
      os.environ["KERAS_DISTRIBUTION_PROCESS_ID"], os.environ["KERAS_BACKEND"], os.environ.get("XLA_FLAGS", ""),
      *sys.argv[1:])
"""

ONE_FAILS = """
import os, sys, time
if os.environ["KERAS_DISTRIBUTION_PROCESS_ID"] == "1":
    print("giving up", flush=True)
    sys.exit(3)
time.sleep(120)
"""


def _script(tmp_path, text, name="script.py"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_every_process_gets_the_job_settings_and_the_arguments(tmp_path):
    results = distributed.launch(_script(tmp_path, SETTINGS), 3, ["--epochs", 2], devices_per_process=2, echo=False,
                                 timeout=60)
    fields = [result.output.split("settings ")[1].split() for result in results]
    assert [result.returncode for result in results] == [0, 0, 0]
    host, port = fields[0][0].split(":")
    assert host == "127.0.0.1" and 0 < int(port) < 65536
    assert {f[0] for f in fields} == {fields[0][0]}  # one coordinator for all
    assert [f[1:4] for f in fields] == [["3", str(i), "jax"] for i in range(3)]
    assert all(f[4] == "--xla_force_host_platform_device_count=2" and f[5:] == ["--epochs", "2"] for f in fields)


def test_a_failing_process_is_named_and_the_others_are_stopped(tmp_path):
    start = time.monotonic()
    with pytest.raises(distributed.WorkerFailed, match=r"process 1 of 2 failed \(exit code 3\)") as failure:
        distributed.launch(_script(tmp_path, ONE_FAILS), 2, echo=False, timeout=100)
    assert time.monotonic() - start < 60  # process 0 sleeps 120 s: it was stopped, not waited for
    assert failure.value.process_id == 1 and failure.value.returncode == 3
    assert "giving up" in str(failure.value)
    assert failure.value.results[0].returncode != 0


def test_the_time_limit_stops_every_process(tmp_path):
    script = _script(tmp_path, "import time\ntime.sleep(120)\n")
    with pytest.raises(distributed.WorkerFailed, match="did not finish within timeout=1 s") as failure:
        distributed.launch(script, 2, echo=False, timeout=1)
    assert failure.value.process_id is None
    assert all(result.returncode is not None and result.returncode != 0 for result in failure.value.results)


def test_the_command_line_runs_a_module_and_reports_failure(tmp_path, capsys, monkeypatch):
    (tmp_path / "job_settings.py").write_text(SETTINGS)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert launcher.main(["--processes", "2", "-m", "job_settings", "--flag"]) == 0
    printed = capsys.readouterr().out
    assert "[process 0] settings" in printed and "[process 1] settings" in printed and "--flag" in printed
    assert launcher.main(["--processes", "2", _script(tmp_path, ONE_FAILS)]) == 1
    assert "process 1 of 2 failed (exit code 3)" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    ({"processes": 0}, "processes must be a positive integer, got 0"),
    ({"processes": 2, "timeout": -1}, "timeout must be a positive number"),
    ({"processes": 2, "devices_per_process": 0}, "devices_per_process must be a positive integer"),
])
def test_bad_launch_arguments_are_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        distributed.launch("train.py", **arguments)


def test_initialize_refuses_other_backends():
    if keras.backend.backend() == "jax":
        pytest.skip("this process runs the JAX backend")
    with pytest.raises(RuntimeError, match="needs Keras' JAX backend, but KERAS_BACKEND is"):
        distributed.initialize()


def test_job_settings_are_read_and_checked(monkeypatch):
    for name in (launcher.JOB_ADDRESSES, launcher.NUM_PROCESSES, launcher.PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    assert worker._environment_settings() == (None, 1, 0)
    monkeypatch.setenv(launcher.JOB_ADDRESSES, "10.0.0.1:1234")
    with pytest.raises(ValueError, match="KERAS_DISTRIBUTION_NUM_PROCESSES, KERAS_DISTRIBUTION_PROCESS_ID not"):
        worker._environment_settings()
    monkeypatch.setenv(launcher.NUM_PROCESSES, "4")
    monkeypatch.setenv(launcher.PROCESS_ID, "4")
    with pytest.raises(ValueError, match=r"KERAS_DISTRIBUTION_PROCESS_ID=4 must lie in \[0, "):
        worker._environment_settings()
    monkeypatch.setenv(launcher.PROCESS_ID, "2")
    assert worker._environment_settings() == ("10.0.0.1:1234", 4, 2)


def test_process_rows_rebuild_the_global_batches():
    x = np.arange(26 * 2).reshape(26, 2)
    y = np.arange(26)
    shares = [distributed.process_rows({"x": x, "y": y}, 6, process_id=p, processes=3) for p in range(3)]
    # Step s of process p feeds rows [6 s + 2 p, 6 s + 2 p + 2): concatenated in process order, they are
    # the global batch of one process; the 2 rows past the last full batch are dropped.
    for step in range(4):
        batch = np.concatenate([share["y"][2 * step:2 * step + 2] for share in shares])
        np.testing.assert_array_equal(batch, y[6 * step:6 * step + 6])
    np.testing.assert_array_equal(shares[1]["x"], x[shares[1]["y"]])
    with pytest.raises(ValueError, match="global_batch_size must be a positive multiple of the process count 4"):
        distributed.process_rows(x, 6, process_id=0, processes=4)
    with pytest.raises(ValueError, match="holds no full global batch of 32"):
        distributed.process_rows(x, 32, process_id=0, processes=2)

