"""GAN layers against direct numpy / per-sample TensorFlow references, and their export."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from model_checks import check_export, check_save_load

from keras_models.gan.gan_layers import ConditionalBatchNormalization, MinibatchStdDev, ModulatedConv2D, NoiseInjection
from keras_models.layers import InstanceNormalization, PixelShuffle, SelfAttention2D, SpectralNorm

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "layer, input_shape",
    [(keras.layers.Dense(6), (5, 7)), (keras.layers.Conv2D(6, 3, padding="same"), (2, 5, 5, 3))],
)
def test_spectral_norm_brings_the_top_singular_value_to_one(layer, input_shape):
    wrapped = SpectralNorm(layer)
    x = RNG.normal(size=input_shape).astype("float32")
    wrapped(x)
    # A kernel with known singular values 3, 1.5, 1, ...: power iteration gains a factor
    # (1.5 / 3)^2 per call, so 40 calls leave far less than the 1e-3 asked for. A random
    # kernel's top two singular values can lie close enough to need hundreds of calls.
    shape = tuple(layer.kernel.shape)
    rows, cols = int(np.prod(shape[:-1])), shape[-1]
    left, _ = np.linalg.qr(RNG.normal(size=(rows, cols)))
    right, _ = np.linalg.qr(RNG.normal(size=(cols, cols)))
    singular = np.array([3.0, 1.5] + [1.0] * (cols - 2))
    layer.kernel.assign((left * singular @ right.T).reshape(shape).astype("float32"))
    before = np.linalg.svd(np.array(layer.kernel).reshape(rows, cols), compute_uv=False)[0]
    for _ in range(40):  # power iteration converges over training calls
        wrapped(x, training=True)
    kernel = np.array(wrapped.normalized_kernel(training=False))
    sigma = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
    assert abs(before - 1.0) > 0.05
    assert sigma == pytest.approx(1.0, abs=1e-3)
    u = np.array(wrapped.vector_u)
    wrapped(x, training=False)
    np.testing.assert_array_equal(np.array(wrapped.vector_u), u)  # inference never updates u


def test_spectral_norm_rejects_unsupported_layers():
    with pytest.raises(ValueError, match="got layer=LSTM"):
        SpectralNorm(keras.layers.LSTM(3))


def test_modulated_conv_equals_per_sample_modulated_kernels():
    layer = ModulatedConv2D(5, 3)
    x = RNG.normal(size=(3, 6, 6, 4)).astype("float32")
    w = RNG.normal(size=(3, 8)).astype("float32")
    out = np.array(layer([x, w]))
    kernel = np.array(layer.kernel) * layer.weight_gain  # (3, 3, 4, 5)
    style = np.array(layer.affine(w))  # (3, 4)
    for i in range(3):  # the paper's form: one modulated, demodulated kernel per sample
        k = kernel * style[i][None, None, :, None]
        k = k / np.sqrt((k**2).sum(axis=(0, 1, 2), keepdims=True) + 1e-8)
        ref = tf.nn.conv2d(x[i : i + 1], k, 1, "SAME").numpy()[0] + np.array(layer.bias)
        np.testing.assert_allclose(out[i], ref, atol=1e-5)


def test_conditional_batch_norm_applies_class_scale_and_offset():
    layer = ConditionalBatchNormalization(epsilon=1e-4)
    x = RNG.normal(size=(4, 3, 3, 2)).astype("float32")
    condition = np.eye(4, dtype="float32")[:, :3]  # one-hot-ish conditions
    layer([x, condition])
    gamma = RNG.normal(size=(3, 2)).astype("float32")
    beta = RNG.normal(size=(3, 2)).astype("float32")
    layer.gamma.kernel.assign(gamma)
    layer.beta.kernel.assign(beta)
    out = np.array(layer([x, condition], training=True))
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    normalized = (x - mean) / np.sqrt(var + 1e-4)
    expected = normalized * (1 + (condition @ gamma))[:, None, None, :] + (condition @ beta)[:, None, None, :]
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_self_attention_starts_as_identity_then_attends():
    layer = SelfAttention2D(reduction=2, use_spectral_norm=False)
    x = RNG.normal(size=(2, 3, 3, 4)).astype("float32")
    np.testing.assert_array_equal(np.array(layer(x)), x)
    layer.gamma.assign(0.5)
    q = x.reshape(2, 9, 4) @ np.array(layer.query.kernel).reshape(4, 2)
    k = x.reshape(2, 9, 4) @ np.array(layer.key.kernel).reshape(4, 2)
    v = x.reshape(2, 9, 4) @ np.array(layer.value.kernel).reshape(4, 4)
    scores = q @ k.transpose(0, 2, 1)
    attention = np.exp(scores - scores.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    expected = x + 0.5 * (attention @ v).reshape(2, 3, 3, 4)
    np.testing.assert_allclose(np.array(layer(x)), expected, atol=1e-5)


def test_pixel_shuffle_matches_the_depth_to_space_definition():
    x = RNG.normal(size=(2, 3, 4, 8)).astype("float32")
    out = np.array(PixelShuffle(2)(x))
    # out[b, 2h + i, 2w + j, c] = x[b, h, w, (2i + j) * C + c]
    expected = x.reshape(2, 3, 4, 2, 2, 2).transpose(0, 1, 3, 2, 4, 5).reshape(2, 6, 8, 2)
    np.testing.assert_array_equal(out, expected)


def test_minibatch_stddev_appends_group_statistics():
    x = RNG.normal(size=(8, 2, 2, 3)).astype("float32")
    out = np.array(MinibatchStdDev(group_size=4)(x))
    groups = x.reshape(4, 2, 2, 2, 3)  # sample b belongs to subgroup b % 2
    std = np.sqrt(groups.var(axis=0) + 1e-8).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(out[..., -1], np.tile(std, 4)[:, None, None] * np.ones((8, 2, 2)), rtol=1e-5)
    np.testing.assert_array_equal(out[..., :3], x)


def test_instance_normalization_normalizes_each_sample_and_channel():
    x = RNG.normal(3.0, 2.0, size=(2, 4, 4, 3)).astype("float32")
    out = np.array(InstanceNormalization()(x))
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.var(axis=(1, 2)), 1.0, atol=1e-3)


def test_noise_injection_is_random_in_training_and_fixed_at_inference():
    layer = NoiseInjection(seed=3)
    x = np.zeros((2, 4, 4, 2), "float32")
    layer(x)
    layer.strength.assign([1.0, 2.0])
    a, b = np.array(layer(x, training=True)), np.array(layer(x, training=True))
    assert not np.allclose(a, b)
    np.testing.assert_allclose(a[..., 1], 2 * a[..., 0], rtol=1e-6)  # one noise map, per-channel strength
    np.testing.assert_array_equal(np.array(layer(x)), np.array(layer(x)))


def test_layers_save_load_and_export_to_builtin_ops(tmp_path):
    inputs = keras.Input((4, 4, 3))
    w = keras.Input((6,))
    x = SpectralNorm(keras.layers.Conv2D(8, 3, padding="same"))(inputs)
    attention = SelfAttention2D(reduction=4)
    x = attention(x)
    x = ModulatedConv2D(8, 3)([x, w])
    x = NoiseInjection(seed=1)(x)
    x = InstanceNormalization()(x)
    x = MinibatchStdDev(group_size=1)(x)
    x = PixelShuffle(2)(keras.layers.Conv2D(8, 1)(x))
    model = keras.Model([inputs, w], x)
    attention.gamma.assign(0.7)  # make attention matter in the comparison
    data = [RNG.normal(size=(3, 4, 4, 3)).astype("float32"), RNG.normal(size=(3, 6)).astype("float32")]
    check_save_load(model, data, tmp_path)
    results = check_export(model, data, tmp_path)
    assert max(r.max_abs for r in results.values()) <= 1e-5
