"""Digits of accuracy on the NIST StRD linear least-squares datasets: ours vs statsmodels vs numpy lstsq.

    python benchmarks/ill_conditioned.py [--nist ../shared/reference-data/nist]

For every `*.dat` file, the model its header states (straight line, polynomial, no intercept, or
Longley's six predictors) is fitted by `keras_models.statistical.LinearRegression`, by statsmodels'
`OLS(...).fit()` (its default pseudo-inverse) and by `numpy.linalg.lstsq`. Digits of accuracy are
`-log10(max relative error)` over the coefficients (and standard errors) against:

- the certified values in the file header (exact for the decimal data; float64 cannot hold the data
  exactly, which caps any float64 method on the hardest sets);
- the exact solution of the float64 data, computed with mpmath at 60 digits.

Capped at 15.9 digits (float64 rounding). A synthetic degree-10 polynomial with a condition number
near 1e15 is included, with the mpmath reference only.
"""

from __future__ import annotations

import argparse
import re
import warnings
from pathlib import Path

import mpmath
import numpy as np

DEFAULT_NIST = Path(__file__).resolve().parents[2] / "shared" / "reference-data" / "nist"


def read_nist(path):
    """(y, predictor columns, certified params, certified std devs, has intercept) of one NIST file."""
    lines = path.read_text().splitlines()
    data_start = next(int(m.group(1)) for line in lines[:20]
                      if (m := re.search(r"Data\s+\(lines\s+(\d+)\s+to", line)))
    certified = {}
    for line in lines[:data_start]:
        parts = line.split()
        if len(parts) == 3 and re.fullmatch(r"B\d+", parts[0]):
            certified[int(parts[0][1:])] = (float(parts[1]), float(parts[2]))
    data = np.array([[float(v) for v in line.split()] for line in lines[data_start - 1:] if line.strip()])
    y, predictors = data[:, 0], data[:, 1:]
    indices = sorted(certified)
    intercept = indices[0] == 0
    count = len(indices)
    if predictors.shape[1] == 1 and count - int(intercept) > 1:  # a polynomial in x
        predictors = np.vander(predictors[:, 0], count - int(intercept) + 1, increasing=True)[:, 1:]
    beta = np.array([certified[k][0] for k in indices])
    bse = np.array([certified[k][1] for k in indices])
    return y, predictors, beta, bse, intercept


def exact_float64_solution(design, y, digits=60):
    with mpmath.workdps(digits):
        X = mpmath.matrix([[mpmath.mpf(float(v)) for v in row] for row in design])
        Y = mpmath.matrix([mpmath.mpf(float(v)) for v in y])
        inverse = (X.T * X) ** -1
        beta = inverse * (X.T * Y)
        resid = Y - X * beta
        scale = sum(r ** 2 for r in resid) / (len(y) - design.shape[1])
        bse = [mpmath.sqrt(scale * inverse[j, j]) for j in range(design.shape[1])]
        return np.array([float(b) for b in beta]), np.array([float(s) for s in bse])


def digits(ours, reference, *, exact_fit=False):
    ours, reference = np.asarray(ours, float), np.asarray(reference, float)
    if not np.all(np.isfinite(ours)):
        return 0.0
    if exact_fit:  # zero residuals (Wampler1): the standard errors are zero up to rounding
        reference = np.zeros_like(reference)
    mask = reference != 0
    if not mask.any():  # an exact fit: compare absolute errors
        return float(min(15.9, -np.log10(max(np.max(np.abs(ours)), 1e-16))))
    error = np.max(np.abs(ours[mask] - reference[mask]) / np.abs(reference[mask]))
    return float(np.clip(-np.log10(max(error, 1e-16)), 0.0, 15.9))


def fits(y, predictors, intercept):
    import statsmodels.api as sm

    from keras_models.statistical import LinearRegression

    design = np.column_stack([np.ones(len(y)), predictors]) if intercept else predictors
    ours = LinearRegression(fit_intercept=intercept).fit(predictors, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = sm.OLS(y, design).fit()
    lstsq = np.linalg.lstsq(design, y, rcond=None)[0]
    return design, {
        "keras_models": (ours.params_.to_numpy(), ours.bse_.to_numpy()),
        "statsmodels": (np.asarray(reference.params), np.asarray(reference.bse)),
        "numpy lstsq": (lstsq, None),
    }, ours


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nist", default=str(DEFAULT_NIST))
    args = parser.parse_args()
    folder = Path(args.nist)
    files = sorted(folder.glob("*.dat"))
    if not files:
        raise SystemExit(f"No NIST .dat files in {folder}; pass --nist.")

    print("| dataset | cond(X) | ours coef / se vs certified | statsmodels coef / se vs certified | "
          "lstsq coef vs certified | ours coef / se vs exact float64 | statsmodels coef vs exact float64 |")
    print("|---|---|---|---|---|---|---|")
    for path in files:
        y, predictors, beta, bse, intercept = read_nist(path)
        design, results, ours = fits(y, predictors, intercept)
        exact_beta, exact_bse = exact_float64_solution(design, y)
        cell = lambda name: (f"{digits(results[name][0], beta):.1f} / {digits(results[name][1], bse):.1f}"
                             if results[name][1] is not None else f"{digits(results[name][0], beta):.1f}")
        print(f"| {path.stem} | {np.linalg.cond(design):.1e} | {cell('keras_models')} | {cell('statsmodels')} | "
              f"{cell('numpy lstsq')} | {digits(results['keras_models'][0], exact_beta):.1f} / "
              f"{digits(results['keras_models'][1], exact_bse, exact_fit=not np.any(bse)):.1f} | "
              f"{digits(results['statsmodels'][0], exact_beta):.1f} |")

    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(-8.0, -3.0, size=36))
    y = 0.9 + 0.02 * np.sin(1.3 * x) + rng.normal(0, 3e-3, size=36)
    predictors = np.vander(x, 11, increasing=True)[:, 1:]
    design, results, _ = fits(y, predictors, True)
    exact_beta, exact_bse = exact_float64_solution(design, y)
    print(f"| synthetic degree 10, x in [-8, -3] | {np.linalg.cond(design):.1e} | n/a | n/a | n/a | "
          f"{digits(results['keras_models'][0], exact_beta):.1f} / {digits(results['keras_models'][1], exact_bse):.1f} | "
          f"{digits(results['statsmodels'][0], exact_beta):.1f} |")


if __name__ == "__main__":
    main()
