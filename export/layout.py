"""Channels-last copies of networks that compute channels-first inside.

The library's convolutional builders take and return channels-last tensors but may compute
channels-first in between (on the PyTorch backend, where that is faster), with a `ChannelLayout`
layer at each end. TensorFlow's CPU convolutions, TFLite and most edge runtimes are channels-last, so
the exporters convert such a network first: the same layers and weights, every channels-first layer
switched to channels-last and the two `ChannelLayout` transposes dropped. Kernels and per-channel
weights have the same shapes in both layouts, so the weights carry over unchanged.
"""

from __future__ import annotations

import keras

from export._common import ExportError, is_functional
from keras_models.layers.layout import ChannelLayout

# Layers that act on each element, or combine tensors of one shape element by element: they work in
# either layout unchanged.
_ELEMENTWISE = (
    keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.PReLU, keras.layers.ELU,
    keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply, keras.layers.Average, keras.layers.Maximum,
    keras.layers.Minimum, keras.layers.Dropout, keras.layers.Identity, keras.layers.Rescaling,
)


def _layers_in_order(model):
    return [op for op in model.operations if isinstance(op, keras.layers.Layer) and not isinstance(op, keras.layers.InputLayer)]


def has_channel_layout(model) -> bool:
    return any(isinstance(layer, ChannelLayout) for layer in model._flatten_layers())


def _channels_first_inputs(layer, channels_first):
    return any(id(t) in channels_first for node in layer._inbound_nodes for t in keras.tree.flatten(node.input_tensors))


def _converted_config(layer, channels_first):
    """The channels-last config of `layer`, or an `ExportError` for a layer that would mix axes."""
    config = layer.get_config()
    takes_cf = _channels_first_inputs(layer, channels_first)
    if isinstance(layer, ChannelLayout):
        return None  # dropped
    if config.get("data_format") == "channels_first":
        config["data_format"] = "channels_last"
        return config
    if not takes_cf or isinstance(layer, _ELEMENTWISE):
        return config
    if isinstance(layer, keras.layers.BatchNormalization) and config["axis"] in (1, [1]):
        config["axis"] = -1
        return config
    if isinstance(layer, keras.layers.Concatenate) and config["axis"] == 1:
        config["axis"] = -1
        return config
    raise ExportError(
        f"Cannot write a channels-last file for {layer.name!r} ({type(layer).__name__}): it reads a "
        "channels-first tensor and is not a layer whose channel axis can be moved. Build the model with "
        'data_format="channels_last" to export it.'
    )


def channels_last_model(model):
    """`model` itself when nothing in it computes channels-first; else a channels-last copy with the
    same weights (see the module docstring). Raises `ExportError` for a layer it cannot move."""
    if not has_channel_layout(model):
        return model
    if not is_functional(model):
        raise ExportError(
            f"Model {model.name!r} holds a ChannelLayout layer but is not functional; only functional "
            "models are converted to channels-last for export."
        )
    # Which tensors are channels-first: from each ChannelLayout("channels_first") to the next
    # ChannelLayout("channels_last") or the first layer whose output has no spatial axes.
    channels_first = set()
    configs = {}
    for layer in _layers_in_order(model):
        configs[layer.name] = _converted_config(layer, channels_first)
        for node in layer._inbound_nodes:
            for tensor in keras.tree.flatten(node.output_tensors):
                rank = len(tensor.shape)
                if isinstance(layer, ChannelLayout):
                    first = layer.layout == "channels_first"
                elif layer.get_config().get("data_format") == "channels_first":
                    first = rank > 2
                else:
                    first = _channels_first_inputs(layer, channels_first) and rank > 2
                if first:
                    channels_first.add(id(tensor))

    def clone(layer):
        if isinstance(layer, ChannelLayout):
            return keras.layers.Identity(name=layer.name)
        return layer.__class__.from_config(configs[layer.name])

    copy = keras.models.clone_model(model, clone_function=clone)
    for source in _layers_in_order(model):
        copy.get_layer(source.name).set_weights(source.get_weights())
    return copy
