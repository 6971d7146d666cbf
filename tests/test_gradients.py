"""The gradient seam on TensorFlow, JAX and PyTorch: two optimizers in one step, a penalty on an input
gradient (a second derivative), batch statistics and optimizer state carried across steps, all equal to
the updates worked out by hand (tests/gradient_cases.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CASES = Path(__file__).with_name("gradient_cases.py")


def _subprocess(backend, mode):
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(CASES.parent.parent)}
    done = subprocess.run([sys.executable, str(CASES), mode], env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"{backend} run failed:\n{done.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _in_process(mode):
    sys.path.insert(0, str(CASES.parent))
    import gradient_cases

    return gradient_cases.run(mode == "jit")


@pytest.mark.parametrize(
    "backend, mode",
    [("tensorflow", "eager"), ("tensorflow", "jit"), ("jax", "jit"), ("torch", "eager")],
)
def test_two_optimizers_penalty_and_batch_statistics_match_hand_computed_updates(backend, mode):
    result = _in_process(mode) if backend == "tensorflow" else _subprocess(backend, mode)
    assert result["backend"] == backend
    np.testing.assert_allclose(result["first"], result["first_expected"], rtol=1e-6)
    # The penalty's gradient is a second derivative: wrong if the inner gradient were not differentiable.
    np.testing.assert_allclose(result["second"], result["second_expected"], rtol=1e-5)
    np.testing.assert_allclose(result["moving_mean"], result["moving_mean_expected"], rtol=1e-6)
    # Two batches: each optimizer stepped twice, and the momentum of the second carried between steps
    # (on JAX only if the group carries both optimizers' state through the pure step).
    assert result["iterations"] == [2, 2]
    assert result["history_keys"] == ["first_loss", "penalty"]


def test_torch_compile_is_declined_for_gradient_penalties():
    """torch.compile cannot take the double backward a gradient penalty needs: on PyTorch such a GAN
    trains eagerly by default, and asking for torch.compile builds it eagerly too, with a warning that
    says why."""
    script = (
        "import warnings\n"
        "import keras_models\n"
        "gan = keras_models.build('wgan_gp', width=4)\n"
        "print('DEFAULT', gan.jit_compile)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    asked = keras_models.build('wgan_gp', width=4, jit_compile=True)\n"
        "print('ASKED', asked.jit_compile, 'double backward' in asked.jit_compile_reason)\n"
        "print('WARNED', [w.category.__name__ for w in caught if 'double backward' in str(w.message)])\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(CASES.parent.parent)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert "DEFAULT False" in done.stdout, done.stderr[-2000:]
    assert "ASKED False True" in done.stdout, done.stderr[-2000:]
    assert "WARNED ['JitCompileWarning']" in done.stdout, done.stderr[-2000:]
