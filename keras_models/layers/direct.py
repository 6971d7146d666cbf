"""Sub-layer calls without `Layer.__call__` while `keras_models.graph_runner` runs a model's plan.

A layer built from other layers (`TransformerBlock`, `CachedMultiHeadAttention`, `FeedForward`) calls them
through `direct.call(layer, ...)`. Outside a plan that is `layer(...)`. Inside one (eagerly on PyTorch,
after the plan has checked that every nested layer computes in float32 without activity regularizers),
a sub-layer of a type in `_direct_types` is called through its `call`, skipping the per-call work
`__call__` does in every eager step (argument conversion, `training` resolution, masks, scopes). The
composite layers pass `training` to every sub-layer whose behaviour depends on it (dropout,
attention, feed-forward), so nothing is left for `__call__` to resolve. A `Dense` sub-layer runs as one
PyTorch `linear` with its bias inside, a `LayerNormalization` over the last axis as one `layer_norm`.

The composite layers' own hot operators (`gelu`, `reshape`, `dot_product_attention`) go through the
functions below: inside a plan they are the PyTorch operators `keras.ops` would reach (the same kernels,
without its argument conversion and checks, and without the copies Keras' attention makes of the query,
key and value); outside one they are `keras.ops`.
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


def active() -> bool:
    """Whether this thread is running a checked plan (eagerly on PyTorch, float32)."""
    return bool(getattr(_state, "depth", 0))


def call(layer, *args, **kwargs):
    """`layer(*args, **kwargs)`, or `layer.call(*args, **kwargs)` inside a running plan (see the module)."""
    if active() and type(layer) in _direct_types() and layer.built:
        if type(layer) is keras.layers.Dense and not layer.lora_enabled and not kwargs:
            return _dense(layer, *args)
        if type(layer) is keras.layers.LayerNormalization and not kwargs and _last_axis_norm(layer, *args):
            return _layer_norm(layer, *args)
        return layer.call(*args, **kwargs)
    return layer(*args, **kwargs)


def gelu(x, approximate=True):
    """`keras.ops.gelu(x, approximate)`."""
    if active():
        import torch.nn.functional as F

        return F.gelu(x, approximate="tanh" if approximate else "none")
    return keras.ops.gelu(x, approximate=approximate)


def reshape(x, shape):
    """`keras.ops.reshape(x, shape)`."""
    return x.reshape(shape) if active() else keras.ops.reshape(x, shape)


def dot_product_attention(query, key, value, is_causal=False):
    """`keras.ops.dot_product_attention(query, key, value, is_causal=is_causal)` for `(batch, steps, heads,
    head_dim)` queries, keys and values with as many heads each; no mask, no bias."""
    if active():
        import torch.nn.functional as F

        # PyTorch's layout (batch, heads, steps, head_dim) as views: its kernel reads the strides.
        attended = F.scaled_dot_product_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
                                                  is_causal=is_causal)
        return attended.transpose(1, 2)
    return keras.ops.dot_product_attention(query, key, value, is_causal=is_causal)


def _dense(layer, inputs):
    """`Dense.call` as one PyTorch `linear` (the bias added inside the product, as `nn.Linear` does; Keras
    adds it in a second operator). The kernel `(in, out)` is passed as a transposed view, not copied."""
    import torch.nn.functional as F

    bias = None if layer.bias is None else layer.bias.value
    outputs = F.linear(inputs, layer._kernel.value.T, bias)
    return outputs if layer.activation is None else layer.activation(outputs)


def _last_axis_norm(layer, inputs) -> bool:
    """Whether `layer` (a LayerNormalization) normalizes the last axis alone without RMS scaling: Keras'
    own call is then PyTorch's `layer_norm`."""
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return not layer.rms_scaling and len(axis) == 1 and axis[0] in (-1, inputs.dim() - 1)


def _layer_norm(layer, inputs):
    import torch.nn.functional as F

    gamma = None if layer.gamma is None else layer.gamma.value
    beta = None if layer.beta is None else layer.beta.value
    return F.layer_norm(inputs, (inputs.shape[-1],), gamma, beta, layer.epsilon)
