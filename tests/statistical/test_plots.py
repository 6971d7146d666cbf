"""Diagnostic PNGs: valid files of sensible size whose plotted data are the model's own numbers."""

import struct

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score

from keras_models.statistical import LinearRegression, LogisticRegression


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert len(data) > 5_000
    return struct.unpack(">II", data[16:24])


def test_ols_residual_and_qq_plots(regression_frame, tmp_path):
    model = LinearRegression().fit(regression_frame[["x1", "x2"]], regression_frame["y"])
    plots = model.plot_diagnostics(tmp_path / "ols")
    path, data = plots["residuals"]
    assert _png_size(path) == (500, 400)
    x_line, y_line = data["axes"].lines[0].get_data()
    np.testing.assert_array_equal(x_line, model.fittedvalues_)
    np.testing.assert_array_equal(y_line, model.resid_)
    np.testing.assert_allclose(model.fittedvalues_ + model.resid_, regression_frame["y"], rtol=1e-12)
    path, data = plots["qq"]
    assert _png_size(path) == (500, 400)
    theoretical, sample = data["axes"].lines[0].get_data()
    np.testing.assert_allclose(sample, np.sort(model.resid_ / np.sqrt(model.scale_)), rtol=1e-12)
    expected_theoretical, _ = scipy.stats.probplot(model.resid_, dist="norm", fit=False)
    assert np.corrcoef(theoretical, expected_theoretical)[0, 1] > 0.9999


def test_logit_roc_and_calibration_plots(regression_frame, tmp_path):
    X, y = regression_frame[["x1", "x2", "x3"]], regression_frame["outcome"]
    model = LogisticRegression().fit(X, y)
    plots = model.plot_diagnostics(X, y, tmp_path / "logit")
    path, data = plots["roc"]
    assert _png_size(path) == (500, 400)
    assert data["auc"] == pytest.approx(roc_auc_score(y, model.predict_proba(X)[:, 1]), rel=1e-12)
    fpr, tpr = data["axes"].lines[0].get_data()
    assert fpr[0] == 0 and tpr[-1] == 1 and np.trapezoid(tpr, fpr) == pytest.approx(data["auc"], rel=1e-12)
    path, data = plots["calibration"]
    assert _png_size(path) == (500, 400)
    predicted, observed = data["axes"].lines[0].get_data()
    assert data["counts"].sum() == len(y)
    # Counts-weighted means give back the overall mean prediction and the overall event rate.
    assert np.sum(predicted * data["counts"]) / len(y) == pytest.approx(model.predict_proba(X)[:, 1].mean(), rel=1e-12)
    assert np.sum(observed * data["counts"]) / len(y) == pytest.approx(y.mean(), rel=1e-12)


def test_bad_plot_paths_leave_nothing(regression_frame, tmp_path):
    model = LinearRegression().fit(regression_frame[["x1"]], regression_frame["y"])
    with pytest.raises(ValueError, match="does not exist"):
        model.plot_diagnostics(tmp_path / "missing" / "ols")
    from keras_models.statistical import plots

    with pytest.raises(ValueError, match="written as PNG"):
        plots.residuals_vs_fitted(model, tmp_path / "plot.jpg")
    assert list(tmp_path.iterdir()) == []
