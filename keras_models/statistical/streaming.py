"""Where Logit data comes from: arrays in memory, a `tf.data` dataset, or a directory of files.

Every source is read as a sequence of checked `(X, y)` batches of any size (a file, or a batch of the
dataset), one at a time, so that memory stays bounded by one batch whatever the size of the data; the
Newton pass (`_logit_passes.newton_pass`) cuts each batch into cache-sized chunks itself.

Files: `.npz` files holding arrays `X` (n, p) and `y` (n,), or `.csv` files with a header row whose
`target` column is y and whose other columns are X (the same columns, in the same order, in every
file). A directory is read in sorted file-name order.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from keras_models.statistical import _design

_SUFFIXES = (".npz", ".csv")


def list_files(source):
    """The data files of a directory, a file, or a list of files, checked to exist and be readable."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in _SUFFIXES)
            if not files:
                raise ValueError(f"Directory {str(path)!r} holds no .npz or .csv files.")
        elif path.is_file():
            files = [path]
        else:
            raise ValueError(f"Data source {str(path)!r} does not exist.")
    else:
        files = [Path(p) for p in source]
        if not files:
            raise ValueError("The list of data files is empty.")
    for file in files:
        if file.suffix.lower() not in _SUFFIXES:
            raise ValueError(f"Unsupported data file {str(file)!r}; use .npz (X, y) or .csv.")
        if not file.is_file():
            raise ValueError(f"Data file {str(file)!r} does not exist.")
    return files


def _read_npz(file):
    try:
        with np.load(file, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files if key in ("X", "y")}
            present = list(archive.files)
    except Exception as error:  # zipfile.BadZipFile, OSError, EOFError, pickled data ...
        raise ValueError(
            f"{str(file)!r} is not a readable .npz file ({type(error).__name__}: {error})."
        ) from error
    missing = [key for key in ("X", "y") if key not in arrays]
    if missing:
        raise ValueError(f"{str(file)!r} lacks array(s) {missing}; it holds {present}.")
    return arrays["X"], arrays["y"], None


def _read_csv(file, target):
    import pandas as pd

    try:
        frame = pd.read_csv(file)
    except Exception as error:
        raise ValueError(f"{str(file)!r} is not a readable CSV file ({type(error).__name__}: {error}).") from error
    if target not in frame.columns:
        raise ValueError(f"{str(file)!r} has no target column {target!r}; its columns are {list(frame.columns)}.")
    if frame.empty:
        raise ValueError(f"{str(file)!r} has a header ({', '.join(map(str, frame.columns))}) but no rows.")
    return frame.drop(columns=[target]), frame[target], [str(c) for c in frame.columns if c != target]


def iter_batches(source, *, target="y"):
    """Yields `(X, y, names, origin)` batches from any supported source; origin names the file or batch."""
    if isinstance(source, tuple) and len(source) == 2:
        yield source[0], source[1], None, "the arrays"
        return
    # A tf.data.Dataset exists only once TensorFlow is imported; files need no TensorFlow.
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(source, tf.data.Dataset):
        for index, element in enumerate(source):
            if not isinstance(element, (tuple, list)) or len(element) != 2:
                raise ValueError("A tf.data source must yield (x, y) pairs of batches.")
            yield element[0].numpy(), element[1].numpy(), None, f"dataset batch {index}"
        return
    for file in list_files(source):
        if file.suffix.lower() == ".npz":
            X, y, names = _read_npz(file)
        else:
            X, y, names = _read_csv(file, target)
        yield X, y, names, repr(file.name)


def checked_batches(source, *, target="y", binary=True):
    """`iter_batches` with every batch validated: shapes, finiteness (row counted over the stream)."""
    width, names, offset = None, None, 0
    for X, y, batch_names, origin in iter_batches(source, target=target):
        X, columns = _design.as_features(X, what=f"X of {origin} (stream rows from {offset})")
        y, _ = _design.as_target(y, len(X), what=f"y of {origin} (stream rows from {offset})")
        if width is None:
            width, names = X.shape[1], batch_names or columns
        elif X.shape[1] != width:
            raise ValueError(f"A batch starting at row {offset} has {X.shape[1]} columns; earlier ones had {width}.")
        elif batch_names is not None and batch_names != names:
            raise ValueError(f"Columns change at row {offset}: {batch_names} after {names}.")
        if binary:
            bad = np.flatnonzero((y != 0) & (y != 1))
            if bad.size:
                raise ValueError(
                    f"y must be binary (0 or 1) for Logit; row {int(bad[0])} of {origin} (stream row "
                    f"{offset + int(bad[0])}) has {y[bad[0]]:g}."
                )
        yield X, y, names
        offset += len(X)
    if width is None:
        raise ValueError("The data source yielded no batches.")
