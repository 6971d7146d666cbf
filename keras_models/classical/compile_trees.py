"""Fitted scikit-learn trees and forests as plain tensor operations.

A tree is evaluated in one of three forms; `strategy="auto"` picks perfect, or gather for trees too deep
to pad (`choose_strategy`):

* ``"matmul"``: the matrix-multiply form of Nakandala et al., "A Tensor Compiler for Unified Machine
  Learning Prediction Serving" (OSDI 2020). Every split is evaluated at once, a ``(splits, leaves)``
  path matrix picks the one leaf whose ancestors all agree. Work grows with splits x leaves; measured,
  it is slower than the perfect form even for shallow trees, so it is chosen only by name.
* ``"perfect"``: every tree is padded to a perfect binary tree of depth ``D``; the node index of the
  next level is ``2 * i + 1`` (left) or ``2 * i + 2`` (right), so a traversal is ``D`` rounds of
  gathers from fixed-size arrays, the child computed (or, under XLA, read from a constant table). The
  padding splits below a shallow leaf send every row left, and every padded leaf below it holds its
  value, so even a row sent the other way (an input of +inf, where TFLite has clamped the padding's
  +inf threshold to the largest float32) reaches the right value. Memory grows with ``2 ** D``, so it
  suits shallow and medium depths.
* ``"gather"``: the node arrays as scikit-learn stores them, leaves pointing at themselves; a traversal
  is ``max_depth`` rounds of gathers. Memory grows with the number of nodes only: deep trees.

Exactness. scikit-learn casts ``X`` to float32 and tests ``x32 <= threshold64``. For a float32 ``x`` that
comparison equals ``x <= t32`` where ``t32`` is the largest float32 not above ``threshold64``
(`float32_thresholds`), so the graphs compare in float32 and take the same branch as scikit-learn on
every input, including inputs on or one ulp around a threshold. A missing value (NaN) goes where the
node's ``missing_go_to_left`` flag sends it, as in scikit-learn >= 1.3: each split reads a column of the
input with NaN already replaced by the lowest or the largest float32 (`split_columns`), so it is a
single comparison.

Speed. A traversal round is a few gathers per (row, tree). Off TensorFlow (JAX, PyTorch) the rounds run
tree-major, which XLA fuses into one loop per round over cache-resident node arrays; on TensorFlow,
whose graphs are the exported ones, row-major with batched gathers and, in the perfect form, children
by arithmetic, so the TFLite file has static shapes and three gathers and five elementwise builtin
operators per round (benchmarks/forest_latency.py).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from keras_models.checks import check_features

STRATEGIES = ("auto", "matmul", "perfect", "gather")

# The rule behind strategy="auto": the perfect-tree form while the padded arrays stay small, gathers
# beyond. benchmarks/forest_latency.py measured (one thread, 100 trees): as TFLite files, perfect is
# faster than matmul at every depth from 1 to 8 at batch 1 and at batch 10,000, and faster than gather at
# depth 10 at both batch sizes (also on JAX), so the batch size does not change the choice. matmul stays
# available by name (its work grows with splits x leaves).
PERFECT_MAX_DEPTH = 12
PERFECT_MAX_LEAVES = 1 << 22  # trees * 2**depth


def float32_thresholds(threshold):
    """The float32 thresholds `t32` with `x32 <= t32` exactly when `float64(x32) <= threshold`.

    That is the largest float32 not greater than each float64 threshold: rounding to nearest and
    stepping one ulp down where the rounding went up.
    """
    threshold = np.asarray(threshold, dtype=np.float64)
    with np.errstate(over="ignore"):  # beyond float32's range: inf, stepped down to the largest float32
        t32 = threshold.astype(np.float32)
    rounded_up = t32.astype(np.float64) > threshold
    t32[rounded_up] = np.nextafter(t32[rounded_up], np.float32(-np.inf))
    return t32


@dataclasses.dataclass
class TreeArrays:
    """One tree in scikit-learn's node layout, leaves marked by `left == -1`."""

    feature: np.ndarray  # (nodes,) int
    threshold: np.ndarray  # (nodes,) float32, see float32_thresholds
    missing_left: np.ndarray  # (nodes,) bool
    left: np.ndarray  # (nodes,) int, -1 at leaves
    right: np.ndarray  # (nodes,) int, -1 at leaves
    value: np.ndarray  # (nodes, outputs) float64

    @property
    def depth(self) -> int:
        depth = np.zeros(len(self.left), dtype=np.int64)
        for node in range(len(self.left)):  # children always come after their parent
            if self.left[node] >= 0:
                depth[self.left[node]] = depth[self.right[node]] = depth[node] + 1
        return int(depth.max())


def tree_arrays(tree, *, classifier: bool) -> TreeArrays:
    """Reads a fitted `sklearn.tree._tree.Tree`.

    Classifier leaves hold class fractions normalized as `predict_proba` does; regressor leaves hold the
    predicted values. A tree that is a single leaf gets a root split that sends everything left, so that
    every tree has at least one split.
    """
    if tree.n_outputs != 1 and classifier:
        raise ValueError(
            f"Multi-output classifiers are not supported; the tree has n_outputs={tree.n_outputs}."
        )
    if classifier:
        value = np.asarray(tree.value[:, 0, :], dtype=np.float64)
        total = value.sum(axis=1, keepdims=True)
        total[total == 0.0] = 1.0
        value = value / total
    else:
        value = np.asarray(tree.value[:, :, 0], dtype=np.float64)
    left = np.asarray(tree.children_left, dtype=np.int64)
    right = np.asarray(tree.children_right, dtype=np.int64)
    feature = np.where(left >= 0, tree.feature, 0).astype(np.int64)
    threshold = np.where(left >= 0, float32_thresholds(tree.threshold), np.float32(0.0))
    missing = getattr(tree, "missing_go_to_left", None)
    missing_left = np.ones(len(left), bool) if missing is None else np.asarray(missing, bool)
    if len(left) == 1:  # a single leaf: a split on +inf (NaN goes left too) keeps the forms uniform
        return TreeArrays(
            feature=np.zeros(3, np.int64),
            threshold=np.array([np.inf, 0, 0], np.float32),
            missing_left=np.ones(3, bool),
            left=np.array([1, -1, -1]),
            right=np.array([2, -1, -1]),
            value=np.repeat(value, 3, axis=0),
        )
    return TreeArrays(feature, threshold.astype(np.float32), missing_left, left, right, value)


def choose_strategy(depth: int, n_trees: int) -> str:
    """The form `strategy="auto"` picks for trees of maximum depth `depth`, at any batch size."""
    if depth <= PERFECT_MAX_DEPTH and n_trees * (1 << depth) <= PERFECT_MAX_LEAVES:
        return "perfect"
    return "gather"


# --------------------------------------------------------------------------------------------------
# Packing the trees of an ensemble into the arrays of one strategy


def _pack_gather(trees: list[TreeArrays]) -> dict:
    n_nodes = max(len(t.left) for t in trees)
    outputs = trees[0].value.shape[1]
    feature = np.zeros((len(trees), n_nodes), np.int32)
    threshold = np.zeros((len(trees), n_nodes), np.float32)
    missing = np.ones((len(trees), n_nodes), np.float32)
    left = np.zeros((len(trees), n_nodes), np.int32)
    right = np.zeros((len(trees), n_nodes), np.int32)
    value = np.zeros((len(trees), n_nodes, outputs), np.float32)
    for i, t in enumerate(trees):
        count = len(t.left)
        offset = i * n_nodes
        self_index = np.arange(count) + offset
        feature[i, :count] = t.feature
        threshold[i, :count] = t.threshold
        missing[i, :count] = t.missing_left
        # leaves point at themselves, so extra rounds of traversal stay on the leaf
        left[i, :count] = np.where(t.left >= 0, t.left + offset, self_index)
        right[i, :count] = np.where(t.left >= 0, t.right + offset, self_index)
        left[i, count:] = right[i, count:] = np.arange(count, n_nodes) + offset
        value[i, :count] = t.value
    return {
        "feature": feature.ravel(),
        "threshold": threshold.ravel(),
        "missing_left": missing.ravel(),
        "left": left.ravel(),
        "right": right.ravel(),
        "value": value.reshape(-1, outputs),
    }, {"nodes": n_nodes}


def _pack_perfect(trees: list[TreeArrays], depth: int) -> dict:
    splits, leaves = (1 << depth) - 1, 1 << depth
    outputs = trees[0].value.shape[1]
    feature = np.zeros((len(trees), splits), np.int32)
    threshold = np.full((len(trees), splits), np.inf, np.float32)
    missing = np.ones((len(trees), splits), np.float32)
    value = np.zeros((len(trees), leaves, outputs), np.float32)
    for i, t in enumerate(trees):
        # (sklearn node, perfect-tree position, level)
        stack = [(0, 0, 0)]
        while stack:
            node, position, level = stack.pop()
            if t.left[node] >= 0:
                feature[i, position] = t.feature[node]
                threshold[i, position] = t.threshold[node]
                missing[i, position] = t.missing_left[node]
                stack.append((t.left[node], 2 * position + 1, level + 1))
                stack.append((t.right[node], 2 * position + 2, level + 1))
            else:
                # A leaf above the last level: the padding splits below it send every input left
                # (threshold +inf, NaN left), and every padded leaf below it holds its value.
                first = position
                for _ in range(depth - level):
                    first = 2 * first + 1
                span = 1 << (depth - level)
                value[i, first - splits : first - splits + span] = t.value[node]
    return {
        "feature": feature.ravel(),
        "threshold": threshold.ravel(),
        "missing_left": missing.ravel(),
        "value": value.reshape(-1, outputs),
    }, {"nodes": splits}


def _pack_matmul(trees: list[TreeArrays]) -> dict:
    split_ids = [np.flatnonzero(t.left >= 0) for t in trees]
    leaf_ids = [np.flatnonzero(t.left < 0) for t in trees]
    n_splits = max(len(s) for s in split_ids)
    n_leaves = max(len(l) for l in leaf_ids)
    outputs = trees[0].value.shape[1]
    feature = np.zeros((len(trees), n_splits), np.int32)
    threshold = np.full((len(trees), n_splits), np.inf, np.float32)
    missing = np.ones((len(trees), n_splits), np.float32)
    path = np.zeros((len(trees), n_splits, n_leaves), np.float32)
    left_count = np.full((len(trees), n_leaves), -1.0, np.float32)  # padded leaves never match
    value = np.zeros((len(trees), n_leaves, outputs), np.float32)
    for i, t in enumerate(trees):
        split_pos = {node: k for k, node in enumerate(split_ids[i])}
        leaf_pos = {node: k for k, node in enumerate(leaf_ids[i])}
        feature[i, : len(split_ids[i])] = t.feature[split_ids[i]]
        threshold[i, : len(split_ids[i])] = t.threshold[split_ids[i]]
        missing[i, : len(split_ids[i])] = t.missing_left[split_ids[i]]
        stack = [(0, [])]  # (node, [(split position, went left)])
        while stack:
            node, ancestors = stack.pop()
            if t.left[node] >= 0:
                k = split_pos[node]
                stack.append((t.left[node], ancestors + [(k, True)]))
                stack.append((t.right[node], ancestors + [(k, False)]))
                continue
            column = leaf_pos[node]
            for k, went_left in ancestors:
                path[i, k, column] = 1.0 if went_left else -1.0
            left_count[i, column] = sum(went_left for _, went_left in ancestors)
            value[i, column] = t.value[node]
    return {
        "feature": feature.ravel(),
        "threshold": threshold.ravel(),
        "missing_left": missing.ravel(),
        "path": path,
        "left_count": left_count,
        "value": value,
    }, {"nodes": n_splits, "leaves": n_leaves}


def pack_trees(trees: list[TreeArrays], strategy: str) -> tuple[dict, dict]:
    """The arrays of `strategy` for `trees`, and the sizes the layer needs to build them."""
    depth = max(t.depth for t in trees)
    if strategy == "auto":
        strategy = choose_strategy(depth, len(trees))
    if strategy == "matmul":
        arrays, sizes = _pack_matmul(trees)
    elif strategy == "perfect":
        if len(trees) * (1 << depth) > 8 * PERFECT_MAX_LEAVES:
            raise ValueError(
                f'strategy="perfect" would pad {len(trees)} trees of depth {depth} to '
                f"{len(trees) * (1 << depth):,} leaves; use strategy=\"gather\" for trees this deep."
            )
        arrays, sizes = _pack_perfect(trees, depth)
    elif strategy == "gather":
        arrays, sizes = _pack_gather(trees)
    else:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got strategy={strategy!r}.")
    sizes.update(strategy=strategy, depth=depth, n_trees=len(trees), n_outputs=trees[0].value.shape[1])
    return arrays, sizes


# --------------------------------------------------------------------------------------------------
# The layer


def _take(params, indices, axis=0):
    """`keras.ops.take` without its negative-index wrap or out-of-range fill: our indices are always in
    range, and the checks cost a comparison and a select per gather in every exported graph and under
    XLA."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.gather(params, indices, axis=axis)
    if backend == "jax" and axis == 0:
        # lax.gather itself: NumPy-style indexing would add a negative-index wrap to every gather.
        from jax import lax

        params = keras.ops.convert_to_tensor(params)
        indices = keras.ops.convert_to_tensor(indices)
        numbers = lax.GatherDimensionNumbers(offset_dims=tuple(range(indices.ndim, indices.ndim + params.ndim - 1)),
                                             collapsed_slice_dims=(0,), start_index_map=(0,))
        return lax.gather(params, indices[..., None], numbers, slice_sizes=(1, *params.shape[1:]),
                          mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS)
    return keras.ops.take(params, indices, axis=axis)


def _take_rows(params, indices):
    """`params[i, indices[i, j]]` for `(batch, k)` params and `(batch, m)` indices."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.gather(params, indices, batch_dims=1)
    return keras.ops.take_along_axis(params, indices, axis=1)


def split_columns(feature, threshold, missing_left, n_features):
    """The `(column, threshold)` tables the layer stores, from scikit-learn's per-node split.

    A split reads, in `TreeEnsemble._input_columns`, its feature where NaN goes left, the feature plus
    `n_features` where NaN goes right, and the missing-value indicator (threshold 0.5) for
    scikit-learn's splits that separate missing values from all others (threshold +inf, NaN right).
    Then every split is one comparison `value <= threshold`, with no per-node NaN test.
    """
    feature = np.asarray(feature, np.int64)
    threshold = np.asarray(threshold, np.float32)
    goes_right = np.asarray(missing_left) < 0.5
    missing_split = goes_right & (threshold == np.inf)
    column = feature + n_features * (goes_right.astype(np.int64) + missing_split)
    return column.astype(np.int32), np.where(missing_split, np.float32(0.5), threshold).astype(np.float32)


_WEIGHT_SHAPES = {
    # strategy -> name -> (shape as a function of sizes, dtype)
    "gather": {
        "column": (lambda s: (s["n_trees"] * s["nodes"],), "int32"),
        "threshold": (lambda s: (s["n_trees"] * s["nodes"],), "float32"),
        "left": (lambda s: (s["n_trees"] * s["nodes"],), "int32"),
        "right": (lambda s: (s["n_trees"] * s["nodes"],), "int32"),
        "value": (lambda s: (s["n_trees"] * s["nodes"], s["n_outputs"]), "float32"),
    },
    "perfect": {
        "column": (lambda s: (s["n_trees"] * s["nodes"],), "int32"),
        "threshold": (lambda s: (s["n_trees"] * s["nodes"],), "float32"),
        "value": (lambda s: (s["n_trees"] * (s["nodes"] + 1), s["n_outputs"]), "float32"),
    },
    "matmul": {
        "column": (lambda s: (s["n_trees"] * s["nodes"],), "int32"),
        "threshold": (lambda s: (s["n_trees"] * s["nodes"],), "float32"),
        "path": (lambda s: (s["n_trees"], s["nodes"], s["leaves"]), "float32"),
        "left_count": (lambda s: (s["n_trees"], s["leaves"]), "float32"),
        "value": (lambda s: (s["n_trees"], s["leaves"], s["n_outputs"]), "float32"),
    },
}


@keras.saving.register_keras_serializable(package="keras_models")
class TreeEnsemble(keras.layers.Layer):
    """Sums (or averages) the leaf values a batch reaches in an ensemble of binary decision trees.

    The tree arrays are non-trainable weights, so `.keras` files hold them and exported graphs fold
    them into constants. Build the layer with `compile_sklearn` (or `pack_trees` and `set_trees`).

    Args:
        strategy: `"matmul"`, `"perfect"` or `"gather"` (see the module docstring).
        n_features: the number of input features.
        n_trees: the number of trees.
        nodes: splits per tree (`"matmul"`, `"perfect"`) or nodes per tree (`"gather"`), padded.
        depth: the maximum tree depth (rounds of traversal).
        n_outputs: values per leaf (classes, or regression targets).
        leaves: leaves per tree (`"matmul"` only).
        divisor: the sum over trees is divided by this (the number of trees for a forest's mean).
    """

    def __init__(self, strategy, n_features, n_trees, nodes, depth, n_outputs, leaves=None, divisor=1.0,
                 **kwargs):
        super().__init__(**kwargs)
        if strategy not in STRATEGIES[1:]:
            raise ValueError(f"strategy must be one of {STRATEGIES[1:]}; got strategy={strategy!r}.")
        for arg, value in (("n_features", n_features), ("n_trees", n_trees), ("nodes", nodes),
                           ("n_outputs", n_outputs)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be a positive integer; got {arg}={value!r}.")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer; got depth={depth!r}.")
        if strategy == "matmul" and (not isinstance(leaves, int) or leaves < 2):
            raise ValueError(f'strategy="matmul" needs leaves >= 2; got leaves={leaves!r}.')
        if not divisor > 0:
            raise ValueError(f"divisor must be positive; got divisor={divisor!r}.")
        self.strategy = strategy
        self.n_features = n_features
        self.n_trees = n_trees
        self.nodes = nodes
        self.depth = depth
        self.n_outputs = n_outputs
        self.leaves = leaves
        self.divisor = float(divisor)
        sizes = {"n_trees": n_trees, "nodes": nodes, "leaves": leaves, "n_outputs": n_outputs}
        self.tree_weights = {}
        for weight_name, (shape, dtype) in _WEIGHT_SHAPES[strategy].items():
            self.tree_weights[weight_name] = self.add_weight(
                name=weight_name, shape=shape(sizes), dtype=dtype, initializer="zeros", trainable=False
            )
        self.built = True

    def set_trees(self, arrays: dict):
        """Assigns the arrays of `pack_trees` to the layer's weights."""
        arrays = dict(arrays)
        if "column" not in arrays:
            arrays["column"], arrays["threshold"] = split_columns(
                arrays.pop("feature"), arrays["threshold"], arrays.pop("missing_left"), self.n_features)
        for weight_name, variable in self.tree_weights.items():
            value = np.asarray(arrays[weight_name])
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"Tree array {weight_name!r} has shape {value.shape}; the layer expects {variable.shape}."
                )
            variable.assign(value.astype(variable.dtype))

    def load_own_variables(self, store):
        """Reads `.keras` files of either layout: today's, or the first release's, which stored each
        node's `feature` and `missing_left` where today's store the `column` (`split_columns`)."""
        if len(store.keys()) == len(self.tree_weights) + 1:
            names = ["feature", "threshold", "missing_left", *list(self.tree_weights)[2:]]
            self.set_trees({name: np.asarray(store[str(i)]) for i, name in enumerate(names)})
            return
        super().load_own_variables(store)

    def _split_tables(self):
        ops = keras.ops
        return ops.convert_to_tensor(self.tree_weights["column"]), ops.convert_to_tensor(self.tree_weights["threshold"])

    def _input_columns(self, x):
        """`(batch, 3 * n_features)`: the features with NaN read as the lowest float32, the features with
        NaN read as the largest, and 1.0 where a feature is NaN (0.0 elsewhere).

        Every split is then one comparison `value <= threshold` (see `split_columns`): the lowest value
        goes left of every real threshold, the largest right of every one. `x != x` is the NaN test every
        runtime has as a builtin comparison.
        """
        ops = keras.ops
        missing = ops.not_equal(x, x)
        # The largest float32 rather than infinity: the TFLite converter clamps infinite constants to it.
        # Real thresholds lie strictly between -largest and +largest (they are below a float32 value).
        largest = float(np.finfo(np.float32).max)
        low = ops.where(missing, -largest, x)
        high = ops.where(missing, largest, x)
        return ops.concatenate([low, high, ops.cast(missing, "float32")], axis=1)

    def _right_child_table(self):
        """The perfect form's right children: position 2p + 2 of split p, as an index into the splits,
        or into `value` (at t * (nodes + 1) + position - nodes) for the last level's leaves."""
        position = 2 * np.arange(self.nodes, dtype=np.int64) + 2
        tree = np.arange(self.n_trees, dtype=np.int64)[:, None]
        table = np.where(position >= self.nodes, tree * (self.nodes + 1) + position - self.nodes,
                         tree * self.nodes + position)
        return table.reshape(-1).astype(np.int32)

    def _traverse(self, x):
        """`depth` rounds of gathers: the indices into `value` each row reaches in each tree, and the
        axis of the trees in them.

        Two layouts, the same arithmetic. Tree-major `(trees, batch)` for XLA (JAX, PyTorch): rows go in
        the inner dimension, so one tree's node arrays stay in cache while every row passes through it,
        one fused loop per level. Row-major `(batch, trees)` for TensorFlow, whose graphs are the ones
        exported: a row's features are read with a batched gather, so the TFLite graph has no
        data-dependent shapes, and the perfect form's children come from arithmetic: three gathers and
        five elementwise builtin operators per level.
        """
        ops = keras.ops
        column, threshold = self._split_tables()
        columns = self._input_columns(x)  # (batch, 3 * features)
        roots = np.arange(self.n_trees, dtype=np.int32) * self.nodes
        tree_major = keras.backend.backend() != "tensorflow"
        tree = np.arange(self.n_trees, dtype=np.int32).reshape((self.n_trees, 1) if tree_major else (1, -1))
        if tree_major:
            batch = ops.shape(x)[0]
            flat = ops.reshape(ops.transpose(columns), (-1,))  # (3 * features * batch,)
            rows = ops.expand_dims(ops.arange(batch, dtype="int32"), 0)  # (1, batch)

            def read(node):
                return _take(flat, _take(column, node) * batch + rows)
        else:

            def read(node):
                return _take_rows(columns, _take(column, node))

        if self.strategy == "gather":
            left, right = (ops.convert_to_tensor(self.tree_weights[name]) for name in ("left", "right"))

            def child(go_left, node):
                return ops.where(go_left, _take(left, node), _take(right, node))
        elif tree_major:
            # Under XLA a gather from a constant table keeps each round's loop fused without recomputing
            # the previous rounds; the table points the last round straight at the leaves in `value`.
            right = ops.convert_to_tensor(self._right_child_table())

            def child(go_left, node):
                return _take(right, node) - ops.cast(go_left, "int32")
        else:
            # In TFLite a gather costs several times an elementwise operator, so the child comes from
            # arithmetic: tree t's split at position p, stored at g = t * nodes + p, has its right child
            # at position 2p + 2, stored at 2g + (2 - t * nodes). The left child is one less.
            offset = ops.convert_to_tensor(2 - tree * self.nodes)

            def child(go_left, node):
                return node * 2 + offset - ops.cast(go_left, "int32")

        # The roots are the same for every row: read their columns directly.
        roots = ops.convert_to_tensor(roots)
        x_value = _take(columns, _take(column, roots), axis=1)  # (batch, trees)
        if tree_major:
            x_value = ops.transpose(x_value)
            roots = ops.expand_dims(roots, 1)
        node = child(ops.less_equal(x_value, _take(threshold, roots)), roots)
        for _ in range(self.depth - 1):
            node = child(ops.less_equal(read(node), _take(threshold, node)), node)
        if self.strategy == "perfect" and not tree_major:
            # The last round lands on leaf position q = 2p + 2 - nodes (or one less), stored in `value` at
            # t * (nodes + 1) + q: from where the arithmetic put it, t * nodes + 2p + 2, add t - nodes.
            node = node + ops.convert_to_tensor(tree - self.nodes)
        return node, 0 if tree_major else 1

    def call(self, x):
        check_features(x.shape, self.n_features, self.name)
        ops = keras.ops
        x = ops.cast(x, "float32")
        if self.strategy == "matmul":
            summed = self._call_matmul(x)
        else:
            leaf, tree_axis = self._traverse(x)
            values = _take(self.tree_weights["value"], leaf, axis=0)  # (..., outputs)
            summed = ops.sum(values, axis=tree_axis)
        if self.divisor != 1.0:
            summed = summed / self.divisor
        return summed  # (batch, outputs)

    def _call_matmul(self, x):
        ops = keras.ops
        column, threshold = self._split_tables()
        x_value = _take(self._input_columns(x), column, axis=1)  # (batch, trees * splits)
        go_left = ops.less_equal(x_value, threshold)
        decisions = ops.reshape(ops.cast(go_left, "float32"), (-1, self.n_trees, self.nodes))
        decisions = ops.transpose(decisions, (1, 0, 2))  # (trees, batch, splits)
        # +1 per left ancestor taken, -1 per right ancestor wrongly taken: equals the number of left
        # ancestors only at the leaf every decision agrees with.
        agreement = ops.matmul(decisions, self.tree_weights["path"])  # (trees, batch, leaves)
        reached = ops.equal(agreement, ops.expand_dims(self.tree_weights["left_count"], 1))
        values = ops.matmul(ops.cast(reached, "float32"), self.tree_weights["value"])  # (trees, batch, outputs)
        return ops.sum(values, axis=0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_outputs)

    def get_config(self):
        config = super().get_config()
        config.update(
            strategy=self.strategy,
            n_features=self.n_features,
            n_trees=self.n_trees,
            nodes=self.nodes,
            depth=self.depth,
            n_outputs=self.n_outputs,
            leaves=self.leaves,
            divisor=self.divisor,
        )
        return config
