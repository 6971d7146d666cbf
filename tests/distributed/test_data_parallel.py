"""Every Keras family trains under `keras.distribution.DataParallel` on JAX, over devices and processes.

One subprocess with 4 virtual CPU devices trains one small model of each family two steps and records
the layouts; the same subprocess then trains an MLP and a batch-normalized CNN on one device and on all
four, from the same weights on the same global batches. One more run joins two local processes through
`keras_models.distributed.launch`.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from distributed_runs import assert_equal_runs, run_devices, run_processes  # noqa: E402

# The kinds of training step: Keras' own (dense; the batch-normalized CNN of the equality run), the
# GAN's two optimizers with a gradient penalty, a transformer, the VAE's own loss. The slow suite trains
# every other Keras model, the CNN and recurrent families included.
FAMILIES = ("mlp", "wgan_gp", "gpt_causal_lm", "vae")
DEVICES = 4
STEPS = 2
GLOBAL_BATCH = 8


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("data_parallel")
    run_devices("families", FAMILIES, out_dir, DEVICES, "--equal", "mlp,batch_norm", "--steps", str(STEPS),
                "--global-batch", str(GLOBAL_BATCH))
    return out_dir, json.loads((out_dir / "families.json").read_text())


@pytest.mark.parametrize("name", FAMILIES)
def test_family_trains_with_replicated_weights_and_sharded_batches(four_devices, name):
    _, results = four_devices
    result = results[name]
    assert result["status"] == "passed", result.get("traceback")
    assert result["losses"], "fit reported no loss"
    for key, value in result["losses"].items():
        assert np.isfinite(value), f"{key} is {value}"
    assert all(result["moved"].values()), f"weights that did not move: {result['moved']}"
    # Every weight and optimizer variable is one full copy on each of the 4 devices.
    assert result["variables"] > 0 and result["not_replicated"] == []
    # Every input and target array is split along its first axis: 8 rows, 2 on each device.
    for layout in result["batch"]:
        assert layout["spec"][0] == "batch" and set(layout["spec"][1:]) <= {"None"}, layout
        assert layout["rows_per_device"] == [GLOBAL_BATCH // DEVICES] and layout["devices"] == DEVICES


def test_four_devices_reach_the_weights_and_metrics_of_one(four_devices):
    out_dir, _ = four_devices
    report = assert_equal_runs("mlp", out_dir)
    assert report["devices"] == DEVICES and len(report["reference"]["loss"]) == 1


def test_batch_normalization_statistics_are_those_of_the_global_batch(four_devices):
    out_dir, _ = four_devices
    report = assert_equal_runs("batch_norm", out_dir)
    weights = np.load(out_dir / "batch_norm.npz")
    # input_bn's variables come first: gamma, beta, moving_mean, moving_variance. Each device holds 4
    # rows of a batch of 8, the first 3 of them shifted by 3; the variance of one device's rows would
    # miss the spread between the two halves (0.011 of the moving variance after two steps).
    np.testing.assert_allclose(weights["distributed_2"], report["input_moving_mean"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(weights["distributed_3"], report["input_moving_variance"], atol=1e-6, rtol=0)


def test_two_processes_reach_the_weights_of_one(tmp_path):
    results = run_processes("equal", ["mlp"], tmp_path, 2, "--steps", str(STEPS), "--global-batch",
                            str(GLOBAL_BATCH), timeout=300)
    assert [result.returncode for result in results] == [0, 0]
    report = assert_equal_runs("mlp", tmp_path)
    assert report["processes"] == 2 and report["devices"] == 2
