"""Explanations of fitted trees, forests and linear SVMs: decision rules, tree plots, feature importances.

    >>> print(decision_rules(tree, iris.data[0], feature_names=iris.feature_names,
    ...                      class_names=iris.target_names))
    petal length (cm) <= 2.45 -> class setosa
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_models.files import atomic_write


def _unwrap(estimator):
    from sklearn.utils.validation import check_is_fitted

    inner = getattr(estimator, "estimator_", None)
    if inner is not None and type(estimator).__module__.startswith("keras_models"):
        estimator = inner
    check_is_fitted(estimator)
    return estimator


def _one_tree(estimator, tree: int):
    """The single fitted tree of `estimator`, or tree number `tree` of a forest."""
    estimator = _unwrap(estimator)
    if hasattr(estimator, "estimators_") and hasattr(estimator.estimators_[0], "tree_"):
        count = len(estimator.estimators_)
        if not isinstance(tree, (int, np.integer)) or not 0 <= tree < count:
            raise ValueError(f"tree must be in [0, {count}); got tree={tree!r}.")
        return estimator, estimator.estimators_[tree]
    if not hasattr(estimator, "tree_"):
        raise TypeError(
            f"{type(estimator).__name__} is not a decision tree or forest; decision rules and tree plots "
            "need one."
        )
    if tree != 0:
        raise ValueError(f"A single tree has only tree=0; got tree={tree!r}.")
    return estimator, estimator


def _names(estimator, feature_names, n_features):
    if feature_names is None:
        feature_names = getattr(estimator, "feature_names_in_", None)
    if feature_names is None:
        return [f"x[{i}]" for i in range(n_features)]
    feature_names = [str(n) for n in feature_names]
    if len(feature_names) != n_features:
        raise ValueError(f"feature_names has {len(feature_names)} names; the model has {n_features} features.")
    return feature_names


def decision_rules(estimator, x, *, feature_names=None, class_names=None, tree: int = 0) -> str:
    """The conditions one sample meets from the root to its leaf, and what the leaf predicts.

    Comparisons are made as scikit-learn makes them (the feature in float32 against the threshold), so
    the path is the one `predict` takes; a missing value (NaN) follows the node's missing-value branch.

    Args:
        estimator: a fitted decision tree or forest (scikit-learn's or ours).
        x: one sample, `(n_features,)`.
        feature_names: names for the features; the fitted `feature_names_in_` or `x[i]` by default.
        class_names: names for the classes; `classes_` by default.
        tree: which tree of a forest.

    Returns:
        One line, e.g. `"petal length (cm) > 2.45 and petal width (cm) <= 1.75 -> class versicolor"`.
        A forest's tree predicts the class of the largest leaf fraction.
    """
    owner, model = _one_tree(estimator, tree)
    tree_ = model.tree_
    n_features = int(owner.n_features_in_)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or len(x) != n_features:
        raise ValueError(f"x must be one sample of shape ({n_features},); got shape {x.shape}.")
    names = _names(owner, feature_names, n_features)
    x32 = x.astype(np.float32)
    missing_left = getattr(tree_, "missing_go_to_left", np.ones(tree_.node_count, bool))
    conditions, node = [], 0
    while tree_.children_left[node] >= 0:
        feature, threshold = tree_.feature[node], tree_.threshold[node]
        value = x32[feature]
        if np.isnan(value):
            go_left = bool(missing_left[node])
            conditions.append(f"{names[feature]} is missing")
        else:
            go_left = float(value) <= threshold
            conditions.append(f"{names[feature]} {'<=' if go_left else '>'} {threshold:.4g}")
        node = tree_.children_left[node] if go_left else tree_.children_right[node]
    leaf = tree_.value[node]
    if hasattr(owner, "classes_"):
        classes = owner.classes_ if class_names is None else list(class_names)
        if len(classes) != len(owner.classes_):
            raise ValueError(f"class_names has {len(classes)} names; the model has {len(owner.classes_)} classes.")
        outcome = f"class {classes[int(np.argmax(leaf[0]))]}"
    else:
        outcome = "value " + ", ".join(f"{v:.4g}" for v in leaf[:, 0])
    return " and ".join(conditions or ["always"]) + " -> " + outcome


def plot_tree(estimator, path, *, feature_names=None, class_names=None, tree: int = 0, max_depth=None,
              dpi: int = 100) -> Path:
    """Draws a tree (or tree `tree` of a forest) to a PNG file, written atomically.

    Args:
        estimator: a fitted decision tree or forest.
        path: the `.png` file to write; its folder must exist.
        feature_names, class_names: labels, as for `decision_rules`.
        tree: which tree of a forest.
        max_depth: draw only this many levels (deep trees are unreadable in full).
        dpi: resolution.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from sklearn import tree as sklearn_tree

    owner, model = _one_tree(estimator, tree)
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plot_tree writes PNG files; got path={str(path)!r}.")
    if not path.parent.is_dir():
        raise ValueError(f"Folder {str(path.parent)!r} for {str(path)!r} does not exist.")
    names = _names(owner, feature_names, int(owner.n_features_in_))
    classes = None
    if hasattr(owner, "classes_"):
        classes = [str(c) for c in (owner.classes_ if class_names is None else class_names)]
    shown = model.get_depth() if max_depth is None else min(max_depth, model.get_depth())
    figure = plt.figure(figsize=(max(6, 2.2 * 2 ** min(shown, 5)), max(4, 2.0 * (shown + 1))))
    try:
        sklearn_tree.plot_tree(model, feature_names=names, class_names=classes, filled=True,
                               max_depth=max_depth, ax=figure.gca(), fontsize=8)
        with atomic_write(path) as tmp:
            figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path


def feature_importances(estimator, *, feature_names=None) -> list[tuple[str, float]]:
    """`(feature name, importance)` pairs, most important first, summing to 1.

    Trees and forests give their impurity-based importances (`feature_importances_`: the weighted
    impurity decrease of the splits on each feature). Linear SVMs (`LinearSVC`, `SVC(kernel="linear")`)
    give the mean absolute coefficient over classes, normalized; scale the inputs first for these to be
    comparable. Kernel SVMs have no per-feature weights: use `sklearn.inspection.permutation_importance`.
    """
    estimator = _unwrap(estimator)
    if hasattr(estimator, "feature_importances_"):
        importances = np.asarray(estimator.feature_importances_, np.float64)
    elif getattr(estimator, "kernel", "linear") == "linear" and hasattr(estimator, "coef_"):
        coef = estimator.coef_
        coef = coef.toarray() if hasattr(coef, "toarray") else np.asarray(coef)
        importances = np.abs(coef).mean(axis=0)
        total = importances.sum()
        importances = importances / total if total > 0 else importances
    else:
        raise TypeError(
            f"{type(estimator).__name__} with kernel={getattr(estimator, 'kernel', None)!r} has no feature "
            "importances; use sklearn.inspection.permutation_importance."
        )
    names = _names(estimator, feature_names, len(importances))
    order = np.argsort(-importances, kind="stable")
    return [(names[i], float(importances[i])) for i in order]
