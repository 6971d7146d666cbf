"""`BatchNormalization`: Keras' batch normalization, one fused kernel on the PyTorch backend."""

from __future__ import annotations

import keras
from keras import ops

_PACKAGE = "keras_models"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization`: the same arguments, variables, updates and files.

    On the PyTorch backend Keras composes batch normalization from a mean, a variance and five
    element-wise operations, each a pass over the activations with its own backward pass. This layer
    calls PyTorch's fused batch normalization instead (one pass forward, one backward) on the channel
    axis of a channels-last or channels-first feature map, and updates the moving mean and variance by
    Keras' rule with the batch's biased variance, as Keras does. Masks, batch renormalization, a batch
    of one value per channel and the other backends take Keras' own path.
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

        x = ops.convert_to_tensor(inputs)
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # as Keras: statistics in float32
        rank = x.dim()
        if axis != 1:
            x = x.permute(0, rank - 1, *range(1, rank - 1))  # (b, c, ...), a view
        channels = x.shape[1]
        count = x.numel() // channels
        train = bool(training) and self.trainable
        if train and count < 2:  # PyTorch refuses one value per channel; Keras gives variance 0
            return super().call(inputs, training=training, mask=mask)
        gamma = ops.convert_to_tensor(ops.cast(self.gamma, x.dtype)) if self.scale else None
        beta = ops.convert_to_tensor(ops.cast(self.beta, x.dtype)) if self.center else None
        if train:
            # With momentum 1, PyTorch writes the batch mean and the unbiased batch variance into these.
            mean = torch.zeros(channels, dtype=x.dtype, device=x.device)
            unbiased = torch.ones(channels, dtype=x.dtype, device=x.device)
            y = torch.nn.functional.batch_norm(x, mean, unbiased, gamma, beta, training=True, momentum=1.0,
                                               eps=self.epsilon)
            variance = unbiased * ((count - 1) / count)
            moving_mean = ops.cast(self.moving_mean, x.dtype)
            moving_variance = ops.cast(self.moving_variance, x.dtype)
            self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            moving_mean = ops.convert_to_tensor(ops.cast(self.moving_mean, x.dtype))
            moving_variance = ops.convert_to_tensor(ops.cast(self.moving_variance, x.dtype))
            y = torch.nn.functional.batch_norm(x, moving_mean, moving_variance, gamma, beta, training=False,
                                               eps=self.epsilon)
        if axis != 1:
            y = y.permute(0, *range(2, rank), 1)
        return ops.cast(y, self.compute_dtype)
