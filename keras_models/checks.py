"""Input checks every family shares: arrays, images, class labels, counts and shapes.

Each raises `ValueError` naming what is wrong (the argument, the shape, the value) before a bad batch
reaches a compiled graph, where the same mistake would surface as a long backend error or, for NaN,
as silently diverging weights. `CheckedModel` runs them when a builder's model is fitted.
"""

from __future__ import annotations

import math

import keras
import numpy as np


def as_array(data):
    """`data` as a numpy array when it is an array or a tensor, else `None` (datasets, generators and
    `tf.data` pipelines are left to Keras' own checks)."""
    if isinstance(data, np.ndarray):
        return data
    if hasattr(data, "numpy") and hasattr(data, "shape"):
        return np.asarray(data)
    if hasattr(data, "__array__") and hasattr(data, "shape") and hasattr(data, "dtype"):
        return np.asarray(data)
    return None


def check_finite(array, what="x"):
    """Raises when a floating-point array holds NaN or infinity, naming the first bad row."""
    array = as_array(array)
    if array is None or not np.issubdtype(array.dtype, np.floating) or array.size == 0:
        return
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        kind = "NaN" if np.isnan(array[tuple(bad)]) else "infinity"
        where = f" (first at row {bad[0]})" if array.ndim else ""
        raise ValueError(f"{what} contains {kind}{where}.")


def check_images(images, image_shape, pixel_range, what="images"):
    """Raises when `images` do not fit a model built for `image_shape` and `pixel_range`: wrong rank or
    shape, a non-float dtype, NaN or infinity, values out of range."""
    array = as_array(images)
    if array is None:
        return
    if array.ndim != len(image_shape) + 1 or tuple(array.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"{what} must have shape (batch, {', '.join(map(str, image_shape))}); got {array.shape}."
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{what} must be floating point scaled to {tuple(pixel_range)}; got dtype {array.dtype}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contain NaN or infinity.")
    low, high = pixel_range
    margin = 1e-3 * (high - low)
    if array.size and (array.min() < low - margin or array.max() > high + margin):
        raise ValueError(
            f"{what} range over [{array.min():.4g}, {array.max():.4g}] but the model was built for "
            f"pixel_range={tuple(pixel_range)}; rescale them or build with a matching pixel_range."
        )


def check_labels(labels, num_classes, count=None, what="labels"):
    """Returns `labels` as an int32 vector, or raises on bad shapes, types or values (a class index
    outside `[0, num_classes)`, a fraction, a count that does not match the samples)."""
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{what} must be a vector of class indices; got shape {array.shape}.")
    if count is not None and len(array) != count:
        raise ValueError(f"{what} must hold {count} entries, one per sample; got {len(array)}.")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError(f"{what} must be integer class indices; got dtype {array.dtype}.")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(
            f"{what} must lie in [0, {num_classes}); got values from {array.min()} to {array.max()}."
        )
    return array.astype(np.int32)


def check_count(value, what="num_samples"):
    """`value` as a positive int, or a `ValueError` naming `what`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer; got {what}={value!r}.")
    return int(value)


def check_shape(shape, what="input_shape", rank=None):
    """`shape` as a tuple of positive ints (`rank` of them when given), or a `ValueError` naming `what`.

    A zero-sized axis would build a model that sees no features and predicts a constant; `None` and a
    bare integer are refused rather than guessed at.
    """
    size = f"{rank} " if rank is not None else ""
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"{what} must be a tuple of {size}positive integers; got {what}={shape!r}.") from None
    valid = all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in dims)
    if not dims or not valid or (rank is not None and len(dims) != rank):
        raise ValueError(f"{what} must be a tuple of {size}positive integers; got {what}={shape!r}.")
    return tuple(int(d) for d in dims)


def check_features(shape, n_features, what):
    """Raises unless the static `shape` of a batch is `(batch, n_features)`; unknown axes pass.

    Compiled estimators index their features by position, so a wider input would be read silently.
    """
    shape = tuple(None if d is None else int(d) for d in shape)
    if len(shape) != 2 or (shape[1] is not None and shape[1] != n_features):
        raise ValueError(
            f"{what} takes inputs of shape (batch, {n_features}), the {n_features} feature(s) it was fitted "
            f"on; got shape {shape}."
        )


def _loss_name(loss) -> str:
    if isinstance(loss, str):
        return loss
    return getattr(loss, "name", None) or getattr(loss, "__name__", "") or ""


def check_training_data(model, x, y, what=("x", "y")):
    """Checks arrays about to train or evaluate `model`: finite values, and targets its loss can read.

    With a sparse categorical cross-entropy, `y` must hold class indices below the model's output
    units; with a binary cross-entropy, values in [0, 1]. Datasets and generators are left to Keras.
    """
    x_name, y_name = what
    x_array = as_array(x)
    if x_array is not None:
        check_finite(x_array, x_name)
    y_array = as_array(y)
    if y_array is None:
        return
    check_finite(y_array, y_name)
    if len(getattr(model, "outputs", None) or []) != 1:
        return  # several outputs: each has its own loss and targets
    loss = _loss_name(getattr(model, "loss", None))
    if "sparse_categorical" in loss and (y_array.ndim == 1 or (y_array.ndim == 2 and y_array.shape[1] == 1)):
        units = model.outputs[0].shape[-1]
        count = len(x_array) if x_array is not None and x_array.ndim else None
        check_labels(y_array, units, count=count, what=y_name)
    elif "binary" in loss and "crossentropy" in loss and y_array.size:
        low, high = float(y_array.min()), float(y_array.max())
        if low < 0 or high > 1:
            raise ValueError(
                f"{y_name} must lie in [0, 1] for the binary cross-entropy of {model.name!r}; got values "
                f"from {low:g} to {high:g}."
            )


@keras.saving.register_keras_serializable(package="keras_models")
class CheckedModel(keras.Model):
    """A functional `keras.Model` whose `fit` and `evaluate` check array inputs first.

    NaN or infinity in `x` or `y`, a class index outside the model's classes, or a binary target
    outside [0, 1] raise a `ValueError` naming the argument, before the first step. Everything else is
    Keras' own: the checks read numpy arrays and tensors only, and the graph, `.keras` files and exports
    are those of a plain functional model.
    """

    def check_inputs(self, x, y):
        """The model's own checks of `fit` and `evaluate` inputs (shapes, token id ranges), run before
        the shared ones; a subclass overrides it. None by default."""

    def fit(self, x=None, y=None, *args, data_on_device=None, **kwargs):
        """Keras' `fit`, with the arrays checked first. `data_on_device`: `None` feeds numpy arrays from
        the accelerator's memory on JAX where they fit (`keras_models.device_feed`), `True` insists,
        `False` keeps Keras' host path."""
        self.check_inputs(x, y)
        check_training_data(self, x, y)
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and len(validation) >= 2:
            check_training_data(self, validation[0], validation[1], what=("validation_data x", "validation_data y"))
        if not args:
            from keras_models.device_feed import device_fit_arguments

            x, y, kwargs = device_fit_arguments(x, y, kwargs, data_on_device)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self.check_inputs(x, y)
        check_training_data(self, x, y)
        return super().evaluate(x, y, *args, **kwargs)

    def __call__(self, *args, **kwargs):
        from keras_models import eager_step

        # Eagerly on PyTorch the outermost call runs the plan without `Layer.__call__` (`eager_step.call`).
        outputs = eager_step.call(self, args, kwargs)
        return super().__call__(*args, **kwargs) if outputs is eager_step.KERAS else outputs

    def call(self, inputs, training=None, mask=None, **kwargs):
        from keras_models.layers.conv2d import eager_torch

        if mask is None and not kwargs and eager_torch():
            # Eagerly on PyTorch, each layer's `call` directly where the graph allows it
            # (`keras_models.graph_runner`): the same operators without `Layer.__call__`'s per-layer work.
            from keras_models import graph_runner

            graph = graph_runner.plan(self)
            if graph is not None:
                return graph_runner.run(graph, self._standardize_inputs(inputs), training)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def _match_optimizer_layout(self):
        """On PyTorch, eagerly: optimizer slots in the memory layout of the variables they follow
        (`layers.Conv2D`), once per optimizer, before its first update."""
        from keras_models.layers.conv2d import eager_torch, match_optimizer_layout

        # Under torch.compile it was done by make_train_function before compiling (it is not traceable).
        if not eager_torch() or getattr(self, "_layout_matched", None) == id(self.optimizer):
            return
        match_optimizer_layout(self)
        self._layout_matched = id(self.optimizer)  # an id: an attribute holding the optimizer would be saved

    def make_train_function(self, force=False):
        self._match_optimizer_layout()
        return super().make_train_function(force=force)

    def train_step(self, *args, **kwargs):
        from keras_models import eager_step

        self._match_optimizer_layout()
        if len(args) == 1 and not kwargs:  # eagerly on PyTorch, Keras' step with less per-step work
            logs = eager_step.train_step(self, args[0])
            if logs is not eager_step.KERAS:
                return logs
        return super().train_step(*args, **kwargs)


def check_token_ids(token_ids, vocabulary_size, what="token_ids", *, size_name="vocab_size", max_steps=None,
                    steps_name="max_sequence_length"):
    """`token_ids` as an int32 numpy array `(batch, steps)` of ids in `[0, vocabulary_size)` (and at most
    `max_steps` steps when given), or a `ValueError` naming `what` and the model's argument (`size_name`,
    `steps_name`). Whole-valued floats are accepted as ids."""
    array = np.asarray(token_ids)
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"{what} must be a non-empty 2-D array (batch, steps) of token ids; got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.integer):
        whole = np.issubdtype(array.dtype, np.number) and np.isfinite(array).all() and (array == np.round(array)).all()
        if not whole:
            raise ValueError(f"{what} must hold integer token ids; got dtype {array.dtype}.")
    low, high = array.min(), array.max()
    if low < 0 or high >= vocabulary_size:
        raise ValueError(
            f"{what} must lie in [0, {vocabulary_size}) ({size_name}={vocabulary_size}); got ids from {low} to {high}."
        )
    if max_steps is not None and array.shape[1] > max_steps:
        raise ValueError(
            f"{what} has {array.shape[1]} steps, more than {steps_name}={max_steps}, the positions the model has."
        )
    return array.astype(np.int32)


def check_positive_int(value, what: str) -> int:
    """`value` as an int if it is a positive integer, else a `ValueError` naming `what`."""
    return check_count(value, what)


def check_optional_positive_int(value, what: str):
    """`None`, or `value` checked by `check_positive_int`."""
    return None if value is None else check_positive_int(value, what)


def check_rate(value, what: str) -> float:
    """`value` as a float if it lies in [0, 1), else a `ValueError` naming `what`."""
    valid = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not valid or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{what} must be a number in [0, 1); got {what}={value!r}.")
    return float(value)


def check_positive_float(value, what: str) -> float:
    """`value` as a float if it is a finite number above 0, else a `ValueError` naming `what`."""
    valid = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not valid or not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"{what} must be a finite number above 0; got {what}={value!r}.")
    return float(value)


def check_choice(value, choices, what: str):
    """`value` if it is one of `choices`, else a `ValueError` naming `what` and the choices."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{what} must be one of {tuple(choices)}; got {what}={value!r}.")
    return value


def check_special_ids(start_id, end_id, vocabulary_size, size_name="vocabulary_size"):
    """A `ValueError` unless `start_id` and `end_id` are two different token ids in `[1,
    vocabulary_size)` (0 is padding); `size_name` names the model's vocabulary argument."""
    for what, value in (("start_id", start_id), ("end_id", end_id)):
        valid = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if not valid or not 0 < value < vocabulary_size:
            raise ValueError(
                f"{what} must be a token id in [1, {vocabulary_size}) (0 is padding; {size_name}="
                f"{vocabulary_size}); got {what}={value!r}."
            )
    if start_id == end_id:
        raise ValueError(f"start_id and end_id must differ; got start_id=end_id={start_id!r}.")
