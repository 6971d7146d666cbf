"""`benchmarks/gpu_training.py`: its FLOP count against the ResNet paper's, and (slow) a run at tiny sizes
on the CPU in which the PyTorch networks written there match the library's in size and arithmetic."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import keras_models

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "gpu_training.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_training", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resnet50_forward_flops_match_the_paper():
    """He et al. (2016), Table 1: ResNet-50 at 224x224 costs 3.8 x 10^9 multiply-adds."""
    model = keras_models.build("resnet50", compile=False)
    multiply_adds = _script().keras_forward_flops(model) / 2
    assert 3.8e9 <= multiply_adds <= 3.9e9


def test_gpt_flops_per_token_follow_nanogpts_count():
    # GPT-2 small: 6 N + 12 L d T with N = 124,439,808, L = 12, d = 768, T = 1024.
    assert _script().gpt_flops_per_token(124_439_808, 12, 768, 1024) == 6 * 124_439_808 + 12 * 12 * 768 * 1024


@pytest.mark.slow
def test_small_run_on_cpu_compares_networks_of_equal_size(tmp_path):
    pytest.importorskip("torch")
    output = tmp_path / "gpu.json"
    command = [sys.executable, str(SCRIPT), "--small", "--groups", "gpt2", "dcgan", "--configs", "keras_gpt2",
               "torch_gpt2", "keras_dcgan", "torch_dcgan", "--rounds", "1", "--steps", "2", "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200,
                          env=dict(os.environ, JAX_THREEFRY_PARTITIONABLE="0"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "No GPU: every configuration runs on the CPU" in done.stdout
    report = json.loads(output.read_text())
    assert report["gpu"] is None and report["bf16_matmul_tflops"] is None
    gpt, gan = report["groups"]["gpt2"]["results"], report["groups"]["dcgan"]["results"]
    assert gpt["keras_gpt2"]["parameters"] == gpt["torch_gpt2"]["parameters"]
    assert gpt["keras_gpt2"]["flops_per_unit"] == gpt["torch_gpt2"]["flops_per_unit"]
    assert gan["keras_dcgan"]["flops_per_unit"] == gan["torch_dcgan"]["flops_per_unit"]
    for result in (*gpt.values(), *gan.values()):
        assert result["per_second"] > 0
