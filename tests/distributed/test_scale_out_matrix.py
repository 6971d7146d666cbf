"""The slow matrix: every Keras model of the registry under `DataParallel` over 4 virtual devices, and
one model of each family over two local processes reaching the weights and metrics of one device."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from distributed_runs import assert_equal_runs, run_devices, run_processes  # noqa: E402
from model_cases import CASES, GAN, KERAS  # noqa: E402

pytestmark = pytest.mark.slow

EVERY_KERAS_MODEL = tuple(name for name, case in CASES.items() if case.kind in (KERAS, GAN))
# Custom steps included: the GAN's two optimizers and gradient penalty, the VAE's and the diffusion
# model's own losses (random noise and timesteps drawn inside the step), teacher-forced encoder-decoders.
TWO_PROCESSES = ("simple_cnn", "wgan_gp", "rnn_classifier", "gpt_causal_lm", "bert_classifier", "t5_seq2seq_lm", "vae",
                 "ddpm", "pixelcnn", "batch_norm")
CHUNK = 8  # models per process and per test: each test stays within the suite's time limit per test
CHUNKS = [EVERY_KERAS_MODEL[i:i + CHUNK] for i in range(0, len(EVERY_KERAS_MODEL), CHUNK)]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("two_processes")
    run_processes("equal", TWO_PROCESSES, out_dir, 2, "--steps", "2", "--global-batch", "8", timeout=850)
    return out_dir


@pytest.mark.parametrize("names", CHUNKS, ids=lambda names: f"{names[0]}-{names[-1]}")
def test_every_keras_model_trains_under_data_parallel(tmp_path, names):
    run_devices("families", names, tmp_path, 4, timeout=850)
    results = json.loads((tmp_path / "families.json").read_text())
    for name in names:
        result = results[name]
        assert result["status"] == "passed", f"{name}: {result.get('traceback')}"
        assert all(np.isfinite(value) for value in result["losses"].values()), (name, result["losses"])
        assert all(result["moved"].values()), (name, result["moved"])
        assert result["not_replicated"] == [], name
        assert all(layout["spec"][0] == "batch" and layout["rows_per_device"] == [2] for layout in result["batch"]), name


@pytest.mark.parametrize("name", TWO_PROCESSES)
def test_two_processes_reach_the_weights_and_metrics_of_one_device(two_processes, name):
    report = assert_equal_runs(name, two_processes)
    assert report["processes"] == 2
