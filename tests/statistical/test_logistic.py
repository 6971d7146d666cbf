"""Logit and MNLogit against statsmodels side by side; export, separation and bad input."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn.base
import statsmodels.api as sm
import statsmodels.formula.api as smf

from keras_models.statistical import (
    ConvergenceWarning,
    LogisticRegression,
    MultinomialLogisticRegression,
    PerfectSeparationError,
    SingularDesignError,
)

SPECTOR = Path(__file__).resolve().parents[1] / "data" / "spector_logit_reference.json"  # see tests/data/README.md


def _assert_matches(ours, reference, rel, tol=1e-8):
    for name in ("params", "bse", "tvalues", "pvalues", "llf", "llnull", "prsquared", "aic", "bic", "llr"):
        assert rel(getattr(ours, name + "_"), getattr(reference, name)) < tol, name
    # statsmodels fits LL-Null iteratively (to ~1e-11); the tiny LLR p-value amplifies that difference.
    assert rel(ours.llr_pvalue_, reference.llr_pvalue) < 1e-6
    assert ours.converged_ and reference.mle_retvals["converged"]
    assert ours.df_model_ == reference.df_model and ours.df_resid_ == reference.df_resid


def test_logit_on_dataframe_matches_statsmodels(regression_frame, rel):
    X, y = regression_frame[["x1", "x2", "x3"]], regression_frame["outcome"]
    ours = LogisticRegression().fit(X, y)
    reference = sm.Logit(y, sm.add_constant(X)).fit(disp=0)
    _assert_matches(ours, reference, rel)
    assert rel(ours.conf_int().to_numpy(), np.asarray(reference.conf_int())) < 1e-8
    assert 3 <= ours.n_iter_ <= 10
    np.testing.assert_allclose(ours.predict_proba(X)[:, 1], reference.predict(sm.add_constant(X)), rtol=1e-10)
    text = str(ours.summary())
    for label in ("Logit Regression Results", "Pseudo R-squ.:", "LL-Null:", "LLR p-value:", "converged:",
                  "outcome", "x3", "P>|z|"):
        assert label in text
    strip = lambda s: [l for l in str(s).splitlines() if l.strip() and not l.startswith(("Date:", "Time:"))]
    reference_lines = strip(reference.summary())
    assert strip(ours.summary())[: len(reference_lines)] == reference_lines
    assert "<table" in ours.summary().as_html() and "x2" in ours.summary().as_csv()


def test_logit_formula_and_small_batches_match_statsmodels(regression_frame, rel):
    formula = "outcome ~ x1 + x2 + C(group)"
    ours = LogisticRegression.from_formula(formula, regression_frame, batch_size=50)  # 3 chunks, padded
    reference = smf.logit(formula, regression_frame).fit(disp=0)
    _assert_matches(ours, reference, rel)
    assert list(ours.params_.index) == list(reference.params.index)
    np.testing.assert_allclose(ours.predict_proba(regression_frame)[:, 1], reference.predict(regression_frame),
                               rtol=1e-10)


def test_multinomial_matches_statsmodels_mnlogit(regression_frame, rel):
    X = regression_frame[["x1", "x2"]]
    y = pd.Series(np.digitize(X.x1 - X.x2 + np.random.default_rng(0).normal(size=len(X)), [-0.7, 0.7]), name="k")
    ours = MultinomialLogisticRegression().fit(X, y)
    reference = sm.MNLogit(y, sm.add_constant(X)).fit(disp=0)
    _assert_matches(ours, reference, rel)
    assert list(ours.params_.columns) == ["k=1", "k=2"]
    np.testing.assert_allclose(ours.predict_proba(X), np.asarray(reference.predict(sm.add_constant(X))), rtol=1e-9)
    text = str(ours.summary())
    assert "MNLogit Regression Results" in text and "k=2" in text
    labels = MultinomialLogisticRegression().fit(X, y.map({0: "low", 1: "mid", 2: "top"})).predict(X)
    assert set(labels) <= {"low", "mid", "top"}


def test_spector_matches_stata():
    reference = json.loads(SPECTOR.read_text())
    data = pd.DataFrame(reference["data"]["values"])
    expected = reference["reference"]
    ours = LogisticRegression.from_formula("GRADE ~ GPA + TUCE + PSI", data)
    order = ["GPA", "TUCE", "PSI", "Intercept"]  # Stata's order, constant last
    np.testing.assert_allclose(ours.params_[order], expected["params"], rtol=1e-6)
    np.testing.assert_allclose(ours.bse_[order], expected["bse"], rtol=1e-6)
    np.testing.assert_allclose([ours.llf_, ours.llnull_, ours.prsquared_, ours.aic_, ours.bic_],
                               [expected[k] for k in ("llf", "llnull", "prsquared", "aic", "bic")], rtol=2e-7)


def test_export_equals_predict_proba(regression_frame, tmp_path):
    import export
    from model_checks import check_model

    X, y = regression_frame[["x1", "x2", "x3"]], regression_frame["outcome"]
    fitted = LogisticRegression().fit(X, y)
    inputs = X.to_numpy(np.float32)
    for writer, suffix in ((export.to_tflite, "tflite"), (export.to_onnx, "onnx")):
        report = writer(fitted.to_keras(), tmp_path / f"logit.{suffix}")
        (output,) = export.run_artifact(report.path, inputs)
        np.testing.assert_allclose(output, fitted.predict_proba(X), atol=1e-6, rtol=0)
    check_model(fitted.to_keras(), inputs[:32], y.to_numpy()[:32], tmp_path, expected_shape=(32, 2),
                loss="sparse_categorical_crossentropy", atol=1e-6)
    classes = np.digitize(X.x1 + np.random.default_rng(1).normal(size=len(X)), [-0.5, 0.5])
    multinomial = MultinomialLogisticRegression().fit(X, classes)
    report = export.to_onnx(multinomial.to_keras(), tmp_path / "mnlogit.onnx")
    (output,) = export.run_artifact(report.path, inputs)
    np.testing.assert_allclose(output, multinomial.predict_proba(X), atol=1e-6, rtol=0)


def test_perfect_separation_is_an_error():
    x = np.linspace(-1, 1, 40)
    with pytest.raises(PerfectSeparationError, match="Perfect separation"):
        LogisticRegression().fit(x, (x > 0).astype(int))
    with pytest.raises(PerfectSeparationError, match="single class"):
        LogisticRegression().fit(x, np.zeros(40))


def test_quasi_separation_warns_and_reports_not_converged():
    rng = np.random.default_rng(0)
    x = np.r_[np.linspace(-2, -0.1, 20), np.zeros(10), np.linspace(0.1, 2, 20)]
    y = np.r_[np.zeros(20), rng.integers(0, 2, 10), np.ones(20)]
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        model = LogisticRegression(max_iter=12).fit(x, y)
    assert not model.converged_
    assert "converged:                      False" in str(model.summary())
    assert "do not trust" in str(model.summary())


def test_bad_input_is_refused_clearly(regression_frame):
    X, y = regression_frame[["x1", "x2"]], regression_frame["outcome"]
    with pytest.raises(ValueError, match=r"y must be binary \(0 or 1\) for Logit; row 0 has 2 "):
        LogisticRegression().fit(X, y.where(np.arange(len(y)) != 0, 2))
    bad = X.copy()
    bad.iloc[11, 0] = np.nan
    with pytest.raises(ValueError, match="NaN in column 'x1' at row 11"):
        LogisticRegression().fit(bad, y)
    with pytest.raises(ValueError, match="X has 120 rows but y has 100"):
        LogisticRegression().fit(X, y[:100])
    with pytest.raises(ValueError, match=r"non-numeric column\(s\) \['group'\]"):
        LogisticRegression().fit(regression_frame[["group"]], y)
    with pytest.raises(ValueError, match="max_iter must be a positive integer; got max_iter=0"):
        LogisticRegression(max_iter=0).fit(X, y)
    with pytest.raises(SingularDesignError, match=r"\['x1', 'twice_x1'\] are linearly dependent"):
        LogisticRegression().fit(X.assign(twice_x1=2 * X.x1), y)


def test_clone_and_params_round_trip(regression_frame):
    model = LogisticRegression(max_iter=20, tol=1e-9, batch_size=64)
    clone = sklearn.base.clone(model)
    assert clone.get_params() == model.get_params() == {
        "batch_size": 64, "fit_intercept": True, "max_iter": 20, "tol": 1e-9, "verbose": False}
    clone.set_params(max_iter=7)
    assert clone.max_iter == 7 and model.max_iter == 20
    X, y = regression_frame[["x1"]], regression_frame["outcome"]
    assert model.fit(X, y) is model
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set(np.unique(model.predict(X))) <= {0, 1}
