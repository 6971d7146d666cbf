"""The statistical family in the registry and the tour."""

import keras_models
from keras_models.statistical import LinearRegression, MultinomialLogisticRegression


def test_builders_are_registered():
    infos = {info.name: info for info in keras_models.list_models(family="statistical")}
    assert set(infos) == {"linear_regression", "logistic_regression", "multinomial_logistic_regression"}
    assert isinstance(keras_models.build("linear_regression", fit_intercept=False), LinearRegression)
    assert keras_models.build("logistic_regression", max_iter=5).max_iter == 5
    assert isinstance(keras_models.build("multinomial_logistic_regression"), MultinomialLogisticRegression)


def test_tour_case_trains_and_exports(tmp_path):
    import export
    from export.tour_cases import tour_cases

    [case] = tour_cases(["statistical"])
    result = case.run(False)
    assert (case.family, case.model_name, result.metric_name) == ("statistical", "logistic_regression", "accuracy")
    assert result.metric > 0.88
    assert result.model.output_shape == (None, 2) and result.parameters == 12
    report = export.to_tflite(result.model, tmp_path / "tour.tflite")
    assert export.verify(result.model, report.path, result.sample_inputs).max_abs < 1e-6
