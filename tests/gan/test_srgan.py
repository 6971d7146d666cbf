"""SRGAN's generator with a global residual over an interpolated input, and its content-only stage."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from gan_cases import build_tiny, training_data

import keras_models
from keras_models.gan.gan_layers import InterpolatedUpsampling
from keras_models.gan.networks import srresnet_generator


def _weights(network):
    return [np.array(w) for w in network.weights]


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("size", [(4, 4, 1), (8, 6, 3)])
def test_interpolated_upsampling_equals_tensorflow_resize(interpolation, size):
    images = np.random.default_rng(0).uniform(-1, 1, (3, *size)).astype("float32")
    expected = tf.image.resize(images, (size[0] * 4, size[1] * 4), method=interpolation).numpy()
    result = keras.ops.convert_to_numpy(InterpolatedUpsampling(4, interpolation)(images))
    np.testing.assert_allclose(result, expected, atol=1e-5)


@pytest.mark.parametrize("residual", ["bicubic", "bilinear"])
def test_generator_with_zero_correction_returns_the_interpolated_input(residual):
    generator = srresnet_generator((4, 4, 1), scale=4, width=8, num_blocks=1, residual=residual)
    images = np.random.default_rng(1).uniform(0, 1, (5, 4, 4, 1)).astype("float32")
    expected = np.clip(tf.image.resize(images, (16, 16), method=residual).numpy(), 0, 1)
    # untrained: the correction branch's last convolution starts at zero
    np.testing.assert_allclose(generator.predict(images, verbose=0), expected, atol=1e-5)
    # with a nonzero trunk and the correction zeroed again, still the interpolation
    to_rgb = generator.get_layer("generator_to_rgb")
    to_rgb.set_weights([np.ones_like(w) for w in to_rgb.get_weights()])
    assert np.abs(generator.predict(images, verbose=0) - expected).max() > 0.1
    to_rgb.set_weights([np.zeros_like(w) for w in to_rgb.get_weights()])
    np.testing.assert_allclose(generator.predict(images, verbose=0), expected, atol=1e-5)


def test_generator_output_is_clipped_to_the_pixel_range():
    generator = srresnet_generator((4, 4, 1), width=8, num_blocks=1, pixel_range=(-1.0, 1.0))
    to_rgb = generator.get_layer("generator_to_rgb")
    to_rgb.set_weights([np.full_like(w, 100.0) for w in to_rgb.get_weights()])
    images = np.random.default_rng(2).uniform(-1, 1, (2, 4, 4, 1)).astype("float32")
    output = generator.predict(images, verbose=0)
    assert output.min() >= -1.0 and output.max() <= 1.0
    assert np.isclose(output.max(), 1.0)


def test_residual_none_keeps_the_tanh_generator_and_bad_values_are_named():
    generator = srresnet_generator((4, 4, 1), width=8, num_blocks=1, residual=None)
    names = {layer.name for layer in generator.layers}
    assert "generator_tanh" in names and "generator_interpolate" not in names
    with pytest.raises(ValueError, match="residual"):
        srresnet_generator((4, 4, 1), residual="lanczos")
    with pytest.raises(ValueError, match="residual"):
        keras_models.build("srgan", image_shape=(16, 16, 1), width=4, num_blocks=1, residual="area")
    with pytest.raises(ValueError, match="interpolation"):
        InterpolatedUpsampling(2, "nearest")
    with pytest.raises(ValueError, match="scale"):
        InterpolatedUpsampling(0)


def test_content_stage_trains_only_the_generator_then_fit_trains_both():
    gan = build_tiny("srgan", seed=0)
    low_res, high_res = training_data("srgan", count=32)
    rate = float(keras.ops.convert_to_numpy(gan.g_optimizer.learning_rate))
    d_before, g_before = _weights(gan.discriminator), _weights(gan.generator)
    history = gan.pretrain(low_res, high_res, learning_rate=1e-2, epochs=5, batch_size=8, verbose=0)
    assert set(history.history) == {"content"}
    mse = history.history["content"]  # the pixel MSE of each epoch, falling
    assert mse[-1] < mse[0]
    bicubic = np.clip(tf.image.resize(low_res, (16, 16), method="bicubic").numpy(), 0, 1)
    assert mse[0] == pytest.approx(np.mean((high_res - bicubic) ** 2), rel=0.1)  # starts at the interpolation
    assert all(np.array_equal(b, a) for b, a in zip(d_before, _weights(gan.discriminator)))
    assert any(not np.array_equal(b, a) for b, a in zip(g_before, _weights(gan.generator)))
    assert int(gan.d_optimizer.iterations) == 0 and int(gan.g_optimizer.iterations) == 20
    assert float(keras.ops.convert_to_numpy(gan.g_optimizer.learning_rate)) == pytest.approx(rate)
    history = gan.fit(low_res, high_res, epochs=1, batch_size=8, verbose=0)
    assert {"d_loss", "g_loss", "content"} <= set(history.history)
    assert int(gan.d_optimizer.iterations) == 4 and int(gan.g_optimizer.iterations) == 24
    assert any(not np.array_equal(b, a) for b, a in zip(d_before, _weights(gan.discriminator)))


def test_pretrain_arguments_are_checked():
    gan = build_tiny("srgan", seed=0)
    low_res, high_res = training_data("srgan")
    with pytest.raises(ValueError, match="learning_rate"):
        gan.pretrain(low_res, high_res, learning_rate=0.0)
    with pytest.raises(ValueError, match="compile"):
        build_tiny("srgan", compile=False).pretrain(low_res, high_res)
    with pytest.raises(ValueError, match="source images"):
        gan.pretrain(high_res, high_res)


_BACKEND_SCRIPT = textwrap.dedent(
    """
    import keras, numpy as np
    from gan_cases import build_tiny, training_data
    gan = build_tiny("srgan", seed=0)
    low_res, high_res = training_data("srgan", count=32)
    d_before = [np.array(w) for w in gan.discriminator.weights]
    g_before = [np.array(w) for w in gan.generator.weights]
    mse = gan.pretrain(low_res, high_res, learning_rate=1e-2, epochs=5, batch_size=8, verbose=0).history["content"]
    assert mse[-1] < mse[0], mse
    assert any(not np.array_equal(b, np.array(a)) for b, a in zip(g_before, gan.generator.weights))
    assert all(np.array_equal(b, np.array(a)) for b, a in zip(d_before, gan.discriminator.weights))
    assert int(gan.d_optimizer.iterations) == 0
    gan.fit(low_res, high_res, epochs=1, batch_size=8, verbose=0)
    assert int(gan.d_optimizer.iterations) == 4
    print("ok", keras.backend.backend())
    """
)


@pytest.mark.slow  # with tests/test_backends.py's slow cases, which fit every GAN variant on JAX and PyTorch
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_content_stage_and_adversarial_stage_on_other_backends(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parents[2])])}
    done = subprocess.run([sys.executable, "-c", _BACKEND_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith(f"ok {backend}")
