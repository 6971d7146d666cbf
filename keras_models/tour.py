"""The cases `keras-models tour` runs: one small model per family, trained on bundled data.

A family registers a case with `@tour_case(family, model_name)`; the function trains the model with the
library's defaults (Keras progress bars on when `verbose`) and returns a `TourResult`. The CLI in the
`export` package exports each result to TFLite and ONNX and verifies both; this module never exports.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import keras


@dataclasses.dataclass
class TourResult:
    """A trained model and how it did on held-out data."""

    family: str
    model_name: str
    model: keras.Model  # the Keras model to export (for estimators, their `to_keras()`)
    metric_name: str  # e.g. "accuracy", "R^2", "FID"
    metric: float
    train_seconds: float
    sample_inputs: Any  # a few held-out inputs to verify the exports on
    parameters: int | None = None
    trained_model: keras.Model | None = None  # what `fit()` ran on, when not `model` (a GAN's generator)

    def __post_init__(self):
        if self.parameters is None:
            self.parameters = int(self.model.count_params())
        if self.trained_model is None:
            self.trained_model = self.model


_CASES: list[tuple[str, str, Callable[[bool], TourResult]]] = []


def tour_case(family: str, model_name: str):
    """Registers `fn(verbose: bool) -> TourResult` as the tour case of `family`."""

    def decorator(fn):
        _CASES.append((family, model_name, fn))
        return fn

    return decorator


def tour_cases(families=None):
    """The registered cases `(family, model_name, fn)`, families loaded, in registration order."""
    from keras_models.registry import _load_families

    _load_families()
    cases = list(_CASES)
    if families:
        known = {family for family, _, _ in cases}
        unknown = sorted(set(families) - known)
        if unknown:
            raise ValueError(f"Unknown tour families {unknown}; known: {sorted(known)}.")
        cases = [case for case in cases if case[0] in families]
    return cases
