"""Paths through latent space."""

from __future__ import annotations

import numpy as np


def slerp(start, end, fractions):
    """Spherical interpolation between latent vectors `start` and `end` `(d,)` at `fractions` `(n,)`;
    the path Gaussian latents should follow (White, 2016, "Sampling Generative Networks").
    Falls back to linear interpolation when the two vectors are (anti)parallel."""
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    cosine = np.dot(start, end) / (np.linalg.norm(start) * np.linalg.norm(end))
    omega = np.arccos(np.clip(cosine, -1.0, 1.0))
    fractions = np.asarray(fractions, np.float64)[:, None]
    if np.sin(omega) < 1e-6:
        return (1.0 - fractions) * start + fractions * end
    return (np.sin((1.0 - fractions) * omega) * start + np.sin(fractions * omega) * end) / np.sin(omega)
