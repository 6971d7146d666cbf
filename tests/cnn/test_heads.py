"""Heads, feature extraction, the default compile and argument checks, shared by every builder."""

import keras
import numpy as np
import pytest

import keras_models

TINY = {"input_shape": (16, 16, 1), "filters": (4, 8), "dense_units": 8}
BUILDERS = ["simple_cnn", "lenet5", "alexnet", "vgg16", "resnet18", "resnet50", "resnet50v2", "googlenet",
            "inception_v3", "text_cnn", "video_cnn"]


@pytest.mark.parametrize("head, num_classes, loss, low, high", [
    ("softmax", 5, "sparse_categorical_crossentropy", 0.0, 1.0),
    ("sigmoid", 4, "binary_crossentropy", 0.0, 1.0),
    ("linear", 2, "mse", -np.inf, np.inf),
])
def test_heads_and_their_default_loss(head, num_classes, loss, low, high):
    model = keras_models.build("simple_cnn", num_classes=num_classes, head=head, **TINY)
    x = np.random.default_rng(1).normal(size=(6, 16, 16, 1)).astype("float32")
    out = keras.ops.convert_to_numpy(model(x))
    assert out.shape == (6, num_classes)
    assert np.all(out >= low) and np.all(out <= high)
    if head == "softmax":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    if head == "sigmoid":  # multi-label: independent probabilities, rows need not sum to one
        assert not np.allclose(out.sum(axis=1), 1.0)
    assert model.get_layer("simple_cnn_predictions").activation.__name__ == head
    assert model.loss == loss


def test_sigmoid_multilabel_trains():
    # Each image holds a bright patch in any subset of three quadrants; the labels say which.
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=(128, 3)).astype("float32")
    x = rng.normal(0, 0.1, size=(128, 16, 16, 1)).astype("float32")
    for k, (r, c) in enumerate([(0, 0), (0, 8), (8, 0)]):
        x[y[:, k] == 1, r + 2:r + 6, c + 2:c + 6] += 1.0
    model = keras_models.build("simple_cnn", num_classes=3, head="sigmoid", **TINY)
    model.fit(x[:96], y[:96], epochs=25, batch_size=16, verbose=0)
    predicted = keras.ops.convert_to_numpy(model(x[96:])) > 0.5
    assert (predicted == (y[96:] == 1)).mean() >= 0.95


@pytest.mark.parametrize("pooling, expected", [(None, (2, 4, 4, 8)), ("avg", (2, 8)), ("max", (2, 8))])
def test_include_top_false_pools_features(pooling, expected):
    model = keras_models.build("simple_cnn", include_top=False, pooling=pooling, **TINY)
    x = np.random.default_rng(3).normal(size=(2, 16, 16, 1)).astype("float32")
    out = keras.ops.convert_to_numpy(model(x))
    assert out.shape == expected
    if pooling is not None:
        feature_map = keras.Model(model.inputs[0], model.get_layer("simple_cnn_pool2").output)(x)
        reduce = np.mean if pooling == "avg" else np.max
        np.testing.assert_allclose(out, reduce(keras.ops.convert_to_numpy(feature_map), axis=(1, 2)),
                                   rtol=1e-5, atol=1e-6)
    assert not any(layer.name.endswith("_predictions") for layer in model.layers)


@pytest.mark.parametrize("name, shape, channels", [
    pytest.param("resnet50", (64, 64, 3), 2048, marks=pytest.mark.slow),
    pytest.param("inception_v3", (75, 75, 3), 2048, marks=pytest.mark.slow),
    ("resnet18", (32, 32, 3), 512),
    ("googlenet", (32, 32, 3), 1024),
])
def test_feature_extractors_have_the_published_width(name, shape, channels):
    model = keras_models.build(name, input_shape=shape, include_top=False, pooling="avg", compile=False)
    assert model.output_shape == (None, channels)


def test_default_compile_follows_the_library_policy():
    model = keras_models.build("lenet5")
    assert model.compiled
    assert bool(model.jit_compile) == keras_models.default_jit_compile("cnn")
    forced = keras_models.build("lenet5", jit_compile=True)
    assert forced.jit_compile is True
    assert keras_models.build("lenet5", compile=False).compiled is False


@pytest.mark.parametrize("name", BUILDERS)
def test_shared_arguments_are_validated(name):
    with pytest.raises(ValueError, match="head must be one of .* got head='softmaxx'"):
        keras_models.build(name, head="softmaxx", compile=False)
    with pytest.raises(ValueError, match="num_classes must be a positive integer; got num_classes=0"):
        keras_models.build(name, num_classes=0, compile=False)
    with pytest.raises(ValueError, match="pooling must be one of .* got pooling='mean'"):
        keras_models.build(name, include_top=False, pooling="mean", compile=False)
    with pytest.raises(ValueError, match="input_shape must be a tuple of"):
        keras_models.build(name, input_shape=(8, 8), compile=False)


@pytest.mark.parametrize("name, shape", [("lenet5", (12, 12, 1)), ("alexnet", (64, 64, 3)),
                                         ("inception_v3", (74, 74, 3)), ("resnet18", (31, 31, 3)),
                                         ("simple_cnn", (3, 3, 1))])
def test_too_small_inputs_are_refused(name, shape):
    with pytest.raises(ValueError, match="too small"):
        keras_models.build(name, input_shape=shape, compile=False)


def test_family_specific_arguments_are_validated():
    with pytest.raises(ValueError, match="padding must be one of .* got padding='full'"):
        keras_models.build("simple_cnn", padding="full")
    with pytest.raises(ValueError, match="pool_type must be one of .* got pool_type='min'"):
        keras_models.build("simple_cnn", pool_type="min")
    with pytest.raises(ValueError, match="width_multiplier must be a positive number; got width_multiplier=0"):
        keras_models.build("resnet50", width_multiplier=0)
    with pytest.raises(ValueError, match="ngram_sizes must be distinct"):
        keras_models.build("text_cnn", ngram_sizes=(3, 3))
    with pytest.raises(ValueError, match="too small for .text_cnn."):
        keras_models.build("text_cnn", input_shape=(4,), ngram_sizes=(3, 5))
    with pytest.raises(ValueError, match="blocks must be"):
        keras_models.build("video_cnn", blocks=())
    with pytest.raises(ValueError, match="activation must be one of"):
        keras_models.build("lenet5", activation="sigmoid")
    with pytest.raises(ValueError, match="head='sigmoid' for a binary"):
        keras_models.build("lenet5", num_classes=1)


def test_unknown_cnn_name_suggests_the_closest():
    with pytest.raises(ValueError, match="Unknown model name 'resnet51'.*resnet50"):
        keras_models.build("resnet51")


def test_wrong_input_shape_at_call_is_an_error():
    model = keras_models.build("lenet5")
    with pytest.raises(ValueError):
        model.predict(np.zeros((2, 28, 28, 1), "float32"), verbose=0)


def test_heads_are_shared_by_the_dense_and_cnn_families():
    from keras_models import heads

    assert heads.HEADS == ("softmax", "sigmoid", "linear")
    assert [heads.head_loss(head, 3) for head in heads.HEADS] == [
        ("sparse_categorical_crossentropy", ["accuracy"]),
        ("binary_crossentropy", ["binary_accuracy"]),
        ("mse", ["mae"]),
    ]
    with pytest.raises(ValueError, match="head must be one of .* got head='tanh'"):
        heads.head_loss("tanh", 3)
    for name in ("mlp", "lenet5"):  # the same error from both families' builders
        with pytest.raises(ValueError, match="head must be one of .* got head='tanh'"):
            keras_models.build(name, head="tanh", compile=False)
    inputs = keras.Input((4,))
    outputs = heads.classifier_head(inputs, 2, "sigmoid", "probe")
    assert outputs.shape == (None, 2)
    with pytest.raises(ValueError, match="num_classes must be a positive integer; got num_classes=0"):
        heads.classifier_head(inputs, 0, "linear", "probe")
