"""`compile_sklearn`: a fitted scikit-learn tree, forest or SVM as a Keras model of plain tensor ops.

    >>> forest = sklearn.ensemble.RandomForestClassifier(n_estimators=100, max_depth=10).fit(x, y)
    >>> model = compile_sklearn(forest)          # model(x) equals forest.predict_proba(x)
    >>> tree_strategy(model)                     # "perfect": the form chosen by tree shape
    >>> export.to_tflite(model, "forest.tflite")  # builtin ops only
"""

from __future__ import annotations

import keras
import numpy as np

from keras_models.classical.compile_svm import KERNELS, KernelExpansion, OneVsOneVotes, pairwise_coefficients
from keras_models.classical.compile_trees import STRATEGIES, TreeEnsemble, pack_trees, tree_arrays

SUPPORTED_ESTIMATORS = (
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ExtraTreeClassifier",
    "ExtraTreeRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "SVC",
    "SVR",
    "LinearSVC",
)
_SINGLE_TREES = SUPPORTED_ESTIMATORS[:4]
_FORESTS = SUPPORTED_ESTIMATORS[4:8]
OUTPUTS = ("auto", "votes", "decision_function")


def _sklearn_estimator(estimator):
    """The scikit-learn estimator inside one of our wrappers, or `estimator` itself, checked."""
    from sklearn.utils.validation import check_is_fitted

    from keras_models.classical.estimators import _Wrapped

    if isinstance(estimator, _Wrapped):
        check_is_fitted(estimator, "estimator_")  # our wrapper, not fitted yet: sklearn's NotFittedError
        estimator = estimator.estimator_
    kind = type(estimator).__name__
    if kind not in SUPPORTED_ESTIMATORS or not type(estimator).__module__.startswith("sklearn"):
        raise TypeError(
            f"compile_sklearn does not support {type(estimator).__module__}.{kind}; supported "
            f"scikit-learn estimators: {', '.join(SUPPORTED_ESTIMATORS)}."
        )
    kernel = getattr(estimator, "kernel", None)
    if kind in ("SVC", "SVR") and (callable(kernel) or kernel not in KERNELS):
        # before check_is_fitted and n_features_in_, which a callable kernel's fit does not set
        raise ValueError(f"{kind} with kernel={kernel!r} cannot be compiled; supported kernels: {KERNELS}.")
    check_is_fitted(estimator)  # raises sklearn's NotFittedError with its own message
    return estimator


def _default_name(kind: str) -> str:
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(kind)).replace(
        "s_v_c", "svc"
    ).replace("s_v_r", "svr")


def compile_sklearn(estimator, *, strategy: str = "auto", output: str = "auto", name: str | None = None):
    """Turns a fitted scikit-learn estimator into a Keras model of plain tensor operations.

    Trees and forests: the output equals `predict_proba` (classifiers) or `predict` (regressors, shape
    `(batch, n_outputs)`), to float32 rounding of the leaf values; the branches taken are exactly
    scikit-learn's, missing values included.

    SVMs: with `output="votes"` (the default for `SVC` and `LinearSVC`), `argmax` of the output is the
    index of `predict` in `classes_`. `output="decision_function"` gives `decision_function` as the
    estimator is configured (`decision_function_shape` of `SVC`; binary models give `(batch, 1)`). `SVR`
    gives `predict` as `(batch, 1)`.

    Args:
        estimator: a fitted estimator of `SUPPORTED_ESTIMATORS`, or a keras-models wrapper of one.
        strategy: for trees, `"auto"` (by depth, see `compile_trees.choose_strategy`), `"matmul"`,
            `"perfect"` or `"gather"`. Ignored for SVMs.
        output: `"auto"`, `"votes"` or `"decision_function"` (SVMs only).
        name: the model name and prefix of its layer names; the estimator's name in snake case by
            default.

    Returns:
        A `keras.Model` taking float32 `(batch, n_features_in_)`. For trees, `tree_strategy(model)` tells
        the form used.

    Raises:
        TypeError: an unsupported estimator (the message lists the supported ones).
        sklearn.exceptions.NotFittedError: the estimator is not fitted.
        ValueError: a bad `strategy` or `output`, a multi-output classifier, a precomputed or callable
            kernel.
    """
    estimator = _sklearn_estimator(estimator)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got strategy={strategy!r}.")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}; got output={output!r}.")
    kind = type(estimator).__name__
    name = name or _default_name(kind)
    n_features = int(estimator.n_features_in_)
    inputs = keras.Input(shape=(n_features,), name=name + "_input")
    if kind in _SINGLE_TREES or kind in _FORESTS:
        if output not in ("auto",):
            raise ValueError(f"output={output!r} applies to SVMs only; trees and forests take output='auto'.")
        outputs = _tree_outputs(estimator, kind, inputs, strategy, name)
    else:
        outputs = _svm_outputs(estimator, kind, inputs, output, name)
    model = keras.Model(inputs, outputs, name=name)
    return model


def tree_strategy(model: keras.Model) -> str:
    """The tree form (`"matmul"`, `"perfect"` or `"gather"`) of a model made by `compile_sklearn`."""
    for layer in model.layers:
        if isinstance(layer, TreeEnsemble):
            return layer.strategy
    raise ValueError(f"Model {model.name!r} has no TreeEnsemble layer; it was not compiled from trees.")


def _tree_outputs(estimator, kind, inputs, strategy, name):
    classifier = kind.endswith("Classifier")
    if classifier and getattr(estimator, "n_outputs_", 1) != 1:
        raise ValueError(f"Multi-output classifiers are not supported; {kind} has n_outputs_={estimator.n_outputs_}.")
    members = estimator.estimators_ if kind in _FORESTS else [estimator]
    trees = [tree_arrays(member.tree_, classifier=classifier) for member in members]
    arrays, sizes = pack_trees(trees, strategy)
    layer = TreeEnsemble(
        strategy=sizes["strategy"],
        n_features=int(estimator.n_features_in_),
        n_trees=sizes["n_trees"],
        nodes=int(sizes["nodes"]),
        depth=max(int(sizes["depth"]), 1),
        n_outputs=int(sizes["n_outputs"]),
        leaves=sizes.get("leaves"),
        divisor=float(len(trees)),
        name=f"{name}_{sizes['strategy']}_trees",
    )
    layer.set_trees(arrays)
    return layer(inputs)


def _svm_outputs(estimator, kind, inputs, output, name):
    n_features = int(estimator.n_features_in_)
    if kind == "LinearSVC":
        coef = np.asarray(estimator.coef_, np.float64)
        intercept = np.atleast_1d(np.asarray(estimator.intercept_, np.float64))
        binary = coef.shape[0] == 1
        if binary and output != "decision_function":
            # [-d, d]: argmax is 1 exactly when d > 0, as LinearSVC.predict
            coef, intercept = np.concatenate([-coef, coef]), np.concatenate([-intercept, intercept])
        layer = KernelExpansion("linear", n_features, n_features, coef.shape[0],
                                name=name + "_decision")
        # A linear model is the expansion over the identity "support vectors".
        layer.set_support(np.eye(n_features), coef.T, intercept)
        return layer(inputs)

    kernel = estimator.kernel  # one of KERNELS, checked by _sklearn_estimator
    support_vectors = estimator.support_vectors_
    if hasattr(support_vectors, "toarray"):
        support_vectors = support_vectors.toarray()
    params = dict(gamma=float(estimator._gamma), degree=int(estimator.degree), coef0=float(estimator.coef0))
    if kind == "SVR":
        if output not in ("auto", "decision_function"):
            raise ValueError(f"SVR gives its predictions; output={output!r} does not apply.")
        layer = KernelExpansion(kernel, n_features, len(support_vectors), 1, name=name + "_decision", **params)
        layer.set_support(support_vectors, estimator.dual_coef_.T, estimator.intercept_)
        return layer(inputs)

    n_classes = len(estimator.classes_)
    dual_coef = np.asarray(estimator.dual_coef_, np.float64)
    intercept = np.asarray(estimator.intercept_, np.float64)
    if n_classes == 2:  # scikit-learn flips the sign of LIBSVM's binary model in its public attributes
        dual_coef, intercept = -dual_coef, -intercept
    coefficients = pairwise_coefficients(dual_coef, estimator.n_support_)
    layer = KernelExpansion(kernel, n_features, len(support_vectors), coefficients.shape[1],
                            name=name + "_decision", **params)
    layer.set_support(support_vectors, coefficients, intercept)
    decision = layer(inputs)  # (batch, pairs), LIBSVM's signs
    ovr = estimator.decision_function_shape == "ovr" and n_classes > 2
    if output == "decision_function":
        if n_classes == 2:
            return keras.layers.Rescaling(-1.0, name=name + "_binary_decision")(decision)
        if ovr:
            return OneVsOneVotes(n_classes, scores="ovr", name=name + "_ovr")(decision)
        return decision
    if output == "auto" and ovr and estimator.break_ties:
        # predict is argmax of the ovr scores here, not the vote
        return OneVsOneVotes(n_classes, scores="ovr", name=name + "_ovr")(decision)
    return OneVsOneVotes(n_classes, scores="votes", name=name + "_votes")(decision)
