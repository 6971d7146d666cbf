"""Sub-layer calls without `Layer.__call__` while `keras_models.graph_runner` runs a model's plan.

A layer built from other layers (`TransformerBlock`, `CachedMultiHeadAttention`, `FeedForward`) calls them
through `direct.call(layer, ...)`. Outside a plan that is `layer(...)`. Inside one (eagerly on PyTorch,
after the plan has checked that every nested layer computes in float32 without activity regularizers),
a sub-layer of a type in `_direct_types` is called through its `call`, skipping the per-call work
`__call__` does in every eager step (argument conversion, `training` resolution, masks, scopes). The
composite layers pass `training` to every sub-layer whose behaviour depends on it (dropout,
attention, feed-forward), so nothing is left for `__call__` to resolve. A `Dense` sub-layer runs as one PyTorch `linear` with its bias inside.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import keras

_state = threading.local()  # `depth`: graph_runner.run's nesting in this thread; direct calls only inside


@functools.cache
def _direct_types():
    from keras_models.layers.cached_multi_head_attention import CachedMultiHeadAttention
    from keras_models.layers.feed_forward import FeedForward
    from keras_models.layers.rms_norm import RMSNorm

    return frozenset({keras.layers.Dense, keras.layers.LayerNormalization, keras.layers.Dropout, RMSNorm,
                      CachedMultiHeadAttention, FeedForward})


@contextlib.contextmanager
def running_plan():
    """Marks this thread as running a checked plan (`graph_runner.run`) for the duration."""
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1


def call(layer, *args, **kwargs):
    """`layer(*args, **kwargs)`, or `layer.call(*args, **kwargs)` inside a running plan (see the module)."""
    if getattr(_state, "depth", 0) and type(layer) in _direct_types() and layer.built:
        if type(layer) is keras.layers.Dense and not layer.lora_enabled and not kwargs:
            return _dense(layer, *args)
        return layer.call(*args, **kwargs)
    return layer(*args, **kwargs)


def _dense(layer, inputs):
    """`Dense.call` as one PyTorch `linear` (the bias added inside the product, as `nn.Linear` does; Keras
    adds it in a second operator). The kernel `(in, out)` is passed as a transposed view, not copied."""
    import torch.nn.functional as F

    bias = None if layer.bias is None else layer.bias.value
    outputs = F.linear(inputs, layer._kernel.value.T, bias)
    return outputs if layer.activation is None else layer.activation(outputs)
