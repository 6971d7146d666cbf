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


_HALF = ("bfloat16", "float16")


def _computes_in_half(layer) -> bool:
    policy = getattr(layer, "dtype_policy", None)
    return policy is not None and policy.compute_dtype in _HALF


def _float32_policies(config):
    """`config` (a serialized Keras object) with every half-precision or mixed dtype policy made float32."""
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and isinstance(config.get("config"), dict):
            name = str(config["config"].get("name", ""))
            if name.startswith("mixed_") or name in _HALF:
                return {**config, "config": {**config["config"], "name": "float32"}}
            return config
        return {key: ("float32" if key == "dtype" and isinstance(value, str) and
                      (value.startswith("mixed_") or value in _HALF) else _float32_policies(value))
                for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_policies(value) for value in config]
    return config


def float32_model(model):
    """`model` itself when every layer computes in float32; else a float32 copy with the same weights.

    A model built with `keras_models.build(..., dtype="mixed_bfloat16")` (or float16) trains in half
    precision on float32 variables; the exporters write the float32 model those variables define, which
    every edge runtime runs (quantize it with `quantization=` for a smaller file)."""
    if not isinstance(model, keras.Model) or not any(_computes_in_half(layer) for layer in model._flatten_layers()):
        return model
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)  # the copy is for export: no optimizer, no loss
    try:
        copy = keras.saving.deserialize_keras_object(_float32_policies(config))
        copy.set_weights([w.astype("float32") if w.dtype.kind == "f" else w for w in model.get_weights()])
    except Exception as error:  # noqa: BLE001 - any failure here means the model cannot be rebuilt from its config
        raise ExportError(
            f"Model {model.name!r} computes in half precision ({model.dtype_policy.name}) and could not be "
            f"rebuilt in float32 from its config for export ({type(error).__name__}: {error}). Build it "
            "again without dtype and copy the weights with set_weights."
        ) from None
    return copy
