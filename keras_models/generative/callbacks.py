"""Callbacks for generative training: sample grids every few epochs and a guard that stops failing runs."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import keras
import numpy as np

from keras_models.files import atomic_write


def image_grid(images, columns=None, pixel_range=(0.0, 1.0), padding=1):
    """Tiles `(n, h, w, c)` images into one `(rows * (h + p), columns * (w + p), c)` array in [0, 1]."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must have shape (n, h, w, 1 or 3); got {images.shape}.")
    count, height, width, channels = images.shape
    columns = columns or int(math.ceil(math.sqrt(count)))
    rows = int(math.ceil(count / columns))
    low, high = pixel_range
    scaled = np.clip((images - low) / (high - low), 0.0, 1.0)
    grid = np.ones((rows * (height + padding) - padding, columns * (width + padding) - padding, channels), np.float32)
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = row * (height + padding), column * (width + padding)
        grid[top : top + height, left : left + width] = scaled[index]
    return grid


def save_image(array, path, *, title=None, min_size=256):
    """Writes an `(h, w, 1 or 3)` array in [0, 1] as a PNG, atomically (no half-written file).

    A picture smaller than `min_size` pixels on its short side is enlarged by a whole factor, nearest
    neighbour, so each pixel becomes a sharp square a person can judge by eye (an 8x8 digit is 8 pixels
    wide as generated). `title` is written in a band above the picture.

    Args:
        array: the picture, float values in [0, 1], 1 (gray) or 3 (RGB) channels.
        path: the `.png` file to write; its folder must exist.
        title: one line of text above the picture, or `None` for no band.
        min_size: the smallest short side, in pixels, of the written picture.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    array = np.asarray(array, np.float32)
    if array.ndim != 3 or array.shape[-1] not in (1, 3) or 0 in array.shape:
        raise ValueError(f"array must have shape (height, width, 1 or 3); got {array.shape}.")
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
        raise ValueError(f"min_size must be a positive integer; got min_size={min_size!r}.")
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"Folder {str(path.parent)!r} for {str(path)!r} does not exist.")
    factor = max(1, math.ceil(min_size / min(array.shape[:2])))
    enlarged = np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)  # (h * factor, w * factor, c)
    picture = enlarged[..., 0] if array.shape[-1] == 1 else np.clip(enlarged, 0.0, 1.0)
    height, width = picture.shape[:2]
    band = _TITLE_BAND if title else 0
    figure = Figure(figsize=(width / _DPI, (height + band) / _DPI), dpi=_DPI, facecolor="white")
    # figimage places the array's pixels one to one (no resampling) at the bottom of the figure
    figure.figimage(picture, xo=0, yo=0, origin="upper", cmap="gray" if picture.ndim == 2 else None,
                    vmin=0.0, vmax=1.0)
    if title:
        figure.text(0.5, 1.0 - band / 2 / (height + band), str(title), ha="center", va="center",
                    fontsize=11, color="black")
    with atomic_write(path) as tmp:
        figure.savefig(tmp, format="png", dpi=_DPI)
    return path


_DPI = 100
_TITLE_BAND = 28  # pixels above the picture for its title


class SampleGrid(keras.callbacks.Callback):
    """Saves a grid of generated samples as a PNG at the end of every `every` epochs.

    The latents are drawn from the same `seed` each time, so successive grids show the same samples
    improving. Conditional models cycle through the classes (one class per column with `columns =
    num_classes`); translation models (pix2pix, CycleGAN, SRGAN) translate `source`.

    Args:
        directory: the folder for the PNG files (created if missing).
        num_samples: images per grid.
        columns: images per grid row (default: square grid).
        seed: seed of the latents.
        every: save every `every` epochs.
        source: input images for translation models.
        filename: file name pattern, formatted with `epoch` (1-based).
        min_size: the smallest short side of the PNG in pixels; small grids are enlarged (nearest
            neighbour) to it. Each grid is titled with the model's name and the epoch.
    """

    def __init__(self, directory, num_samples=16, columns=None, seed=0, every=1, source=None,
                 filename="samples_epoch_{epoch:03d}.png", min_size=256):
        super().__init__()
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer; got num_samples={num_samples!r}.")
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer; got every={every!r}.")
        self.directory = Path(directory)
        self.num_samples = num_samples
        self.columns = columns
        self.seed = seed
        self.every = every
        self.source = source
        self.filename = filename
        self.min_size = min_size
        self.paths = []

    def on_train_begin(self, logs=None):
        self.directory.mkdir(parents=True, exist_ok=True)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        if self.source is not None:
            images = self.model.generate(self.num_samples, source=self.source)
        else:
            images = self.model.generate(self.num_samples, seed=self.seed)
        columns = self.columns or (self.model.num_classes if getattr(self.model, "num_classes", None) else None)
        grid = image_grid(images, columns, self.model.pixel_range)
        path = self.directory / self.filename.format(epoch=epoch + 1)
        title = f"{self.model.name}, epoch {epoch + 1}"
        self.paths.append(save_image(grid, path, title=title, min_size=self.min_size))


class TrainingFailure(RuntimeError):
    """Raised by `TrainingGuard(raise_error=True)` when a run is stopped."""


class TrainingGuard(keras.callbacks.Callback):
    """Stops training, with a message saying what went wrong and what to try, when a loss becomes NaN
    or infinite, or when the discriminator wins completely for `patience` epochs in a row (its accuracy
    on real and generated samples at least `max_d_accuracy`): the generator then gets no useful
    gradient and the run will not recover.

    The reason is kept in `stop_reason`, issued as a `RuntimeWarning`, and raised as `TrainingFailure`
    when `raise_error=True`.

    Args:
        patience: consecutive epochs of a winning discriminator before stopping.
        max_d_accuracy: the epoch-mean `d_accuracy` counted as winning.
        raise_error: raise instead of only stopping.
    """

    def __init__(self, patience=3, max_d_accuracy=0.99, raise_error=False):
        super().__init__()
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a positive integer; got patience={patience!r}.")
        if not 0.5 < max_d_accuracy <= 1.0:
            raise ValueError(f"max_d_accuracy must be in (0.5, 1]; got max_d_accuracy={max_d_accuracy!r}.")
        self.patience = patience
        self.max_d_accuracy = max_d_accuracy
        self.raise_error = raise_error
        self.stop_reason = None
        self._winning_epochs = 0

    def on_train_begin(self, logs=None):
        self.stop_reason = None
        self._winning_epochs = 0

    def _stop(self, reason):
        self.stop_reason = reason
        self.model.stop_training = True
        warnings.warn(reason, RuntimeWarning, stacklevel=2)
        if self.raise_error:
            raise TrainingFailure(reason)

    def on_train_batch_end(self, batch, logs=None):
        if self.stop_reason:
            return
        for key, value in (logs or {}).items():
            value = float(np.asarray(value))
            if not np.isfinite(value):
                self._stop(
                    f"Training stopped at batch {batch}: {key} is {value}. Lower the learning rates, "
                    "check the data for NaN, or use a loss with bounded gradients (wgan_gp, hinge)."
                )
                return

    def on_epoch_end(self, epoch, logs=None):
        if self.stop_reason:
            return
        accuracy = (logs or {}).get("d_accuracy")
        if accuracy is None:
            return
        if float(accuracy) >= self.max_d_accuracy:
            self._winning_epochs += 1
        else:
            self._winning_epochs = 0
        if self._winning_epochs >= self.patience:
            self._stop(
                f"Training stopped after epoch {epoch + 1}: the discriminator wins completely "
                f"(d_accuracy {float(accuracy):.3f} >= {self.max_d_accuracy} for {self._winning_epochs} epochs), "
                "so the generator gets no useful gradient. Try a lower discriminator learning rate (TTUR), "
                "label_smoothing, instance_noise, spectral normalization, or a Wasserstein loss."
            )
