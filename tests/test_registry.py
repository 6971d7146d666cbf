import inspect

import keras
import numpy as np
import pytest
import sklearn.base

import keras_models
from keras_models.families import ESTIMATOR, FAMILIES, MODEL
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
    with pytest.raises(ValueError, match="already registered by family 'dense'"):
        register_model("mlp", family="cnn", description="x")(lambda: None)


def test_registering_into_an_undeclared_family_is_refused():
    with pytest.raises(ValueError, match="Unknown family 'other'; known families: .*'cnn'"):
        register_model("brand_new", family="other", description="x")
    assert "brand_new" not in {info.name for info in keras_models.list_models()}


def test_family_table_and_registry_agree():
    registered = {info.family for info in keras_models.list_models()}
    assert registered == set(FAMILIES)
    for family in FAMILIES.values():
        assert family.module.startswith("keras_models.") and family.description and family.returns
        assert set(family.builds) <= {MODEL, ESTIMATOR} and family.builds


def _names_its_arguments(builder):
    """False for builders that forward `**kwargs` (GAN variants, scikit-learn wrappers): the contract
    builds below cover them."""
    kinds = {p.kind for p in inspect.signature(builder).parameters.values()}
    return inspect.Parameter.VAR_KEYWORD not in kinds


@pytest.mark.parametrize("info", [info for info in keras_models.list_models() if _names_its_arguments(info.builder)],
                         ids=lambda info: info.name)
def test_builders_accept_their_family_shared_arguments(info):
    parameters = inspect.signature(info.builder).parameters
    shared = FAMILIES[info.family].builds.values()
    assert any(set(arguments) <= set(parameters) for arguments in shared), (
        f"{info.name} lacks the shared arguments of family {info.family!r}: {list(shared)}"
    )


# One small build per family and kind, with every shared argument given: what comes back is what the
# family's entry says.
_CONTRACT_CASES = [
    ("mlp", MODEL, dict(input_shape=(6,), num_classes=3, head="softmax", name="m", compile=True, jit_compile=False)),
    ("simple_cnn", MODEL, dict(input_shape=(12, 12, 1), num_classes=3, head="sigmoid", include_top=True,
                               pooling=None, name="m", compile=True, jit_compile=False)),
    ("linear_svm", MODEL, dict(input_shape=(6,), num_classes=3, name="m", compile=True, jit_compile=False)),
    ("dcgan", MODEL, dict(image_shape=(8, 8, 1), num_classes=None, latent_dim=8, pixel_range=(0.0, 1.0),
                          name="m", compile=True, jit_compile=False)),
    ("random_forest", ESTIMATOR, dict(task="regression", n_estimators=3)),
    ("logistic_regression", ESTIMATOR, dict(fit_intercept=False)),
]


@pytest.mark.parametrize("name, kind, config", _CONTRACT_CASES, ids=[case[0] for case in _CONTRACT_CASES])
def test_build_returns_what_the_family_table_says(name, kind, config):
    family = FAMILIES[keras_models.get_model_info(name).family]
    assert set(family.builds[kind]) <= set(config)
    built = keras_models.build(name, **config)
    if kind == MODEL:
        assert isinstance(built, keras.Model) and built.name == "m"
        assert built.compiled and built.optimizer is not None and built.jit_compile is False
    else:
        assert not isinstance(built, keras.Model)
        assert callable(built.fit) and callable(built.to_keras)
        assert sklearn.base.clone(built).get_params() == built.get_params()


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
