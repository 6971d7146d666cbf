"""The cases `keras-models tour` runs: one small model per family, trained on bundled data.

Each case is a plain function `case(verbose, jit_compile=None, epochs=None) -> TourResult`. It builds
its model with the library's public builders on the current Keras backend, passes `jit_compile` (`True`,
`False`, or `None` for the library's default) to the builder, trains with Keras progress bars when
`verbose`, and returns the trained model with its held-out metric. `epochs` shortens training for quick
checks; `None` is the demo's full count. Cases never export: `export.tour` does.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, NamedTuple


@dataclasses.dataclass
class TourResult:
    """A trained model and how it did on held-out data."""

    family: str
    model_name: str
    model: Any  # the keras.Model to export (for estimators, their `to_keras()`)
    metric_name: str  # e.g. "accuracy"
    metric: float
    train_seconds: float
    sample_inputs: Any  # a few held-out inputs to verify the exports on
    parameters: int | None = None
    trained_model: Any = None  # the keras.Model `fit()` ran on, when not `model` (a GAN, not its generator)

    def __post_init__(self):
        if self.parameters is None:
            self.parameters = int(self.model.count_params())
        if self.trained_model is None:
            self.trained_model = self.model


def _fit_seconds(model, x, y, *, epochs, batch_size, verbose) -> float:
    start = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=1 if verbose else 0)
    return time.perf_counter() - start


def _mlp(verbose: bool, jit_compile: bool | None = None, epochs: int | None = None) -> TourResult:
    """An MLP on breast cancer (binary, sigmoid head)."""
    import keras_models
    from keras_models.data import load_breast_cancer

    (x_train, y_train), (x_test, y_test) = load_breast_cancer()
    model = keras_models.build("mlp", input_shape=(30,), num_classes=1, head="sigmoid", hidden_units=(32, 16),
                               name="mlp", jit_compile=jit_compile)
    seconds = _fit_seconds(model, x_train, y_train, epochs=epochs or 30, batch_size=32, verbose=verbose)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    return TourResult("dense", "mlp", model, "accuracy", accuracy, seconds, x_test[:16])


def _lenet5(verbose: bool, jit_compile: bool | None = None, epochs: int | None = None) -> TourResult:
    """LeNet-5 on the bundled digits, upsampled to 32x32."""
    import keras_models
    from keras_models.data import load_digits

    (x_train, y_train), (x_test, y_test) = load_digits(32)
    model = keras_models.build("lenet5", input_shape=(32, 32, 1), num_classes=10, jit_compile=jit_compile)
    seconds = _fit_seconds(model, x_train, y_train, epochs=epochs or 12, batch_size=32, verbose=verbose)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    return TourResult("cnn", "lenet5", model, "accuracy", accuracy, seconds, x_test[:16])


# Breast-cancer columns for the Logit: with all 30 the classes are linearly separable and the maximum
# likelihood estimate does not exist; these five keep it finite.
LOGIT_FEATURES = (0, 1, 4, 7, 9)  # mean radius, texture, smoothness, concave points, fractal dimension


def _logistic_regression(verbose: bool, jit_compile: bool | None = None, epochs: int | None = None) -> TourResult:
    """The exact Logit (Newton/IRLS in float64) on five breast-cancer features.

    `jit_compile` and `epochs` do not apply: the fit is Newton's method to convergence, not `fit()`.
    """
    import numpy as np

    import keras_models
    from keras_models.data import load_breast_cancer

    (x_train, y_train), (x_test, y_test) = load_breast_cancer()
    columns = list(LOGIT_FEATURES)
    x_train, x_test = x_train[:, columns].astype(np.float64), x_test[:, columns].astype(np.float64)
    start = time.perf_counter()
    model = keras_models.build("logistic_regression", verbose=verbose).fit(x_train, y_train)
    seconds = time.perf_counter() - start
    accuracy = float(np.mean(model.predict(x_test) == y_test))
    return TourResult("statistical", "logistic_regression", model.to_keras(), "accuracy", accuracy, seconds,
                      x_test[:16].astype(np.float32))


def _random_forest(verbose: bool, jit_compile: bool | None = None, epochs: int | None = None) -> TourResult:
    """A 50-tree forest (scikit-learn) on breast cancer, compiled to a Keras model.

    `jit_compile` and `epochs` do not apply: scikit-learn fits the trees.
    """
    import keras_models
    from keras_models.data import load_breast_cancer

    (x_train, y_train), (x_test, y_test) = load_breast_cancer(standardize=False)
    forest = keras_models.build("random_forest", n_estimators=50, max_depth=8, random_state=0)
    start = time.perf_counter()
    forest.fit(x_train, y_train)
    seconds = time.perf_counter() - start
    model = forest.to_keras(name="random_forest")
    accuracy = float((model.predict(x_test, verbose=1 if verbose else 0).argmax(axis=1) == y_test).mean())
    return TourResult("classical", "random_forest", model, "accuracy", accuracy, seconds, x_test[:16])


def _cgan(verbose: bool, jit_compile: bool | None = None, epochs: int | None = None) -> TourResult:
    """A conditional GAN on 8x8 digits; the exported model is its generator.

    The metric is how often a logistic-regression judge trained on real digits reads generated samples
    as the class they were asked for.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    import keras_models
    from keras_models.data import load_digits

    (x_train, y_train), (x_test, y_test) = load_digits(8)
    judge = LogisticRegression(max_iter=2000).fit(x_train.reshape(len(x_train), -1), y_train)
    gan = keras_models.build("cgan", image_shape=(8, 8, 1), num_classes=10, seed=0, jit_compile=jit_compile)
    seconds = _fit_seconds(gan, x_train, y_train, epochs=epochs or 40, batch_size=64, verbose=verbose)
    labels = np.arange(500) % 10
    samples = gan.generate(500, labels=labels, seed=1)
    accuracy = float(np.mean(judge.predict(samples.reshape(len(samples), -1)) == labels))
    rng = np.random.default_rng(2)
    sample_inputs = [rng.standard_normal((8, gan.latent_dim)).astype("float32"), (np.arange(8) % 10).astype("int32")]
    return TourResult("gan", "cgan", gan.generator, "judge accuracy of generated digits", accuracy, seconds,
                      sample_inputs, trained_model=gan)


class TourCase(NamedTuple):
    family: str
    model_name: str
    run: Callable[..., TourResult]  # run(verbose, jit_compile=None, epochs=None)


CASES = (
    TourCase("dense", "mlp", _mlp),
    TourCase("statistical", "logistic_regression", _logistic_regression),
    TourCase("classical", "random_forest", _random_forest),
    TourCase("cnn", "lenet5", _lenet5),
    TourCase("gan", "cgan", _cgan),
)


def tour_cases(families=None) -> list[TourCase]:
    """The cases of `families` (all when None or empty), in table order.

    Raises:
        ValueError: a family has no tour case; the message lists those that do.
    """
    if not families:
        return list(CASES)
    known = [case.family for case in CASES]
    unknown = sorted(set(families) - set(known))
    if unknown:
        raise ValueError(f"No tour case for families {unknown}; known: {known}.")
    return [case for case in CASES if case.family in families]
