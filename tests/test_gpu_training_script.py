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


def test_lstm_flops_per_token_count_the_models_kernels():
    # Each kernel weight of the LSTM and of the output layer is one multiply-add per token in the forward
    # pass: 2 FLOPs, times 3 for a training step. Counted here from the built model's variables.
    sizes = {"vocab_size": 300, "embedding_dim": 24, "units": 40, "num_layers": 2}
    model = keras_models.build("rnn_language_model", cell="lstm", compile=False, **sizes)
    kernels = sum(int(v.numpy().size) for v in model.weights
                  if v.path.endswith("kernel") and "embedding" not in v.path)
    assert kernels == 4 * (24 + 40) * 40 + 4 * (40 + 40) * 40 + 40 * 300
    assert _script().lstm_flops_per_token(sizes) == 6 * kernels


@pytest.mark.slow
def test_small_run_on_cpu_compares_networks_of_equal_size(tmp_path):
    pytest.importorskip("torch")
    output = tmp_path / "gpu.json"
    command = [sys.executable, str(SCRIPT), "--small", "--groups", "gpt2", "dcgan", "lstm", "--configs", "keras_gpt2",
               "torch_gpt2", "keras_dcgan", "torch_dcgan", "keras_lstm", "torch_lstm", "--rounds", "1", "--steps", "2",
               "--output", str(output)]
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
    lstm = report["groups"]["lstm"]["results"]
    # PyTorch's LSTM has two bias vectors per gate where Keras' has one: 4 x units more per layer.
    assert lstm["torch_lstm"]["parameters"] - lstm["keras_lstm"]["parameters"] == 4 * 16 * 2
    for result in (*gpt.values(), *gan.values(), *lstm.values()):
        assert result["per_second"] > 0


def _profile_script():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("gpu_profile", SCRIPT.parent / "gpu_profile.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def test_profile_reads_kernels_from_both_trace_formats_and_counts_busy_time():
    profile = _profile_script()
    torch_trace = {"traceEvents": [
        {"ph": "X", "cat": "kernel", "ts": 0, "dur": 10, "name": "nvjet_sm90_tst_256x128"},
        {"ph": "X", "cat": "kernel", "ts": 5, "dur": 10, "name": "triton_poi_fused_gelu"},
        {"ph": "X", "cat": "cpu_op", "ts": 0, "dur": 99, "name": "aten::mm"},
        {"ph": "X", "cat": "kernel", "ts": 20, "dur": 5, "name": "cudnn_generated_fort_native_sdpa_sm90_flash_fprop"},
    ]}
    kernels = profile.kernel_events(torch_trace)
    assert len(kernels) == 3 and profile.busy_time(kernels) == 20.0  # [0, 15] and [20, 25]
    jax_trace = {"traceEvents": [
        {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/host:CPU"}},
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 7, "args": {"name": "Stream #13(Compute)"}},
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 8, "args": {"name": "XLA Ops"}},
        {"ph": "X", "pid": 1, "tid": 7, "ts": 0, "dur": 4, "name": "gemm_fusion_dot_145"},
        {"ph": "X", "pid": 1, "tid": 8, "ts": 0, "dur": 4, "name": "dot.145"},
        {"ph": "X", "pid": 2, "tid": 1, "ts": 0, "dur": 50, "name": "PjitFunction"},
    ]}
    assert profile.kernel_events(jax_trace) == [(0.0, 4.0, "gemm_fusion_dot_145")]
    summary = profile.summarise(kernels, steps=2, wall_seconds=0.001)
    assert summary["busy_ms"] == 0.01 and abs(summary["idle_share"] - 0.2) < 1e-12
    assert summary["kinds_ms"] == {"matrix product": 0.005, "other (fused elementwise, reductions)": 0.005,
                                   "attention": 0.0025}


def test_profile_groups_kernel_names_by_kind():
    kind = _profile_script().kind_of
    assert kind("gemm_fusion_dot_145") == kind("nvjet_sm90_tst_128x160_64x5") == "matrix product"
    assert kind("input_convert_reduce_fusion") == kind("triton_red_fused__to_copy_mm") == \
        "other (fused elementwise, reductions)"
    assert kind("sm90_xmma_dgrad_implicit_gemm_indexed_f32") == "convolution"
    assert kind("cudnn_generated_fort_native_sdpa_sm90_flash_bprop") == "attention"
    assert kind("MemcpyH2D") == "copy"
