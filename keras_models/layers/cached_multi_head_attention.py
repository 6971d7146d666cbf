"""`CachedMultiHeadAttention`: multi-head (or grouped-query) attention with masks and a key/value cache."""

from __future__ import annotations

import keras
from keras import ops

from keras_models.checks import (
    check_optional_positive_int,
    check_positive_float,
    check_positive_int,
    check_rate,
)
from keras_models.layers.rotary_embedding import RotaryEmbedding
from keras_models.layers import direct

# Added to the scores of masked keys; finite, so a row with every key masked stays finite (uniform).
_MASKED = -1e9


def _keys_and_values(cache):
    """The keys and the values of a `(batch, 2, length, heads, head_dim)` cache. Unstacked rather than
    indexed: TFLite runs an indexing slice (`cache[:, 0]`) in its reference strided-slice kernel, one
    function call per element, which took 38% of a GPT decode step (benchmarks/gpt_latency.py); its
    unpack copies whole blocks."""
    keys, values = ops.unstack(cache, num=2, axis=1)
    return keys, values


def key_positions_mask(query_length, key_length, start_index=0, causal=True):
    """Boolean `(query_length, key_length)`: query `i`, at position `start_index + i`, may see key `j`.

    Causal: key `j` at or before the query's position. Not causal: the keys written so far, `j <
    start_index + query_length` (the empty slots of a cache are never seen).
    """
    queries = ops.arange(query_length, dtype="int32") + ops.cast(start_index, "int32")
    keys = ops.arange(key_length, dtype="int32")
    if causal:
        return ops.less_equal(ops.expand_dims(keys, 0), ops.expand_dims(queries, 1))
    written = ops.less(keys, ops.cast(start_index, "int32") + query_length)
    return ops.broadcast_to(ops.expand_dims(written, 0), (query_length, key_length))


@keras.saving.register_keras_serializable(package="keras_models")
class CachedMultiHeadAttention(keras.layers.Layer):
    """Scaled dot-product attention with several heads (Vaswani et al., 2017), grouped-query attention
    (Ainslie et al., 2023, "GQA") when `num_key_value_heads < num_heads`, optional rotary positions,
    padding and causal masks, and a fixed-size key/value cache for generation.

    Queries come from `query`, keys and values from `value` (the same tensor by default): self-attention
    and cross-attention are the same layer. Keys and values have `num_key_value_heads` heads, each
    shared by `num_heads / num_key_value_heads` query heads (`num_key_value_heads == num_heads` is
    multi-head attention, 1 is multi-query attention).

    The attention itself is `keras.ops.dot_product_attention` (the backend's fused kernel where it has
    one), except when attention weights are dropped in training, and for a single query step on
    TensorFlow (a decode step; the backend of the exported files), which sums products in the cache's
    own layout instead of transposing the cache (`_attend_one_query`), in float32.

    Args:
        num_heads: query heads.
        head_dim: the width of every head (queries, keys and values).
        num_key_value_heads: key and value heads, dividing `num_heads`; `None` for `num_heads`.
        output_dim: the width of the output projection; `None` for the width of `query`.
        dropout: dropout rate on the attention weights in training.
        use_bias: biases on the four projections.
        rotary_max_wavelength: rotate queries and keys by their positions (`RotaryEmbedding` with
            this `max_wavelength`); `None` for no rotation.
        kernel_initializer, bias_initializer: of every projection.

    Call arguments:
        query: `(batch, query_length, width)`.
        value: `(batch, key_length, value_width)`, the source of keys and values; `None` for `query`.
        attention_mask: boolean, broadcastable to `(batch, query_length, key_length)`; `True` where a
            query may see a key. With a cache, `key_length` is the cache's length.
        use_causal_mask: a query sees only keys at or before its position.
        cache: `(batch, 2, cache_length, num_key_value_heads, head_dim)`, keys then values. With
            `cache_index`, this call's keys and values are written into it at `cache_index` and the
            query attends over the whole cache, slots not yet written masked out; without, the cache
            is read as it is and `value` is ignored (cross-attention to an encoded source).
        cache_index: the position of the first query step: an int or an int32 scalar tensor.
        attention_bias: added to the scores, broadcastable to `(batch, num_heads, query_length,
            key_length)` (relative position biases).
        training: dropout of attention weights.

    Returns:
        `(batch, query_length, output_dim)`; with a cache, `(output, new_cache)`.
    """

    def __init__(self, num_heads: int, head_dim: int, num_key_value_heads: int | None = None,
                 output_dim: int | None = None, dropout: float = 0.0, use_bias: bool = True,
                 rotary_max_wavelength: float | None = None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        num_heads = check_positive_int(num_heads, "num_heads")
        head_dim = check_positive_int(head_dim, "head_dim")
        num_key_value_heads = check_optional_positive_int(num_key_value_heads, "num_key_value_heads")
        if num_key_value_heads is not None and num_heads % num_key_value_heads:
            raise ValueError(
                f"num_key_value_heads must divide num_heads={num_heads}; got "
                f"num_key_value_heads={num_key_value_heads}."
            )
        output_dim = check_optional_positive_int(output_dim, "output_dim")
        dropout = check_rate(dropout, "dropout")
        if rotary_max_wavelength is not None:
            rotary_max_wavelength = check_positive_float(rotary_max_wavelength, "rotary_max_wavelength")
            if head_dim % 2:
                raise ValueError(f"Rotary positions need an even head_dim; got head_dim={head_dim}.")
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.num_key_value_heads = num_key_value_heads
        self.output_dim = output_dim
        self.dropout = dropout
        self.use_bias = bool(use_bias)
        self.rotary_max_wavelength = rotary_max_wavelength
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    @property
    def key_value_heads(self) -> int:
        return self.num_heads if self.num_key_value_heads is None else self.num_key_value_heads

    def _dense(self, units, name):
        return keras.layers.Dense(units, use_bias=self.use_bias, kernel_initializer=self.kernel_initializer,
                                  bias_initializer=self.bias_initializer, dtype=self.dtype_policy, name=name)

    def build(self, query_shape, value_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        self.query_dense = self._dense(self.num_heads * self.head_dim, "query")
        self.query_dense.build(query_shape)
        self.key_dense = self._dense(self.key_value_heads * self.head_dim, "key")
        self.key_dense.build(value_shape)
        self.value_dense = self._dense(self.key_value_heads * self.head_dim, "value")
        self.value_dense.build(value_shape)
        self.output_dense = self._dense(self.output_dim or int(query_shape[-1]), "output")
        self.output_dense.build((*query_shape[:-1], self.num_heads * self.head_dim))
        self.rotary = None
        if self.rotary_max_wavelength is not None:
            self.rotary = RotaryEmbedding(self.rotary_max_wavelength, name="rotary", dtype=self.dtype_policy)
        self.weights_dropout = keras.layers.Dropout(self.dropout, name="weights_dropout")

    def _heads(self, x, batch, heads):
        """`(batch, steps, heads * head_dim)` -> `(batch, steps, heads, head_dim)`. The batch is read from
        the layer's input: ONNX converters may rewrite a projection's output into a 2-D matmul."""
        steps = x.shape[1] if x.shape[1] is not None else -1  # kept static where known (one decode step)
        return direct.reshape(x, (batch, steps, heads, self.head_dim))

    def call(self, query, value=None, attention_mask=None, use_causal_mask=False, cache=None, cache_index=None,
             attention_bias=None, training=None):
        start = 0 if cache_index is None else cache_index
        batch = ops.shape(query)[0]
        # (batch, query_length, heads, head_dim)
        queries = self._heads(direct.call(self.query_dense, query), batch, self.num_heads)
        if self.rotary is not None:
            queries = self.rotary(queries, start_index=start)
        if cache is not None and cache_index is None:  # a cache read as it is: keys of an encoded source
            (keys, values), new_cache = _keys_and_values(cache), cache
        else:
            source = query if value is None else value
            # (batch, key_length, key_value_heads, head_dim)
            keys = self._heads(direct.call(self.key_dense, source), batch, self.key_value_heads)
            values = self._heads(direct.call(self.value_dense, source), batch, self.key_value_heads)
            if self.rotary is not None:
                keys = self.rotary(keys, start_index=start)
            new_cache = None
            if cache is not None:
                # (batch, 2, steps, key_value_heads, head_dim)
                update = ops.cast(ops.stack([keys, values], axis=1), cache.dtype)
                new_cache = ops.slice_update(cache, (0, 0, ops.cast(start, "int32"), 0, 0), update)
                keys, values = (ops.cast(part, queries.dtype) for part in _keys_and_values(new_cache))

        writing_cache = cache is not None and cache_index is not None
        # Causal attention alone over this call's own keys: the fused kernels of JAX and PyTorch take it as
        # a flag. TensorFlow has no fused kernel, and its flag builds the mask with an op that TFLite's
        # builtin set lacks (a strided slice adding axes): there the mask is explicit.
        causal_only = (use_causal_mask and cache is None and attention_mask is None and attention_bias is None
                       and keras.backend.backend() != "tensorflow")
        mask = None if causal_only else self._mask(queries, keys, attention_mask, use_causal_mask, writing_cache, start)
        attended = self._attend(queries, keys, values, mask, attention_bias, causal_only,
                                training)  # (batch, query_length, heads, head_dim)
        steps = query.shape[1] if query.shape[1] is not None else -1
        attended = direct.reshape(attended, (batch, steps, self.num_heads * self.head_dim))
        output = direct.call(self.output_dense, attended)
        return output if cache is None else (output, new_cache)

    def _mask(self, queries, keys, attention_mask, causal, writing_cache, start):
        """The boolean mask broadcastable to `(batch, heads, query_length, key_length)`, or None."""
        mask = None
        if causal or writing_cache:
            positions = key_positions_mask(ops.shape(queries)[1], ops.shape(keys)[1], start, causal=causal)
            mask = ops.expand_dims(positions, (0, 1))
        if attention_mask is not None:
            given = ops.cast(attention_mask, "bool")
            given = ops.expand_dims(given, 1) if len(given.shape) == 3 else given
            mask = given if mask is None else ops.logical_and(mask, given)
        return mask

    def _attend(self, queries, keys, values, mask, bias, causal_only, training):
        groups = self.num_heads // self.key_value_heads
        if groups > 1:  # every key/value head serves `groups` consecutive query heads
            keys, values = ops.repeat(keys, groups, axis=2), ops.repeat(values, groups, axis=2)
        if training and self.dropout > 0:
            if causal_only:
                mask = ops.expand_dims(key_positions_mask(ops.shape(queries)[1], ops.shape(keys)[1]), (0, 1))
            return self._attend_with_dropout(queries, keys, values, mask, bias, training)
        if queries.shape[1] == 1 and keras.backend.backend() == "tensorflow":
            return self._attend_one_query(queries, keys, values, mask, bias)
        if bias is not None and mask is not None:  # PyTorch's fused attention takes one of them: fold the mask in
            bias = ops.where(mask, ops.cast(bias, "float32"), _MASKED)
            mask = None
        if bias is None and mask is None:
            return direct.dot_product_attention(queries, keys, values, is_causal=causal_only)
        return ops.dot_product_attention(queries, keys, values, bias=bias, mask=mask, is_causal=causal_only)

    def _attend_one_query(self, queries, keys, values, mask, bias):
        """One query step (a decode step) as products and sums over the keys' own layout.

        A matmul wants the keys as `(batch, heads, head_dim, keys)`: the exported graphs would transpose
        the whole cache every step, which took 40% of onnxruntime's GPT decode step; here only the
        `(batch, heads, keys)` scores change layout (benchmarks/gpt_latency.py)."""
        queries, keys = ops.cast(queries, "float32"), ops.cast(keys, "float32")
        scores = ops.sum(queries * keys, axis=-1) / ops.sqrt(float(self.head_dim))  # (batch, keys, heads)
        scores = ops.expand_dims(ops.transpose(scores, (0, 2, 1)), 2)  # (batch, heads, 1, keys)
        if bias is not None:
            scores = scores + ops.cast(bias, "float32")
        if mask is not None:
            scores = ops.where(mask, scores, _MASKED)
        weights = ops.cast(ops.softmax(scores, axis=-1), values.dtype)
        weights = ops.expand_dims(ops.transpose(weights[:, :, 0], (0, 2, 1)), -1)  # (batch, keys, heads, 1)
        return ops.sum(weights * values, axis=1, keepdims=True)  # (batch, 1, heads, head_dim)

    def _attend_with_dropout(self, queries, keys, values, mask, bias, training):
        scores = ops.einsum("bqhd,bkhd->bhqk", ops.cast(queries, "float32"), ops.cast(keys, "float32"))
        scores = scores / ops.sqrt(float(self.head_dim))
        if bias is not None:
            scores = scores + ops.cast(bias, "float32")
        if mask is not None:
            scores = ops.where(mask, scores, _MASKED)
        weights = ops.cast(ops.softmax(scores, axis=-1), values.dtype)
        weights = direct.call(self.weights_dropout, weights, training=training)
        return ops.einsum("bhqk,bkhd->bqhd", weights, values)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "num_key_value_heads": self.num_key_value_heads,
            "output_dim": self.output_dim,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "rotary_max_wavelength": self.rotary_max_wavelength,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
