"""`MaskedConv2D`: a convolution that sees only the pixels before the centre in raster order."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

_PACKAGE = "keras_models"
MASK_TYPES = ("A", "B")
STACKS = ("full", "vertical", "horizontal")


def causal_mask(kernel_size, mask_type="B", stack="full"):
    """The `(kh, kw)` 0/1 mask of an autoregressive kernel whose centre is the output pixel.

    - `"full"` (PixelCNN, van den Oord et al., 2016a): every row above the centre, and the centre row
      left of the centre;
    - `"vertical"` (gated PixelCNN's vertical stack): the rows above the centre, the whole width, so
      its receptive field grows upwards without a blind spot;
    - `"horizontal"` (the horizontal stack): the centre row left of the centre.

    Mask `"A"` (the first layer, on the image) leaves the centre out, so an output never sees its own
    pixel; mask `"B"` (later layers, on features that already exclude it) keeps it: the centre pixel
    for the full and horizontal masks, the centre row for the vertical one.
    """
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be one of {MASK_TYPES}; got mask_type={mask_type!r}.")
    if stack not in STACKS:
        raise ValueError(f"stack must be one of {STACKS}; got stack={stack!r}.")
    rows, cols = kernel_size
    centre_row, centre_col = rows // 2, cols // 2
    mask = np.zeros((rows, cols), np.float32)
    if stack == "vertical":
        mask[: centre_row + (mask_type == "B")] = 1.0
        return mask
    if stack == "full":
        mask[:centre_row] = 1.0
    mask[centre_row, : centre_col + (mask_type == "B")] = 1.0
    return mask


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedConv2D(keras.layers.Layer):
    """A stride-1, "same"-padded 2-D convolution whose kernel is multiplied by a fixed causal mask
    (`causal_mask`), so that output pixel (i, j) depends only on input pixels before (i, j) in raster
    order: the building block of PixelCNN (van den Oord et al., 2016, Pixel Recurrent Neural Networks)
    and of the gated PixelCNN's vertical and horizontal stacks (van den Oord et al., 2016, Conditional
    Image Generation with PixelCNN Decoders).

    Every input channel of a pixel is treated alike (no ordering of colours within a pixel). The mask
    is a constant, not a weight: exported graphs fold it into the kernel, one builtin convolution.

    Args:
        filters: output channels.
        kernel_size: an odd int or a pair of odd ints.
        mask_type: `"A"` (excludes the centre) or `"B"` (includes it).
        stack: `"full"`, `"vertical"` or `"horizontal"` (see `causal_mask`).
        use_bias, kernel_initializer, bias_initializer: as for `keras.layers.Conv2D`.
    """

    def __init__(self, filters, kernel_size=3, mask_type="B", stack="full", use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"filters must be a positive integer; got filters={filters!r}.")
        size = (kernel_size, kernel_size) if isinstance(kernel_size, (int, np.integer)) else tuple(kernel_size)
        if len(size) != 2 or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or k % 2 == 0
                                 for k in size):
            raise ValueError(f"kernel_size must be an odd positive integer or a pair of them; "
                             f"got kernel_size={kernel_size!r}.")
        self.filters = int(filters)
        self.kernel_size = tuple(int(k) for k in size)
        self.mask_type = mask_type
        self.stack = stack
        self.mask = causal_mask(self.kernel_size, mask_type, stack)  # checks mask_type and stack
        if not self.mask.any():
            raise ValueError(f"a {stack} mask {mask_type!r} of kernel_size={self.kernel_size} sees no pixel; "
                             "use a taller or wider kernel.")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(*self.kernel_size, channels, self.filters),
                                      initializer=self.kernel_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)
                     if self.use_bias else None)

    def call(self, inputs):
        mask = ops.convert_to_tensor(self.mask[:, :, None, None], dtype=self.kernel.dtype)
        outputs = ops.conv(inputs, self.kernel * mask, strides=1, padding="same")
        if self.bias is not None:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "mask_type": self.mask_type,
            "stack": self.stack,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
