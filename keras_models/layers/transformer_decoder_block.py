"""`TransformerDecoderBlock`: causal self-attention, cross-attention to an encoder and a feed-forward network,
each a residual branch, pre- or post-norm."""

from __future__ import annotations

import keras
from keras import ops

from keras_models.checks import (
    check_choice,
    check_optional_positive_int,
    check_positive_float,
    check_positive_int,
    check_rate,
)
from keras_models.layers.cached_multi_head_attention import CachedMultiHeadAttention
from keras_models.layers.feed_forward import ACTIVATIONS, FeedForward
from keras_models.layers.rms_norm import RMSNorm
from keras_models.layers.transformer_block import NORMALIZATIONS


@keras.saving.register_keras_serializable(package="keras_models")
class TransformerDecoderBlock(keras.layers.Layer):
    """One decoder layer of an encoder-decoder transformer (Vaswani et al., 2017): causal self-attention
    over the target, cross-attention from the target to the encoder's outputs, then a position-wise
    feed-forward network, each added to its input.

    Pre-norm (`norm_first=True`; T5, Whisper): `x + branch(norm(x))`. Post-norm (`norm_first=False`, the
    original transformer): `norm(x + branch(x))`.

    For generation, the self-attention keeps a fixed-size key/value cache (`cache`, written at
    `cache_index`), and the cross-attention's keys and values, which depend on the encoder alone, are
    computed once by `cross_attention_cache(encoder_outputs)` and passed as `cross_cache` at every step.

    Args:
        num_heads: attention heads (of both attentions).
        intermediate_dim: the width inside the feed-forward network.
        head_dim: the width of a head; `None` for `hidden_dim // num_heads` (which must divide).
        num_key_value_heads: key/value heads for grouped-query attention; `None` for `num_heads`.
        activation: the feed-forward activation (see `FeedForward`).
        dropout: dropout rate on the attention weights and on the three residual branches.
        normalization: `"layer_norm"` or `"rms_norm"`.
        norm_first: pre-norm (`True`) or post-norm (`False`).
        epsilon: of the normalizations.
        use_bias: biases in the attention and feed-forward projections.
        kernel_initializer: of every projection.

    Call arguments:
        inputs: the target's hidden states `(batch, steps, hidden_dim)`.
        encoder_outputs: `(batch, source_length, encoder_dim)`; may be `None` when `cross_cache` is given.
        padding_mask: boolean `(batch, key_length)`, `False` at padded target steps, which no query sees
            (with a cache, `key_length` is the cache's length).
        encoder_padding_mask: boolean `(batch, source_length)`, `False` at padded source steps.
        attention_bias: added to the self-attention scores, broadcastable to `(batch, num_heads, steps,
            key_length)` (T5's relative position bias).
        cache: the self-attention cache `(batch, 2, cache_length, key_value_heads, head_dim)`.
        cache_index: where this call's steps go in the cache (int or int32 scalar tensor); required with
            `cache`.
        cross_cache: `cross_attention_cache(encoder_outputs)`, `(batch, 2, source_length,
            key_value_heads, head_dim)`.
        training: dropout.

    Returns:
        `(batch, steps, hidden_dim)`; with a self-attention cache, `(outputs, new_cache)`.
    """

    def __init__(self, num_heads: int, intermediate_dim: int, head_dim: int | None = None,
                 num_key_value_heads: int | None = None, activation: str = "gelu", dropout: float = 0.0,
                 normalization: str = "layer_norm", norm_first: bool = True, epsilon: float = 1e-5,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", **kwargs):
        self.num_heads = check_positive_int(num_heads, "num_heads")
        self.intermediate_dim = check_positive_int(intermediate_dim, "intermediate_dim")
        self.head_dim = check_optional_positive_int(head_dim, "head_dim")
        self.num_key_value_heads = check_optional_positive_int(num_key_value_heads, "num_key_value_heads")
        if self.num_key_value_heads is not None and self.num_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_key_value_heads must divide num_heads={self.num_heads}; got "
                f"num_key_value_heads={self.num_key_value_heads}."
            )
        self.activation = check_choice(activation, ACTIVATIONS, "activation")
        self.dropout = check_rate(dropout, "dropout")
        self.normalization = check_choice(normalization, NORMALIZATIONS, "normalization")
        for value, what in ((norm_first, "norm_first"), (use_bias, "use_bias")):
            if value not in (True, False):
                raise ValueError(f"{what} must be True or False; got {what}={value!r}.")
        self.epsilon = check_positive_float(epsilon, "epsilon")
        super().__init__(**kwargs)
        self.norm_first = bool(norm_first)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    @property
    def key_value_heads(self) -> int:
        return self.num_heads if self.num_key_value_heads is None else self.num_key_value_heads

    def _norm(self, name):
        if self.normalization == "rms_norm":
            return RMSNorm(self.epsilon, dtype=self.dtype_policy, name=name)
        return keras.layers.LayerNormalization(epsilon=self.epsilon, dtype=self.dtype_policy, name=name)

    def _attention(self, head_dim, name):
        return CachedMultiHeadAttention(
            self.num_heads, head_dim, num_key_value_heads=self.num_key_value_heads, dropout=self.dropout,
            use_bias=self.use_bias, kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy, name=name,
        )

    def build(self, inputs_shape, encoder_outputs_shape=None):
        hidden_dim = inputs_shape[-1]
        if hidden_dim is None:
            raise ValueError(f"TransformerDecoderBlock needs a known last axis; got shape {tuple(inputs_shape)}.")
        hidden_dim = int(hidden_dim)
        if self.head_dim is None and hidden_dim % self.num_heads:
            raise ValueError(
                f"hidden_dim={hidden_dim} must be divisible by num_heads={self.num_heads} (or pass head_dim)."
            )
        head_dim = self.head_dim or hidden_dim // self.num_heads
        # Built from a cross cache alone, the encoder's width is taken to be the decoder's.
        encoder_shape = inputs_shape if encoder_outputs_shape is None else encoder_outputs_shape
        if encoder_shape[-1] is None:
            raise ValueError(f"encoder_outputs need a known last axis; got shape {tuple(encoder_shape)}.")
        self.self_attention = self._attention(head_dim, "self_attention")
        self.self_attention.build(inputs_shape)
        self.self_attention_norm = self._norm("self_attention_norm")
        self.self_attention_norm.build(inputs_shape)
        self.self_attention_dropout = keras.layers.Dropout(self.dropout, name="self_attention_dropout")
        self.cross_attention = self._attention(head_dim, "cross_attention")
        self.cross_attention.build(inputs_shape, encoder_shape)
        self.cross_attention_norm = self._norm("cross_attention_norm")
        self.cross_attention_norm.build(inputs_shape)
        self.cross_attention_dropout = keras.layers.Dropout(self.dropout, name="cross_attention_dropout")
        self.feed_forward = FeedForward(self.intermediate_dim, activation=self.activation, dropout=self.dropout,
                                        use_bias=self.use_bias, kernel_initializer=self.kernel_initializer,
                                        dtype=self.dtype_policy, name="feed_forward")
        self.feed_forward.build(inputs_shape)
        self.feed_forward_norm = self._norm("feed_forward_norm")
        self.feed_forward_norm.build(inputs_shape)

    def cross_attention_cache(self, encoder_outputs):
        """The cross-attention's keys and values of `encoder_outputs` `(batch, source_length, encoder_dim)`:
        `(batch, 2, source_length, key_value_heads, head_dim)`, the `cross_cache` of every decoding step."""
        if not self.built:
            raise ValueError("cross_attention_cache needs a built block: call it on a target and encoder outputs.")
        attention = self.cross_attention
        batch = ops.shape(encoder_outputs)[0]
        shape = (batch, -1, self.key_value_heads, attention.head_dim)
        keys = ops.reshape(attention.key_dense(encoder_outputs), shape)
        values = ops.reshape(attention.value_dense(encoder_outputs), shape)
        return ops.stack([keys, values], axis=1)

    def _residual(self, x, norm, branch, dropout, training):
        """`x + dropout(branch(norm(x)))` (pre-norm) or `norm(x + dropout(branch(x)))` (`dropout` None for
        none), and what `branch` returned besides its output (a cache), or None."""
        output = branch(norm(x) if self.norm_first else x)
        extra = None
        if isinstance(output, tuple):
            output, extra = output
        x = x + (output if dropout is None else dropout(output, training=training))
        return (x if self.norm_first else norm(x)), extra

    def call(self, inputs, encoder_outputs=None, padding_mask=None, encoder_padding_mask=None, attention_bias=None,
             cache=None, cache_index=None, cross_cache=None, training=None):
        if encoder_outputs is None and cross_cache is None:
            raise ValueError("TransformerDecoderBlock needs encoder_outputs or cross_cache; got neither.")
        if cache is not None and cache_index is None:
            raise ValueError("A self-attention cache needs cache_index (where this call's steps go); got None.")
        # (batch, 1, key_length): every query sees the same keys
        self_mask = None if padding_mask is None else ops.expand_dims(ops.cast(padding_mask, "bool"), 1)
        cross_mask = None
        if encoder_padding_mask is not None:
            cross_mask = ops.expand_dims(ops.cast(encoder_padding_mask, "bool"), 1)

        def self_attention(x):
            return self.self_attention(x, attention_mask=self_mask, use_causal_mask=True, cache=cache,
                                       cache_index=cache_index, attention_bias=attention_bias, training=training)

        def cross_attention(x):
            if cross_cache is not None:  # keys and values read as they are (no cache_index)
                return self.cross_attention(x, attention_mask=cross_mask, cache=cross_cache, training=training)[0]
            return self.cross_attention(x, encoder_outputs, attention_mask=cross_mask, training=training)

        x, new_cache = self._residual(inputs, self.self_attention_norm, self_attention, self.self_attention_dropout,
                                      training)
        x, _ = self._residual(x, self.cross_attention_norm, cross_attention, self.cross_attention_dropout, training)
        x, _ = self._residual(x, self.feed_forward_norm, lambda y: self.feed_forward(y, training=training),
                              None, training)  # the feed-forward drops its own output
        return x if cache is None else (x, new_cache)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "head_dim": self.head_dim,
            "num_key_value_heads": self.num_key_value_heads,
            "activation": self.activation,
            "dropout": self.dropout,
            "normalization": self.normalization,
            "norm_first": self.norm_first,
            "epsilon": self.epsilon,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
