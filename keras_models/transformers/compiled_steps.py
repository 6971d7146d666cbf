"""`CompiledSteps`: the generation steps of a transformer task, compiled once per backend."""

from __future__ import annotations

import keras

from keras_models import checks
from keras_models.training import default_jit_compile


def checked_task_name(backbone, backbone_class, start_id, end_id, name, suffix):
    """Checks an encoder-decoder task's backbone and special ids; returns the task's name (`name`, or
    the backbone's name plus `suffix`)."""
    if not isinstance(backbone, backbone_class):
        raise ValueError(f"backbone must be a {backbone_class.__name__}; got {type(backbone).__name__}.")
    checks.check_special_ids(start_id, end_id, backbone.vocabulary_size)
    return backbone.name + suffix if name is None else name


class CompiledSteps:
    """Mixin for models that generate: `_compiled_function(name)` is the model's method `name`
    (`generation_step`, `generation_prefill`, `(inputs, state) -> outputs`) compiled for this backend,
    built on first use and kept on the model. `compile_family` names the family whose compile policy
    decides XLA on TensorFlow."""

    compile_family = "transformer"

    def _compiled_function(self, name):
        """`generation_step` or `generation_prefill`, compiled for this backend (one trace per shape).

        TensorFlow: a `tf.function`, with XLA where the family's policy trains with it (accelerators; on
        a CPU, XLA took minutes to compile a step that then ran 4x slower than the plain graph). JAX:
        `jax.jit` of the step as a pure function of the weights' values. PyTorch: eager.
        """
        compiled = self.__dict__.setdefault("_compiled_steps", {})
        if name not in compiled:
            function = getattr(self, name)
            backend = keras.backend.backend()
            if backend == "tensorflow":
                import tensorflow as tf

                function = tf.function(function, jit_compile=default_jit_compile(self.compile_family))
            elif backend == "jax":
                import jax

                variables = list(self.variables)

                def pure(values, inputs, state):
                    with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                        return getattr(self, name)(inputs, state)

                jitted = jax.jit(pure)

                def function(inputs, state):
                    return jitted([variable.value for variable in variables], inputs, state)

            compiled[name] = function
        return compiled[name]
