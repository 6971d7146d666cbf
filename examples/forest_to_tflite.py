"""Train a random forest with scikit-learn, compile it to Keras, ship it as TFLite and ONNX, and check
that every file predicts exactly what scikit-learn predicts; then explain one prediction.

    python examples/forest_to_tflite.py [--output DIR]
"""

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

import export
from keras_models.classical import (
    RandomForestClassifier,
    decision_rules,
    feature_importances,
    plot_tree,
    tree_strategy,
)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="forest_output")
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(exist_ok=True)

    data = load_breast_cancer()
    x, y = data.data.astype(np.float32), data.target
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:420], order[420:]
    forest = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0).fit(x[train], y[train])
    print("held-out accuracy:", forest.score(x[test], y[test]))

    model = forest.to_keras(name="breast_cancer_forest")
    print("tree form chosen by depth:", tree_strategy(model))
    expected = forest.predict_proba(x[test])
    for report in (export.to_tflite(model, out / "forest.tflite"), export.to_onnx(model, out / "forest.onnx")):
        print(report)
        probabilities = export.run_artifact(report.path, x[test])[0]
        same = np.mean(probabilities.argmax(1) == forest.predict(x[test]))
        print(f"  same class as scikit-learn: {same:.0%}, "
              f"max |probability difference|: {np.abs(probabilities - expected).max():.2g}")

    names = dict(feature_names=data.feature_names, class_names=data.target_names)
    print("tree 0 on the first held-out sample:", decision_rules(forest, x[test[0]], tree=0, **names))
    print("top features:", feature_importances(forest, feature_names=data.feature_names)[:5])
    print("plot:", plot_tree(forest, out / "tree0.png", tree=0, max_depth=3, **names))


if __name__ == "__main__":
    main()
