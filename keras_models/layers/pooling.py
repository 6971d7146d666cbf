"""`MaxPooling2D`, `AveragePooling2D`: Keras' 2-D pooling, computed in the activations' own memory layout
on the PyTorch backend."""

from __future__ import annotations

import keras
from keras import ops

from keras_models.layers.conv2d import _same_padding, eager_torch

_PACKAGE = "keras_models"


class _TorchPooling:
    """The PyTorch path shared by the two pooling layers (mixed in before Keras' layer)."""

    def call(self, inputs):
        pooled = self._torch_pool(inputs)
        return super().call(inputs) if pooled is None else pooled

    def _torch_pool(self, inputs):
        """PyTorch's pooling on a view of `inputs`, or None where Keras' own path must run (other
        backends, `torch.compile`, "same" padding that needs more pixels after than before)."""
        if not eager_torch():
            return None
        import torch.nn.functional as F

        x = ops.convert_to_tensor(inputs)
        channels_last = self.data_format == "channels_last"
        x = x.permute(0, 3, 1, 2) if channels_last else x  # (b, c, h, w); a view, in channels-last memory
        padding = (0, 0)
        if self.padding == "same":
            rows = _same_padding(x.shape[2], self.pool_size[0], self.strides[0], 1)
            columns = _same_padding(x.shape[3], self.pool_size[1], self.strides[1], 1)
            if rows[0] != rows[1] or columns[0] != columns[1]:
                return None
            padding = (rows[0], columns[0])
        if self.pool_mode == "max":
            # Padded pixels are ignored, as TensorFlow's "same" max pooling ignores them.
            y = F.max_pool2d(x, self.pool_size, self.strides, padding)
        else:
            # Padded pixels are not counted, as in TensorFlow's "same" average pooling.
            y = F.avg_pool2d(x, self.pool_size, self.strides, padding, count_include_pad=False)
        return y.permute(0, 2, 3, 1) if channels_last else y


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaxPooling2D(_TorchPooling, keras.layers.MaxPooling2D):
    """`keras.layers.MaxPooling2D`: the same arguments, outputs and files, without copies on PyTorch.

    On the PyTorch backend Keras' pooling copies channels-last activations into contiguous channels-first
    memory and hands back a tensor whose memory stays channels-first. Every layer after it then works
    on mismatched layouts: PyTorch's channels-first max pooling on a CPU is over ten times slower than its
    channels-last kernel, the element-wise backward passes that meet the two layouts several times
    slower, and the next convolution reorders its input. This layer pools a view of the activations in
    their own layout. Under `torch.compile`, on TensorFlow and JAX, and for "same" padding that TensorFlow
    places unevenly, it is Keras' layer.
    """


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AveragePooling2D(_TorchPooling, keras.layers.AveragePooling2D):
    """`keras.layers.AveragePooling2D`: the same arguments, outputs and files, without copies on PyTorch
    (see `MaxPooling2D`)."""
