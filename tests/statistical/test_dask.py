"""OLS and Logit on Dask collections, on a local two-process Dask cluster: the one-machine numbers and tables.

Tolerances: the one-machine fits are exact to about 1e-15 relative (OLS, refined in double-double) or
stop one Newton step (< 1e-10) past a quadratically convergent iterate (Logit), so a fit over partitions,
which differs only in the order of float64 sums, must agree to a few hundred eps (1e-13); statsmodels
is held to the tolerances the one-machine tests use for it (its Logit stops at its own convergence
tolerance, and its OLS uses a pseudo-inverse).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.base import clone

from keras_models.statistical import (
    DaskLinearRegression,
    DaskLogisticRegression,
    LinearRegression,
    LogisticRegression,
    PerfectSeparationError,
    SingularDesignError,
)

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

DATA = Path(__file__).resolve().parents[1] / "data"  # provenance: tests/data/README.md
ADULT = Path(__file__).resolve().parents[3] / "shared" / "reference-data" / "adult.data"  # optional, not shipped
TIGHT = 1e-13


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as cluster, distributed.Client(cluster) as dask_client:
        yield dask_client


def _partitioned(frame, cuts):
    """A Dask DataFrame whose partitions are frame's rows [cuts[k], cuts[k + 1]) (empty ones allowed)."""
    pieces = [frame.iloc[start:stop] for start, stop in zip(cuts[:-1], cuts[1:])]
    return dd.from_delayed([dask.delayed(piece) for piece in pieces], meta=frame.iloc[:0], verify_meta=False)


def _table_lines(result, drop=("Date:", "Time:")):
    return [line for line in str(result.summary()).splitlines() if line.strip() and not line.startswith(drop)]


def _rel(ours, reference):
    ours, reference = np.asarray(ours, dtype=float), np.asarray(reference, dtype=float)
    error = np.abs(ours - reference) / np.maximum(np.abs(reference), np.finfo(float).tiny)
    return float(np.max(np.where(ours == reference, 0.0, error)))  # p-values that are 0.0 in both


def _assert_same_logit(ours, reference):
    for name in ("params_", "bse_", "tvalues_", "llf_", "llnull_", "prsquared_", "aic_", "bic_"):
        assert _rel(getattr(ours, name), getattr(reference, name)) < TIGHT, name
    # A normal tail p(z) ~ exp(-z^2 / 2) turns a relative error e of z into about z^2 e.
    assert _rel(ours.pvalues_, reference.pvalues_) < TIGHT * max(1.0, float(np.max(reference.tvalues_**2)))
    scale = np.sqrt(np.outer(np.diag(reference.cov_params_), np.diag(reference.cov_params_)))
    assert np.max(np.abs(ours.cov_params_ - reference.cov_params_).to_numpy() / scale) < TIGHT  # as correlations
    assert ours.nobs_ == reference.nobs_ and ours.df_resid_ == reference.df_resid_
    assert ours.df_model_ == reference.df_model_ and ours.converged_
    # The whole table but the date, time and the note on how it was computed.
    assert _table_lines(ours, ("Date:", "Time:", "Maximum likelihood")) == \
        _table_lines(reference, ("Date:", "Time:", "Maximum likelihood"))


def _assert_same_ols(ours, reference):
    for name in ("params_", "bse_", "tvalues_", "pvalues_", "ssr_", "rsquared_", "rsquared_adj_", "fvalue_", "llf_",
                 "aic_", "bic_"):
        assert _rel(getattr(ours, name), getattr(reference, name)) < TIGHT, name
    # The smallest singular value is known to eps times the largest: Cond. No. to eps * Cond. No.
    assert _rel(ours.condition_number_, reference.condition_number_) < 8 * np.finfo(float).eps * \
        reference.condition_number_
    for name, value in reference._diagnostics.items():
        assert _rel(ours._diagnostics[name], value) < 1e-12, name  # moments of residuals ~1e-3 of y
    assert ours.nobs_ == reference.nobs_ and ours.df_model_ == reference.df_model_
    # Refinement sweeps may differ by one (another rounding path to the same fixed point): note [2].
    assert _table_lines(ours, ("Date:", "Time:", "[2]")) == _table_lines(reference, ("Date:", "Time:", "[2]"))


# -- Logit ------------------------------------------------------------------------------------------


def test_logit_on_uneven_dataframe_partitions_matches_one_machine_and_statsmodels(client, regression_frame):
    features = ["x1", "x2", "x3"]
    frame = regression_frame[[*features, "outcome"]]
    data = _partitioned(frame, [0, 13, 13, 70, 71, 120])  # one empty partition, one of a single row
    ours = DaskLogisticRegression().fit(data, "outcome", columns=features)
    _assert_same_logit(ours, LogisticRegression().fit(frame[features], frame.outcome))
    reference = sm.Logit(frame.outcome, sm.add_constant(frame[features])).fit(disp=0)
    for name in ("params", "bse", "llf", "llnull", "llr"):
        assert _rel(getattr(ours, name + "_"), getattr(reference, name)) < 1e-8, name
    reference_lines = _table_lines(reference)
    assert _table_lines(ours)[: len(reference_lines)] == reference_lines
    assert ours.partitions_ == 5 and len(ours.pass_seconds_) == ours.n_iter_
    assert "each a float64 pass over 5 Dask partitions" in str(ours.summary())


def test_logit_on_dask_arrays_and_a_series_target(client):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(900, 4))
    y = (rng.uniform(size=900) < 1 / (1 + np.exp(-(X @ [0.9, -0.6, 0.3, 0.0] + 0.2)))).astype(float)
    chunks = (200, 0, 333, 367)
    ours = DaskLogisticRegression(persist=False).fit(da.from_array(X, chunks=(chunks, 2)),
                                                     da.from_array(y, chunks=(chunks,)))
    one = LogisticRegression().fit(X, y)
    _assert_same_logit(ours, one)
    assert list(ours.params_.index) == ["const", "x1", "x2", "x3", "x4"]
    np.testing.assert_allclose(ours.predict_proba(X), one.predict_proba(X), rtol=TIGHT)
    frame = dd.from_pandas(pd.DataFrame(X, columns=list("abcd")).assign(event=y), npartitions=3)
    from_series = DaskLogisticRegression().fit(frame[list("abcd")], frame["event"])
    assert list(from_series.params_.index) == ["const", "a", "b", "c", "d"] and from_series.y_name_ == "event"
    assert _rel(from_series.params_, one.params_) < TIGHT


def test_spector_logit_matches_stata_and_one_machine(client):
    reference = json.loads((DATA / "spector_logit_reference.json").read_text())
    frame = pd.DataFrame(reference["data"]["values"])
    features = ["GPA", "TUCE", "PSI"]
    ours = DaskLogisticRegression().fit(_partitioned(frame, [0, 5, 5, 20, 32]), "GRADE", columns=features)
    _assert_same_logit(ours, LogisticRegression().fit(frame[features], frame.GRADE))
    expected = reference["reference"]
    order = ["GPA", "TUCE", "PSI", "const"]  # Stata's order; Stata's tolerance limits it to ~7 digits
    np.testing.assert_allclose(ours.params_[order], expected["params"], rtol=1e-6)
    np.testing.assert_allclose(ours.bse_[order], expected["bse"], rtol=1e-6)
    np.testing.assert_allclose([ours.llf_, ours.llnull_], [expected["llf"], expected["llnull"]], rtol=2e-7)


@pytest.mark.skipif(not ADULT.is_file(), reason="UCI Adult is not shipped; it is read from ../shared when present")
def test_adult_income_logit_matches_statsmodels(client):
    names = ["age", "workclass", "fnlwgt", "education", "education_num", "marital", "occupation",
             "relationship", "race", "sex", "capital_gain", "capital_loss", "hours", "country", "income"]
    frame = pd.read_csv(ADULT, header=None, names=names, skipinitialspace=True)
    frame = frame.assign(high=(frame.income == ">50K").astype(float), male=(frame.sex == "Male").astype(float),
                         gain=frame.capital_gain / 1000.0)
    features = ["age", "education_num", "hours", "male", "gain"]
    data = dd.from_pandas(frame[[*features, "high"]], npartitions=7)
    ours = DaskLogisticRegression().fit(data, "high", columns=features)
    assert ours.nobs_ == 32561
    _assert_same_logit(ours, LogisticRegression().fit(frame[features], frame.high))
    reference = sm.Logit(frame.high, sm.add_constant(frame[features])).fit(disp=0)
    np.testing.assert_allclose(ours.params_, reference.params, rtol=1e-8)
    np.testing.assert_allclose(ours.bse_, reference.bse, rtol=1e-8)


# -- OLS --------------------------------------------------------------------------------------------


def test_ols_on_uneven_dataframe_partitions_matches_one_machine_and_statsmodels(client, regression_frame):
    features = ["x1", "x2", "x3"]
    frame = regression_frame[[*features, "y"]]
    ours = DaskLinearRegression().fit(_partitioned(frame, [0, 2, 2, 64, 120]), "y", columns=features)
    _assert_same_ols(ours, LinearRegression().fit(frame[features], frame.y))
    reference = sm.OLS(frame.y, sm.add_constant(frame[features])).fit()
    for name in ("params", "bse", "ssr", "rsquared", "fvalue", "llf"):
        assert _rel(getattr(ours, name + "_"), getattr(reference, name)) < 1e-10, name
    assert _rel(ours._diagnostics["durbin_watson"], sm.stats.durbin_watson(reference.resid)) < 1e-10
    ours_lines, reference_lines = _table_lines(ours, ("Date:", "Time:", "[2]", "Notes")), \
        _table_lines(reference, ("Date:", "Time:", "[2]", "Notes"))
    assert ours_lines[:27] == reference_lines[:27]  # the whole table, up to statsmodels' own notes
    fitted = ours.fittedvalues_.compute()
    np.testing.assert_allclose(fitted.to_numpy(), reference.fittedvalues.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.resid_.compute().to_numpy(), reference.resid.to_numpy(), atol=1e-12)


def _read_nist(name):
    lines = (DATA / "nist" / f"{name}.dat").read_text().splitlines()
    return np.array([[float(v) for v in line.split()] for line in lines[60:] if line.strip()])


def test_nist_filip_over_partitions_keeps_the_one_machine_digits(client):
    data = _read_nist("Filip")  # degree-10 polynomial, condition number ~1e15
    y, powers = data[:, 0], np.vander(data[:, 1], 11, increasing=True)[:, 1:]
    chunks = (20, 0, 30, 32)  # the partitions have more and fewer rows than the 11 parameters
    ours = DaskLinearRegression().fit(da.from_array(powers, chunks=(chunks, 4)), da.from_array(y, chunks=(chunks,)))
    one = LinearRegression().fit(powers, y)  # 15 digits of the exact float64 solution (test_ill_conditioned)
    assert ours.refinement_sweeps_ >= 2 and ours.scaled_condition_number_ > 1e9
    assert _rel(ours.params_, one.params_) < 1e-14 and _rel(ours.bse_, one.bse_) < 1e-14
    assert _rel(ours.ssr_, one.ssr_) < 1e-14
    # Without the refinement (TSQR alone) the digits are gone, as for the one-machine QR.
    plain = DaskLinearRegression(refine=False).fit(da.from_array(powers, chunks=(chunks, 11)),
                                                   da.from_array(y, chunks=(chunks,)))
    assert plain.refinement_sweeps_ == 0 and _rel(plain.params_, one.params_) > 1e-10
    assert _table_lines(ours, ("Date:", "Time:", "[2]")) == _table_lines(one, ("Date:", "Time:", "[2]"))


def test_nist_longley_from_a_dataframe(client):
    data = _read_nist("Longley")
    columns = ["gnp_deflator", "gnp", "unemployed", "armed_forces", "population", "year"]
    frame = pd.DataFrame(data[:, 1:], columns=columns).assign(employed=data[:, 0])
    ours = DaskLinearRegression().fit(dd.from_pandas(frame, npartitions=3), "employed")
    _assert_same_ols(ours, LinearRegression().fit(frame[columns], frame.employed))
    np.testing.assert_allclose(ours.predict(frame[columns]), ours.fittedvalues_.compute(), rtol=1e-12)


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", [DaskLinearRegression, DaskLogisticRegression])
def test_bad_input_is_named(client, regression_frame, estimator):
    frame = regression_frame[["x1", "x2", "x3", "group", "outcome"]]
    data = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(ValueError, match=r"X has no column\(s\) \['age'\]; its columns are"):
        estimator().fit(data, "outcome", columns=["x1", "age"])
    with pytest.raises(ValueError, match=r"y='target' is not a column of X"):
        estimator().fit(data, "target")
    with pytest.raises(ValueError, match=r"non-numeric column\(s\) \['group'\]"):
        estimator().fit(data, "outcome")
    with pytest.raises(ValueError, match=r"must be a Dask DataFrame or Dask Array; got DataFrame"):
        estimator().fit(frame, "outcome")
    with pytest.raises(ValueError, match=r"X has 120 rows but y has 119"):
        estimator().fit(da.from_array(frame[["x1"]].to_numpy()), da.from_array(frame.outcome.to_numpy()[1:]))
    holes = frame.drop(columns="group").copy()
    holes.loc[holes.index[63], "x2"] = np.nan  # row 3 of the third partition [60, 90)
    broken = _partitioned(holes, [0, 30, 60, 90, 120])
    with pytest.raises(ValueError, match=r"X in partition 2 contains NaN in column 'x2' at row 3 \(index label 63\)"):
        estimator().fit(broken, "outcome")
    collinear = frame.drop(columns="group").assign(x4=lambda f: f.x1 - 2 * f.x2)
    with pytest.raises(SingularDesignError, match=r"\['x1', 'x2', 'x4'\]"):
        estimator().fit(dd.from_pandas(collinear, npartitions=3), "outcome")


def test_logit_separation_and_targets_as_one_machine(client):
    x = np.linspace(-3, 3, 60)
    frame = pd.DataFrame({"x": x, "noise": np.cos(7 * x), "y": (x > 0.1).astype(float)})
    data = _partitioned(frame, [0, 25, 25, 60])
    with pytest.raises(PerfectSeparationError, match="Perfect separation") as ours:
        DaskLogisticRegression().fit(data, "y")
    with pytest.raises(PerfectSeparationError) as one:
        LogisticRegression().fit(frame[["x", "noise"]], frame.y)
    assert str(ours.value) == str(one.value)
    with pytest.raises(PerfectSeparationError, match=r"y has a single class \(1\)"):
        DaskLogisticRegression().fit(dd.from_pandas(frame.assign(y=1.0), npartitions=2), "y")
    with pytest.raises(ValueError, match=r"y must be binary \(0 or 1\) for Logit; row 2 of partition 1 has 2"):
        DaskLogisticRegression().fit(_partitioned(frame.assign(y=np.where(np.arange(60) == 27, 2.0, frame.y)),
                                                  [0, 25, 60]), "y")
    with pytest.raises(ValueError, match=r"persist must be True or False; got persist='yes'"):
        DaskLogisticRegression(persist="yes").fit(data, "y")


# -- estimator behaviour ----------------------------------------------------------------------------


def test_params_clone_and_lazy_predict(client, regression_frame):
    model = DaskLogisticRegression(max_iter=20, tol=1e-9, persist=False)
    assert clone(model).get_params() == dict(fit_intercept=True, max_iter=20, tol=1e-9, persist=False,
                                             verbose=False)
    frame = regression_frame[["x1", "x2", "y"]]
    data = dd.from_pandas(frame, npartitions=4)
    ols = DaskLinearRegression(fit_intercept=False).fit(data, "y")
    assert list(ols.params_.index) == ["x1", "x2"] and ols.k_constant_ == 0
    np.testing.assert_allclose(ols.predict(data).compute().to_numpy(), ols.predict(frame[["x1", "x2"]]), rtol=1e-13)
    np.testing.assert_allclose(ols.params_, LinearRegression(fit_intercept=False).fit(frame[["x1", "x2"]], frame.y)
                               .params_, rtol=TIGHT)


def test_workers_run_without_importing_the_library(client, regression_frame):
    DaskLogisticRegression().fit(dd.from_pandas(regression_frame[["x1", "outcome"]], npartitions=2), "outcome")
    loaded = client.run(lambda: sorted({m.split(".")[0] for m in sys.modules} & {"keras_models", "keras",
                                                                                  "tensorflow"}))
    assert len(loaded) == 2 and all(modules == [] for modules in loaded.values())


def test_importing_the_library_does_not_import_dask():
    script = ("import sys, keras_models.statistical; "
              "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed'}))")
    done = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, KERAS_BACKEND="jax"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
