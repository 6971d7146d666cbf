"""Decision trees, random forests and support vector machines.

scikit-learn trains them; `compile_sklearn` (or an estimator's `to_keras()`) turns the fitted model into
a Keras model of plain tensor ops that exports to builtin-op TFLite and to ONNX with the same
predictions. `linear_svm` and `rff_svm` are SVMs trained in Keras itself, with XLA.
"""

from keras_models.classical.builders import decision_tree, random_forest, svm
from keras_models.classical.compile_svm import KernelExpansion, OneVsOneVotes
from keras_models.classical.compile_trees import STRATEGIES, TreeEnsemble, choose_strategy, float32_thresholds
from keras_models.classical.compiler import SUPPORTED_ESTIMATORS, compile_sklearn, tree_strategy
from keras_models.classical.estimators import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    SVMClassifier,
    SVMRegressor,
)
from keras_models.classical.explain import decision_rules, feature_importances, plot_tree
from keras_models.classical.kernel_models import MulticlassHinge, RandomFourierFeatures, linear_svm, rff_svm

__all__ = [
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "KernelExpansion",
    "MulticlassHinge",
    "OneVsOneVotes",
    "RandomFourierFeatures",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "STRATEGIES",
    "SUPPORTED_ESTIMATORS",
    "SVMClassifier",
    "SVMRegressor",
    "TreeEnsemble",
    "choose_strategy",
    "compile_sklearn",
    "decision_rules",
    "decision_tree",
    "feature_importances",
    "float32_thresholds",
    "linear_svm",
    "plot_tree",
    "random_forest",
    "rff_svm",
    "svm",
    "tree_strategy",
]
