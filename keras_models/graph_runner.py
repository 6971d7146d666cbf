"""A functional model's graph run layer by layer through each layer's `call`, on the PyTorch backend.

Keras runs a functional model by calling every layer through `Layer.__call__`, which converts and checks
the arguments, resolves `training`, propagates masks, enters name and autocast scopes and records the
call. On the TensorFlow and JAX backends that work happens once, while tracing. On the PyTorch backend
it happens in every step, eagerly: 45-230 microseconds per layer on a CPU against about 10 for a
PyTorch module (BENCHMARKS.md, "Without Keras' per-layer work on PyTorch").

`plan(model)` decides once whether a model can skip it: every layer must be one of `RUNNABLE`, whose
`call` needs nothing `__call__` provides when the inputs are float32 or integer tensors without masks,
or a functional model whose own graph has a plan (a backbone inside its task); each such layer and every
layer inside it must have a float32 dtype policy and no activity regularizer (checked again at every
call: `model.quantize` changes policies), and every node must take one tensor or one list of tensors,
with constant keyword arguments at most (`reverse=True`). `run(plan, inputs, training)` then computes the
same operators in the same order as Keras, except that a `ZeroPadding2D` feeding only a "valid" `Conv2D`
becomes that convolution's own padding; while it runs, layers built from layers (`TransformerBlock`)
call their sub-layers through `call` as well (`keras_models.layers.direct`).
`keras_models.CheckedModel` uses it on PyTorch outside `torch.compile`; any other model, backend or
call (a mask, other keyword arguments) takes Keras' own path.
"""

from __future__ import annotations

import functools
import inspect

import keras

from keras_models.layers import direct
from keras_models.layers.batch_normalization import BatchNormalization
from keras_models.layers.conv2d import Conv2D
from keras_models.layers.layout import ChannelLayout
from keras_models.layers.pooling import AveragePooling2D, MaxPooling2D
from keras_models.layers.position_embedding import PositionEmbedding
from keras_models.layers.reversible_embedding import ReversibleEmbedding
from keras_models.layers.transformer_block import TransformerBlock

# Layers whose `call` computes exactly what `__call__` would, given float32 tensors without masks. Exact
# types: a subclass may override `call` or `__call__`.
RUNNABLE = frozenset({
    Conv2D, BatchNormalization, MaxPooling2D, AveragePooling2D, ChannelLayout,
    keras.layers.Activation, keras.layers.ReLU, keras.layers.Add, keras.layers.Concatenate,
    keras.layers.ZeroPadding2D, keras.layers.Dense, keras.layers.Dropout, keras.layers.Flatten,
    keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D, keras.layers.LayerNormalization,
    ReversibleEmbedding, PositionEmbedding, TransformerBlock,
})
_INPUT_DTYPES = ("float32", "int32", "int64")

_PLAN = "_keras_models_graph_plan"  # set with object.__setattr__: Keras would track a list of layers


class Plan:
    """The steps of a functional graph, each (call, takes `training`, input slots or slot, is a list,
    output slot); the number of model inputs, of value slots, the output slots and their structure; and
    every layer the steps run, sub-layers and nested models' layers included, flat (`layers`)."""

    __slots__ = ("steps", "inputs", "slots", "outputs", "structure", "layers")

    def __init__(self, steps, inputs, slots, outputs, structure, layers):
        self.steps, self.inputs, self.slots, self.outputs, self.structure = steps, inputs, slots, outputs, structure
        self.layers = layers

    def still_runnable(self) -> bool:
        """False once a layer's dtype policy, activity regularizer or rematerialization has changed since
        planning (`model.quantize(...)` sets quantized policies). Types and structure do not change, so
        this checks only `_plain` on the flat list: it runs on every call."""
        return all(_plain(layer) for layer in self.layers)


def _plain(layer) -> bool:
    """Nothing `Layer.__call__` would add: a float32 policy, no activity regularizer, no rematerialization
    (`keras.RematScope`)."""
    return (layer.dtype_policy.name == "float32" and getattr(layer, "activity_regularizer", None) is None
            and getattr(layer, "_remat_mode", None) is None)


def _layer_runnable(layer) -> bool:
    """An allowed type (or a nested functional model with a plan), built, and it and every layer inside it
    (a `TransformerBlock`'s attention and feed-forward, called through `layers.direct`) plain (`_plain`)."""
    if _nested_functional(layer):
        return _plain(layer) and plan(layer) is not None
    return type(layer) in RUNNABLE and layer.built and all(_plain(inner) for inner in layer._flatten_layers())


def _nested_functional(layer) -> bool:
    """A functional model used as a layer whose `call` is Functional's own (a backbone in its task)."""
    from keras.src.models.functional import Functional

    return isinstance(layer, Functional) and type(layer).call is Functional.call


def _nested_call(model, graph):
    def call(argument, training=None):
        return run(graph, model._standardize_inputs(argument), training)

    return call


def _build_plan(model):
    nodes_by_depth = getattr(model, "_nodes_by_depth", None)
    if not nodes_by_depth or not model.inputs:
        return None
    slots = {id(tensor): index for index, tensor in enumerate(model.inputs)}
    if any(tensor.dtype not in _INPUT_DTYPES for tensor in model.inputs):
        return None
    steps = []
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            if not node.operation or node.is_input:
                continue
            layer = node.operation
            # Keras records `mask=None` for some layers, and the `training` the graph was built with: False
            # (or None) gives way to the running call's, as in Keras; a recorded True (dropout kept on at
            # inference) and any mask take Keras' path. Other arguments must be constants (`reverse=True`).
            recorded = node.arguments.kwargs
            if recorded.get("training") not in (None, False) or recorded.get("mask") is not None:
                return None
            constants = {key: value for key, value in recorded.items()
                         if value is not None and key not in ("training", "mask")}
            if (not _layer_runnable(layer) or len(node.arguments.args) != 1
                    or not all(isinstance(v, (bool, int, float, str)) for v in constants.values())):
                return None
            if len(node.outputs) != 1 or any(id(x) not in slots for x in node.input_tensors):
                return None
            argument = node.arguments.args[0]
            if isinstance(argument, (list, tuple)):
                if not all(id(x) in slots for x in argument):
                    return None
                source, is_list = tuple(slots[id(x)] for x in argument), True
            elif id(argument) in slots:
                source, is_list = slots[id(argument)], False
            else:
                return None
            if _nested_functional(layer):
                call, takes_training = _nested_call(layer, plan(layer)), True
            else:
                call = functools.partial(layer.call, **constants) if constants else layer.call
                takes_training = "training" in inspect.signature(layer.call).parameters
            slots[id(node.outputs[0])] = len(slots)
            steps.append((layer, call, takes_training, source, is_list, slots[id(node.outputs[0])]))
    if any(id(x) not in slots for x in model.outputs):
        return None
    outputs = tuple(slots[id(x)] for x in model.outputs)
    layers = {}
    for layer in (step[0] for step in steps):
        inner = (layer, *plan(layer).layers) if _nested_functional(layer) else tuple(layer._flatten_layers())
        layers.update((id(each), each) for each in inner)
    return Plan(_fuse_padding(steps, outputs), len(model.inputs), len(slots), outputs, model._outputs_struct,
                tuple(layers.values()))


def _fuse_padding(steps, outputs):
    """The steps without layer, each `ZeroPadding2D` that pads both sides of an axis alike and feeds only
    a "valid" `Conv2D` folded into that convolution's own padding (one copy of the activations fewer each
    way; ResNets pad before every strided convolution)."""
    uses = {}
    for _, _, _, source, is_list, _ in steps:
        for slot in source if is_list else (source,):
            uses[slot] = uses.get(slot, 0) + 1
    padders = {}  # output slot -> (input slot, (rows, columns))
    for layer, _, _, source, is_list, target in steps:
        if (type(layer) is keras.layers.ZeroPadding2D and not is_list and uses.get(target) == 1
                and target not in outputs and all(before == after for before, after in layer.padding)):
            padders[target] = (source, tuple(before for before, _ in layer.padding), layer.data_format)
    fused, folded = [], set()
    for layer, call, takes_training, source, is_list, target in steps:
        padder = None if is_list else padders.get(source)
        if (padder is not None and type(layer) is Conv2D and layer.padding == "valid"
                and layer.data_format == padder[2]):
            fused.append((functools.partial(layer.call_padded, padding=padder[1]), False, padder[0], False, target))
            folded.add(source)
        else:
            fused.append((call, takes_training, source, is_list, target))
    return tuple(step for step in fused if step[4] not in folded)


def plan(model):
    """The model's `Plan` (built once and kept on the model), or None where Keras' own path must run:
    not a functional model, a layer outside `RUNNABLE`, a dtype policy other than float32."""
    cached = model.__dict__.get(_PLAN, False)
    if cached is False:
        cached = _build_plan(model)
        object.__setattr__(model, _PLAN, cached)
    return cached if cached is not None and cached.still_runnable() else None


def run(graph: Plan, inputs, training) -> object:
    """Runs `graph` on a flat list of input tensors; `training` as the model's `call` received it."""
    training = bool(training)
    values = list(keras.tree.flatten(inputs)) + [None] * (graph.slots - graph.inputs)
    with direct.running_plan():  # composite layers call their sub-layers' `call` too (`layers.direct`)
        for call, takes_training, source, is_list, target in graph.steps:
            argument = [values[i] for i in source] if is_list else values[source]
            values[target] = call(argument, training=training) if takes_training else call(argument)
    outputs = [values[i] for i in graph.outputs]
    if len(outputs) == 1 and not isinstance(graph.structure, dict):
        return outputs[0]  # a one-element list or tuple too: Keras' functional call unpacks it
    return keras.tree.pack_sequence_as(graph.structure, outputs)
