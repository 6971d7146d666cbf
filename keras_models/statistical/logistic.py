"""Logistic regression (binary Logit and multinomial MNLogit) by exact maximum likelihood.

Newton's method (IRLS): every iteration makes one float64 pass over the data (`_logit_passes`: NumPy and
BLAS over cache-sized chunks of rows, on two threads) that returns the log-likelihood, score `X^T (y - p)`
and information `X^T W X`; their sums give the Newton step. The data therefore never has to be in
memory at once: `LogisticRegression.fit_stream` reads a `tf.data` dataset or a directory of files batch
by batch on every pass, with memory bounded by one batch. The Dask Logit (`dask_fit`) runs the same pass
on each partition.

Fitting needs NumPy and SciPy only, under every Keras backend; `to_keras()` builds a Keras model.

Reference: D. R. Cox, "The regression analysis of binary sequences", JRSS B 20 (1958); P. McCullagh
and J. A. Nelder, "Generalized Linear Models" (1989), section 2.5 (IRLS).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.special
import scipy.stats

from keras_models.statistical import _design, _logit_passes, streaming
from keras_models.statistical._extended import dependent_columns
from keras_models.statistical.results import (
    ConvergenceWarning,
    PerfectSeparationError,
    SingularDesignError,
    StatisticalEstimator,
    linear_predictor_model,
    parameter_inference,
)

# --------------------------------------------------------------------------------------------------
# Newton's method over passes

_SAMPLE_EVERY = 32  # a large in-memory binary fit starts from the fit on every 32nd row ...
_SAMPLE_FROM_ROWS = 320_000  # ... from this many rows on (a sample of 10,000)


def _collinear_from_information(information, names):
    """Names of columns that make the (p, p) information matrix singular, or []."""
    values, vectors = np.linalg.eigh((information + information.T) / 2.0)
    root = np.sqrt(np.clip(values, 0, None))[:, None] * vectors.T  # root^T root == information
    # Eigenvalues are exact to eps * ||information||, so singular values of `root` to sqrt(eps).
    return dependent_columns(root, list(names), 1e-7)


def newton(newton_pass, beta0, names, *, max_iter, tol, verbose, zero_loglik=None):
    """Newton-Raphson on a concave log-likelihood whose sums come from `newton_pass(beta)`.

    With `zero_loglik` (the log-likelihood at beta = 0), a `beta0` whose log-likelihood is lower (a warm
    start that fits the data worse than zero does) is replaced by zero before the first step.

    Returns a dict with beta, loglik, information (at the last evaluated beta), iterations, converged and
    from_start (False when `beta0` was replaced by zero).
    """
    beta = np.asarray(beta0, dtype=np.float64)
    from_start = True
    progress = None
    if verbose:
        import keras

        progress = keras.utils.Progbar(None, unit_name="newton step")
    converged = False
    for iteration in range(1, max_iter + 1):
        loglik, score, information, worst, rows = newton_pass(beta)
        if iteration == 1 and zero_loglik is not None and loglik < zero_loglik:
            beta, from_start = np.zeros_like(beta), False
            loglik, score, information, worst, rows = newton_pass(beta)
        if iteration == 1:
            collinear = _collinear_from_information(information, names)
            if collinear:
                raise SingularDesignError(
                    f"The design is singular: column(s) {collinear} are linearly dependent (or all zero), "
                    "so the coefficients are not identified. Drop one of them."
                )
        if worst < 1e-10:
            raise PerfectSeparationError(
                "Perfect separation: the regressors predict every outcome exactly, so the maximum-"
                "likelihood estimate does not exist (coefficients go to infinity). Drop the separating "
                "variables, or use a penalized model."
            )
        try:
            factor = scipy.linalg.cho_factor(information)
            step = scipy.linalg.cho_solve(factor, score)
        except (np.linalg.LinAlgError, ValueError):
            step = np.linalg.lstsq(information, score, rcond=None)[0]
        beta = beta + step
        if progress is not None:
            progress.update(iteration, values=[("loglik", loglik), ("step", float(np.max(np.abs(step))))])
        if not np.all(np.isfinite(beta)):
            break
        if np.max(np.abs(step)) <= tol * (1.0 + np.max(np.abs(beta))):
            converged = True
            break
    # The statistics of the last pass were taken one step (< tol, so negligible) before `beta`.
    return dict(beta=beta, loglik=loglik, information=information, iterations=iteration,
                converged=converged, rows=rows, worst=worst, from_start=from_start)


# --------------------------------------------------------------------------------------------------
# Estimators


class _LogitBase(StatisticalEstimator):
    _use_t = False

    def __init__(self, *, fit_intercept=True, max_iter=35, tol=1e-10, batch_size=_logit_passes.CHUNK_ROWS,
                 verbose=False):
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.batch_size = batch_size
        self.verbose = verbose

    def _validate_params(self):
        if self.fit_intercept not in (True, False):
            raise ValueError(f"fit_intercept must be True or False; got fit_intercept={self.fit_intercept!r}.")
        if not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer; got max_iter={self.max_iter!r}.")
        if not (isinstance(self.tol, float) and 0.0 < self.tol < 1.0):
            raise ValueError(f"tol must be a float in (0, 1); got tol={self.tol!r}.")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got batch_size={self.batch_size!r}.")

    @classmethod
    def from_formula(cls, formula: str, data, **params):
        """Fits `formula` (patsy syntax, as statsmodels: `"y ~ x1 + C(group)"`) on `data`."""
        estimator = cls(**params)
        estimator._validate_params()
        y, y_name, design = _design.formula_design(formula, data)
        estimator._fit_in_memory(design, y, y_name)
        estimator.formula_ = formula
        return estimator

    def fit(self, X, y):
        """Fits by maximum likelihood (Newton's method, one float64 pass over the rows per iteration); returns self.

        Float64 features are used in place (other dtypes are converted once) and the intercept's column
        of ones is never stored; for data that does not fit in memory, use `fit_stream`.
        """
        self._validate_params()
        design = _design.build_design(X, fit_intercept=self.fit_intercept, implicit_intercept=True)
        y_values, y_name = self._target(y, len(design.X))
        self._fit_in_memory(design, y_values, y_name)
        self.formula_ = None
        return self

    def _features(self, X):
        self._check_fitted()
        return _design.prediction_features(self.design_, X)

    def _finish(self, result, names, design, y_name, nobs, llnull, n_equations):
        beta = result["beta"]
        information = result["information"]
        try:
            cov = np.linalg.inv(information)
        except np.linalg.LinAlgError as error:
            raise SingularDesignError(f"The information matrix is singular at the estimate ({error}).") from error
        cov = (cov + cov.T) / 2.0
        bse = np.sqrt(np.diag(cov))
        k_constant = 1 if (design.intercept_name or _design.constant_columns(design.X)) else 0
        p = len(names)
        df_model = float((p - k_constant) * n_equations)
        df_resid = float(nobs - p * n_equations)
        llf = result["loglik"]
        self.design_ = design
        self.y_name_ = y_name
        self.nobs_ = float(nobs)
        self.k_constant_, self.df_model_, self.df_resid_ = k_constant, df_model, df_resid
        self.llf_, self.llnull_ = llf, llnull
        self.llr_ = 2.0 * (llf - llnull)
        self.llr_pvalue_ = float(scipy.stats.chi2.sf(self.llr_, df_model))
        self.prsquared_ = 1.0 - llf / llnull
        self.aic_ = -2.0 * llf + 2.0 * (df_model + k_constant * n_equations)
        self.bic_ = -2.0 * llf + np.log(nobs) * (df_model + k_constant * n_equations)
        self.converged_ = bool(result["converged"])
        self.n_iter_ = int(result["iterations"])
        self._date = self._fit_time()
        self.__dict__.pop("_summary_cache", None)
        if not self.converged_:
            warnings.warn(
                f"Newton's method did not converge in {self.n_iter_} iterations (max_iter={self.max_iter}); "
                "the estimates may be unreliable (quasi-separation or a badly scaled design). "
                "converged_ is False and the report says so.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return beta, cov, bse

    def _report_rows(self):
        date, clock = self._date
        top_left = [
            ("Dep. Variable:", [self.y_name_]),
            ("Model:", [self._model_name]),
            ("Method:", ["MLE"]),
            ("Date:", date),
            ("Time:", clock),
            ("converged:", [str(self.converged_)]),
            ("Covariance Type:", ["nonrobust"]),
        ]
        top_right = [
            ("No. Observations:", [f"{self.nobs_:.0f}"]),
            ("Df Residuals:", [f"{self.df_resid_:.0f}"]),
            ("Df Model:", [f"{self.df_model_:.0f}"]),
            ("Pseudo R-squ.:", [f"{self.prsquared_:#6.4g}"]),
            ("Log-Likelihood:", [f"{self.llf_:#8.5g}"]),
            ("LL-Null:", [f"{self.llnull_:#8.5g}"]),
            ("LLR p-value:", [f"{self.llr_pvalue_:#6.4g}"]),
        ]
        return top_left, top_right

    def _notes(self):
        start = f", started from the fit on 1 row in {_SAMPLE_EVERY}" if getattr(self, "_sample_start", False) else ""
        notes = [f"Maximum likelihood by Newton's method (float64 passes), {self.n_iter_} iterations{start}."]
        if not self.converged_:
            notes.append("WARNING: the fit did not converge; do not trust these numbers.")
        return notes


class LogisticRegression(_LogitBase):
    """Binary logistic regression (statsmodels' Logit) by exact maximum likelihood.

    Args:
        fit_intercept: prepend a constant column named `const`.
        max_iter: the most Newton iterations (statsmodels' default, 35).
        tol: stop when the largest Newton step is below `tol * (1 + max |beta|)`.
        batch_size: rows per chunk of a Newton pass; the default keeps a chunk in the processor's cache. Memory
            beyond the data is a few chunks, about `batch_size * p * 32` bytes.
        verbose: show a Keras progress bar of the Newton iterations.

    Attributes (after `fit`): `params_`, `bse_`, `tvalues_` (z), `pvalues_` (Series by term);
    `cov_params_`, `llf_`, `llnull_`, `llr_`, `llr_pvalue_`, `prsquared_`, `aic_`, `bic_`,
    `converged_`, `n_iter_`, `nobs_`, `classes_` ([0, 1]).

    Raises from `fit`: ValueError for NaN/inf (column and row named), non-binary y, mismatched
    lengths or strings; SingularDesignError for collinear columns (named); PerfectSeparationError
    when the regressors predict y exactly (the MLE does not exist).

    Fitting and predicting need NumPy and SciPy only, under every Keras backend.
    """

    _title = "Logit Regression Results"
    _model_name = "Logit"

    @staticmethod
    def _target(y, n_rows):
        values, name = _design.as_target(y, n_rows)
        bad = np.flatnonzero((values != 0) & (values != 1))
        if bad.size:
            raise ValueError(
                f"y must be binary (0 or 1) for Logit; row {int(bad[0])} has {values[bad[0]]:g} "
                f"(values seen: {np.unique(values)[:10].tolist()}). Use MultinomialLogisticRegression "
                "for more than two classes."
            )
        if np.all(values == values[0]):
            raise PerfectSeparationError(f"y has a single class ({values[0]:g}); Logit needs both 0 and 1.")
        return values, name

    def _fit_in_memory(self, design, y, y_name):
        batches = [(design.X, y)]
        totals = (float(y.sum()), float(len(y)))
        self._fit_batches(lambda: batches, design, y_name, lambda: totals, start=self._sample_fit(design, y))

    def _passes(self, batches, design):
        """Newton's `newton_pass(beta)`: the binary Logit's sums over the `(X, y)` batches of `batches()`."""
        return lambda beta: _logit_passes.newton_pass(batches(), _logit_passes.binary_statistics, beta,
                                                      constant=design.implicit_intercept, chunk_rows=self.batch_size)

    def _sample_fit(self, design, y):
        """Coefficients fitted on every `_SAMPLE_EVERY`-th row, for Newton on all rows to start from; or None.

        Newton's convergence is quadratic: from the sample's estimate (off by about its standard
        errors) it takes 4 passes over all the rows to the same stopping rule that takes 6 from zero, and
        the sample costs about 5 passes over 1/32 of the rows. The estimate is the same maximum of the
        same likelihood. Below `_SAMPLE_FROM_ROWS` rows, or when the sample is separated, singular or
        does not converge, Newton starts from zero.
        """
        if len(y) < _SAMPLE_FROM_ROWS:
            return None
        sample = [(np.ascontiguousarray(design.X[::_SAMPLE_EVERY]), y[::_SAMPLE_EVERY])]
        try:
            result = newton(self._passes(lambda: sample, design), np.zeros(len(design.names)), design.names,
                            max_iter=self.max_iter, tol=1e-4, verbose=False)
        except (PerfectSeparationError, SingularDesignError):
            return None
        return result["beta"] if result["converged"] and np.all(np.isfinite(result["beta"])) else None

    def _fit_batches(self, batches, design, y_name, totals, start=None):
        """Newton over the `(X, y)` batches of `batches()`, from `start` (or zero); `totals()` gives
        (positives, rows) after the passes."""
        names = design.names
        # Every binary Logit has log-likelihood -rows * log(2) at zero: a start that does worse is dropped.
        zero_loglik = None if start is None else -totals()[1] * np.log(2.0)
        result = newton(self._passes(batches, design), np.zeros(len(names)) if start is None else start, names,
                        max_iter=self.max_iter, tol=self.tol, verbose=self.verbose, zero_loglik=zero_loglik)
        self._sample_start = start is not None and result["from_start"]
        positives, nobs = totals()
        mean = positives / nobs
        if mean in (0.0, 1.0):
            raise PerfectSeparationError(f"y has a single class ({mean:g}); Logit needs both 0 and 1.")
        llnull = nobs * (mean * np.log(mean) + (1.0 - mean) * np.log(1.0 - mean))
        beta, cov, bse = self._finish(result, names, design, y_name, nobs, llnull, 1)
        statistic, pvalues, _, _ = parameter_inference(beta, bse)
        self.params_ = pd.Series(beta, index=names, name="coef")
        self.bse_ = pd.Series(bse, index=names, name="std err")
        self.tvalues_ = pd.Series(statistic, index=names, name="z")
        self.pvalues_ = pd.Series(pvalues, index=names, name="P>|z|")
        self.cov_params_ = pd.DataFrame(cov, index=names, columns=names)
        self.classes_ = np.array([0, 1])

    def fit_stream(self, source, *, target: str = "y", y_name: str | None = None):
        """Fits on data read batch by batch (file by file) on every Newton pass; memory stays bounded.

        Args:
            source: a `tf.data.Dataset` yielding `(x, y)` batches, a directory (or file list) of `.npz`
                files with arrays `X`, `y`, or of `.csv` files with a header and a `target` column.
            target: the y column of CSV files.
            y_name: the dependent variable's name in the report (default `target`).
        """
        self._validate_params()
        first = next(streaming.checked_batches(source, target=target))
        feature_names = list(first[2])
        names = (["const"] if self.fit_intercept else []) + feature_names
        counts = {"positives": 0.0, "rows": 0.0}

        def batches():
            counts["positives"], counts["rows"] = 0.0, 0.0
            for X, y, _ in streaming.checked_batches(source, target=target):
                counts["positives"] += float(y.sum())
                counts["rows"] += len(y)
                yield X, y

        intercept = "const" if self.fit_intercept else None
        design = _design.Design(first[0][:64], names, feature_names, intercept, implicit_intercept=self.fit_intercept)
        # Every pass reads the same rows; the counts are those of the last pass.
        self._fit_batches(batches, design, y_name or target, lambda: (counts["positives"], counts["rows"]))
        self.formula_ = None
        return self

    def _coef_and_intercept(self):
        design = self.design_
        coef = self.params_[design.feature_names].to_numpy()
        intercept = float(self.params_[design.intercept_name]) if design.intercept_name else 0.0
        return coef, intercept

    def decision_function(self, X):
        """The linear predictor (log-odds), (n,)."""
        coef, intercept = self._coef_and_intercept()
        return self._features(X) @ coef + intercept

    def predict_proba(self, X):
        """Probabilities `[P(y=0), P(y=1)]`, (n, 2)."""
        p = scipy.special.expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X, threshold: float = 0.5):
        """Class labels 0/1: 1 where P(y=1) > threshold."""
        return (self.predict_proba(X)[:, 1] > threshold).astype(np.int64)

    def to_keras(self, name: str = "logistic_regression"):
        """A Keras model (features -> (batch, 2) probabilities) equal to `predict_proba` in float32.

        It is a Dense layer with logits `[0, x @ coef + intercept]` and a softmax, which is exactly
        `[1 - sigmoid(z), sigmoid(z)]` and exports to TFLite and ONNX as builtin ops.
        """
        self._check_fitted()
        coef, intercept = self._coef_and_intercept()
        kernel = np.column_stack([np.zeros_like(coef), coef])
        return linear_predictor_model(kernel, [0.0, intercept], activation="softmax",
                                      input_names=self.design_.feature_names, name=name)

    def plot_diagnostics(self, X, y, path_prefix):
        """Writes `<prefix>_roc.png` and `<prefix>_calibration.png` for data (X, y); returns the data."""
        from keras_models.statistical import plots

        values, _ = _design.as_target(y, len(X))
        scores = self.predict_proba(X)[:, 1]
        return {
            "roc": plots.roc(values, scores, f"{path_prefix}_roc.png"),
            "calibration": plots.calibration(values, scores, f"{path_prefix}_calibration.png"),
        }


class MultinomialLogisticRegression(_LogitBase):
    """Multinomial logistic regression (statsmodels' MNLogit); the first class is the reference.

    `params_` is a DataFrame (terms x non-reference classes), columns named `"<y>=<class>"`;
    `predict_proba` gives (n, classes) probabilities in `classes_` order. Other attributes as
    `LogisticRegression`.
    """

    _title = "MNLogit Regression Results"
    _model_name = "MNLogit"

    def _target(self, y, n_rows):
        if isinstance(y, pd.DataFrame):
            y = y.iloc[:, 0]
        name = str(y.name) if isinstance(y, pd.Series) and y.name is not None else "y"
        values = np.asarray(y)
        if values.ndim != 1:
            raise ValueError(f"y must be 1-D; got shape {values.shape}.")
        if len(values) != n_rows:
            raise ValueError(f"X has {n_rows} rows but y has {len(values)}; they must match.")
        if values.dtype.kind == "f":
            _design.check_finite(values[:, None], [name], "y")
        classes = np.unique(values)
        if len(classes) < 2:
            raise PerfectSeparationError(f"y has a single class ({classes[0]!r}); a Logit needs two or more.")
        return (values, classes), name

    def fit(self, X, y):
        return super().fit(X, y)

    def _fit_in_memory(self, design, y, y_name):
        if not isinstance(y, tuple):  # from a formula: numeric codes
            y = (y, np.unique(y))
            if len(y[1]) < 2:
                raise PerfectSeparationError("y has a single class; a Logit needs two or more.")
        values, classes = y
        codes = np.searchsorted(classes, values)
        J = len(classes) - 1
        Y = np.eye(len(classes))[codes][:, 1:]  # (n, J)
        names = design.names
        p = len(names)
        batches = [(design.X, Y)]

        def newton_pass(beta):
            loglik, score, information, worst, rows = _logit_passes.newton_pass(
                batches, _logit_passes.multinomial_statistics, beta.reshape(J, p),
                constant=design.implicit_intercept, chunk_rows=self.batch_size)
            return loglik, score.reshape(-1), information.reshape(J * p, J * p), worst, rows

        flat_names = [f"{k}:{n}" for k in range(J) for n in names]
        result = newton(newton_pass, np.zeros(J * p), flat_names, max_iter=self.max_iter, tol=self.tol,
                        verbose=self.verbose)
        frequencies = np.bincount(codes, minlength=len(classes)) / len(codes)
        llnull = float(len(codes) * np.sum(frequencies * np.log(frequencies)))
        beta, cov, bse = self._finish(result, names, design, y_name, len(codes), llnull, J)
        labels = [f"{y_name}={c}" for c in classes[1:]]
        self.classes_ = classes
        self.params_ = pd.DataFrame(beta.reshape(J, p).T, index=names, columns=labels)
        self.bse_ = pd.DataFrame(bse.reshape(J, p).T, index=names, columns=labels)
        statistic, pvalues, _, _ = parameter_inference(self.params_.to_numpy(), self.bse_.to_numpy())
        self.tvalues_ = pd.DataFrame(statistic, index=names, columns=labels)
        self.pvalues_ = pd.DataFrame(pvalues, index=names, columns=labels)
        index = pd.MultiIndex.from_product([labels, names])
        self.cov_params_ = pd.DataFrame(cov, index=index, columns=index)

    def _kernel(self):
        design = self.design_
        coef = self.params_.loc[design.feature_names].to_numpy()  # (features, J)
        intercept = (self.params_.loc[design.intercept_name].to_numpy() if design.intercept_name
                     else np.zeros(coef.shape[1]))
        return (np.column_stack([np.zeros(len(coef)), coef]), np.concatenate([[0.0], intercept]))

    def predict_proba(self, X):
        """Class probabilities (n, classes) in `classes_` order."""
        kernel, bias = self._kernel()
        logits = self._features(X) @ kernel + bias
        return scipy.special.softmax(logits, axis=1)

    def predict(self, X):
        """The most probable class label."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def to_keras(self, name: str = "multinomial_logistic_regression"):
        """A Keras model (features -> (batch, classes) probabilities) equal to `predict_proba`."""
        self._check_fitted()
        kernel, bias = self._kernel()
        return linear_predictor_model(kernel, bias, activation="softmax",
                                      input_names=self.design_.feature_names, name=name)

