"""The one atomic writer behind every file the library and `export` write."""

import os
import stat

import numpy as np
import pytest

from keras_models.files import atomic_write
from keras_models.generative import save_image


def test_pictures_respect_the_umask_like_exports(tmp_path):
    previous = os.umask(0o027)
    try:
        path = save_image(np.zeros((8, 8, 1), np.float32), tmp_path / "grid.png")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"  # the previous file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
