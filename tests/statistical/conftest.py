import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def regression_frame():
    """A well-conditioned random design (float32-representable values) with a categorical column."""
    rng = np.random.default_rng(42)
    n = 120
    frame = pd.DataFrame({
        "x1": rng.normal(size=n).astype(np.float32).astype(np.float64),
        "x2": rng.uniform(-2, 2, size=n).astype(np.float32).astype(np.float64),
        "x3": rng.normal(1.0, 0.5, size=n).astype(np.float32).astype(np.float64),
        "group": rng.choice(["a", "b", "c"], size=n),
    })
    effect = frame["group"].map({"a": 0.0, "b": 0.7, "c": -0.4})
    frame["y"] = 0.5 + 1.5 * frame.x1 - 0.8 * frame.x2 + 0.3 * frame.x3 + effect + rng.normal(0, 0.6, size=n)
    logits = -0.3 + 1.2 * frame.x1 - 0.9 * frame.x2 + 0.5 * frame.x3 + effect
    frame["outcome"] = (rng.uniform(size=n) < 1 / (1 + np.exp(-logits))).astype(int)
    frame["weight"] = rng.uniform(0.3, 3.0, size=n)
    return frame


def relative_error(ours, reference):
    ours, reference = np.asarray(ours, dtype=float), np.asarray(reference, dtype=float)
    return float(np.max(np.abs(ours - reference) / np.maximum(np.abs(reference), 1e-300)))


@pytest.fixture
def rel():
    return relative_error
