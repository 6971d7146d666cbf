"""`FeedForward`: the position-wise feed-forward network of a transformer block (GELU, ReLU, SwiGLU or GeGLU)."""

from __future__ import annotations

import keras
from keras import ops

from keras_models.checks import check_choice, check_positive_int, check_rate
from keras_models.layers import direct

ACTIVATIONS = ("gelu", "relu", "swiglu", "geglu")


@keras.saving.register_keras_serializable(package="keras_models")
class FeedForward(keras.layers.Layer):
    """Two projections around an activation, applied to every position alone, back to the input width.

    - `"gelu"`: `down(gelu(up(x)))` with GELU's tanh approximation, as in GPT-2 and BERT (Hendrycks and
      Gimpel, 2016).
    - `"relu"`: `down(relu(up(x)))`, as in the original transformer.
    - `"swiglu"`: `down(silu(gate(x)) * up(x))`, a gated linear unit (Shazeer, 2020, "GLU Variants
      Improve Transformer"; Llama). It has a third projection: with the same parameter budget,
      `intermediate_dim` is usually taken 2/3 as wide.
    - `"geglu"`: `down(gelu(gate(x)) * up(x))`, the GELU-gated unit of the same paper (T5 v1.1).

    Args:
        intermediate_dim: the width between the projections.
        activation: `"gelu"`, `"relu"`, `"swiglu"` or `"geglu"`.
        dropout: dropout rate on the output (the residual branch's dropout of GPT-2).
        use_bias: biases on the projections.
        kernel_initializer, bias_initializer: of every projection.
    """

    def __init__(self, intermediate_dim: int, activation: str = "gelu", dropout: float = 0.0, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        intermediate_dim = check_positive_int(intermediate_dim, "intermediate_dim")
        activation = check_choice(activation, ACTIVATIONS, "activation")
        dropout = check_rate(dropout, "dropout")
        super().__init__(**kwargs)
        self.intermediate_dim = intermediate_dim
        self.activation = activation
        self.dropout = dropout
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def _dense(self, units, name):
        return keras.layers.Dense(units, use_bias=self.use_bias, kernel_initializer=self.kernel_initializer,
                                  bias_initializer=self.bias_initializer, dtype=self.dtype_policy, name=name)

    def build(self, input_shape):
        width = input_shape[-1]
        if width is None:
            raise ValueError(f"FeedForward needs a known last axis; got shape {tuple(input_shape)}.")
        self.up = self._dense(self.intermediate_dim, "up")
        self.up.build(input_shape)
        if self.activation in ("swiglu", "geglu"):
            self.gate = self._dense(self.intermediate_dim, "gate")
            self.gate.build(input_shape)
        self.down = self._dense(int(width), "down")
        self.down.build((*input_shape[:-1], self.intermediate_dim))
        self.output_dropout = keras.layers.Dropout(self.dropout, name="output_dropout")

    def call(self, inputs, training=None):
        if self.activation == "swiglu":
            hidden = ops.silu(direct.call(self.gate, inputs)) * direct.call(self.up, inputs)
        elif self.activation == "geglu":
            hidden = direct.gelu(direct.call(self.gate, inputs), approximate=True) * direct.call(self.up, inputs)
        elif self.activation == "gelu":
            hidden = direct.gelu(direct.call(self.up, inputs), approximate=True)
        else:
            hidden = ops.relu(direct.call(self.up, inputs))
        return direct.call(self.output_dropout, direct.call(self.down, hidden), training=training)  # (..., width)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "intermediate_dim": self.intermediate_dim,
            "activation": self.activation,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
