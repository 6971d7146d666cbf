"""Streaming export: the one-step function of a recurrent Keras model.

A model whose layers act on each time step alone (embeddings, masking, unidirectional recurrent layers
with `return_sequences` true or false, dense, activation and feature-axis normalization layers) is
rewritten as the function of one step:

    (step inputs..., state_0, state_1, ...) -> (step outputs..., state_0_out, state_1_out, ...)

Each sequence input loses its time axis. Every recurrent layer adds its states, in the order the model's
graph runs its layers (an LSTM's h before its c). Zero states start a sequence; feeding each step's
`state_i_out` back as `state_i` reproduces Keras on the whole sequence at every step: an output with a
time axis gives that step's values, one without (after `return_sequences=False`) gives what the model
outputs for the sequence ending at that step. The step function has no loop and keeps nothing between
calls, so it converts to builtin TFLite ops and plain ONNX ops, and the stream may have any length.

Masks follow Keras: on a masked step (every feature equal to a `Masking` layer's `mask_value`, or index 0
of an `Embedding(mask_zero=True)`) a recurrent layer keeps its states and repeats its previous output
(zeros with `zero_output_for_mask=True`), and a `Masking` layer outputs zeros, as on the whole sequence.
"""

from __future__ import annotations

import dataclasses
import warnings

import keras
import tensorflow as tf
from keras.src.backend.common.masking import get_keras_mask, set_keras_mask

from export._common import ExportError, input_specs, is_functional, output_names, plain_message


def _classes(*names):
    return tuple(getattr(keras.layers, name) for name in names if hasattr(keras.layers, name))


# Layers that compute each step from that step alone, called unchanged on a step tensor.
_STEPWISE = _classes(
    "Dense", "Embedding", "Masking", "Activation", "ReLU", "LeakyReLU", "ELU", "Rescaling",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
)
# Identity at inference.
_INFERENCE_IDENTITY = _classes(
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity",
)
# Layers acting along an `axis`: step by step as long as that axis is not the time axis.
_ALONG_AXIS = _classes(
    "Softmax", "LayerNormalization", "BatchNormalization", "UnitNormalization", "Concatenate"
)
# Cells whose output is their first state (h), so a masked step repeats the previous output by
# keeping the states.
_OUTPUT_IS_FIRST_STATE = _classes("SimpleRNNCell", "LSTMCell", "GRUCell")

# Recurrent layers whose states are images, not vectors.
_CONVOLUTIONAL_RECURRENT = _classes("ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
_IMAGE_STATES = "has image-shaped states; streaming export covers recurrent layers with vector states"

# Layers that mix time steps (or are otherwise out of reach), with the reason given in the error.
_TIME_MIXING = (
    (_classes("Bidirectional"), "reads the sequence backwards as well as forwards, so each output "
     "depends on steps that have not arrived yet"),
    (_classes("Conv1D", "Conv2D", "Conv3D", "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D",
              "DepthwiseConv2D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"),
     "convolves over neighbouring time steps"),
    (_classes("MaxPooling1D", "AveragePooling1D", "MaxPooling2D", "AveragePooling2D", "MaxPooling3D",
              "AveragePooling3D"), "pools over neighbouring time steps"),
    (_classes("GlobalMaxPooling1D", "GlobalAveragePooling1D", "GlobalMaxPooling2D",
              "GlobalAveragePooling2D", "GlobalMaxPooling3D", "GlobalAveragePooling3D"),
     "pools over the whole sequence"),
    (_classes("Flatten"), "flattens the time axis into the features"),
    (_classes("Attention", "AdditiveAttention", "MultiHeadAttention", "GroupedQueryAttention"),
     "attends across time steps"),
    (_classes("RepeatVector", "Reshape", "Permute", "Cropping1D", "ZeroPadding1D", "UpSampling1D"),
     "moves, repeats, pads or resizes the time axis"),
    (_CONVOLUTIONAL_RECURRENT, _IMAGE_STATES),
)


def _refuse(layer, reason):
    raise ExportError(
        f"Layer {layer.name!r} ({type(layer).__name__}) {reason}; streaming export needs layers that act "
        "on each time step alone."
    )


@dataclasses.dataclass
class StepFunction:
    """The one-step function of a model, ready for the converters.

    `specs` are the step inputs followed by the states; `input_names` and `output_names` are the names
    the exported file gives its inputs and outputs (`state_i`, `state_i_out` for the states).
    """

    function: tf.types.experimental.GenericFunction
    concrete: tf.types.experimental.ConcreteFunction
    specs: list[tf.TensorSpec]
    input_names: list[str]
    output_names: list[str]
    states: list[tuple[str, list[str]]]  # (recurrent layer, its state names), in state order

    def note(self) -> str:
        if not self.states:
            return "streaming step model without recurrent states"
        carried = ", ".join(f"{layer} ({', '.join(names)})" for layer, names in self.states)
        return f"streaming step model: one step per call, zero states start a sequence; states of {carried}"


class _StepGraph:
    """Runs a functional model's graph on one time step.

    With `states=None` it plans: it checks every layer and starts each recurrent layer from zero states,
    recording their sizes. Given the state tensors, it runs the same graph reading them in that order.
    """

    def __init__(self, states=None, copies=None):
        self._states = None if states is None else list(states)
        self.recurrent = []  # (layer name, [(size, dtype), ...]) in the order the layers run
        self.new_states = []
        self._timed = {}  # id(tensor) -> tensor, for step tensors of sequences (time axis in the model)
        # (id(layer), rank) -> the layer's per-step copy; made while planning, which runs eagerly, so
        # the traced function creates no variables.
        self.copies = {} if copies is None else copies
        # id(tensor) -> (tensor, operation): results of operations on sequences that are not layers.
        # keras.ops called on symbolic tensors are graph nodes too, and Keras' own mask computations
        # (Masking, Embedding(mask_zero=True)) leave such nodes, feeding recurrent layers' `mask`
        # arguments. They are run on the step but their results are not trusted: a recurrent layer
        # takes the mask its input carries instead, and anything else that uses them is refused.
        self._untrusted = {}

    def run(self, graph, inputs):
        for tensor in inputs:
            self._timed[id(tensor)] = tensor
        try:
            outputs = graph._run_through_graph(inputs, call_fn=self._call)
        except ValueError as error:
            operations = {op.name: op for _, op in self._untrusted.values()}
            if not operations or "not connected" not in str(error):
                raise
            names = ", ".join(f"{name!r} ({type(op).__name__})" for name, op in operations.items())
            raise ExportError(
                f"Operations {names} of {graph.name!r} act on a sequence and are not layers known to act on "
                "each time step alone; streaming export needs keras.layers such as Add, Activation or Dense "
                "there."
            ) from error
        self._check_trusted(f"model {graph.name!r}", keras.tree.flatten(outputs))
        return outputs

    def _check_trusted(self, user, tensors):
        for tensor in tensors:
            if id(tensor) in self._untrusted:
                operation = self._untrusted[id(tensor)][1]
                raise ExportError(
                    f"Operation {operation.name!r} ({type(operation).__name__}) acts on a sequence and feeds "
                    f"{user}; it is not a layer known to act on each time step alone. Streaming export needs "
                    "keras.layers such as Add, Activation or Dense there."
                )

    def _untrusted_operation(self, operation, args, kwargs):
        try:
            outputs = operation(*args, **kwargs)
        except Exception:  # whatever it raises on a step: what needs it is not computed, `run` says why
            self._untrusted[id(operation)] = (operation, operation)
            return []
        for tensor in keras.tree.flatten(outputs):
            self._untrusted[id(tensor)] = (tensor, operation)
        return outputs

    def _call(self, operation, *args, **kwargs):
        tensors = [t for t in keras.tree.flatten((args, kwargs)) if tf.is_tensor(t)]
        if not isinstance(operation, keras.layers.Layer):
            if any(id(t) in self._timed or id(t) in self._untrusted for t in tensors):
                return self._untrusted_operation(operation, args, kwargs)
            return operation(*args, **kwargs)
        mask = kwargs.get("mask") if isinstance(operation, keras.layers.RNN) else None
        self._check_trusted(f"layer {operation.name!r}", [t for t in tensors if t is not mask])
        timed = [id(t) in self._timed for t in tensors if t is not mask]
        if not any(timed):
            # No time axis here (after return_sequences=False): the layer computes what it does on the
            # whole sequence.
            return operation(*args, **kwargs)
        if not all(timed):
            _refuse(operation, "combines a sequence with a tensor that has no time axis")
        if isinstance(operation, keras.Model):
            outputs = self._nested(operation, args, kwargs)
        elif isinstance(operation, keras.layers.RNN):
            return self._recurrent(operation, args, kwargs)
        else:
            outputs = self._stepwise(operation, args, kwargs)
        for tensor in keras.tree.flatten(outputs):
            self._timed[id(tensor)] = tensor
        return outputs

    def _nested(self, model, args, kwargs):
        if kwargs.get("mask") is not None:
            _refuse(model, "is called with an explicit mask")
        return self.run(_functional_graph(model), keras.tree.flatten(args))

    def _stepwise(self, layer, args, kwargs):
        for classes, reason in _TIME_MIXING:
            if isinstance(layer, classes):
                _refuse(layer, reason)
        if isinstance(layer, _INFERENCE_IDENTITY):
            return args[0]
        if isinstance(layer, keras.layers.TimeDistributed):
            inner = layer.layer
            step = args[0]
            output = inner(step, **_inference(inner, {}))
            set_keras_mask(output, get_keras_mask(step))  # TimeDistributed passes its input's mask on
            return output
        if isinstance(layer, _ALONG_AXIS):
            first = keras.tree.flatten(args[0])[0]
            key = (id(layer), len(first.shape))
            if key not in self.copies:
                self.copies[key] = _per_step_copy(layer, len(first.shape) + 1, first.shape)
            layer = self.copies[key]
        elif not isinstance(layer, _STEPWISE):
            _refuse(layer, "is not known to act on each time step alone (Dense, Embedding, Masking, "
                    "activations, dropout, feature-axis normalization, merging layers, TimeDistributed and "
                    "unidirectional recurrent layers are)")
        return layer(*args, **_inference(layer, kwargs))

    def _recurrent(self, layer, args, kwargs):
        if isinstance(layer, _CONVOLUTIONAL_RECURRENT):
            _refuse(layer, _IMAGE_STATES)
        if layer.go_backwards:
            _refuse(layer, "reads the sequence backwards (go_backwards=True), so its first output needs the "
                    "last step")
        if layer.stateful:
            _refuse(layer, "is stateful: it keeps states in variables, while the step model takes and returns "
                    "them; build it with stateful=False")
        if len(args) > 1 or kwargs.get("initial_state") is not None or kwargs.get("constants") is not None:
            _refuse(layer, "takes its initial state from another tensor; a step model starts from zero states")
        sizes = keras.tree.flatten(layer.state_size)
        if not all(isinstance(size, int) and size > 0 for size in sizes):
            _refuse(layer, f"has states of sizes {layer.state_size}; streaming export covers vector states")
        step = args[0]
        dtype = tf.as_dtype(layer.cell.compute_dtype)
        states = self._take_states(layer, sizes, dtype, step)
        cell_kwargs = {"training": False} if getattr(layer.cell, "_call_has_training_arg", False) else {}
        with warnings.catch_warnings():
            # The step may carry a Keras mask, which the cell does not take: the mask is applied below.
            warnings.filterwarnings("ignore", message=".*does not support masking", category=UserWarning)
            output, new_states = layer.cell(step, keras.tree.pack_sequence_as(layer.state_size, states), **cell_kwargs)
        new_states = keras.tree.flatten(new_states)
        mask = get_keras_mask(step)  # the mask the layers before computed on this step
        explicit = kwargs.get("mask")
        if explicit is not None and id(explicit) not in self._untrusted:
            mask = explicit  # a layer's output passed as mask=
        elif explicit is not None and mask is None:
            _refuse(layer, "takes a mask computed by operations that are not layers")
        if mask is not None:
            if len(mask.shape) != 1:
                _refuse(layer, f"receives a mask of shape {tuple(mask.shape)} per step; streaming export takes "
                        "one mask value per sample and step")
            keep = tf.expand_dims(tf.cast(mask, tf.bool), -1)  # (batch, 1)
            if layer.zero_output_for_mask:
                previous = tf.zeros_like(output)
            elif isinstance(layer.cell, _OUTPUT_IS_FIRST_STATE):
                previous = states[0]  # the last unmasked step's output (zeros before any)
            else:
                _refuse(layer, f"has a mask and a {type(layer.cell).__name__}, whose output on a masked step "
                        "(the previous output) is not one of its states")
            output = tf.where(keep, output, previous)
            new_states = [tf.where(keep, new, old) for new, old in zip(new_states, states)]
        self.new_states += new_states
        if layer.return_sequences:
            self._timed[id(output)] = output
            set_keras_mask(output, mask)
        return [output, *new_states] if layer.return_state else output

    def _take_states(self, layer, sizes, dtype, step):
        self.recurrent.append((layer.name, [(size, dtype) for size in sizes]))
        if self._states is None:
            batch = tf.shape(keras.tree.flatten(step)[0])[0]
            return [tf.zeros(tf.stack([batch, size]), dtype) for size in sizes]
        taken, self._states = self._states[: len(sizes)], self._states[len(sizes):]
        return taken


def _inference(layer, kwargs):
    if getattr(layer, "_call_has_training_arg", False) and "training" not in kwargs:
        return {**kwargs, "training": False}
    return kwargs


def _per_step_copy(layer, rank, step_shape):
    """`layer` itself, or a copy with the same weights, acting on the same axes of a step tensor.

    `rank` is the rank of the sequence tensor (the step tensor's plus the time axis).
    """
    axes = list(layer.axis) if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    on_sequence = [axis % rank for axis in axes]
    if 1 in on_sequence:
        _refuse(layer, f"acts along the time axis (axis={layer.axis!r})")
    # Negative axes name the same feature axes with or without the time axis.
    step_axes = [axis - rank for axis in on_sequence]
    # BatchNormalization also fixes its input's rank when built.
    if step_axes == axes and not isinstance(layer, keras.layers.BatchNormalization):
        return layer
    config = layer.get_config()
    config["axis"] = step_axes if isinstance(layer.axis, (list, tuple)) else step_axes[0]
    copy = type(layer).from_config(config)
    if layer.weights:
        copy.build(tuple(step_shape))
        copy.set_weights(layer.get_weights())
    return copy


def _functional_graph(model):
    if isinstance(model, keras.Sequential):
        if getattr(model, "_functional", None) is None:
            raise ExportError(f"Sequential model {model.name!r} has no input shape; build it with keras.Input first.")
        return model._functional
    if not is_functional(model):
        raise ExportError(
            f"Streaming export reads the layers of a functional or Sequential model; {model.name!r} is a "
            f"subclassed {type(model).__name__}, whose call() it cannot see through."
        )
    return model


def _checked(model, run):
    """`run()`, with the errors Keras and TensorFlow raise on the way turned into an `ExportError`."""
    try:
        return run()
    except ExportError:
        raise
    except (ValueError, TypeError) as error:
        raise ExportError(f"Building the step model of {model.name!r} failed: {plain_message(error)}") from error


def step_function(model, *, batch_size=None, input_signature=None) -> StepFunction:
    """The one-step function of `model` (see the module docstring) as a traced `tf.function`.

    Args:
        model: a built functional or Sequential Keras model whose inputs are all sequences
            `(batch, time, ...)` (any length, `None` included).
        batch_size: fix the batch axis of the step inputs and states; `None` keeps it dynamic.
        input_signature: the sequence inputs, as for `to_tflite` (shapes with batch and time axes).

    Raises:
        ExportError: naming the first layer that mixes time steps or is not known to act step by step.
    """
    graph = _functional_graph(model)
    step_specs = []
    for spec in input_specs(model, batch_size=batch_size, input_signature=input_signature):
        shape = tuple(spec.shape)
        if len(shape) < 2:
            raise ExportError(
                f"Input {spec.name!r} of {model.name!r} has shape {shape}; streaming export takes sequences "
                "of shape (batch, time, ...)."
            )
        step_specs.append(tf.TensorSpec((shape[0], *shape[2:]), spec.dtype, name=spec.name))

    # Plan on one eager step of zeros: checks every layer, learns the states, makes per-step copies.
    planner = _StepGraph()
    zeros = [tf.zeros([1 if d is None else d for d in spec.shape], spec.dtype) for spec in step_specs]
    step_outputs = _checked(model, lambda: keras.tree.flatten(planner.run(graph, zeros)))

    state_specs, states = [], []
    for layer_name, layer_states in planner.recurrent:
        names = []
        for size, dtype in layer_states:
            names.append(f"state_{len(state_specs)}")
            state_specs.append(tf.TensorSpec((step_specs[0].shape[0], size), dtype, name=names[-1]))
        states.append((layer_name, names))
    input_names = [spec.name for spec in step_specs] + [spec.name for spec in state_specs]
    step_output_names = output_names(model, len(step_outputs))
    names = step_output_names + [f"{spec.name}_out" for spec in state_specs]
    clashes = sorted({n for n in names if names.count(n) > 1 or n in input_names})
    if clashes:
        raise ExportError(
            f"Model {model.name!r} has outputs named {clashes}, which the step model needs for its inputs "
            "or states (state_i, state_i_out); rename those layers."
        )

    def step(*inputs):
        stepper = _StepGraph(states=inputs[len(step_specs):], copies=planner.copies)
        outputs = keras.tree.flatten(stepper.run(graph, list(inputs[: len(step_specs)])))
        return tuple(outputs) + tuple(stepper.new_states)

    specs = step_specs + state_specs
    function = tf.function(step, input_signature=specs, autograph=False)
    concrete = _checked(model, function.get_concrete_function)
    return StepFunction(function, concrete, specs, input_names, names, states)
