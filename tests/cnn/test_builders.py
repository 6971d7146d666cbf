"""Every convolutional builder, in a small configuration, through the shared model checks: output
shape, an XLA-compiled training step, a .keras round trip, and TFLite + ONNX exports equal to Keras."""

import numpy as np
import pytest
from model_checks import check_model

import keras_models

RNG = np.random.default_rng(0)

# name -> (builder arguments, input shape of one sample); widths cut so each check takes seconds.
SMALL = {
    "simple_cnn": ({"filters": (4, 8), "dense_units": 16}, (16, 16, 1)),
    "lenet5": ({}, (32, 32, 1)),
    "resnet18": ({"width_multiplier": 0.125}, (32, 32, 3)),
    "text_cnn": ({"vocab_size": 50, "embedding_dim": 8, "filters": 4, "ngram_sizes": (2, 3)}, (12,)),
    "video_cnn": ({"blocks": ((4,), (8,)), "dense_units": 16}, (4, 8, 8, 1)),
}
# Deeper graphs: XLA compilation and conversion take tens of seconds each on two cores.
SMALL_SLOW = {
    "alexnet": ({"width_multiplier": 0.0625, "dense_units": 16}, (67, 67, 3)),
    "vgg16": ({"width_multiplier": 0.0625, "dense_units": 16}, (32, 32, 3)),
    "vgg19": ({"width_multiplier": 0.0625, "dense_units": 16}, (32, 32, 3)),
    "resnet34": ({"width_multiplier": 0.125}, (32, 32, 3)),
    "resnet50": ({"width_multiplier": 0.125}, (32, 32, 3)),
    "resnet101": ({"width_multiplier": 0.0625}, (32, 32, 3)),
    "resnet152": ({"width_multiplier": 0.0625}, (32, 32, 3)),
    "resnet50v2": ({"width_multiplier": 0.125}, (32, 32, 3)),
    "googlenet": ({"width_multiplier": 0.125}, (32, 32, 3)),
    "inception_v3": ({"width_multiplier": 0.125}, (75, 75, 3)),
}


def _batch(shape, n=8):
    if len(shape) == 1:  # token ids
        return RNG.integers(0, 50, size=(n, *shape)).astype("int32")
    return RNG.uniform(0, 1, size=(n, *shape)).astype("float32")


def _run(name, kwargs, shape, tmp_path):
    model = keras_models.build(name, input_shape=shape, num_classes=3, compile=False, **kwargs)
    x = _batch(shape)
    y = np.arange(len(x)) % 3
    results = check_model(model, x, y, tmp_path, expected_shape=(len(x), 3),
                          loss="sparse_categorical_crossentropy")
    assert results["train"]["hlo_instructions"] > 0
    assert results["tflite"].max_abs <= 1e-5 and results["onnx"].max_abs <= 1e-5
    # The exported graphs really carry the layer names the builders give.
    assert model.get_layer(f"{name}_predictions").units == 3


@pytest.mark.parametrize("name", sorted(SMALL))
def test_builder_passes_model_checks(name, tmp_path):
    kwargs, shape = SMALL[name]
    _run(name, kwargs, shape, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL_SLOW))
def test_deep_builder_passes_model_checks(name, tmp_path):
    kwargs, shape = SMALL_SLOW[name]
    _run(name, kwargs, shape, tmp_path)


@pytest.mark.slow
def test_two_tower_alexnet_trains_and_exports_with_grouped_convolutions(tmp_path):
    kwargs, shape = SMALL_SLOW["alexnet"]
    _run("alexnet", {**kwargs, "towers": 2}, shape, tmp_path)


def test_two_tower_alexnet_groups_conv2_conv4_conv5():
    kwargs, shape = SMALL_SLOW["alexnet"]
    model = keras_models.build("alexnet", input_shape=shape, towers=2, compile=False, **kwargs)
    assert [model.get_layer(f"alexnet_conv{i}").groups for i in range(1, 6)] == [1, 2, 1, 2, 2]
    with pytest.raises(ValueError, match="towers must be 1 or 2; got towers=3"):
        keras_models.build("alexnet", towers=3)
    with pytest.raises(ValueError, match="odd widths"):
        keras_models.build("alexnet", towers=2, width_multiplier=0.01)


def test_every_registered_cnn_is_checked():
    names = {info.name for info in keras_models.list_models(family="cnn")}
    assert names - set(SMALL) - set(SMALL_SLOW) == {"resnet101v2", "resnet152v2"}  # same blocks as resnet50v2
