"""The cnn tour case: LeNet-5 on 32x32 digits, with a real held-out accuracy."""

import numpy as np
import pytest

from export.tour_cases import tour_cases


def test_cnn_tour_case_is_lenet5():
    cases = tour_cases(["cnn"])
    assert [(family, name) for family, name, _ in cases] == [("cnn", "lenet5")]


def test_cnn_tour_case_builds_with_the_jit_compile_it_is_given():
    (_, _, run), = tour_cases(["cnn"])
    result = run(False, jit_compile=False, epochs=1)
    assert result.model.compiled and result.model.jit_compile is False
    assert result.model.name == "lenet5" and result.parameters == 61_706
    assert result.metric_name == "accuracy" and result.metric > 0.5  # ten classes: chance is 0.1
    assert np.asarray(result.sample_inputs).shape == (16, 32, 32, 1)


@pytest.mark.slow
def test_cnn_tour_case_trains_lenet5_to_97_percent():
    (_, _, run), = tour_cases(["cnn"])
    result = run(False)
    assert result.metric_name == "accuracy" and result.metric >= 0.97
