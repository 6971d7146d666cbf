"""SVMs trained in Keras: the hinge loss, random Fourier features, XLA training, accuracy."""

import numpy as np
import pytest
from sklearn.svm import LinearSVC, SVC

import keras_models
from keras_models.classical import MulticlassHinge, RandomFourierFeatures
from keras_models.data import load_breast_cancer
from model_checks import check_model


def test_multiclass_hinge_matches_its_definition():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(64, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 64)
    expected = []
    for s, y in zip(scores, labels):
        others = np.delete(s, y)
        expected.append(max(0.0, 1.0 + others.max() - s[y]))
    loss = MulticlassHinge()
    np.testing.assert_allclose(float(loss(labels, scores)), np.mean(expected), rtol=1e-6)
    per_sample = np.asarray(loss.call(labels.astype(np.float32), scores))
    np.testing.assert_allclose(per_sample, expected, rtol=1e-6, atol=1e-7)
    assert (per_sample == 0).any() and (per_sample > 1).any()


def test_random_fourier_features_approximate_the_rbf_kernel():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    gamma = 0.1
    layer = RandomFourierFeatures(8192, gamma=gamma, seed=3)
    z = np.asarray(layer(x))
    approx = z @ z.T
    exact = np.exp(-gamma * ((x[:, None] - x[None]) ** 2).sum(-1))
    error = np.abs(approx - exact)
    assert error.mean() < 0.01 and error.max() < 0.06, (error.mean(), error.max())
    with pytest.raises(ValueError, match="gamma must be positive; got gamma=-1"):
        RandomFourierFeatures(8, gamma=-1)


@pytest.mark.parametrize("name", ["linear_svm", "rff_svm"])
def test_keras_svms_pass_model_checks(name, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0)
    extra = {"num_features": 64} if name == "rff_svm" else {}
    model = keras_models.build(name, input_shape=(6,), num_classes=3, compile=False, **extra)
    results = check_model(model, x, y, tmp_path, expected_shape=(32, 3), loss=MulticlassHinge())
    assert results["train"]["hlo_instructions"] > 0


def test_builders_validate_arguments():
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2; got num_classes=1"):
        keras_models.build("linear_svm", num_classes=1)
    with pytest.raises(ValueError, match="l2 must be non-negative"):
        keras_models.build("rff_svm", l2=-1.0)
    model = keras_models.build("linear_svm", input_shape=(4,), num_classes=2)
    # The builder follows the family's measured default on this device.
    assert model.jit_compile is keras_models.default_jit_compile("classical")


@pytest.mark.slow
@pytest.mark.parametrize("name, reference", [("linear_svm", LinearSVC(C=0.1)), ("rff_svm", SVC(kernel="rbf"))])
def test_keras_svms_match_sklearn_accuracy(name, reference):
    (x_train, y_train), (x_test, y_test) = load_breast_cancer()
    model = keras_models.build(name, input_shape=(30,), num_classes=2)
    model.fit(x_train, y_train, epochs=60, batch_size=32, verbose=0)
    accuracy = float((model.predict(x_test, verbose=0).argmax(1) == y_test).mean())
    sklearn_accuracy = reference.fit(x_train, y_train).score(x_test, y_test)
    assert accuracy >= 0.95, accuracy
    assert accuracy >= sklearn_accuracy - 0.02, (accuracy, sklearn_accuracy)
