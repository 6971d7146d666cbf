"""Where the transformers' weights live under `keras.distribution.ModelParallel`.

The library's transformer backbones (GPT, BERT, T5, ViT, Whisper) name their weights alike:
`..._blockN/self_attention/query/kernel`, `.../cross_attention/...`, `.../feed_forward/up/kernel`,
`..._token_embedding/embeddings`. The layout map splits them over a "model" mesh axis the way
Megatron-LM does, so each block needs one all-reduce forward and one backward:

- attention query, key and value kernels `(hidden, hidden)` and the feed-forward `up` kernel
  `(hidden, intermediate)` by columns (`(None, "model")`, their biases too): every device holds whole
  heads and a slice of the intermediate units;
- attention `output` and feed-forward `down` kernels by rows (`("model", None)`), their biases replicated;
- token, segment and position embeddings `(rows, hidden)` by the hidden axis.

Everything else (norms, heads, relative position biases, convolutions) is replicated.
"""

from __future__ import annotations

import keras

MODEL_AXIS = "model"
BATCH_AXIS = "batch"

# (regular expression matching a variable's whole path, as LayoutMap matches, its layout over (batch, model) axes)
_COLUMNS = (None, MODEL_AXIS)
_ROWS = (MODEL_AXIS, None)
TRANSFORMER_LAYOUTS = (
    (r".*_attention/(query|key|value)/kernel", _COLUMNS),
    (r".*_attention/(query|key|value)/bias", (MODEL_AXIS,)),
    (r".*_attention/output/kernel", _ROWS),
    (r".*feed_forward/up/kernel", _COLUMNS),
    (r".*feed_forward/up/bias", (MODEL_AXIS,)),
    (r".*feed_forward/down/kernel", _ROWS),
    (r".*(token|segment|position)_embedding/embeddings", _COLUMNS),
)


def transformer_layout_map(device_mesh: keras.distribution.DeviceMesh, model_axis: str = MODEL_AXIS):
    """A `keras.distribution.LayoutMap` sharding the transformers' kernels over `model_axis`.

    Args:
        device_mesh: the mesh, with an axis named `model_axis` (e.g. shape `(2, 2)`, axes
            `("batch", "model")`).
        model_axis: the mesh axis the kernels are split over.

    Returns:
        The layout map; variables it does not name are replicated.
    """
    if model_axis not in device_mesh.axis_names:
        raise ValueError(f"model_axis {model_axis!r} is not an axis of the device mesh {device_mesh.axis_names}")
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for pattern, axes in TRANSFORMER_LAYOUTS:
        layout_map[pattern] = tuple(model_axis if axis == MODEL_AXIS else axis for axis in axes)
    return layout_map


def transformer_model_parallel(model_devices: int = 2, devices=None):
    """`keras.distribution.ModelParallel` for the transformers: `model_devices` hold one replica.

    The devices (default: every device of every process) form a `(replicas, model_devices)` mesh with
    axes `("batch", "model")`; batches are split over "batch", kernels over "model" as
    `transformer_layout_map` says. Every sharded dimension (hidden size, intermediate size; the
    hidden size over heads) must be divisible by `model_devices`.

    Args:
        model_devices: devices per model replica (the size of the "model" axis).
        devices: device names (`keras.distribution.list_devices()` by default).

    Returns:
        The `ModelParallel` distribution (not set: pass it to `keras.distribution.set_distribution`).
    """
    devices = keras.distribution.list_devices() if devices is None else list(devices)
    if not isinstance(model_devices, int) or model_devices < 1 or len(devices) % model_devices:
        raise ValueError(f"model_devices must be a positive divisor of the {len(devices)} devices, "
                         f"got {model_devices!r}")
    mesh = keras.distribution.DeviceMesh((len(devices) // model_devices, model_devices), (BATCH_AXIS, MODEL_AXIS),
                                         devices)
    return keras.distribution.ModelParallel(layout_map=transformer_layout_map(mesh), batch_dim_name=BATCH_AXIS)
