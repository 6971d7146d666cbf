import keras
import numpy as np
import pytest

import keras_models
from keras_models.registry import register_model


def test_every_family_imports_cleanly():
    from keras_models import registry

    keras_models.list_models()
    assert registry._FAILED_FAMILIES == {}


def test_build_returns_registered_model():
    model = keras_models.build("mlp", input_shape=(12,), num_classes=4)
    assert isinstance(model, keras.Model)
    assert model.output_shape == (None, 4)


def test_list_models_names_family_and_description():
    infos = {info.name: info for info in keras_models.list_models()}
    assert infos["mlp"].family == "dense"
    assert infos["mlp"].description
    assert all(info.family for info in infos.values())
    assert [i.name for i in keras_models.list_models(family="dense")] == sorted(
        i.name for i in infos.values() if i.family == "dense"
    )


def test_unknown_name_lists_closest_names():
    with pytest.raises(ValueError, match=r"Unknown model name 'mpl'.*Closest names: mlp"):
        keras_models.build("mpl")


def test_unknown_family_is_an_error():
    with pytest.raises(ValueError, match="Unknown family 'nope'"):
        keras_models.list_models(family="nope")


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_model("mlp", family="other", description="x")(lambda: None)


def test_builder_arguments_are_validated():
    with pytest.raises(ValueError, match="head must be one of"):
        keras_models.build("mlp", head="softmaxx")
    with pytest.raises(ValueError, match="dropout must be in"):
        keras_models.build("mlp", dropout=1.5)


def test_mlp_passes_model_checks(tmp_path):
    from model_checks import check_model

    model = keras_models.build("mlp", input_shape=(10,), num_classes=3, compile=False)
    x = np.random.default_rng(0).normal(size=(32, 10)).astype("float32")
    y = np.arange(32) % 3
    results = check_model(
        model, x, y, tmp_path, expected_shape=(32, 3), loss="sparse_categorical_crossentropy"
    )
    assert results["train"]["hlo_instructions"] > 0
