"""The feature-map and filter pictures: real PNG files showing exactly the layer's values."""

import keras
import matplotlib.image
import numpy as np
import pytest

import keras_models
from keras_models.cnn.visualize import plot_feature_maps, plot_filters


@pytest.fixture(scope="module")
def model():
    return keras_models.build("lenet5", compile=False)


def _image():
    return np.random.default_rng(0).uniform(size=(32, 32, 1)).astype("float32")


def test_feature_maps_png_shows_the_layer_outputs(model, tmp_path):
    figure = plot_feature_maps(model, "lenet5_c1", _image(), tmp_path / "c1.png")
    probe = keras.Model(model.inputs[0], model.get_layer("lenet5_c1").output)
    expected = keras.ops.convert_to_numpy(probe(_image()[None]))[0]  # (28, 28, 6)
    assert len(figure.panels) == 6
    for channel, panel in enumerate(figure.panels):
        np.testing.assert_allclose(panel, expected[..., channel], rtol=1e-6, atol=1e-6)
    assert figure.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(figure.path)
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert pixels[..., :3].std() > 0.01  # not a blank picture


def test_max_maps_limits_the_panels(model, tmp_path):
    figure = plot_feature_maps(model, "lenet5_c3", _image()[None], tmp_path / "c3.png", max_maps=4)
    assert len(figure.panels) == 4 and figure.panels[0].shape == (10, 10)


def test_filters_png_shows_normalised_kernels(model, tmp_path):
    figure = plot_filters(model, "lenet5_c1", tmp_path / "filters.png")
    kernel = keras.ops.convert_to_numpy(model.get_layer("lenet5_c1").kernel)  # (5, 5, 1, 6)
    assert len(figure.panels) == 6
    for index, panel in enumerate(figure.panels):
        weights = kernel[..., 0, index]
        expected = (weights - weights.min()) / (weights.max() - weights.min())
        np.testing.assert_allclose(panel, expected, atol=1e-6)
    assert matplotlib.image.imread(figure.path).shape[0] > 20


def test_rgb_filters_keep_three_channels(tmp_path):
    model = keras_models.build("simple_cnn", input_shape=(16, 16, 3), filters=(4, 8), compile=False)
    figure = plot_filters(model, "simple_cnn_conv1", tmp_path / "rgb.png")
    assert figure.panels[0].shape == (3, 3, 3)
    assert figure.panels[0].min() == 0.0 and figure.panels[0].max() == 1.0


def test_bad_arguments_name_the_problem_and_write_nothing(model, tmp_path):
    with pytest.raises(ValueError, match="layer_name='nope' is not a layer.*lenet5_c1"):
        plot_feature_maps(model, "nope", _image(), tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"image must have shape \(32, 32, 1\)"):
        plot_feature_maps(model, "lenet5_c1", np.zeros((28, 28, 1)), tmp_path / "a.png")
    bad = _image()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        plot_feature_maps(model, "lenet5_c1", bad, tmp_path / "a.png")
    with pytest.raises(ValueError, match="must end in .png"):
        plot_feature_maps(model, "lenet5_c1", _image(), tmp_path / "a.jpg")
    with pytest.raises(ValueError, match="does not exist"):
        plot_filters(model, "lenet5_c1", tmp_path / "missing" / "a.png")
    with pytest.raises(ValueError, match="is a Dense, not a Conv2D layer"):
        plot_filters(model, "lenet5_c5", tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []
