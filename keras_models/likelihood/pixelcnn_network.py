"""The gated PixelCNN network (van den Oord et al., 2016): image (and label) in, per-pixel logits out.

A vertical stack sees the rows above the current pixel, the whole receptive width; a horizontal stack
sees the current row left of it and, through a 1x1 link, the vertical stack at the same position. The
vertical stack's first mask (`"A"`) already leaves the current row out, so the link needs no shift,
and the two stacks together cover every pixel before (i, j) in raster order: no blind spot.

With a first kernel of radius r0, later kernels of radius r and L gated blocks, output (i, j) depends
on exactly the input pixels before it inside rows [i - R, i] and columns [j - R, j + R], where
R = r0 + r (L - 1) (`receptive_radius`).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from keras_models.layers.masked_conv2d import MaskedConv2D

_PACKAGE = "keras_models"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GatedPixelCNNBlock(keras.layers.Layer):
    """One gated layer of both stacks: `[vertical, horizontal]` (and int labels) -> `[vertical, horizontal]`.

    `y = tanh(W_f * x + V_f e) * sigmoid(W_g * x + V_g e)` on each stack, `e` a learned embedding of
    the label; the horizontal stack adds the vertical one's pre-activations (1x1) and, after the first
    block, its own input (a residual connection). The first block (`mask_type="A"`) is the only one to
    see the image and must not see the current pixel, so it has no residual.

    Args:
        filters: channels of both stacks.
        kernel_size: odd size of the vertical `(k, k)` and horizontal `(1, k)` kernels.
        mask_type: `"A"` for the first block, `"B"` for the others.
        num_classes: the number of labels of a conditional network, else `None`.
    """

    def __init__(self, filters, kernel_size=3, mask_type="B", num_classes=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.mask_type = mask_type
        self.num_classes = num_classes
        double = 2 * self.filters
        name = self.name
        self.vertical = MaskedConv2D(double, (self.kernel_size, self.kernel_size), mask_type, "vertical",
                                     name=name + "_vertical")
        self.horizontal = MaskedConv2D(double, (1, self.kernel_size), mask_type, "horizontal",
                                       name=name + "_horizontal")
        self.vertical_to_horizontal = layers.Conv2D(double, 1, name=name + "_vertical_to_horizontal")
        self.horizontal_output = layers.Conv2D(self.filters, 1, name=name + "_horizontal_output")
        self.label_embedding = (layers.Embedding(num_classes, 2 * double, name=name + "_label_embedding")
                                if num_classes is not None else None)

    def build(self, input_shape):
        vertical_shape, horizontal_shape = input_shape[0], input_shape[1]
        double_shape = (*vertical_shape[:-1], 2 * self.filters)
        self.vertical.build(vertical_shape)
        self.horizontal.build(horizontal_shape)
        self.vertical_to_horizontal.build(double_shape)
        self.horizontal_output.build((*horizontal_shape[:-1], self.filters))
        if self.label_embedding is not None:
            self.label_embedding.build((None,))

    def _gate(self, x):
        content, gate = x[..., : self.filters], x[..., self.filters :]
        return ops.tanh(content) * ops.sigmoid(gate)

    def call(self, inputs):
        vertical, horizontal = inputs[0], inputs[1]
        vertical_pre = self.vertical(vertical)  # (batch, h, w, 2 filters): rows above the pixel
        horizontal_pre = self.horizontal(horizontal) + self.vertical_to_horizontal(vertical_pre)
        if self.label_embedding is not None:
            embedded = self.label_embedding(ops.reshape(ops.cast(inputs[2], "int32"), (-1,)))
            embedded = ops.reshape(embedded, (-1, 1, 1, 4 * self.filters))
            vertical_pre = vertical_pre + embedded[..., : 2 * self.filters]
            horizontal_pre = horizontal_pre + embedded[..., 2 * self.filters :]
        horizontal_out = self.horizontal_output(self._gate(horizontal_pre))
        if self.mask_type == "B":
            horizontal_out = horizontal + horizontal_out
        return [self._gate(vertical_pre), horizontal_out]

    def compute_output_shape(self, input_shape):
        return [(*input_shape[0][:-1], self.filters), (*input_shape[1][:-1], self.filters)]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "mask_type": self.mask_type, "num_classes": self.num_classes}


def band_network(network, rows):
    """`network` on the top `rows` rows of an image: the same layers (shared weights) behind an input
    `(batch, rows, w, c)`. Output row `r` of a band equals that of the whole image for every `r`, as
    no masked convolution looks down; the sampler runs it on the rows a pixel can see."""
    image_shape = tuple(network.inputs[0].shape[1:])
    images = keras.Input((rows, *image_shape[1:]), name="images")
    inputs = [images]
    if len(network.inputs) > 1:
        inputs.append(keras.Input((), dtype="int32", name="labels"))
    vertical = horizontal = images
    for layer in network.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, GatedPixelCNNBlock):
            vertical, horizontal = layer([vertical, horizontal] + inputs[1:])
        else:
            horizontal = layer(horizontal)
    return keras.Model(inputs if len(inputs) > 1 else images, horizontal, name=f"{network.name}_band{rows}")


def receptive_radius(network) -> int:
    """R of `network`: output row i depends on input rows i - R to i only (see the module docstring)."""
    return sum(block.kernel_size // 2 for block in network.layers if isinstance(block, GatedPixelCNNBlock))


def output_units(likelihood, levels):
    """Logits per pixel value: one for a Bernoulli, `levels` for a categorical."""
    return 1 if likelihood == "bernoulli" else levels


def pixelcnn_network(image_shape, num_classes=None, likelihood="bernoulli", filters=32, num_layers=5,
                     kernel_size=3, first_kernel_size=7, hidden_units=64, levels=256, name="pixelcnn_network"):
    """The gated PixelCNN as a functional model.

    Inputs: the image as the model sees it, `(batch, h, w, c)` in [-1, 1] (`PixelCNN.network_inputs`),
    and, for a conditional network, int labels `(batch,)`. Output: logits, `(batch, h, w, c)` for a
    Bernoulli likelihood, `(batch, h, w, c, levels)` for a categorical one. The channels of one pixel
    are predicted together, each from the pixels before (not from each other).
    """
    _, width, channels = image_shape
    images = keras.Input(image_shape, name="images")
    inputs = [images]
    labels = None
    if num_classes is not None:
        labels = keras.Input((), dtype="int32", name="labels")
        inputs.append(labels)
    vertical = horizontal = images
    for index in range(num_layers):
        first = index == 0
        block = GatedPixelCNNBlock(filters, first_kernel_size if first else kernel_size, "A" if first else "B",
                                   num_classes, name=f"{name}_block{index}")
        vertical, horizontal = block([vertical, horizontal] + ([labels] if labels is not None else []))
    x = layers.ReLU(name=name + "_relu1")(horizontal)
    x = layers.Conv2D(hidden_units, 1, name=name + "_hidden")(x)
    x = layers.ReLU(name=name + "_relu2")(x)
    units = output_units(likelihood, levels)
    x = layers.Conv2D(channels * units, 1, name=name + "_logits")(x)
    if units > 1:
        x = layers.Reshape((-1, width, channels, units), name=name + "_levels")(x)  # any height: bands
    return keras.Model(inputs if labels is not None else images, x, name=name)
