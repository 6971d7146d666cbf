"""PixelCNN: the masks (no blind spot, no leak), the exact likelihood against per-pixel log-probabilities
computed independently, samples consistent with the model's conditionals (and equal for the fast and
the naive sampler), training on binarized digits beating independent pixels, the shared model check
(XLA step, .keras round trip, the network in TFLite and ONNX), JAX and PyTorch, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from model_checks import check_model
from scipy import special

import keras_models
from keras_models.data import load_digits
from keras_models.layers import MaskedConv2D
from keras_models.layers.masked_conv2d import causal_mask
from keras_models.likelihood import PixelCNN
from keras_models.likelihood.pixelcnn_network import band_network, pixelcnn_network

SHAPE = (8, 8, 1)
TINY = {"image_shape": SHAPE, "filters": 8, "num_layers": 2, "first_kernel_size": 3, "hidden_units": 8,
        "jit_compile": False, "seed": 0}


def _tiny(**kwargs):
    return keras_models.build("pixelcnn", **{**TINY, **kwargs})


def _images(count=16, seed=0, low=0.0, high=1.0, shape=SHAPE):
    return np.random.default_rng(seed).uniform(low, high, (count, *shape)).astype("float32")


def _randomized(model, scale=0.3, seed=0):
    """`model` with its network's weights perturbed (zero biases would make some logits trivial)."""
    rng = np.random.default_rng(seed)
    model.network.set_weights([w + scale * rng.standard_normal(w.shape).astype(w.dtype)
                               for w in model.network.get_weights()])
    return model


# -- masks -------------------------------------------------------------------------------------------

def test_causal_masks_of_a_3x3_kernel():
    expected = {
        ("A", "full"): [[1, 1, 1], [1, 0, 0], [0, 0, 0]],
        ("B", "full"): [[1, 1, 1], [1, 1, 0], [0, 0, 0]],
        ("A", "vertical"): [[1, 1, 1], [0, 0, 0], [0, 0, 0]],
        ("B", "vertical"): [[1, 1, 1], [1, 1, 1], [0, 0, 0]],
        ("A", "horizontal"): [[0, 0, 0], [1, 0, 0], [0, 0, 0]],
        ("B", "horizontal"): [[0, 0, 0], [1, 1, 0], [0, 0, 0]],
    }
    for (mask_type, stack), mask in expected.items():
        np.testing.assert_array_equal(causal_mask((3, 3), mask_type, stack), mask, err_msg=f"{mask_type} {stack}")


def test_masked_conv2d_sees_only_pixels_before_the_centre():
    """A full mask "A" kernel of ones on an image of distinct powers of two (20 bits: exact in float32):
    each output is the sum of exactly the inputs before it inside the 5x5 window, read back from the bits."""
    layer = MaskedConv2D(1, 5, "A", kernel_initializer="ones", use_bias=False)
    image = (2.0 ** np.arange(20)).reshape(1, 4, 5, 1).astype("float32")
    output = np.asarray(layer(image))[0, :, :, 0]
    for i in range(4):
        for j in range(5):
            seen = {(p // 5, p % 5) for p in range(20) if (int(output[i, j]) >> p) & 1}
            expected = {(a, b) for a in range(4) for b in range(5)
                        if (a < i or (a == i and b < j)) and abs(a - i) <= 2 and abs(b - j) <= 2}
            assert seen == expected, (i, j)
    config = layer.get_config()
    assert MaskedConv2D.from_config(config).get_config() == config


def test_masked_conv2d_bad_arguments():
    with pytest.raises(ValueError, match="mask_type=.*'C'"):
        MaskedConv2D(4, 3, "C")
    with pytest.raises(ValueError, match="stack=.*'diagonal'"):
        MaskedConv2D(4, 3, "A", "diagonal")
    with pytest.raises(ValueError, match="kernel_size=4"):
        MaskedConv2D(4, 4)
    with pytest.raises(ValueError, match="filters=0"):
        MaskedConv2D(0, 3)
    with pytest.raises(ValueError, match="sees no pixel"):
        MaskedConv2D(4, (1, 3), "A", "vertical")


def _dependencies(network, shape, num_classes, count=8):
    """`depends[i, j, c, a, b, d]`: whether output (i, j, c) has a nonzero gradient w.r.t. input (a, b, d)
    at any of `count` random inputs (one input can switch off every ReLU of an output's head)."""
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (count, *shape)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = network([x, tf.constant(np.arange(count) % num_classes)] if num_classes else x)
    jacobian = tape.batch_jacobian(outputs, x).numpy()  # (count, *shape, *shape)
    return np.any(jacobian != 0.0, axis=0)


# (rows, columns, channels), first kernel, kernel, blocks: R = 1 + 1 = 2 leaves a window smaller than
# the image; R = 2 + 3 * 1 = 5 reaches every pixel of a 6x6 image.
@pytest.mark.parametrize("shape, first, kernel, blocks, num_classes", [
    ((6, 6, 2), 3, 3, 2, None), ((6, 6, 1), 5, 3, 4, 3),
])
def test_gradient_is_nonzero_exactly_on_the_pixels_before_within_the_receptive_field(shape, first, kernel, blocks,
                                                                                     num_classes):
    network = pixelcnn_network(shape, num_classes, "bernoulli", filters=6, num_layers=blocks, kernel_size=kernel,
                               first_kernel_size=first, hidden_units=6)
    radius = first // 2 + (blocks - 1) * (kernel // 2)
    depends = _dependencies(network, shape, num_classes)
    rows, cols, channels = shape
    for i in range(rows):
        for j in range(cols):
            expected = np.zeros((rows, cols), bool)
            for a in range(rows):
                for b in range(cols):
                    before = a < i or (a == i and b < j)
                    expected[a, b] = before and i - a <= radius and abs(b - j) <= radius
            for c in range(channels):
                for d in range(channels):
                    np.testing.assert_array_equal(depends[i, j, c, :, :, d], expected, err_msg=f"output {(i, j, c)}")
    if radius >= max(rows, cols) - 1:  # no blind spot: every earlier pixel, the last pixel sees all others
        assert depends[rows - 1, cols - 1, 0].sum() == rows * cols - 1


def test_band_network_gives_the_rows_a_pixel_sees_exactly():
    model = _randomized(_tiny(num_classes=3, likelihood="categorical", num_layers=3))
    radius = model.receptive_radius
    assert radius == 1 + 2 * 1
    values = np.asarray(model.network_inputs(_images(4, seed=2)))
    labels = np.array([0, 1, 2, 0], "int32")
    full = np.asarray(model.network([values, labels]))
    band = band_network(model.network, radius + 1)
    for i in range(radius, SHAPE[0]):  # row i is the last of the band
        np.testing.assert_allclose(np.asarray(band([values[:, i - radius : i + 1], labels]))[:, -1], full[:, i],
                                   atol=1e-5, rtol=0)


# -- the exact likelihood ----------------------------------------------------------------------------

def test_bernoulli_log_likelihood_is_the_sum_of_per_pixel_log_probs():
    model = _randomized(_tiny(num_classes=3, pixel_range=(-1.0, 1.0)))
    images, labels = _images(6, low=-1.0, high=1.0), np.array([0, 1, 2, 0, 1, 2])
    bits = (images >= 0.0).astype("float32")  # half of pixel_range
    logits = np.asarray(model.network([2.0 * bits - 1.0, labels]), np.float64)
    log_sigmoid = -np.logaddexp(0.0, -logits)
    expected = np.where(bits == 1.0, log_sigmoid, log_sigmoid - logits).reshape(6, -1).sum(axis=1)
    np.testing.assert_allclose(model.log_likelihood(images, labels), expected, rtol=1e-5)
    np.testing.assert_allclose(model.log_likelihood(2.0 * bits - 1.0, labels), expected, rtol=1e-5)
    np.testing.assert_allclose(model.bits_per_dimension(images, labels), -expected / (64 * np.log(2.0)), rtol=1e-5)
    assert not np.allclose(model.log_likelihood(images, labels[::-1]), expected)  # the label matters


def test_categorical_log_likelihood_is_the_sum_of_per_pixel_log_probs():
    model = _randomized(_tiny(likelihood="categorical", pixel_range=(0.0, 255.0), image_shape=(6, 5, 2)))
    images = np.round(_images(5, high=255.0, shape=(6, 5, 2)))
    logits = np.asarray(model.network(images / 127.5 - 1.0), np.float64)  # (5, 6, 5, 2, 256)
    log_probs = special.log_softmax(logits, axis=-1)
    picked = np.take_along_axis(log_probs, images.astype(int)[..., None], axis=-1)
    expected = picked.reshape(5, -1).sum(axis=1)
    assert logits.shape == (5, 6, 5, 2, 256)
    np.testing.assert_allclose(model.log_likelihood(images), expected, rtol=1e-5)
    np.testing.assert_allclose(model.logits(images), logits, atol=1e-5)
    assert np.all(expected < 0.0)


# -- sampling ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("likelihood, pixel_range", [("bernoulli", (-1.0, 1.0)), ("categorical", (0.0, 1.0))])
def test_every_sampled_pixel_inverts_the_models_conditional_at_its_uniform(likelihood, pixel_range):
    """Given the finished samples, one pass of the network gives every pixel's conditional; each pixel
    must be the inverse CDF of that conditional at the uniform number drawn for it from the seed, for
    the compiled sampler and for Python's loop alike."""
    model = _randomized(_tiny(likelihood=likelihood, pixel_range=pixel_range, num_classes=3, num_layers=3))
    samples = {method: model.generate(6, seed=5, method=method, batch_size=4) for method in ("fast", "naive")}
    np.testing.assert_array_equal(samples["fast"], model.generate(6, seed=5))
    assert not np.array_equal(samples["fast"], model.generate(6, seed=6))
    uniforms = np.random.default_rng(5).random((6, *SHAPE)).astype("float32")
    labels = np.arange(6) % 3  # generate cycles through the classes
    low, high = pixel_range
    for method, images in samples.items():
        assert images.shape == (6, *SHAPE) and images.dtype == np.float32
        logits = model.logits(images, labels).astype(np.float64)
        if likelihood == "bernoulli":
            assert set(np.unique(images)) <= {low, high}
            np.testing.assert_array_equal(images, np.where(uniforms < special.expit(logits), high, low), err_msg=method)
        else:
            levels = (images - low) / (high - low) * 255.0
            np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
            cdf = np.cumsum(special.softmax(logits, axis=-1), axis=-1)
            expected = (cdf < uniforms[..., None]).sum(axis=-1)
            # a uniform within float32 error of a CDF step may fall either side: allowed, and rare
            near = np.min(np.abs(cdf - uniforms[..., None]), axis=-1) < 1e-5
            assert np.all((np.round(levels) == expected) | near) and near.mean() < 0.01, method
            assert len(np.unique(images)) > 20  # an untrained model spreads over the levels
    if likelihood == "bernoulli":  # no near ties: the two samplers agree exactly
        np.testing.assert_array_equal(samples["fast"], samples["naive"])


def test_a_model_trained_on_one_image_generates_it():
    pattern = (np.add.outer(np.arange(8), np.arange(8)) % 3 == 0).astype("float32")[None, :, :, None]
    keras.utils.set_random_seed(0)
    model = _tiny(learning_rate=3e-2, num_layers=3)
    model.fit(np.repeat(pattern, 32 * 30, axis=0), epochs=1, batch_size=32, verbose=0)  # 30 steps
    # probability above 0.98 for the whole image: a sample differs with probability below 0.02
    assert model.log_likelihood(pattern)[0] > -0.02
    for method in ("fast", "naive"):
        np.testing.assert_array_equal(model.generate(4, seed=0, method=method), np.repeat(pattern, 4, axis=0))


# -- training ----------------------------------------------------------------------------------------

def test_training_on_binarized_digits_beats_independent_pixels():
    """The baseline is the best model without dependencies between pixels: independent Bernoullis at the
    training set's pixel frequencies (add-one smoothed), about 25.2 nats per held-out digit. Four epochs
    of the tiny PixelCNN reach about 21.7."""
    (x, _), (x_test, _) = load_digits()
    train_bits, test_bits = (x >= 0.5).astype(np.float64), (x_test >= 0.5).astype(np.float64)
    frequency = (train_bits.sum(axis=0) + 1.0) / (len(train_bits) + 2.0)
    baseline = -(test_bits * np.log(frequency) + (1.0 - test_bits) * np.log1p(-frequency))
    baseline = baseline.reshape(len(test_bits), -1).sum(axis=1).mean()
    keras.utils.set_random_seed(0)
    model = _tiny(num_layers=3, hidden_units=16, learning_rate=5e-3)
    before = -model.log_likelihood(x_test).mean()
    history = model.fit(x, epochs=4, batch_size=64, verbose=0)
    after = -model.log_likelihood(x_test).mean()
    assert 24.0 < baseline < 26.5, baseline
    assert before > 40.0 and after < baseline - 2.0, (before, after, baseline)
    assert set(history.history) == {"loss", "bits_per_dimension"}
    loss, bits = history.history["loss"][-1], history.history["bits_per_dimension"][-1]
    assert bits == pytest.approx(loss / (64 * np.log(2.0)), rel=1e-4)
    # evaluate() reports the same exact negative log-likelihood
    assert model.evaluate(x_test, verbose=0, return_dict=True)["loss"] == pytest.approx(after, rel=1e-4)


def test_conditional_model_trains_on_labels():
    keras.utils.set_random_seed(0)
    model = _tiny(num_classes=3)
    validation = (_images(4, seed=1), np.array([0, 1, 2, 0]))
    history = model.fit(_images(), np.arange(16) % 3, batch_size=8, epochs=2, verbose=0, validation_data=validation)
    assert history.history["loss"][1] < history.history["loss"][0]
    # the validation loss is the exact NLL of the validation images under their labels
    assert history.history["val_loss"][-1] == pytest.approx(-model.log_likelihood(*validation).mean(), rel=1e-4)
    with pytest.raises(ValueError, match="fit\\(images, labels\\)"):
        model.fit(_images(), verbose=0)


# -- the shared check: XLA step, .keras round trip, the network in TFLite and ONNX -------------------

@pytest.mark.parametrize("likelihood", ["bernoulli", pytest.param("categorical", marks=pytest.mark.slow)])
def test_shared_model_check_exports_the_network(likelihood, tmp_path):
    model = _randomized(_tiny(num_classes=3, likelihood=likelihood, jit_compile=True))
    inputs = [np.asarray(model.network_inputs(_images(3, seed=1))), np.array([0, 2, 1], "int32")]
    shape = (3, *SHAPE) + ((256,) if likelihood == "categorical" else ())
    results = check_model(model, _images(), np.arange(16) % 3, tmp_path=tmp_path, inputs=inputs,
                          expected_shape=shape, atol=1e-4)
    assert results["train"]["hlo_instructions"] > 50
    assert set(results) >= {"tflite", "onnx"}
    loaded = keras.saving.load_model(tmp_path / "pixelcnn.keras", safe_mode=True)
    assert isinstance(loaded, PixelCNN) and loaded.likelihood == likelihood
    images, labels = _images(5, seed=3), np.array([0, 1, 2, 0, 1])
    np.testing.assert_allclose(loaded.log_likelihood(images, labels), model.log_likelihood(images, labels), rtol=1e-6)
    np.testing.assert_array_equal(loaded.generate(3, seed=0), model.generate(3, seed=0))


# -- other backends ----------------------------------------------------------------------------------

_SCRIPT = """
import json, sys
import numpy as np, keras, keras_models
assert "tensorflow" not in sys.modules, "keras_models imported TensorFlow"
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
data = np.load(sys.argv[2])
images, labels = data["images"], data["labels"]
result = {"backend": keras.backend.backend(), "log_likelihood": model.log_likelihood(images, labels).tolist()}
uniforms = np.random.default_rng(0).random((3, *model.image_shape)).astype("float32")
for method in ("fast", "naive"):
    samples = model.generate(3, seed=0, method=method)
    logits = model.logits(samples, np.arange(3) % 3).astype(np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    cdf = np.cumsum(probs / probs.sum(-1, keepdims=True), -1)
    expected = (cdf < uniforms[..., None]).sum(-1)
    near = np.min(np.abs(cdf - uniforms[..., None]), -1) < 1e-5
    result[method] = {"levels": np.round(samples * 255).tolist(),
                      "inconsistent": int(np.sum((np.round(samples * 255) != expected) & ~near))}
history = model.fit(images, labels, batch_size=4, epochs=2, verbose=0)
result["loss"] = history.history["loss"]
result["tensorflow_imported"] = "tensorflow" in sys.modules
print("RESULT " + json.dumps(result))
"""


@pytest.mark.slow  # two subprocesses importing JAX and PyTorch: about two minutes on two busy cores
@pytest.mark.timeout(600)
def test_jax_and_torch_give_the_same_likelihood_consistent_samples_and_train(tmp_path):
    model = _randomized(_tiny(num_classes=3, likelihood="categorical"))
    images, labels = _images(8), (np.arange(8) % 3).astype("int32")
    model.save(tmp_path / "pixelcnn.keras")
    np.savez(tmp_path / "data.npz", images=images, labels=labels)
    expected = model.log_likelihood(images, labels)
    processes = {}
    for backend in ("jax", "torch"):
        processes[backend] = subprocess.Popen(
            [sys.executable, "-c", _SCRIPT, str(tmp_path / "pixelcnn.keras"), str(tmp_path / "data.npz")],
            env={**os.environ, "KERAS_BACKEND": backend}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=Path(__file__).parents[2])
    for backend, process in processes.items():
        output, _ = process.communicate(timeout=540)
        lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
        assert process.returncode == 0 and lines, output[-3000:]
        result = json.loads(lines[-1][len("RESULT "):])
        assert result["backend"] == backend and not result["tensorflow_imported"]
        np.testing.assert_allclose(result["log_likelihood"], expected, rtol=1e-5, err_msg=backend)
        for method in ("fast", "naive"):  # every pixel is its conditional's inverse CDF at its uniform
            assert result[method]["inconsistent"] == 0, (backend, method)
            assert len(np.unique(result[method]["levels"])) > 20
        assert np.all(np.isfinite(result["loss"])) and result["loss"][1] < result["loss"][0]


# -- bad input and registration ----------------------------------------------------------------------

def test_bad_input_names_the_problem():
    model = _tiny()
    with pytest.raises(ValueError, match=r"shape \(batch, 8, 8, 1\)"):
        model.fit(np.zeros((4, 8, 8, 3), "float32"), verbose=0)
    with pytest.raises(ValueError, match=r"shape \(batch, 8, 8, 1\)"):
        model.log_likelihood(np.zeros((4, 8, 8), "float32"))
    nan = _images(4)
    nan[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.log_likelihood(nan)
    with pytest.raises(ValueError, match="NaN"):
        model.fit(nan, verbose=0)
    with pytest.raises(ValueError, match="pixel_range"):
        model.log_likelihood(_images(4) * 3.0)
    with pytest.raises(ValueError, match="pixel_range"):
        model.fit(_images(4) - 2.0, verbose=0)
    with pytest.raises(ValueError, match="unconditional"):
        model.generate(2, labels=[0, 1])
    with pytest.raises(ValueError, match="unconditional"):
        model.log_likelihood(_images(2), labels=[0, 1])
    with pytest.raises(ValueError, match="method=.*'cached'"):
        model.generate(2, method="cached")
    with pytest.raises(ValueError, match="num_samples"):
        model.generate(0)
    conditional = _tiny(num_classes=3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        conditional.fit(_images(4), np.array([0, 1, 2, 3]), verbose=0)
    with pytest.raises(ValueError, match="pass labels"):
        conditional.log_likelihood(_images(4))
    with pytest.raises(ValueError, match="likelihood=.*'gaussian'"):
        _tiny(likelihood="gaussian")
    with pytest.raises(ValueError, match="kernel_size=4"):
        _tiny(kernel_size=4)
    with pytest.raises(ValueError, match="first_kernel_size=1"):
        _tiny(first_kernel_size=1)
    with pytest.raises(ValueError, match="num_layers=0"):
        _tiny(num_layers=0)
    with pytest.raises(ValueError, match="image_shape"):
        _tiny(image_shape=(8, 8))
    with pytest.raises(ValueError, match="num_classes"):
        _tiny(num_classes=1)
    with pytest.raises(ValueError, match="needs 2: images and labels"):
        PixelCNN(pixelcnn_network(SHAPE), num_classes=3)


def test_registered_in_the_likelihood_family():
    info = {i.name: i for i in keras_models.list_models(family="likelihood")}
    assert "pixelcnn" in info
    model = _tiny(jit_compile=None)
    assert model.jit_compile == keras_models.default_jit_compile("likelihood")
    assert set(model.export_targets()) == {"network"}
    assert model.receptive_radius == 2
