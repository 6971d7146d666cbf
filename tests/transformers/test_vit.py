"""The Vision Transformer (backbone and classifier): shapes, patch embedding arithmetic, parameter counts
against the paper's sizes, the shared model checks, learning scikit-learn's digits, int8 export, and bad
input."""

import keras
import numpy as np
import pytest
from model_checks import check_model

import export
import keras_models
from keras_models.data import load_digits
from keras_models.layers import PatchEmbedding
from keras_models.transformers import ViTBackbone, ViTClassifier, vit_classifier, vit_config, vit_parameter_count
from keras_models.transformers.vit import CONFIGS

TINY = {"input_shape": (8, 8, 1), "patch_size": 2, "num_layers": 2, "num_heads": 4, "hidden_dim": 16,
        "intermediate_dim": 32}
# The digits model of the learning test: four 4x4 patches of an 8x8 digit.
DIGITS = {"input_shape": (8, 8, 1), "patch_size": 4, "num_layers": 2, "num_heads": 4, "hidden_dim": 64,
          "intermediate_dim": 128}


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def _images(count=6, shape=(8, 8, 1), seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (count, *shape)).astype("float32")


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(1)
    return vit_classifier(**TINY, num_classes=3, compile=False)


# -- shapes and arithmetic ---------------------------------------------------------------------------------

def test_backbone_and_classifier_shapes(tiny_model):
    x = _images()
    assert _numpy(tiny_model(x)).shape == (6, 3)
    tokens = _numpy(tiny_model.backbone(x))
    assert tokens.shape == (6, 1 + 16, 16)  # the class token and 4x4 patches of 2x2 pixels
    backbone = keras_models.build("vit", **TINY, compile=False)
    assert isinstance(backbone, ViTBackbone) and backbone.num_patches == 16
    assert _numpy(backbone(_images(2, (8, 8, 1)))).shape == (2, 17, 16)
    wide = keras_models.build("vit", input_shape=(12, 20, 3), patch_size=4, hidden_dim=8, num_heads=2, compile=False)
    assert wide.output_shape == (None, 1 + 3 * 5, 8)


def test_poolings_read_the_class_token_or_the_patch_tokens(tiny_model):
    x = _images()
    tokens = _numpy(tiny_model.backbone(x))
    backbone = tiny_model.backbone
    expected = {None: tokens, "token": tokens[:, 0], "avg": tokens[:, 1:].mean(axis=1),
                "max": tokens[:, 1:].max(axis=1)}
    for pooling, value in expected.items():
        features = ViTClassifier(backbone, include_top=False, pooling=pooling, name=f"features_{pooling}")
        np.testing.assert_allclose(_numpy(features(x)), value, atol=1e-6)
    # With a head, the classifier reads the class token: its output is the head applied to tokens[:, 0].
    dense = tiny_model.get_layer("vit_classifier_predictions")
    kernel, bias = (_numpy(w) for w in dense.weights)
    logits = tokens[:, 0] @ kernel + bias
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(_numpy(tiny_model(x)), softmax / softmax.sum(axis=1, keepdims=True), atol=1e-5)


def test_patch_embedding_projects_each_patch_row_by_row():
    layer = PatchEmbedding(4, 5, name="patches")
    x = _images(3, (8, 12, 2))
    tokens = _numpy(layer(x))
    assert tokens.shape == (3, 1 + 2 * 3, 5)
    np.testing.assert_array_equal(tokens[:, 0], 0.0)  # the class token starts at zeros, as in the paper
    kernel, bias = (_numpy(w) for w in layer.projection.weights)  # kernel (4, 4, 2, 5)
    for row in range(2):
        for column in range(3):
            patch = x[:, 4 * row:4 * row + 4, 4 * column:4 * column + 4, :]  # (3, 4, 4, 2)
            expected = patch.reshape(3, -1) @ kernel.reshape(-1, 5) + bias
            np.testing.assert_allclose(tokens[:, 1 + 3 * row + column], expected, atol=1e-5)
    assert _numpy(PatchEmbedding(4, 5, class_token=False)(x)).shape == (3, 6, 5)


def test_positions_make_the_class_token_depend_on_where_a_patch_is(tiny_model):
    # Without position embeddings, attention is blind to order: swapping two patches would leave the
    # class token unchanged. With them, it changes.
    x = _images(2)
    swapped = x.copy()
    swapped[:, 0:2, 0:2], swapped[:, 6:8, 6:8] = x[:, 6:8, 6:8], x[:, 0:2, 0:2]
    before, after = _numpy(tiny_model.backbone(x))[:, 0], _numpy(tiny_model.backbone(swapped))[:, 0]
    assert np.abs(before - after).max() > 1e-3
    # Every patch reaches the class token (no mask): changing the last patch alone changes it too.
    changed = x.copy()
    changed[:, 6:8, 6:8] += 0.5
    assert np.abs(_numpy(tiny_model.backbone(changed))[:, 0] - before).max() > 1e-3


# -- sizes -------------------------------------------------------------------------------------------------

def test_parameter_count_follows_the_formula(tiny_model):
    config = vit_config(image_shape=(8, 8, 1), patch_size=2, num_layers=2, num_heads=4, hidden_dim=16,
                        intermediate_dim=32)
    assert tiny_model.backbone.count_params() == vit_parameter_count(**config)
    assert tiny_model.count_params() == vit_parameter_count(**config, num_classes=3)


def test_presets_have_the_papers_parameter_counts():
    # Counted with a 1,000-class head on the class token (the ImageNet classifier; no pre-logits layer).
    counts = {name: vit_parameter_count(**config, num_classes=1000) for name, config in CONFIGS.items()}
    assert counts == {"vit_b16": 86_567_656, "vit_b32": 88_224_232, "vit_l16": 304_326_632,
                      "vit_h14": 632_045_800}
    # Within 1% of Dosovitskiy et al. (2021), Table 1: Base 86M, Large 307M, Huge 632M.
    for name, paper in (("vit_b16", 86e6), ("vit_l16", 307e6), ("vit_h14", 632e6)):
        assert abs(counts[name] / paper - 1) < 0.01, name
    assert vit_parameter_count(**CONFIGS["vit_b16"]) == 85_798_656  # the backbone alone


@pytest.mark.slow
def test_vit_b16_preset_builds_86m_weights():
    model = keras_models.build("vit_classifier", preset="vit_b16", compile=False)
    assert model.count_params() == 86_567_656
    assert model.input_shape == (None, 224, 224, 3) and model.output_shape == (None, 1000)
    assert model.backbone.output_shape == (None, 197, 768) and model.backbone.dropout == 0.1


def test_config_round_trip(tiny_model, tmp_path):
    config = tiny_model.get_config()
    rebuilt = ViTClassifier.from_config(config)
    assert rebuilt.get_config() == config and rebuilt.count_params() == tiny_model.count_params()
    assert config["backbone"]["config"]["image_shape"] == [8, 8, 1]
    tiny_model.save(tmp_path / "vit.keras")
    loaded = keras.saving.load_model(tmp_path / "vit.keras", safe_mode=True)
    assert isinstance(loaded, ViTClassifier) and isinstance(loaded.backbone, ViTBackbone)
    assert loaded.get_config() == config
    x = _images()
    np.testing.assert_allclose(_numpy(loaded(x)), _numpy(tiny_model(x)), atol=1e-6)


# -- the shared checks and learning ------------------------------------------------------------------------

def test_passes_the_model_checks(tmp_path):
    # Output shape, an XLA-compiled training step (proven by its HLO), the .keras round trip, TFLite
    # (builtin operators only) and ONNX equal to Keras.
    model = vit_classifier(input_shape=(8, 8, 1), patch_size=4, num_layers=1, num_heads=2, hidden_dim=16,
                           intermediate_dim=32, dropout=0.1, num_classes=3, compile=False)
    x = _images(8)
    y = np.arange(8) % 3
    results = check_model(model, x, y, tmp_path, expected_shape=(8, 3), loss="sparse_categorical_crossentropy")
    assert results["train"]["hlo_instructions"] > 0
    assert results["tflite"].max_abs <= 1e-5 and results["onnx"].max_abs <= 1e-5


@pytest.fixture(scope="module")
def digits_model():
    """A ViT trained on scikit-learn's digits (1,347 training images) for 15 epochs, and the test split."""
    (x_train, y_train), (x_test, y_test) = load_digits()
    keras.utils.set_random_seed(0)
    model = vit_classifier(**DIGITS, num_classes=10)
    history = model.fit(x_train, y_train, batch_size=32, epochs=15, verbose=0)
    return model, history, x_test, y_test


def test_learns_scikit_learn_digits(digits_model):
    model, history, x_test, y_test = digits_model
    assert history.history["loss"][0] > 1.0  # about log(10) = 2.3 at first
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy >= 0.95  # on 450 held-out digits; chance is 0.10
    assert loss < 0.2


@pytest.mark.slow
def test_dynamic_range_int8_keeps_digits_accuracy_within_one_point(digits_model, tmp_path):
    model, _, x_test, y_test = digits_model
    accuracies, sizes = {}, {}
    for quantization in (None, "dynamic"):
        report = export.to_tflite(model, tmp_path / f"vit_{quantization}.tflite", quantization=quantization)
        (probabilities,) = export.run_artifact(report.path, x_test)
        accuracies[quantization] = float(np.mean(np.argmax(probabilities, axis=-1) == y_test))
        sizes[quantization] = report.size_bytes
    keras_accuracy = float(np.mean(np.argmax(model.predict(x_test, verbose=0), axis=-1) == y_test))
    assert accuracies[None] == keras_accuracy
    assert abs(accuracies["dynamic"] - accuracies[None]) <= 0.01
    assert sizes["dynamic"] < 0.45 * sizes[None]  # int8 weights: about a quarter of float32, plus the graph


# -- bad input ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("builder", ["vit", "vit_classifier"])
def test_image_size_must_be_a_multiple_of_patch_size(builder):
    with pytest.raises(ValueError, match=r"input_shape=\(30, 32, 3\) must have a height and width divisible by "
                                         r"patch_size=4 .*got 30x32"):
        keras_models.build(builder, input_shape=(30, 32, 3), patch_size=4)
    with pytest.raises(ValueError, match=r"input_shape must be a tuple of 3 positive integers; got "
                                         r"input_shape=\(8, 8\)"):
        keras_models.build(builder, input_shape=(8, 8), patch_size=4)


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="hidden_dim must be divisible by num_heads.*hidden_dim=30, num_heads=4"):
        vit_classifier(input_shape=(8, 8, 1), hidden_dim=30, num_heads=4)
    with pytest.raises(ValueError, match=r"preset must be None or one of \['vit_b16', .*got preset='vit_b8'"):
        vit_classifier(preset="vit_b8")
    with pytest.raises(ValueError, match=r"patch_size must be a positive integer; got patch_size=0"):
        vit_classifier(input_shape=(8, 8, 1), patch_size=0)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\); got dropout=1.5"):
        vit_classifier(input_shape=(8, 8, 1), dropout=1.5)
    with pytest.raises(ValueError, match=r"pooling must be one of \(None, 'token', 'avg', 'max'\); got pooling='cls'"):
        vit_classifier(**TINY, pooling="cls")
    with pytest.raises(ValueError, match="num_classes=1 with head='softmax'"):
        vit_classifier(**TINY, num_classes=1)
    with pytest.raises(ValueError, match="backbone must be a ViTBackbone; got Functional"):
        inputs = keras.Input((4,))
        ViTClassifier(keras.Model(inputs, keras.layers.Dense(2)(inputs)))


def test_wrong_images_are_named_before_training():
    model = vit_classifier(**TINY, num_classes=3)
    x, y = _images(6), np.arange(6) % 3
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"x has 3 channels; the model was built for 1 \(input_shape=\(8, 8, 1\)\)"):
        model.fit(np.repeat(x, 3, axis=-1), y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"x must be channels-last images of shape \(batch, 8, 8, 1\).*"
                                         r"patch_size=2; got shape \(6, 10, 10, 1\)"):
        model.predict(_images(6, (10, 10, 1)), verbose=0)
    with pytest.raises(ValueError, match=r"validation_data x must be channels-last images"):
        model.fit(x, y, validation_data=(x[:, :, :, 0], y), epochs=1, verbose=0)
    x[2, 3, 4, 0] = np.nan
    with pytest.raises(ValueError, match=r"^x contains NaN \(first at row 2\)\.$"):
        model.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\); got values from 0 to 5"):
        model.evaluate(_images(6), np.arange(6), verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # nothing trained
