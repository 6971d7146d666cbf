"""`TransformerBlock`: self-attention and a feed-forward network, each a residual branch, pre- or post-norm."""

from __future__ import annotations

import keras

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
from keras_models.layers import direct

NORMALIZATIONS = ("layer_norm", "rms_norm")


@keras.saving.register_keras_serializable(package="keras_models")
class TransformerBlock(keras.layers.Layer):
    """One transformer layer (Vaswani et al., 2017): self-attention, then a position-wise feed-forward
    network, each added to its input.

    Pre-norm (`norm_first=True`, GPT-2 and later): `x + branch(norm(x))`, which trains deep stacks
    without warm-up tricks (Xiong et al., 2020); the model ends with one more normalization. Post-norm
    (`norm_first=False`, the original transformer and BERT): `norm(x + branch(x))`.

    A decoder block is causal (`causal=True`): position i sees positions up to i. With `causal=False`
    it is an encoder block.

    Args:
        num_heads: attention heads.
        intermediate_dim: the width inside the feed-forward network.
        num_key_value_heads: key/value heads for grouped-query attention; `None` for `num_heads`.
        head_dim: the width of a head; `None` for `hidden_dim // num_heads` (which must divide).
        activation: the feed-forward activation, `"gelu"`, `"relu"` or `"swiglu"`.
        dropout: dropout rate on the attention weights and on both residual branches.
        normalization: `"layer_norm"` or `"rms_norm"`.
        norm_first: pre-norm (`True`) or post-norm (`False`).
        epsilon: of the normalizations.
        use_bias: biases in the attention and feed-forward projections.
        causal: mask out the future (a decoder block).
        rotary_max_wavelength: rotary positions in the attention; `None` for none.
        kernel_initializer: of every projection.

    Call arguments:
        inputs: `(batch, steps, hidden_dim)`.
        padding_mask: boolean `(batch, key_length)`, `False` at padded steps, which no query sees (with
            a cache, `key_length` is the cache's length).
        cache: the self-attention cache `(batch, 2, cache_length, key_value_heads, head_dim)`.
        cache_index: where this call's steps go in the cache (int or int32 scalar tensor).
        attention_bias: added to the attention scores, broadcastable to `(batch, num_heads, steps,
            key_length)` (T5's relative position bias).
        training: dropout.

    Returns:
        `(batch, steps, hidden_dim)`; with a cache, `(outputs, new_cache)`.
    """

    def __init__(self, num_heads: int, intermediate_dim: int, num_key_value_heads: int | None = None,
                 head_dim: int | None = None, activation: str = "gelu", dropout: float = 0.0,
                 normalization: str = "layer_norm", norm_first: bool = True, epsilon: float = 1e-5,
                 use_bias: bool = True, causal: bool = True, rotary_max_wavelength: float | None = None,
                 kernel_initializer="glorot_uniform", **kwargs):
        self.num_heads = check_positive_int(num_heads, "num_heads")
        self.intermediate_dim = check_positive_int(intermediate_dim, "intermediate_dim")
        self.num_key_value_heads = check_optional_positive_int(num_key_value_heads, "num_key_value_heads")
        self.head_dim = check_optional_positive_int(head_dim, "head_dim")
        self.activation = check_choice(activation, ACTIVATIONS, "activation")
        self.dropout = check_rate(dropout, "dropout")
        self.normalization = check_choice(normalization, NORMALIZATIONS, "normalization")
        for value, what in ((norm_first, "norm_first"), (use_bias, "use_bias"), (causal, "causal")):
            if value not in (True, False):
                raise ValueError(f"{what} must be True or False; got {what}={value!r}.")
        self.epsilon = check_positive_float(epsilon, "epsilon")
        super().__init__(**kwargs)
        self.norm_first = bool(norm_first)
        self.use_bias = bool(use_bias)
        self.causal = bool(causal)
        self.rotary_max_wavelength = rotary_max_wavelength
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        if self.num_key_value_heads is not None and self.num_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_key_value_heads must divide num_heads={self.num_heads}; got "
                f"num_key_value_heads={self.num_key_value_heads}."
            )
        if rotary_max_wavelength is not None:
            check_positive_float(rotary_max_wavelength, "rotary_max_wavelength")

    def _norm(self, name):
        if self.normalization == "rms_norm":
            return RMSNorm(self.epsilon, dtype=self.dtype_policy, name=name)
        return keras.layers.LayerNormalization(epsilon=self.epsilon, dtype=self.dtype_policy, name=name)

    def build(self, inputs_shape):
        hidden_dim = inputs_shape[-1]
        if hidden_dim is None:
            raise ValueError(f"TransformerBlock needs a known last axis; got shape {tuple(inputs_shape)}.")
        hidden_dim = int(hidden_dim)
        if self.head_dim is None and hidden_dim % self.num_heads:
            raise ValueError(
                f"hidden_dim={hidden_dim} must be divisible by num_heads={self.num_heads} (or pass head_dim)."
            )
        self.attention = CachedMultiHeadAttention(
            self.num_heads, self.head_dim or hidden_dim // self.num_heads, num_key_value_heads=self.num_key_value_heads,
            dropout=self.dropout, use_bias=self.use_bias, rotary_max_wavelength=self.rotary_max_wavelength,
            kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy, name="self_attention",
        )
        self.attention.build(inputs_shape)
        self.attention_norm = self._norm("self_attention_norm")
        self.attention_norm.build(inputs_shape)
        self.attention_dropout = keras.layers.Dropout(self.dropout, name="self_attention_dropout")
        self.feed_forward = FeedForward(self.intermediate_dim, activation=self.activation, dropout=self.dropout,
                                        use_bias=self.use_bias, kernel_initializer=self.kernel_initializer,
                                        dtype=self.dtype_policy, name="feed_forward")
        self.feed_forward.build(inputs_shape)
        self.feed_forward_norm = self._norm("feed_forward_norm")
        self.feed_forward_norm.build(inputs_shape)

    def call(self, inputs, padding_mask=None, cache=None, cache_index=None, attention_bias=None, training=None):
        attention_mask = None
        if padding_mask is not None:  # (batch, 1, key_length): every query sees the same keys
            attention_mask = keras.ops.expand_dims(keras.ops.cast(padding_mask, "bool"), 1)
        x = inputs
        branch = direct.call(self.attention_norm, x) if self.norm_first else x
        branch = direct.call(self.attention, branch, attention_mask=attention_mask, use_causal_mask=self.causal,
                             cache=cache, cache_index=cache_index, attention_bias=attention_bias, training=training)
        if cache is not None:
            branch, cache = branch
        x = x + direct.call(self.attention_dropout, branch, training=training)
        if not self.norm_first:
            x = direct.call(self.attention_norm, x)
        branch = direct.call(self.feed_forward_norm, x) if self.norm_first else x
        x = x + direct.call(self.feed_forward, branch, training=training)
        if not self.norm_first:
            x = direct.call(self.feed_forward_norm, x)
        return x if cache is None else (x, cache)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "activation": self.activation,
            "dropout": self.dropout,
            "normalization": self.normalization,
            "norm_first": self.norm_first,
            "epsilon": self.epsilon,
            "use_bias": self.use_bias,
            "causal": self.causal,
            "rotary_max_wavelength": self.rotary_max_wavelength,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
