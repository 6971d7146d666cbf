"""The one place where keras-models takes gradients itself, on TensorFlow, JAX and PyTorch.

Models with one optimizer and a custom loss override `compute_loss` and leave gradients to Keras'
trainers. Models that update several sets of weights with several optimizers in one step (the GAN
family) write their step once, in `keras.ops`, against three functions:

- `minimize(loss_fn, variables, optimizer)`: one optimizer update of `variables` on the loss that
  `loss_fn()` returns;
- `input_gradient(fn, x)`: the gradient of `sum(fn(x))` with respect to the tensor `x`, itself
  differentiable, for gradient penalties;
- `train_step(model, step, args)`: calls `step(data)` from the model's `train_step` on any backend.
  Keras' JAX trainer calls `train_step(state, data)` and expects a pure function; there the step's
  imperative code (variable reads, `assign`, optimizer updates, random seeds, metric updates) runs
  inside a `keras.StatelessScope` that holds the whole state, and the new state is read back from it.

Each backend's implementation is a few lines below; nothing else in the library touches a gradient
tape, `jax.grad` or `torch.autograd`.
"""

from __future__ import annotations

import keras

__all__ = ["input_gradient", "minimize", "replica_share", "train_step"]


def _split(result):
    if isinstance(result, (tuple, list)) and len(result) == 2:
        return result[0], result[1]
    return result, None


def replica_share(loss):
    """`loss` divided by the number of replicas of the current `tf.distribute` strategy.

    Under `tf.distribute` (TensorFlow backend), every replica computes the loss of its slice of the
    batch, Keras' optimizer sums the replicas' gradients, and Keras' trainer multiplies the reported
    loss by the replica count. Keras' own `Loss` objects divide by that count; a hand-written
    `compute_loss` (a mean over the replica's slice) returns `replica_share(loss)` to get the gradient
    and the reported loss of the whole batch. The identity with one replica and on JAX (where
    `keras.distribution` computes one loss over the global batch) and PyTorch.
    """
    if keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss if replicas == 1 else loss * (1.0 / replicas)


# ------------------------------------------------------------------------------------------------
# TensorFlow: a gradient tape around the loss.


def _tf_minimize(loss_fn, variables, optimizer):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss, aux = _split(loss_fn())
        share = replica_share(loss)  # the optimizer sums the replicas' gradients
    gradients = tape.gradient(share, variables)
    optimizer.apply(gradients, variables)
    return loss, aux


def _tf_input_gradient(fn, x):
    import tensorflow as tf

    # A tape of its own, nested in the caller's, so the caller can differentiate the result again.
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tape.gradient(y, x)


# ------------------------------------------------------------------------------------------------
# PyTorch: autograd on the variables' tensors.


def _torch_minimize(loss_fn, variables, optimizer):
    import torch

    loss, aux = _split(loss_fn())
    values = [variable.value for variable in variables]
    gradients = torch.autograd.grad(loss, values, allow_unused=True)
    gradients = [torch.zeros_like(v) if g is None else g for g, v in zip(gradients, values)]
    with torch.no_grad():
        optimizer.apply(gradients, variables)
    detach = lambda t: t.detach() if isinstance(t, torch.Tensor) else t  # noqa: E731
    return detach(loss), keras.tree.map_structure(detach, aux)


def _torch_input_gradient(fn, x):
    import torch

    x = x.detach().requires_grad_(True)
    y = fn(x)
    # create_graph keeps the gradient differentiable: the penalty's own gradient is a second derivative.
    (gradient,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    return gradient


# ------------------------------------------------------------------------------------------------
# JAX: pure functions of the variables' values, inside the stateless scope of the train step.


def _scope():
    from keras.src.backend.common.stateless_scope import get_stateless_scope

    return get_stateless_scope()


def _child_scope(parent, overrides=()):
    """A stateless scope that sees every value `parent` holds (with `overrides`), and whose updates
    stay in it until the caller copies them out."""
    child = keras.StatelessScope()
    if parent is not None:
        child.state_mapping = dict(parent.state_mapping)
    for variable, value in overrides:
        child.state_mapping[id(variable)] = value
    return child


def _current_value(scope, variable):
    value = scope.get_current_value(variable) if scope is not None else None
    return variable.value if value is None else value


def _jax_minimize(loss_fn, variables, optimizer):
    import jax

    parent = _scope()
    if parent is None:
        raise RuntimeError(
            "keras_models.gradients.minimize runs inside a model's train_step on the JAX backend "
            "(through keras_models.gradients.train_step)."
        )
    variables = list(variables)
    differentiated = {id(variable) for variable in variables}

    def pure(values):
        with _child_scope(parent, zip(variables, values)) as scope:
            loss, aux = _split(loss_fn())
        # Everything else the loss updated: batch statistics, power iterations, seed states.
        updates = {key: value for key, value in scope.state_mapping.items() if key not in differentiated}
        return loss, (aux, updates)

    start = [_current_value(parent, variable) for variable in variables]
    (loss, (aux, updates)), gradients = jax.value_and_grad(pure, has_aux=True)(start)
    parent.state_mapping.update(updates)
    optimizer.apply(gradients, variables)  # its assignments land in the train step's scope
    return loss, aux


def _jax_input_gradient(fn, x):
    import jax
    import jax.numpy as jnp

    parent = _scope()

    def total(inputs):
        # Updates made while differentiating (batch statistics, power iterations) are dropped.
        with _child_scope(parent):
            return jnp.sum(fn(inputs))

    return jax.grad(total)(x)


def _jax_train_step(model, step, state, data):
    groups = (
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    )
    mapping = [(variable, value) for variables, values in zip(groups, state) for variable, value in zip(variables, values)]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = step(data)
    new_state = tuple([_current_value(scope, variable) for variable in variables] for variables in groups)
    return logs, new_state


# ------------------------------------------------------------------------------------------------
# Dispatch.

_MINIMIZE = {"tensorflow": _tf_minimize, "jax": _jax_minimize, "torch": _torch_minimize}
_INPUT_GRADIENT = {"tensorflow": _tf_input_gradient, "jax": _jax_input_gradient, "torch": _torch_input_gradient}


def _backend(table):
    backend = keras.backend.backend()
    if backend not in table:
        raise NotImplementedError(
            f"keras_models trains models with several optimizers on tensorflow, jax and torch; "
            f"the Keras backend is {backend!r}."
        )
    return table[backend]


def minimize(loss_fn, variables, optimizer):
    """Applies one update of `optimizer` to `variables` along the gradient of `loss_fn()`.

    Args:
        loss_fn: a function of no arguments returning the scalar loss, or `(loss, aux)` where `aux` is
            any structure of tensors computed on the way (scores, accuracies) to return as well. It is
            called once, while gradients are recorded.
        variables: the trainable `keras.Variable`s to update; gradients of the others are not taken.
        optimizer: a built `keras.optimizers.Optimizer` tracking `variables`.

    Returns:
        `(loss, aux)`, the values computed before the update.
    """
    return _backend(_MINIMIZE)(loss_fn, variables, optimizer)


def input_gradient(fn, x):
    """The gradient of `sum(fn(x))` with respect to the tensor `x`, differentiable again.

    Used inside a `minimize` loss for penalties on the input gradient (WGAN-GP, R1).
    """
    return _backend(_INPUT_GRADIENT)(fn, x)


def train_step(model, step, args):
    """Runs `step(data)` as `model.train_step(*args)` on the current backend.

    On TensorFlow and PyTorch `args` is `(data,)` and `step` runs as it is. On JAX, Keras passes
    `(state, data)`; `step` then runs inside a stateless scope holding the trainable, non-trainable,
    optimizer and metric variables, and the return value is `(logs, new_state)` as Keras' JAX
    trainer expects. `model.optimizer` must own every optimizer's variables
    (`keras_models.OptimizerGroup`), since that is the optimizer state the JAX trainer carries.
    """
    if keras.backend.backend() == "jax":
        if len(args) != 2:
            raise TypeError(f"On the JAX backend train_step takes (state, data); got {len(args)} arguments.")
        return _jax_train_step(model, step, *args)
    if len(args) != 1:
        raise TypeError(f"train_step takes (data,); got {len(args)} arguments.")
    return step(args[0])
