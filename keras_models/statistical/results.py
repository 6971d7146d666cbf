"""What every fitted statistical estimator shares: parameter tables and statsmodels-rendered reports.

The numbers are computed once, in `fit`, and kept; `summary()` only lays them out in statsmodels'
`Summary` tables, which render as text, HTML (`as_html()`) and CSV (`as_csv()`).
"""

from __future__ import annotations

import time
import types

import numpy as np
import pandas as pd
import scipy.stats
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError


class SingularDesignError(ValueError):
    """The design matrix does not have full column rank; the message names the collinear columns."""


class PerfectSeparationError(ValueError):
    """A linear combination of the regressors predicts the outcome perfectly; the MLE does not exist."""


class ConvergenceWarning(UserWarning):
    """Newton's method stopped before the convergence tolerance was reached."""


def parameter_inference(params, bse, *, df_resid=None, alpha=0.05):
    """t or z statistics, two-sided p-values and confidence bounds; t when `df_resid` is given."""
    statistic = params / bse
    if df_resid is None:
        pvalues = 2.0 * scipy.stats.norm.sf(np.abs(statistic))
        quantile = scipy.stats.norm.ppf(1.0 - alpha / 2.0)
    else:
        pvalues = 2.0 * scipy.stats.t.sf(np.abs(statistic), df_resid)
        quantile = scipy.stats.t.ppf(1.0 - alpha / 2.0, df_resid)
    return statistic, pvalues, params - quantile * bse, params + quantile * bse


class StatisticalEstimator(BaseEstimator):
    """Base of the estimators: fitted checks, confidence intervals and the statsmodels report."""

    _title = ""
    _use_t = False

    def _check_fitted(self):
        if not hasattr(self, "params_"):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit first.")

    def _df_for_t(self):
        return self.df_resid_ if self._use_t else None

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Confidence intervals of the parameters, columns `[lower, upper]` (z or t as in the table)."""
        self._check_fitted()
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1); got alpha={alpha!r}.")
        params, bse = np.asarray(self.params_), np.asarray(self.bse_)
        _, _, lower, upper = parameter_inference(params, bse, df_resid=self._df_for_t(), alpha=alpha)
        if params.ndim == 1:
            return pd.DataFrame({"lower": lower, "upper": upper}, index=self.params_.index)
        frames = {col: pd.DataFrame({"lower": lower[:, k], "upper": upper[:, k]}, index=self.params_.index)
                  for k, col in enumerate(self.params_.columns)}
        return pd.concat(frames, names=["equation", "term"])

    # -- the report ---------------------------------------------------------------------------------

    def _report_rows(self):  # (top_left, top_right) lists of (label, [text]) for statsmodels' table
        raise NotImplementedError

    def summary(self, alpha: float = 0.05):
        """The statsmodels `Summary` of this fit (print it, or call `as_html()` / `as_csv()`)."""
        self._check_fitted()
        from statsmodels.iolib.summary import Summary

        cache = self.__dict__.setdefault("_summary_cache", {})
        if alpha in cache:
            return cache[alpha]
        top_left, top_right = self._report_rows()
        names = list(self.params_.index)
        shim = _ResultsShim(self, alpha)
        report = Summary()
        report.add_table_2cols(shim, gleft=top_left, gright=top_right, yname=self.y_name_, xname=names,
                               title=self._summary_title())
        yname = list(self.params_.columns) if np.ndim(self.params_) == 2 else self.y_name_
        report.add_table_params(shim, yname=yname, xname=names, alpha=alpha, use_t=self._use_t)
        for table in self._extra_tables(shim):
            report.tables.append(table)
        notes = self._notes()
        if notes:
            report.add_extra_txt(["Notes:", *notes])
        cache[alpha] = report
        return report

    def _summary_title(self):
        return self._title

    def _extra_tables(self, shim):
        return []

    def _notes(self):
        return []

    def _fit_time(self):
        now = time.localtime()
        return [time.strftime("%a, %d %b %Y", now)], [time.strftime("%H:%M:%S", now)]


class _ResultsShim:
    """The attributes statsmodels' table builders read, filled with our cached numbers."""

    def __init__(self, estimator, alpha):
        params = np.asarray(estimator.params_)
        bse = np.asarray(estimator.bse_)
        statistic, pvalues, lower, upper = parameter_inference(
            params, bse, df_resid=estimator._df_for_t(), alpha=alpha
        )
        self.params, self.bse, self.tvalues, self.pvalues = params, bse, statistic, pvalues
        self._conf = np.stack([lower, upper], axis=-1)  # (p, 2) or (p, k, 2)
        self.model = types.SimpleNamespace(
            endog_names=estimator.y_name_, exog_names=list(estimator.params_.index)
        )
        self.nobs = estimator.nobs_
        self.df_model = estimator.df_model_
        self.df_resid = estimator.df_resid_
        self.llf = estimator.llf_

    def conf_int(self, alpha=0.05):
        if self._conf.ndim == 2:
            return self._conf
        return self._conf.transpose(1, 0, 2)  # (equations, p, 2), as statsmodels' 2-D tables read it


def linear_predictor_model(coef, intercept, *, activation, input_names, name):
    """A Keras model computing `activation(x @ coef + intercept)` with frozen float32 weights.

    Args:
        coef: (features, outputs) coefficients on the user's columns.
        intercept: (outputs,) intercepts (zeros when the model has none).
        activation: `"linear"` (OLS) or `"softmax"` (logistic; binary models use logits `[0, z]`).
        input_names: the feature names, kept in the model's config for users reading it back.
        name: the model name and the prefix of its layer names.
    """
    import keras

    coef = np.asarray(coef, dtype=np.float64)
    inputs = keras.Input(shape=(coef.shape[0],), name=name + "_features")  # (batch, features)
    dense = keras.layers.Dense(coef.shape[1], activation=activation, name=name + "_linear")
    outputs = dense(inputs)  # (batch, outputs)
    dense.set_weights([coef.astype(np.float32), np.asarray(intercept, dtype=np.float32)])
    model = keras.Model(inputs, outputs, name=name)
    model.feature_names = list(input_names)
    return model
