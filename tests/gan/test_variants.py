"""Every registered GAN variant: build, sample, save/load, export, one XLA-compiled training epoch."""

import keras
import numpy as np
import pytest
from gan_cases import VARIANTS, build_tiny, generator_inputs, image_shape, samples, training_data
from model_checks import check_model

import keras_models


def test_every_variant_is_registered_in_the_gan_family():
    names = {info.name for info in keras_models.list_models(family="gan")}
    assert names == set(VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_samples_round_trips_and_exports(variant, tmp_path):
    gan = build_tiny(variant, jit_compile=False)
    images = samples(gan, variant)
    expected = (4, *image_shape(variant))
    assert images.shape == expected
    assert images.min() >= 0.0 and images.max() <= 1.0  # scaled like the training data
    assert not np.allclose(images, images[:1])  # distinct samples, not one constant image

    path = tmp_path / f"{variant}.keras"
    gan.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)  # no custom_objects
    assert type(loaded) is type(gan)
    np.testing.assert_allclose(samples(loaded, variant), images, atol=1e-6)
    settings = lambda model: {k: v for k, v in model.get_config().items() if not isinstance(v, dict)}  # noqa: E731
    assert settings(loaded) == settings(gan)
    assert len(loaded.weights) == len(gan.weights)
    for restored, original in zip(loaded.weights, gan.weights):
        np.testing.assert_array_equal(np.array(restored), np.array(original))
    assert loaded.d_optimizer.get_config() == gan.d_optimizer.get_config()

    # The shared check of every model: the generator's outputs, save and load, TFLite and ONNX.
    results = check_model(gan, *training_data(variant), tmp_path=tmp_path, inputs=generator_inputs(gan), train=False)
    assert set(results) == {"tflite", "onnx"}


# XLA compilation of the largest steps takes 15-30 s each on two cores: those run with -m slow, the
# rest by default (dcgan's XLA check is in test_gan.py).
_HEAVY = ("dcgan", "srgan", "cyclegan", "stylegan", "biggan")
_XLA_CASES = [pytest.param(v, marks=pytest.mark.slow) if v in _HEAVY else v for v in VARIANTS]


@pytest.mark.parametrize("variant", _XLA_CASES)
def test_variant_trains_one_epoch_with_xla(variant, tmp_path):
    gan = build_tiny(variant, jit_compile=True)
    data = training_data(variant)
    g_before = [np.array(w) for w in gan.generator.trainable_weights]
    d_before = [np.array(w) for w in gan.discriminator.trainable_weights]
    # The shared check: every tracker finite, weights moved, the step XLA-compiled (HLO).
    results = check_model(gan, *data, tmp_path=tmp_path, inputs=generator_inputs(gan), save=False, export_formats=())
    assert gan.jit_compile is True
    assert results["train"]["hlo_instructions"] > 100
    assert {"d_loss", "g_loss", "d_accuracy"} <= set(results["train"])
    assert any(not np.array_equal(b, np.array(a)) for b, a in zip(g_before, gan.generator.trainable_weights))
    assert any(not np.array_equal(b, np.array(a)) for b, a in zip(d_before, gan.discriminator.trainable_weights))


def test_small_images_get_their_own_defaults_and_explicit_options_still_win():
    # BigGAN: the paper's rates and two critic steps above 16 pixels, equal rates and one step at or below.
    small, large = (keras_models.build("biggan", image_shape=shape) for shape in ((8, 8, 1), (32, 32, 1)))
    assert (small.n_critic, large.n_critic) == (1, 2)
    np.testing.assert_allclose([float(small.d_optimizer.learning_rate), float(small.g_optimizer.learning_rate)], [1e-3, 1e-3])
    np.testing.assert_allclose([float(large.d_optimizer.learning_rate), float(large.g_optimizer.learning_rate)], [4e-4, 1e-4])
    chosen = keras_models.build("biggan", image_shape=(8, 8, 1), n_critic=3, g_learning_rate=5e-4)
    assert chosen.n_critic == 3 and np.isclose(float(chosen.g_optimizer.learning_rate), 5e-4)

    # StyleGAN: no style mixing at or below 16 pixels (two or three resolutions), the paper's 0.9 above.
    small, large = (keras_models.build("stylegan", image_shape=shape) for shape in ((8, 8, 1), (32, 32, 1)))
    assert (small.style_mixing, large.style_mixing) == (0.0, 0.9)
    assert keras_models.build("stylegan", image_shape=(8, 8, 1), style_mixing=0.5).style_mixing == 0.5

    # CycleGAN: a local generator (3x3, no downsampling) at or below 16 pixels, the wider one above.
    def shape(gan):
        convs = [layer for layer in gan.generator.layers if isinstance(layer, keras.layers.Conv2D)]
        return convs[0].kernel_size, sum(layer.strides == (2, 2) for layer in convs)

    assert shape(keras_models.build("cyclegan", image_shape=(16, 16, 1))) == ((3, 3), 0)
    assert shape(keras_models.build("cyclegan", image_shape=(32, 32, 1))) == ((7, 7), 1)
    assert shape(keras_models.build("cyclegan", image_shape=(8, 8, 1), kernel_size=5, downsamples=1)) == ((5, 5), 1)
    with pytest.raises(ValueError, match="kernel_size must be an odd"):
        keras_models.build("cyclegan", image_shape=(8, 8, 1), kernel_size=4)
