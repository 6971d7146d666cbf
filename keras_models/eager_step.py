"""`CheckedModel`'s call and training step eagerly on PyTorch, with less of Keras' per-call work.

Eagerly on PyTorch Keras does in every step what the other backends do once, while tracing. Two parts of
it cost a small GPT on a CPU about 2 ms of a 45 ms step (BENCHMARKS.md, "GPT on real text"):

- `call(model, args, kwargs)`: a model's outermost call. `Layer.__call__` converts and checks the
  arguments, resolves `training`, clears every layer's added losses, propagates masks and enters name
  and autocast scopes before it reaches `call`. Where the model runs a plan (`keras_models.graph_runner`:
  float32 layers, no masks, no activity regularizers), nothing of that changes the result beyond the
  input check and the `training` context, which this call keeps: it checks the inputs against the model's
  inputs as Keras does, opens the same call context (so a nested layer called through Keras still sees
  `training`), and runs the plan. Anything else (keyword arguments other than `training`, masks, a
  nested or stateless call, an autocast scope, PyTorch module hooks, losses left from an earlier call, a
  model that computes its own `call`) returns `KERAS` and takes Keras' path.
- `train_step(model, data)`: Keras' PyTorch training step (forward, loss, loss tracker, backward, one
  optimizer update, metrics, in Keras' order) with the model's trainable weights collected once where
  Keras' step collects them twice and walks PyTorch's modules once more to drop the gradients, and the
  loss tracker's running sums updated in place. Returns `KERAS` where Keras' own step is needed (no
  trainable weights or no optimizer, a stateless scope).

Both are used only eagerly on PyTorch, outside `torch.compile`; everywhere else the model is Keras'.
"""

from __future__ import annotations

import keras
from keras.src.backend import get_autocast_scope
from keras.src.backend.common import global_state
from keras.src.backend.common.stateless_scope import in_stateless_scope
from keras.src.layers.layer import CallContext

from keras_models import graph_runner
from keras_models.layers.conv2d import eager_torch

KERAS = object()  # "take Keras' own path"


def _plain_torch_input(value) -> bool:
    import torch

    return (isinstance(value, torch.Tensor) and getattr(value, "_keras_mask", None) is None
            and str(value.dtype).removeprefix("torch.") in graph_runner._INPUT_DTYPES)


def _module_hooks(model) -> bool:
    """Whether PyTorch hooks would run around the model's forward pass (its own or global ones)."""
    import torch.nn.modules.module as module

    return bool(model._forward_hooks or model._forward_pre_hooks or model._backward_hooks
                or model._backward_pre_hooks or module._global_forward_hooks
                or module._global_forward_pre_hooks or module._global_backward_hooks
                or module._global_backward_pre_hooks)


def call(model, args, kwargs):
    """`model(*args, **kwargs)` through the model's plan, or `KERAS` (see the module)."""
    if len(args) != 1 or (kwargs and kwargs.keys() != {"training"}) or not eager_torch():
        return KERAS
    from keras_models.checks import CheckedModel  # here: checks imports this module when a model is called

    if (type(model).call is not CheckedModel.call or global_state.get_global_attribute("current_call_ctx") is not None
            or in_stateless_scope() or get_autocast_scope() is not None or _module_hooks(model)):
        return KERAS
    inputs = args[0]
    if not all(_plain_torch_input(value) for value in keras.tree.flatten(inputs)):
        return KERAS
    graph = graph_runner.plan(model)
    # Keras clears the losses layers added in the previous call; plan layers add none, so any left there
    # came from elsewhere and Keras' path clears them.
    if graph is None or model._losses or any(layer._losses for layer in graph.layers):
        return KERAS
    model._assert_input_compatibility(inputs)
    model._called = True
    training = kwargs.get("training")
    context = CallContext(entry_layer=model)
    for name in model._call_context_args:
        context.set_value(name, training if name == "training" else None)
    global_state.set_global_attribute("current_call_ctx", context)
    try:
        return graph_runner.run(graph, model._standardize_inputs(inputs), training)
    finally:
        global_state.set_global_attribute("current_call_ctx", None)


def _track_loss(tracker, loss, batch_size) -> None:
    """`tracker.update_state(loss, sample_weight=batch_size)`: for Keras' `Mean` and a float32 scalar, its
    two sums in place (total + loss * batch, count + batch, both float32 as Keras computes them)."""
    import torch

    if (type(tracker) is keras.metrics.Mean and isinstance(loss, torch.Tensor) and loss.dim() == 0
            and loss.dtype == torch.float32 and tracker.total._value.dtype == torch.float32
            and getattr(loss, "_keras_mask", None) is None):
        with torch.no_grad():
            tracker.total._value.add_(loss.detach() * float(batch_size))
            tracker.count._value.add_(float(batch_size))
        return
    tracker.update_state(loss, sample_weight=batch_size)


def train_step(model, data):
    """One training step as Keras' PyTorch trainer takes it, or `KERAS` (see the module)."""
    if not eager_torch():
        return KERAS
    if model.optimizer is None or in_stateless_scope():
        return KERAS
    variables = model.trainable_weights
    if not variables:
        return KERAS  # Keras' step warns that there is nothing to train
    import torch

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    y_pred = model(x, training=True) if model._call_has_training_arg else model(x)
    # The last step's gradients go after the forward pass, where Keras drops them. Before it, as PyTorch's
    # loops do, a ResNet-18 step on a CPU took 150 ms against 132-135 ms (one process, alternating).
    for variable in variables:  # outside a stateless scope a variable's value is its tensor
        variable._value.grad = None
    loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
    batch_size = next(value for value in keras.tree.flatten(x) if value is not None).shape[0]
    _track_loss(model._loss_tracker, loss, batch_size)
    model.optimizer.scale_loss(loss).backward()
    gradients = [variable._value.grad for variable in variables]
    with torch.no_grad():
        model.optimizer.apply(gradients, variables)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
