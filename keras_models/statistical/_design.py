"""Turning user data (numpy arrays, pandas frames, formulas) into checked float64 design matrices."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd


@dataclasses.dataclass
class Design:
    """A checked design matrix with its term names.

    `feature_names` are the user's columns (the inputs of `predict` and `to_keras()`); `names` add the
    intercept when there is one. `formula` and `design_info` are set for models built from a formula.
    With `implicit_intercept`, X holds only the features and the intercept's column of ones is left out:
    the Logit passes add it chunk by chunk, so that fitting never copies the data to prepend it.
    """

    X: np.ndarray  # (n, p) float64, intercept column first when present (and not implicit)
    names: list
    feature_names: list
    intercept_name: str | None
    design_info: object = None  # the formula engine's description of the columns, to rebuild them
    implicit_intercept: bool = False  # X lacks the column of ones of `intercept_name`


def _column_names(X, prefix="x"):
    if isinstance(X, pd.DataFrame):
        return [str(c) for c in X.columns]
    if isinstance(X, pd.Series):
        return [str(X.name) if X.name is not None else prefix + "1"]
    width = 1 if np.ndim(X) == 1 else np.shape(X)[1]
    return [f"{prefix}{j + 1}" for j in range(width)]


def _row_labels(X):
    return list(X.index) if isinstance(X, (pd.DataFrame, pd.Series)) else None


def check_finite(values, names, what, row_labels=None):
    """Raises ValueError naming the first column and row holding NaN or infinity."""
    if np.isfinite(np.sum(values)):  # one read of the data: NaN and infinity make the sum non-finite
        return
    bad = ~np.isfinite(values)  # a non-finite sum may also be an overflow of finite values
    if bad.any():
        rows, cols = np.nonzero(bad.reshape(len(values), -1))
        order = np.lexsort((cols, rows))  # first row, then its first column
        row, col = int(rows[order[0]]), int(cols[order[0]])
        value = values.reshape(len(values), -1)[row, col]
        label = "" if row_labels is None or row_labels[row] == row else f" (index label {row_labels[row]!r})"
        kind = "NaN" if np.isnan(value) else "infinity"
        raise ValueError(
            f"{what} contains {kind} in column {names[col]!r} at row {row}{label}; "
            f"{int(bad.sum())} non-finite value(s) in all. Drop or impute them before fitting."
        )


def as_features(X, *, what="X", expected_names=None):
    """X as a float64 (n, p) array and its column names; refuses strings, NaN and infinity."""
    if X is None:
        raise ValueError(f"{what} is None; pass an array or a DataFrame.")
    names = _column_names(X)
    row_labels = _row_labels(X)
    if isinstance(X, pd.DataFrame) and expected_names is not None:
        missing = [n for n in expected_names if n not in names]
        if missing:
            raise ValueError(f"{what} is missing column(s) {missing}; the model was fitted on {expected_names}.")
        X, names = X[list(expected_names)], list(expected_names)
    if isinstance(X, (pd.DataFrame, pd.Series)):
        frame = X.to_frame() if isinstance(X, pd.Series) else X
        text = [str(c) for c, dtype in zip(frame.columns, frame.dtypes) if not (
            pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))]
        if text:
            raise ValueError(
                f"{what} has non-numeric column(s) {text}; encode them, or use from_formula with "
                f"C({text[0]}) to make dummy variables."
            )
        values = frame.to_numpy(dtype=np.float64)
    else:
        array = np.asarray(X)
        if array.dtype.kind in "OUSV":
            try:
                array = array.astype(np.float64)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"{what} holds strings or objects (dtype {array.dtype}); encode them as numbers, or use "
                    "from_formula with a DataFrame."
                ) from error
        if array.dtype.kind == "c":
            raise ValueError(f"{what} is complex (dtype {array.dtype}); real numbers only.")
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2:
            raise ValueError(f"{what} must be 2-D (samples, features); got shape {array.shape}.")
        values = np.asarray(array, dtype=np.float64)
    if values.shape[0] == 0:
        raise ValueError(f"{what} has no rows.")
    if expected_names is not None and values.shape[1] != len(expected_names):
        raise ValueError(
            f"{what} has {values.shape[1]} column(s); the model was fitted on {len(expected_names)}: "
            f"{expected_names}."
        )
    check_finite(values, names, what, row_labels)
    return values, names


def as_target(y, n_rows, *, what="y"):
    """y as a 1-D float64 array of length `n_rows`, and its name."""
    if y is None:
        raise ValueError(f"{what} is None.")
    name = "y"
    if isinstance(y, pd.DataFrame):
        if y.shape[1] != 1:
            raise ValueError(f"{what} must have one column; got {y.shape[1]}.")
        name, y = str(y.columns[0]), y.iloc[:, 0]
    if isinstance(y, pd.Series):
        name = str(y.name) if y.name is not None else name
        if not (pd.api.types.is_numeric_dtype(y.dtype) or pd.api.types.is_bool_dtype(y.dtype)):
            raise ValueError(f"{what} must be numeric; got dtype {y.dtype}.")
    values = np.asarray(y)
    if values.dtype.kind in "OUSV":
        raise ValueError(f"{what} must be numeric; got dtype {values.dtype}.")
    values = values.astype(np.float64)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"{what} must be 1-D; got shape {values.shape}.")
    if len(values) != n_rows:
        raise ValueError(f"X has {n_rows} rows but {what} has {len(values)}; they must match.")
    check_finite(values[:, None], [name], what)
    return values, name


def constant_columns(X):
    """Indices of columns that are constant and non-zero (an explicit intercept)."""
    if len(X) == 0:
        return []
    return [j for j in range(X.shape[1]) if np.all(X[:, j] == X[0, j]) and X[0, j] != 0]


def build_design(X, *, fit_intercept, expected_names=None, what="X", implicit_intercept=False):
    """The design matrix for arrays and frames: `const` prepended when `fit_intercept`.

    With `implicit_intercept`, the `const` column is named but not stored (see `Design`): X is the
    checked features as they are, without a copy when they are already float64.
    """
    values, names = as_features(X, what=what, expected_names=expected_names)
    if fit_intercept:
        if "const" in names:
            raise ValueError("X already has a column named 'const'; rename it or pass fit_intercept=False.")
        if not implicit_intercept:
            values = np.column_stack([np.ones(len(values)), values])
        return Design(values, ["const", *names], names, "const", implicit_intercept=implicit_intercept)
    return Design(values, names, names, None)


# --------------------------------------------------------------------------------------------------
# Formulas


def formula_design(formula, data):
    """(y, y name, Design) from a formula like "y ~ x1 + C(group)" with patsy, as statsmodels does."""
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(f"formula must be a string like 'y ~ x1 + x2'; got formula={formula!r}.")
    if not isinstance(data, (pd.DataFrame, dict)):
        raise ValueError(f"data must be a pandas DataFrame or a dict of columns; got {type(data).__name__}.")
    import patsy

    frame = pd.DataFrame(data)
    try:
        y_frame, x_frame = patsy.dmatrices(formula, frame, return_type="dataframe", NA_action="raise")
    except patsy.PatsyError as error:
        raise ValueError(f"Cannot build the design of formula {formula!r}: {error}") from error
    if y_frame.shape[1] != 1:
        raise ValueError(
            f"The left side of {formula!r} must be one numeric column; it gave {list(y_frame.columns)}."
        )
    names = [str(c) for c in x_frame.columns]
    values = x_frame.to_numpy(dtype=np.float64)
    check_finite(values, names, "the design of " + repr(formula), list(x_frame.index))
    y, y_name = as_target(y_frame.iloc[:, 0], len(values))
    intercept = "Intercept" if "Intercept" in names else None
    features = [n for n in names if n != intercept]
    design = Design(values, names, features, intercept, design_info=x_frame.design_info)
    return y, str(y_frame.columns[0]), design


def formula_features(design_info, data, feature_names):
    """The feature columns (no intercept) of new `data` through a fitted formula's design."""
    import patsy

    try:
        (frame,) = patsy.build_design_matrices([design_info], pd.DataFrame(data), return_type="dataframe",
                                               NA_action="raise")
    except patsy.PatsyError as error:
        raise ValueError(f"Cannot build the design for new data: {error}") from error
    values = frame[list(feature_names)].to_numpy(dtype=np.float64)
    check_finite(values, list(feature_names), "data")
    return values


def prediction_features(design, X):
    """The feature matrix for predicting with a fitted `design` on new `X` (arrays, frames or formula data).

    Formula designs rebuild their columns from raw data; others check the column count (and names, for
    DataFrames) against what the model was fitted on.
    """
    if design.design_info is not None and isinstance(X, (pd.DataFrame, dict)) and not (
        isinstance(X, pd.DataFrame) and list(X.columns) == design.feature_names
    ):
        return formula_features(design.design_info, X, design.feature_names)
    expected = design.feature_names
    values, _ = as_features(X, expected_names=expected if isinstance(X, pd.DataFrame) else None)
    if values.shape[1] != len(expected):
        raise ValueError(f"X has {values.shape[1]} column(s); the model was fitted on {len(expected)}: {expected}.")
    return values
