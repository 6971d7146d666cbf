"""Fit OLS and Logit on bundled scikit-learn data, print statsmodels-style reports, save diagnostic
plots, and export both models to TFLite and ONNX checked in their runtimes.

    python examples/regression_report.py [--output DIR]
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes

import export
from keras_models.statistical import LinearRegression, LogisticRegression


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="regression_report_output")
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(exist_ok=True)

    # Diabetes progression against body-mass index, blood pressure and sex, as a formula.
    diabetes = load_diabetes(as_frame=True).frame
    diabetes["sex"] = np.where(diabetes["sex"] > 0, "male", "female")
    ols = LinearRegression.from_formula("target ~ bmi + bp + C(sex)", diabetes)
    print(ols.summary())
    (out / "ols_summary.html").write_text(ols.summary().as_html())
    for name, (path, _) in ols.plot_diagnostics(out / "ols").items():
        print(f"{name} plot: {path}")

    # Malignant vs benign from five standardized tumour measurements.
    bunch = load_breast_cancer(as_frame=True)
    columns = ["mean radius", "mean texture", "mean smoothness", "mean concave points", "mean fractal dimension"]
    X = bunch.data[columns]
    X = (X - X.mean()) / X.std()
    X.columns = [c.replace(" ", "_") for c in columns]
    y = pd.Series(bunch.target, name="benign")
    logit = LogisticRegression().fit(X, y)
    print(logit.summary())
    (out / "logit_summary.csv").write_text(logit.summary().as_csv())
    for name, (path, data) in logit.plot_diagnostics(X, y, out / "logit").items():
        print(f"{name} plot: {path}" + (f" (AUC {data['auc']:.3f})" if "auc" in data else ""))

    # Export: the Keras models compute predict / predict_proba and run in LiteRT and onnxruntime.
    ols_inputs = ols.design_.X[:, 1:].astype(np.float32)
    for estimator, inputs, stem in ((ols, ols_inputs, "ols"), (logit, X.to_numpy(np.float32), "logit")):
        model = estimator.to_keras()
        for writer, suffix in ((export.to_tflite, "tflite"), (export.to_onnx, "onnx")):
            report = writer(model, out / f"{stem}.{suffix}")
            result = export.verify(model, report.path, inputs)
            print(f"{report.path}: {result}")


if __name__ == "__main__":
    main()
