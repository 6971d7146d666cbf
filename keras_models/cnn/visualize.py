"""Pictures of what a convolutional network learned: feature maps on an input, and the filters."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import keras
import numpy as np


@dataclasses.dataclass
class Figure:
    """A written PNG and the arrays drawn in it, one per panel, in panel order."""

    path: Path
    layer_name: str
    panels: list[np.ndarray]


def _conv_layers(model):
    return [layer.name for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.Conv2D | keras.layers.Conv1D | keras.layers.Conv3D)]


def _layer(model, layer_name):
    try:
        return model.get_layer(layer_name)
    except ValueError:
        raise ValueError(
            f"layer_name={layer_name!r} is not a layer of {model.name!r}; convolution layers: "
            f"{_conv_layers(model)}."
        ) from None


def _grid(count):
    columns = math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns


def _write(figure, path):
    """Saves through a temporary file, so a failed save leaves nothing half-written at `path`."""
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        figure.savefig(tmp, format="png", dpi=80)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _destination(path):
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png; got path={str(path)!r}.")
    if not path.parent.is_dir():
        raise ValueError(f"The folder of path={str(path)!r} does not exist.")
    return path


def plot_feature_maps(model, layer_name: str, image, path, *, max_maps: int = 16) -> Figure:
    """Runs `image` through `model` and draws the first `max_maps` channels of `layer_name`'s output.

    Args:
        model: a built functional Keras model.
        layer_name: the layer whose output to draw (any layer with a `(h, w, channels)` output).
        image: one input `(height, width, channels)`, or a batch of one.
        path: the `.png` file to write (matplotlib, Agg backend; no display needed).
        max_maps: the most channels to draw.

    Returns:
        A `Figure` whose `panels` are the drawn arrays, each `(h, w)`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = _destination(path)
    layer = _layer(model, layer_name)
    expected = tuple(model.inputs[0].shape[1:])
    image = np.asarray(image, dtype=np.float32)
    if image.shape == expected:
        image = image[None]
    if image.shape[1:] != expected or image.shape[0] != 1:
        raise ValueError(f"image must have shape {expected} or (1, *{expected}); got {image.shape}.")
    if not np.all(np.isfinite(image)):
        raise ValueError("image contains NaN or infinity.")
    if not isinstance(max_maps, int) or max_maps < 1:
        raise ValueError(f"max_maps must be a positive integer; got max_maps={max_maps!r}.")
    probe = keras.Model(model.inputs[0], layer.output)
    maps = keras.ops.convert_to_numpy(probe(image, training=False))[0]
    if maps.ndim != 3:
        raise ValueError(f"layer_name={layer_name!r} gives outputs of shape {maps.shape}; expected (h, w, channels).")
    count = min(max_maps, maps.shape[-1])
    rows, columns = _grid(count)
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.6 * rows), squeeze=False)
    panels = []
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < count:
            artist = ax.imshow(maps[..., index], cmap="viridis")
            ax.set_title(str(index), fontsize=7)
            panels.append(np.asarray(artist.get_array()))
    figure.suptitle(f"{model.name}: {layer_name} feature maps")
    try:
        _write(figure, path)
    finally:
        plt.close(figure)
    return Figure(path, layer_name, panels)


def plot_filters(model, layer_name: str, path, *, max_filters: int = 32) -> Figure:
    """Draws the kernels of a Conv2D layer: RGB for three input channels, else the channel mean.

    Each panel is scaled to [0, 1] by its own minimum and maximum, so the pattern shows whatever the
    magnitude.

    Returns:
        A `Figure` whose `panels` are the drawn arrays, `(kh, kw, 3)` or `(kh, kw)`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = _destination(path)
    layer = _layer(model, layer_name)
    if not isinstance(layer, keras.layers.Conv2D):
        raise ValueError(f"layer_name={layer_name!r} is a {type(layer).__name__}, not a Conv2D layer.")
    if not isinstance(max_filters, int) or max_filters < 1:
        raise ValueError(f"max_filters must be a positive integer; got max_filters={max_filters!r}.")
    kernel = keras.ops.convert_to_numpy(layer.kernel)  # (kh, kw, in, out)
    count = min(max_filters, kernel.shape[-1])
    rows, columns = _grid(count)
    figure, axes = plt.subplots(rows, columns, figsize=(1.2 * columns, 1.2 * rows), squeeze=False)
    panels = []
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index >= count:
            continue
        weights = kernel[..., index]
        weights = weights if weights.shape[-1] == 3 else weights.mean(axis=-1)
        span = weights.max() - weights.min()
        weights = (weights - weights.min()) / (span if span > 0 else 1.0)
        artist = ax.imshow(weights, cmap=None if weights.ndim == 3 else "gray", interpolation="nearest")
        panels.append(np.asarray(artist.get_array()))
    figure.suptitle(f"{model.name}: {layer_name} filters")
    try:
        _write(figure, path)
    finally:
        plt.close(figure)
    return Figure(path, layer_name, panels)
