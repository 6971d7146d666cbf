"""`OptimizerGroup`: one optimizer object that owns the state of several.

A model that updates parts of itself with different optimizers (a GAN's discriminator and generator)
compiles with an `OptimizerGroup` of them as its `optimizer`. Keras' trainers see one optimizer whose
`variables` are all the members' variables: the JAX trainer carries exactly `model.optimizer.variables`
through its pure train step, so without the group the state of every optimizer but one would be lost
there. The members do the updates (`keras_models.gradients.minimize`); the group never applies
gradients itself.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="keras_models")
class OptimizerGroup(keras.optimizers.Optimizer):
    """Several optimizers seen by Keras' trainers as one.

    Args:
        optimizers: the member optimizers, in a fixed order (their variables are listed in it).
        name: the group's name.

    `variables` are the members' variables, `iterations` and `learning_rate` those of the last member
    (a GAN's generator optimizer: one generator update per training step).
    """

    def __init__(self, optimizers, name="optimizer_group", **kwargs):
        members = list(optimizers)
        if not members or not all(isinstance(m, keras.optimizers.Optimizer) for m in members):
            raise ValueError(f"optimizers must be a non-empty list of keras optimizers; got {optimizers!r}.")
        if len({id(m) for m in members}) != len(members):
            raise ValueError("optimizers must be distinct instances; the same optimizer was given twice.")
        super().__init__(learning_rate=0.0, name=name, **kwargs)
        self.members = members

    @property
    def variables(self):
        return [variable for member in self.members for variable in member.variables]

    @property
    def iterations(self):
        return self.members[-1].iterations

    @property
    def learning_rate(self):
        return self.members[-1].learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self.members[-1].learning_rate = value

    def build(self, var_list):
        if not all(member.built for member in self.members):
            raise ValueError("Build every member optimizer on its own variables before grouping them.")
        self.built = True

    def apply(self, grads, trainable_variables=None):
        raise NotImplementedError("An OptimizerGroup does not apply gradients: each member updates its own variables.")

    # The members are saved where the model keeps them (a GAN's `d_optimizer` and `g_optimizer`).
    def save_own_variables(self, store):
        pass

    def load_own_variables(self, store):
        pass

    def get_config(self):
        return {"name": self.name, "optimizers": [keras.saving.serialize_keras_object(m) for m in self.members]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        members = [keras.saving.deserialize_keras_object(m, custom_objects=custom_objects) for m in config.pop("optimizers")]
        return cls(members, **config)
