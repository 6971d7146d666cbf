"""LinearRegression against statsmodels OLS/WLS run side by side, its report, export and bad input."""

import numpy as np
import pytest
import sklearn.base
import statsmodels.api as sm
import statsmodels.formula.api as smf

from keras_models.statistical import LinearRegression, SingularDesignError

QUANTITIES = ("params", "bse", "tvalues", "pvalues", "llf", "rsquared", "rsquared_adj", "fvalue",
              "f_pvalue", "aic", "bic", "ssr", "scale", "condition_number")


def _assert_matches(ours, reference, rel, tol=1e-8):
    for name in QUANTITIES:
        assert rel(getattr(ours, name + "_"), getattr(reference, name)) < tol, name
    assert rel(ours.conf_int(0.1).to_numpy(), np.asarray(reference.conf_int(0.1))) < tol
    np.testing.assert_allclose(ours.resid_, reference.resid, rtol=1e-8, atol=1e-12)


def test_ols_on_arrays_matches_statsmodels(rel):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)) @ rng.normal(size=(4, 4))  # correlated columns
    y = X @ [1.0, -2.0, 0.5, 0.0] + 3.0 + rng.normal(size=200)
    ours = LinearRegression().fit(X, y)
    reference = sm.OLS(y, sm.add_constant(X)).fit()
    _assert_matches(ours, reference, rel)
    assert list(ours.params_.index) == ["const", "x1", "x2", "x3", "x4"]
    assert ours.df_model_ == reference.df_model and ours.df_resid_ == reference.df_resid


def test_wls_on_dataframe_carries_names(regression_frame, rel):
    X, y = regression_frame[["x1", "x2", "x3"]], regression_frame["y"]
    ours = LinearRegression().fit(X, y, sample_weight=regression_frame["weight"])
    reference = sm.WLS(y, sm.add_constant(X), weights=regression_frame["weight"]).fit()
    _assert_matches(ours, reference, rel)
    assert list(ours.params_.index) == ["const", "x1", "x2", "x3"]
    text = str(ours.summary())
    assert "WLS Regression Results" in text and "Dep. Variable:" in text and " y " in text
    for name in ("x1", "x2", "x3", "const"):
        assert name in text


def test_formula_with_categorical_matches_statsmodels(regression_frame, rel):
    formula = "y ~ x1 + x2 + C(group)"
    ours = LinearRegression.from_formula(formula, regression_frame)
    reference = smf.ols(formula, regression_frame).fit()
    _assert_matches(ours, reference, rel)
    assert list(ours.params_.index) == list(reference.params.index)
    # New data goes through the formula: the categorical column is re-encoded.
    np.testing.assert_allclose(ours.predict(regression_frame.iloc[:10]),
                               reference.predict(regression_frame.iloc[:10]), rtol=1e-10)


def test_no_intercept_uses_uncentered_r_squared(rel):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 2))
    y = X @ [2.0, -1.0] + rng.normal(size=60)
    ours = LinearRegression(fit_intercept=False).fit(X, y)
    reference = sm.OLS(y, X).fit()
    _assert_matches(ours, reference, rel)
    assert "R-squared (uncentered):" in str(ours.summary())


def test_summary_renders_text_html_csv_with_our_numbers(regression_frame):
    X, y = regression_frame[["x1", "x2"]], regression_frame["y"]
    ours = LinearRegression().fit(X, y)
    reference = sm.OLS(y, sm.add_constant(X)).fit()
    # Every table row except the clock equals statsmodels' own rendering.
    strip = lambda s: [line for line in str(s).splitlines() if not line.startswith(("Date:", "Time:", "[2]", "Notes"))]
    ours_lines, reference_lines = strip(ours.summary()), strip(reference.summary())
    assert [l for l in ours_lines if l.strip()] [:27] == [l for l in reference_lines if l.strip()][:27]
    html, csv = ours.summary().as_html(), ours.summary().as_csv()
    assert "<table" in html and "x2" in html and f"{ours.params_['x1']:.4f}" in html
    assert "OLS Regression Results" in csv and "x1" in csv
    assert ours.summary() is ours.summary()  # built once, then cached


def test_predict_and_clone(regression_frame):
    X, y = regression_frame[["x1", "x2", "x3"]], regression_frame["y"]
    model = LinearRegression(refine=False)
    clone = sklearn.base.clone(model)
    assert clone.get_params() == {"fit_intercept": True, "refine": False}
    assert model.fit(X, y) is model and not hasattr(clone, "params_")
    expected = model.params_["const"] + X.to_numpy() @ model.params_[["x1", "x2", "x3"]].to_numpy()
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-12)
    np.testing.assert_allclose(model.predict(X[["x3", "x1", "x2"]]), expected, rtol=1e-12)  # by name
    with pytest.raises(ValueError, match=r"missing column\(s\) \['x3'\]"):
        model.predict(X[["x1", "x2"]])


def test_export_equals_predict(regression_frame, tmp_path):
    import export
    from model_checks import check_model

    X, y = regression_frame[["x1", "x2", "x3"]], regression_frame["y"]
    fitted = LinearRegression().fit(X, y)
    inputs = X.to_numpy(np.float32)  # the design values are float32-representable
    expected = fitted.predict(X)
    for writer, suffix in ((export.to_tflite, "tflite"), (export.to_onnx, "onnx")):
        report = writer(fitted.to_keras(), tmp_path / f"ols.{suffix}")
        (output,) = export.run_artifact(report.path, inputs)
        assert output.shape == (len(X), 1)
        np.testing.assert_allclose(output[:, 0], expected, atol=1e-6, rtol=0)
    check_model(fitted.to_keras(), inputs[:32], y.to_numpy()[:32, None].astype(np.float32), tmp_path,
                expected_shape=(32, 1), loss="mse", atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (np.nan, r"NaN in column 'x2' at row 7"),
    (np.inf, r"infinity in column 'x2' at row 7"),
])
def test_non_finite_values_name_column_and_row(regression_frame, bad, message):
    X = regression_frame[["x1", "x2"]].copy()
    X.iloc[7, 1] = bad
    X.iloc[9, 0] = bad
    with pytest.raises(ValueError, match=message):
        LinearRegression().fit(X, regression_frame["y"])
    y = regression_frame["y"].to_numpy().copy()
    y[3] = bad
    with pytest.raises(ValueError, match=r"y contains .* column 'y' at row 3"):
        LinearRegression().fit(regression_frame[["x1"]], y)


def test_bad_input_is_refused_clearly(regression_frame):
    X, y = regression_frame[["x1", "x2"]], regression_frame["y"]
    with pytest.raises(ValueError, match="X has 120 rows but y has 119"):
        LinearRegression().fit(X, y[:-1])
    with pytest.raises(ValueError, match=r"non-numeric column\(s\) \['group'\].*from_formula"):
        LinearRegression().fit(regression_frame[["x1", "group"]], y)
    with pytest.raises(ValueError, match="sample_weight must be positive; row 0"):
        LinearRegression().fit(X, y, sample_weight=np.r_[-1.0, np.ones(119)])
    with pytest.raises(ValueError, match="refine must be one of"):
        LinearRegression(refine="yes").fit(X, y)
    with pytest.raises(ValueError, match="formula must be a string"):
        LinearRegression.from_formula("y = x1", regression_frame)


def test_singular_design_names_collinear_columns(regression_frame):
    X = regression_frame[["x1", "x2"]].copy()
    X["x1_plus_x2"] = X.x1 + 2 * X.x2
    with pytest.raises(SingularDesignError, match=r"\['x1', 'x2', 'x1_plus_x2'\] are linearly dependent"):
        LinearRegression().fit(X, regression_frame["y"])
    X = regression_frame[["x1"]].assign(ones=1.0)
    with pytest.raises(SingularDesignError, match=r"\['const', 'ones'\]"):
        LinearRegression().fit(X, regression_frame["y"])
