"""A preprocessor that saves and loads with its model.

Keras writes a model's `get_config()` into the `.keras` file and rebuilds the model with
`from_config` before loading its weights, so an object the model should carry must be part of that
configuration: an attribute set on a model alone is gone after `keras.saving.load_model`. A model
class takes `PreprocessorMixin` first among its bases; the mixin adds the preprocessor (vocabulary and
merges included, plain JSON) to the model's configuration and sets it again on the rebuilt model. The
preprocessor is no layer of the model: it is not in the graph, the weights or the exported files.
"""

from __future__ import annotations

import keras

from keras_models.text.tokenizer import Tokenizer


class PreprocessorMixin:
    """Gives a `keras.Model` subclass a `preprocessor` saved in its configuration.

    Put it before the model class among the bases (`class GPTCausalLM(PreprocessorMixin, keras.Model)`)
    so that its `get_config` and `from_config` wrap the model's own. A model without a preprocessor
    saves exactly as before.
    """

    preprocessor = None

    def get_config(self):
        return self.with_preprocessor_config(super().get_config())

    @classmethod
    def from_config(cls, config):
        config, preprocessor = cls.split_preprocessor_config(config)
        return cls.restore_preprocessor(super().from_config(config), preprocessor)

    # A class that writes its whole configuration itself (without `super().get_config()`) calls these.

    def with_preprocessor_config(self, config):
        """`config` with the preprocessor's configuration added, when the model carries one."""
        if self.preprocessor is not None:
            config = {**config, "preprocessor": keras.saving.serialize_keras_object(self.preprocessor)}
        return config

    @staticmethod
    def split_preprocessor_config(config):
        """`(config without the preprocessor, the preprocessor's configuration or None)`."""
        config = dict(config)
        return config, config.pop("preprocessor", None)

    @staticmethod
    def restore_preprocessor(model, preprocessor_config):
        """`model` with the preprocessor rebuilt from `preprocessor_config` (nothing when None)."""
        if preprocessor_config is not None:
            model.preprocessor = keras.saving.deserialize_keras_object(preprocessor_config)
        return model


def _model_vocabulary_size(model):
    """The number of token ids `model` reads: its own `vocabulary_size` (or `vocab_size`), or its
    backbone's (a task model); `None` when it says nothing."""
    for owner in (model, getattr(model, "backbone", None)):
        for name in ("vocabulary_size", "vocab_size"):
            value = getattr(owner, name, None)
            if isinstance(value, int):
                return value
    return None


def attach_preprocessor(model, preprocessor):
    """Sets `model.preprocessor`, checked, so that it saves and loads with the model.

    Args:
        model: a model whose class takes `PreprocessorMixin`.
        preprocessor: a `CausalLMPreprocessor` (or another registered object with a `tokenizer`), or
            `None` to detach it.

    Returns:
        `model`.
    """
    if not isinstance(model, PreprocessorMixin):
        raise ValueError(
            f"{type(model).__name__} would not save a preprocessor with it: its class must take "
            f"keras_models.text.PreprocessorMixin among its bases."
        )
    if preprocessor is not None:
        tokenizer = getattr(preprocessor, "tokenizer", None)
        if not isinstance(tokenizer, Tokenizer):
            raise ValueError(f"preprocessor must hold a tokenizer of keras_models.text (its .tokenizer); got "
                             f"{type(preprocessor).__name__}.")
        if keras.saving.get_registered_object(keras.saving.get_registered_name(type(preprocessor))) is None:
            raise ValueError(f"{type(preprocessor).__name__} is not registered with "
                             f"keras.saving.register_keras_serializable, so a saved model could not rebuild it.")
        size = _model_vocabulary_size(model)
        if size is not None and tokenizer.vocabulary_size > size:
            raise ValueError(
                f"The tokenizer has {tokenizer.vocabulary_size} token ids but {model.name!r} reads only {size}: "
                f"build the model with the tokenizer's vocabulary_size."
            )
    model.preprocessor = preprocessor
    return model
