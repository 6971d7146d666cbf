"""`BatchNormalization`: Keras' batch normalization, one fused kernel on the PyTorch backend."""

from __future__ import annotations

import keras
from keras import ops

_PACKAGE = "keras_models"


def _as(tensor, dtype):
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization`: the same arguments, variables, updates and files.

    On the PyTorch backend Keras composes batch normalization from a mean, a variance and five
    element-wise operations, each a pass over the activations with its own backward pass. This layer
    calls PyTorch's fused batch normalization instead (one pass forward, one backward) on the channel
    axis of a channels-last or channels-first feature map, and updates the moving mean and variance by
    Keras' rule with the batch's biased variance, as Keras does, in place on the variables' tensors
    (through `assign` inside a `StatelessScope`). Masks, batch renormalization and the other backends
    take Keras' own path.
    """

    def _fused_axis(self, inputs, mask):
        if keras.backend.backend() != "torch" or mask is not None or self.renorm:
            return None
        rank = len(inputs.shape)
        axis = self.axis % rank
        return axis if rank >= 2 and axis in (1, rank - 1) else None

    def call(self, inputs, training=None, mask=None):
        axis = self._fused_axis(inputs, mask)
        if axis is None:
            return super().call(inputs, training=training, mask=mask)
        import torch
        from keras.src.backend.common.stateless_scope import get_stateless_scope

        x = ops.convert_to_tensor(inputs)
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # as Keras: statistics in float32
        rank = x.dim()
        if axis != 1:
            x = x.permute(0, rank - 1, *range(1, rank - 1))  # (b, c, ...), a view
        train = bool(training) and self.trainable
        # The variables' tensors directly: `ops.cast` and `assign` cost more Python than the kernel itself.
        gamma = _as(self.gamma.value, x.dtype) if self.scale else None
        beta = _as(self.beta.value, x.dtype) if self.center else None
        if train:
            # The batch mean and 1 / sqrt(variance + epsilon) come with the output; the biased variance,
            # Keras', follows (0 for one value per channel, as in Keras). No Python test on the sizes,
            # so that torch.compile traces it with dynamic shapes.
            y, mean, inverse_std = torch.native_batch_norm(x, gamma, beta, None, None, True, 0.0, self.epsilon)
            with torch.no_grad():
                variance = (inverse_std.pow(-2) - self.epsilon).clamp_min_(0.0)
                for variable, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
                    value = variable.value
                    if get_stateless_scope() is None and value.dtype == batch.dtype:
                        # Keras' rule, in place: moving = moving * momentum + batch * (1 - momentum).
                        value.mul_(self.momentum).add_(batch, alpha=1.0 - self.momentum)
                    else:
                        variable.assign(_as(value, batch.dtype) * self.momentum + batch * (1.0 - self.momentum))
        else:
            y = torch.nn.functional.batch_norm(x, _as(self.moving_mean.value, x.dtype),
                                               _as(self.moving_variance.value, x.dtype), gamma, beta,
                                               training=False, eps=self.epsilon)
        if axis != 1:
            y = y.permute(0, *range(2, rank), 1)
        return ops.cast(y, self.compute_dtype) if self.compute_dtype != "float32" else y
