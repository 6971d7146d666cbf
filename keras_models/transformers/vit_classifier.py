"""`ViTClassifier`: a ViT backbone with a classifier head on its class token (or pooled patch tokens)."""

from __future__ import annotations

import keras

from keras_models.checks import CheckedModel
from keras_models.heads import check_head, check_num_classes, classifier_head
from keras_models.transformers.vit_backbone import ImageInputChecks, ViTBackbone

# How the tokens become one vector: the class token (the paper's classifier), or the mean or maximum
# of the patch tokens; `None` is the class token with a head and every token without one.
POOLINGS = (None, "token", "avg", "max")


def pool_tokens(tokens, pooling, num_patches, name):
    """Token features `(batch, 1 + num_patches, hidden_dim)` pooled as `pooling` says, with builtin
    layers only (crops and global pooling, which every exporter knows)."""
    if pooling is None:
        return tokens
    if pooling == "token":
        x = keras.layers.Cropping1D((0, num_patches), name=name + "_class_token")(tokens)  # (batch, 1, hidden_dim)
        return keras.layers.Flatten(name=name + "_token_pool")(x)
    patches = keras.layers.Cropping1D((1, 0), name=name + "_patch_tokens")(tokens)  # (batch, num_patches, hidden)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling1D(name=name + "_avg_pool")(patches)
    return keras.layers.GlobalMaxPooling1D(name=name + "_max_pool")(patches)


@keras.saving.register_keras_serializable(package="keras_models")
class ViTClassifier(ImageInputChecks, CheckedModel):
    """An image classifier on a `ViTBackbone` (a functional `keras.Model`): images `(batch, height,
    width, channels)` to class scores `(batch, num_classes)`, read from the final class token by a
    dense layer with the head's activation, as in the paper.

    `fit`, `evaluate` and `predict` check the images' shape (naming wrong channels), and `fit` and
    `evaluate` finite values and labels in `[0, num_classes)`.

    Args:
        backbone: the `ViTBackbone`.
        num_classes: output units.
        head: `"softmax"`, `"sigmoid"` (binary or multi-label) or `"linear"` (regression).
        include_top: `False` leaves the head out: the model returns the pooled features.
        pooling: `None` (the class token with a head; every token `(batch, 1 + num_patches,
            hidden_dim)` without one), `"token"` (the class token), `"avg"` or `"max"` (of the patch
            tokens).
        name: the model name; `None` for the backbone's name plus `"_classifier"`.
    """

    def __init__(self, backbone, num_classes=10, head="softmax", include_top=True, pooling=None, name=None,
                 **kwargs):
        if not isinstance(backbone, ViTBackbone):
            raise ValueError(f"backbone must be a ViTBackbone; got {type(backbone).__name__}.")
        check_head(head)
        check_num_classes(num_classes, head, include_top)
        if include_top not in (True, False):
            raise ValueError(f"include_top must be True or False; got include_top={include_top!r}.")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; got pooling={pooling!r}.")
        name = backbone.name + "_classifier" if name is None else name
        images = backbone.input
        tokens = backbone(images)  # (batch, 1 + num_patches, hidden_dim)
        if include_top:
            features = pool_tokens(tokens, pooling or "token", backbone.num_patches, name)  # (batch, hidden_dim)
            outputs = classifier_head(features, num_classes, head, name)  # (batch, num_classes)
        else:
            outputs = pool_tokens(tokens, pooling, backbone.num_patches, name)
        super().__init__(inputs=images, outputs=outputs, name=name, **kwargs)
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.head = head
        self.include_top = bool(include_top)
        self.pooling = pooling

    @property
    def image_shape(self):
        return self.backbone.image_shape

    @property
    def patch_size(self):
        return self.backbone.patch_size

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "head": self.head,
            "include_top": self.include_top,
            "pooling": self.pooling,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "backbone": keras.saving.deserialize_keras_object(config["backbone"])})
