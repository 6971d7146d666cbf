"""`Adam`, `AdamW` and `SGD`: Keras' optimizers, with a faster update on PyTorch.

On the PyTorch backend Keras' Adam and AdamW update with PyTorch's multi-tensor (`foreach`) operators,
but global-norm clipping computes a norm and a product per variable, and the learning rate and bias
corrections are Keras operators on scalars: on a small GPT on a CPU Keras' AdamW took 5.5-7.5 ms of a
40 ms step, against 1.0 ms for PyTorch's fused AdamW with clipping (`benchmarks/gpt_quality.py`). These
classes are Keras' (the same arguments, variables, configuration and files) whose update, eagerly on
PyTorch, is PyTorch's fused Adam kernel run on Keras' own slots, with the global norm taken by one
multi-tensor operator and Keras' `CosineDecay` evaluated on the host (`cosine_decay_at`). Everywhere
else (TensorFlow, JAX, under `torch.compile`, and for the options the kernel does not cover) they are
Keras' optimizers unchanged. The library's models compile with `Adam`.

`SGD` is Keras' SGD whose update, eagerly on PyTorch, moves one variable at a time instead of in Keras'
three multi-tensor passes (on ResNet-18's 11.2M parameters on a CPU, PyTorch's own SGD takes 7.1 ms a
step as such a loop and 9.0 ms with its multi-tensor operators).
"""

from __future__ import annotations

import math

import keras
import numpy as np

from keras_models.layers.conv2d import eager_torch


def _keras_class(name):
    """Keras' optimizer class `name` as this backend runs it: on PyTorch Keras swaps its public classes
    for multi-tensor ones only when they are instantiated directly, so a subclass derives from those."""
    if keras.backend.backend() == "torch":
        from keras.src.backend.torch.optimizers import torch_adam, torch_adamw, torch_sgd

        return {"Adam": torch_adam.Adam, "AdamW": torch_adamw.AdamW, "SGD": torch_sgd.SGD}[name]
    return getattr(keras.optimizers, name)


def _layout(tensor):
    """The strides of `tensor` over its axes longer than 1: two tensors of one shape with the same layout
    hold their elements in the same memory order (the stride of a single-element axis means nothing)."""
    return tuple(stride for stride, size in zip(tensor.stride(), tensor.shape) if size != 1)


def _dense(tensor) -> bool:
    """Whether `tensor` covers its memory without gaps or overlaps, in some order of its axes (contiguous,
    or a permutation of contiguous: the library's `Conv2D` kernels)."""
    expected = 1
    for axis in sorted(range(tensor.dim()), key=tensor.stride):
        if tensor.shape[axis] != 1 and tensor.stride(axis) != expected:
            return False
        expected *= tensor.shape[axis]
    return True


def cosine_decay_at(schedule, step: int):
    """The rate of Keras' `CosineDecay` `schedule` at `step` (the optimizer's iterations before the update),
    or None where its arguments are not plain numbers (the initial rate a float).

    Keras' formula (a linear warm-up from `initial_learning_rate` to `warmup_target` over `warmup_steps`,
    then `rate * ((1 - alpha) * (1 + cos(pi * min(step, decay_steps) / decay_steps)) / 2 + alpha)` from
    the rate reached) in the float32 operations Keras applies, one by one, on numpy's float32 scalars, but
    for the cosine, taken in double precision and rounded to float32, where PyTorch's float32 cosine is at
    times one unit in the last place apart. The rate equals Keras' at most steps and lies within 1e-6 of
    the peak rate of it at every step (tested; near the end of a decay to zero, where `1 + cos` cancels in
    float32, a cosine one unit apart makes a larger relative difference in a rate near zero).
    """
    values = (schedule.initial_learning_rate, schedule.decay_steps, schedule.warmup_steps, schedule.alpha)
    target = schedule.warmup_target
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values + (target or 0.0,))
    if not numbers or not isinstance(values[0], float):  # an integer rate: Keras computes in its dtype
        return None
    f32 = np.float32
    initial, decay_steps, warmup_steps = (f32(v) for v in values[:3])
    alpha, step = values[3], f32(step)
    with np.errstate(all="ignore"):  # as Keras' operators: inf or nan where the arguments make them
        # Between float32 scalars numpy's arithmetic is float32; Python's numbers are made float32 first.
        if target is None:
            start, step = initial, min(step, decay_steps)
        else:
            target = f32(target)
            step = min(step, decay_steps + warmup_steps)
            if step < warmup_steps:
                return float((target - initial) * (step / warmup_steps) + initial)
            start, step = target, step - warmup_steps
        cosine = f32(math.cos(f32(math.pi) * (step / decay_steps)))
        decayed = f32(1 - alpha) * (f32(0.5) * (f32(1.0) + cosine)) + f32(alpha)
        return float(start * decayed)


class _FusedUpdate:
    """The fused update of `Adam` and `AdamW` (see the module)."""

    def _backend_apply_gradients(self, grads, trainable_variables):
        if not self._fused_update(grads, trainable_variables):
            super()._backend_apply_gradients(grads, trainable_variables)

    def _fused_available(self) -> bool:
        if not eager_torch():
            return False
        import torch
        from keras.src.backend.common.stateless_scope import in_stateless_scope

        # In a stateless scope (`stateless_apply`) the new values go to the scope: Keras' update assigns
        # them there, where an in-place kernel would write into the tensors the caller passed.
        options = (self.amsgrad, self.clipnorm, self.clipvalue, self.use_ema, self.gradient_accumulation_steps)
        return hasattr(torch, "_fused_adamw_") and not any(options) and not in_stateless_scope()

    def _fused_groups(self, trainable_variables):
        """The PyTorch tensors of `trainable_variables` and their slots, in two groups (with and without
        weight decay), and each variable's layout; None where a variable is not float32 or its slots are
        laid out otherwise (the kernel walks a variable's four tensors through memory together). Kept
        while the same variables and slots are updated: they are updated in place and keep their tensors."""
        import torch

        key = (tuple(id(variable) for variable in trainable_variables), id(self._momentums), id(self._velocities))
        cached = getattr(self, "_fused_cache", None)
        if cached is not None and cached[0] == key:
            return cached[2]
        groups = {True: ([], [], [], []), False: ([], [], [], [])}  # positions, variables, m, v
        layouts = []
        for position, variable in enumerate(trainable_variables):
            index = self._get_variable_index(variable)
            tensors = (variable.value, self._momentums[index].value, self._velocities[index].value)
            if not (all(isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.layout == torch.strided
                        and _layout(t) == _layout(tensors[0]) for t in tensors) and _dense(tensors[0])):
                groups = None
                break
            layouts.append(_layout(tensors[0]))
            group = groups[bool(self.weight_decay) and self._use_weight_decay(variable)]
            for part, item in zip(group, (position, *tensors)):
                part.append(item)
        if groups is not None:
            groups = ([(decay, *group) for decay, group in groups.items() if group[0]], layouts)
        # The variables themselves are held, so that their ids in the key cannot be reused; set past
        # Keras' attribute tracking, which would list them as the optimizer's own variables (and save them).
        object.__setattr__(self, "_fused_cache", (key, list(trainable_variables), groups))
        return groups

    def _host_learning_rate(self, iterations: int) -> float:
        """The learning rate after `iterations` updates, as a number. Keras' `CosineDecay` is computed on
        the host (`cosine_decay_at`): in Keras operators its dozen scalar operations took 0.65 ms of a small
        GPT's step on a CPU. Any other rate or schedule is Keras' own, read as a number."""
        schedule = self._learning_rate
        if type(schedule) is keras.optimizers.schedules.CosineDecay:
            rate = cosine_decay_at(schedule, iterations)
            if rate is not None:
                return rate
        return float(self._get_current_learning_rate())

    def _fused_update(self, grads, trainable_variables) -> bool:
        """One fused update of `trainable_variables`; False (nothing changed) where it does not apply."""
        if not self._fused_available():
            return False
        import torch

        cached = self._fused_groups(trainable_variables)
        if cached is None or not cached[0]:
            return False
        groups, layouts = cached
        device = groups[0][2][0].device
        if not all(isinstance(g, torch.Tensor) and g.dtype == torch.float32 and g.device == device
                   and _layout(g) == layout for g, layout in zip(grads, layouts)):
            return False

        with torch.no_grad():
            iterations = int(self._iterations.value)
            learning_rate = self._host_learning_rate(iterations)
            step = iterations + 1.0
            # Keras adds epsilon to sqrt(v) before the bias correction, the kernel after it.
            epsilon = self.epsilon / math.sqrt(1.0 - self.beta_2**step)
            if self.global_clipnorm and self.global_clipnorm > 0:
                # Keras multiplies every gradient by min(1, clipnorm / norm) (NaN when the norm is not
                # finite). Scaled copies, where the factor is not 1: the kernel's own scaling (`grad_scale`)
                # would write the scaled gradients over the caller's.
                norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
                factor = torch.clamp(norm / self.global_clipnorm, min=1.0)
                if device.type != "cpu" or not float(factor) == 1.0:  # no wait for the device to answer
                    grads = torch._foreach_div(grads, factor)
            step_tensor = torch.tensor(step, dtype=torch.float32, device=device)
            for decay, positions, variables, momentums, velocities in groups:
                # Keras' weight decay is AdamW's, for both classes: the weights times 1 - decay * lr first.
                torch._fused_adamw_(
                    variables, [grads[i] for i in positions], momentums, velocities, [],
                    [step_tensor] * len(positions), lr=learning_rate, beta1=self.beta_1, beta2=self.beta_2,
                    weight_decay=self.weight_decay if decay else 0.0, eps=epsilon, amsgrad=False,
                    maximize=False, grad_scale=None, found_inf=None)
        return True


@keras.saving.register_keras_serializable(package="keras_models")
class Adam(_FusedUpdate, _keras_class("Adam")):
    """`keras.optimizers.Adam`, with a fused update eagerly on PyTorch.

    Takes the arguments of `keras.optimizers.Adam` and computes the same update: Keras' bias-corrected
    step `lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)`, after the weights are
    decayed by `1 - weight_decay * lr` where `weight_decay` is set, with `global_clipnorm` scaling the
    gradients first. Eagerly on PyTorch, when each variable, its gradient and its slots are float32 and
    laid out alike in memory and none of `amsgrad`, `clipnorm`, `clipvalue`, `use_ema` or
    `gradient_accumulation_steps` is set, the update runs as PyTorch's fused Adam kernel on Keras' slots
    (Keras' epsilon is passed as `epsilon / sqrt(1 - beta_2^t)`, which makes the kernel's update Keras'
    own); otherwise it is Keras' update. Files and optimizer state are those of Keras' Adam.
    """


@keras.saving.register_keras_serializable(package="keras_models")
class AdamW(_FusedUpdate, _keras_class("AdamW")):
    """`keras.optimizers.AdamW`, with a fused update eagerly on PyTorch: as `Adam`, with AdamW's default
    weight decay (0.004). Files and optimizer state are those of Keras' AdamW."""


class _PerVariableUpdate:
    """SGD's update on PyTorch one variable at a time (see `SGD`)."""

    def _parallel_update_step(self, grads, variables, learning_rate):
        if not eager_torch():
            return super()._parallel_update_step(grads, variables, learning_rate)
        import torch

        rate = float(learning_rate)  # Keras passes it to PyTorch as a number too
        values = [variable.value for variable in variables]
        with torch.no_grad():
            if not self.momentum:
                for value, grad in zip(values, grads):
                    value.add_(grad, alpha=-rate)
                return
            slots = [self.momentums[self._get_variable_index(variable)].value for variable in variables]
            for value, grad, slot in zip(values, grads, slots):
                # Keras' SGD: m = momentum * m - lr * g; w += m (Nesterov: w += momentum * m - lr * g).
                slot.mul_(self.momentum).add_(grad, alpha=-rate)
                if self.nesterov:
                    value.add_(grad, alpha=-rate).add_(slot, alpha=self.momentum)
                else:
                    value.add_(slot)


@keras.saving.register_keras_serializable(package="keras_models")
class SGD(_PerVariableUpdate, _keras_class("SGD")):
    """`keras.optimizers.SGD`, updating one variable at a time eagerly on PyTorch.

    Keras' SGD on PyTorch updates with multi-tensor operators: the momentum of every variable is scaled,
    then every gradient added, then every weight moved, three passes over memory that a CPU's caches do
    not hold for a ResNet. Here each variable's momentum and weight are updated together, with the same
    operators on the same values (the same numbers as Keras' update). Everywhere else (TensorFlow, JAX,
    under `torch.compile`) it is Keras' SGD. Files and optimizer state are those of Keras' SGD.
    """
