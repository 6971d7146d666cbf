"""The cnn tour case: LeNet-5 on 32x32 digits, quickly, with a real held-out accuracy."""

import numpy as np
import pytest

import keras_models  # noqa: F401  (registers the families)
from keras_models.tour import tour_cases


def test_cnn_tour_case_is_registered():
    cases = tour_cases(["cnn"])
    assert [(family, name) for family, name, _ in cases] == [("cnn", "lenet5")]


@pytest.mark.slow
def test_cnn_tour_case_trains_lenet5_quickly():
    (_, _, run), = tour_cases(["cnn"])
    result = run(False)
    assert result.metric_name == "accuracy" and result.metric >= 0.97
    assert result.train_seconds < 45
    assert result.model.name == "lenet5" and result.parameters == 61_706
    assert np.asarray(result.sample_inputs).shape == (16, 32, 32, 1)
