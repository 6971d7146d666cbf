"""`ChannelLayout`: moves the channel axis between the layout the data has and the one a network
computes in."""

from __future__ import annotations

import keras
from keras import ops

_PACKAGE = "keras_models"
LAYOUTS = ("channels_last", "channels_first")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ChannelLayout(keras.layers.Layer):
    """Transposes a batch of feature maps to `layout`: `(b, *spatial, c)` to `(b, c, *spatial)` for
    `"channels_first"`, and back for `"channels_last"`.

    The library's builders keep their inputs and outputs channels-last (the layout of the data, of
    TFLite and of the exported files) and may compute channels-first inside, where a backend's
    convolutions are faster that way (PyTorch). A network then holds one `ChannelLayout` at its input
    and, when it returns feature maps, one at its output; the exporters recognise the pair and write a
    channels-last file without them.

    Args:
        layout: `"channels_first"` or `"channels_last"`, the layout of the output.
    """

    def __init__(self, layout: str = "channels_first", **kwargs):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}; got layout={layout!r}.")
        super().__init__(**kwargs)
        self.layout = layout

    def _permutation(self, rank):
        if self.layout == "channels_first":
            return (0, rank - 1, *range(1, rank - 1))
        return (0, *range(2, rank), 1)

    def call(self, inputs):
        outputs = ops.transpose(inputs, self._permutation(len(inputs.shape)))
        if self.layout == "channels_first" and keras.backend.backend() == "torch":
            # The transpose is a view in channels-last memory, and PyTorch would then run every later
            # operator channels-last; one copy gives the network the channels-first tensors it asked for.
            outputs = outputs.contiguous()
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[i] for i in self._permutation(len(input_shape)))

    def get_config(self):
        return {**super().get_config(), "layout": self.layout}
