"""Slow checks: a larger streamed Logit against statsmodels, and every NIST StRD linear dataset."""

import re
from pathlib import Path

import mpmath
import numpy as np
import pytest
import statsmodels.api as sm

from keras_models.statistical import LinearRegression, LogisticRegression

NIST = Path(__file__).resolve().parents[1] / "data" / "nist"  # provenance: tests/data/README.md


@pytest.mark.slow
def test_streamed_logit_on_200k_rows_matches_statsmodels(tmp_path):
    rng = np.random.default_rng(11)
    n, p = 200_000, 12
    X = rng.normal(size=(n, p))
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(X @ np.linspace(-0.5, 0.5, p) + 0.2)))).astype(float)
    for index, part in enumerate(np.array_split(np.arange(n), 7)):
        np.savez(tmp_path / f"part{index}.npz", X=X[part], y=y[part])
    streamed = LogisticRegression(batch_size=16384).fit_stream(tmp_path)
    reference = sm.Logit(y, sm.add_constant(X)).fit(disp=0)
    np.testing.assert_allclose(streamed.params_, reference.params, rtol=1e-8)
    np.testing.assert_allclose(streamed.bse_, reference.bse, rtol=1e-8)
    np.testing.assert_allclose([streamed.llf_, streamed.prsquared_], [reference.llf, reference.prsquared], rtol=1e-8)


def _read_nist(path):
    lines = path.read_text().splitlines()
    certified = {}
    for line in lines[:60]:
        parts = line.split()
        if len(parts) == 3 and re.fullmatch(r"B\d+", parts[0]):
            certified[int(parts[0][1:])] = float(parts[1])
    data = np.array([[float(v) for v in line.split()] for line in lines[60:] if line.strip()])
    y, predictors = data[:, 0], data[:, 1:]
    indices = sorted(certified)
    intercept = indices[0] == 0
    if predictors.shape[1] == 1 and len(indices) - int(intercept) > 1:
        predictors = np.vander(predictors[:, 0], len(indices) - int(intercept) + 1, increasing=True)[:, 1:]
    return y, predictors, intercept


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.stem for p in NIST.glob("*.dat")))
def test_nist_dataset_is_solved_to_float64_precision(name):
    y, predictors, intercept = _read_nist(NIST / f"{name}.dat")
    fit = LinearRegression(fit_intercept=intercept).fit(predictors, y)
    design = np.column_stack([np.ones(len(y)), predictors]) if intercept else predictors
    with mpmath.workdps(60):
        X = mpmath.matrix([[mpmath.mpf(float(v)) for v in row] for row in design])
        beta = ((X.T * X) ** -1) * (X.T * mpmath.matrix([mpmath.mpf(float(v)) for v in y]))
        exact = np.array([float(b) for b in beta])
    # The README's 15 digits of the exact float64 solution (measured: every dataset to the last bit).
    np.testing.assert_allclose(fit.params_.to_numpy(), exact, rtol=1e-15)
