"""Diagnostic plots saved as PNG: residuals vs fitted and normal Q-Q (OLS), ROC and calibration (Logit).

Every function returns `(path, data)`: `data` holds the plotted arrays, which are the model's own
numbers, so callers (and tests) can check what was drawn. Files are written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_models.files import atomic_write


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(5.0, 4.0), dpi=100)


def _save(figure, path):
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"Plots are written as PNG; got path={str(path)!r}.")
    if not path.parent.is_dir():
        raise ValueError(f"Folder {str(path.parent)!r} for plot {str(path)!r} does not exist.")
    with atomic_write(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def residuals_vs_fitted(model, path):
    """Residuals against fitted values of a fitted `LinearRegression`, with the zero line."""
    fitted, resid = np.asarray(model.fittedvalues_), np.asarray(model.resid_)
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot(fitted, resid, "o", markersize=3, alpha=0.7, label="residuals")
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set(xlabel="fitted values", ylabel="residuals", title="Residuals vs fitted")
    return _save(figure, path), {"fitted": fitted, "resid": resid, "axes": axes}


def normal_qq(model, path):
    """Normal Q-Q plot of the internally studentized residuals of a fitted `LinearRegression`."""
    import scipy.stats

    resid = np.asarray(model.wresid_) / np.sqrt(model.scale_)
    sample = np.sort(resid)
    n = len(sample)
    theoretical = scipy.stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot(theoretical, sample, "o", markersize=3, label="residuals")
    limits = [theoretical[0], theoretical[-1]]
    axes.plot(limits, limits, color="red", linewidth=0.8, label="y = x")
    axes.set(xlabel="theoretical quantiles", ylabel="standardized residuals", title="Normal Q-Q")
    return _save(figure, path), {"theoretical": theoretical, "sample": sample, "axes": axes}


def roc(y_true, scores, path):
    """ROC curve of binary labels against predicted probabilities; data holds fpr, tpr and auc."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y_true, scores)
    auc = float(roc_auc_score(y_true, scores))
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot(fpr, tpr, label=f"AUC = {auc:.3f}")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
    axes.legend(loc="lower right")
    return _save(figure, path), {"fpr": fpr, "tpr": tpr, "auc": auc, "axes": axes}


def calibration(y_true, scores, path, *, bins: int = 10):
    """Observed frequency against mean predicted probability in equal-width bins."""
    if not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2; got bins={bins!r}.")
    y_true, scores = np.asarray(y_true, dtype=float), np.asarray(scores, dtype=float)
    index = np.minimum((scores * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    used = counts > 0
    mean_predicted = np.bincount(index, weights=scores, minlength=bins)[used] / counts[used]
    observed = np.bincount(index, weights=y_true, minlength=bins)[used] / counts[used]
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot(mean_predicted, observed, "o-", label="model")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="perfect calibration")
    axes.set(xlabel="mean predicted probability", ylabel="observed frequency", title="Calibration",
             xlim=(0, 1), ylim=(0, 1))
    axes.legend(loc="upper left")
    return _save(figure, path), {"mean_predicted": mean_predicted, "observed": observed,
                                 "counts": counts[used], "axes": axes}
