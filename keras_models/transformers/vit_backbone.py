"""`ViTBackbone`: the Vision Transformer's encoder, images to one token per patch plus a class token."""

from __future__ import annotations

import keras

from keras_models.checks import (
    CheckedModel,
    as_array,
    check_positive_float,
    check_positive_int,
    check_rate,
    check_shape,
)
from keras_models.layers.patch_embedding import PatchEmbedding
from keras_models.layers.position_embedding import PositionEmbedding
from keras_models.layers.transformer_block import TransformerBlock


def check_vit_config(image_shape, patch_size, num_layers, num_heads, hidden_dim, intermediate_dim, dropout,
                     layer_norm_epsilon=1e-6, shape_name="image_shape"):
    """`image_shape` as a tuple, or a `ValueError` naming the first bad argument of a ViT configuration
    (`shape_name` is what the caller calls the image shape)."""
    shape = check_shape(image_shape, shape_name, rank=3)
    for value, what in ((patch_size, "patch_size"), (num_layers, "num_layers"), (num_heads, "num_heads"),
                        (hidden_dim, "hidden_dim"), (intermediate_dim, "intermediate_dim")):
        check_positive_int(value, what)
    height, width, _ = shape
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"{shape_name}={image_shape!r} must have a height and width divisible by patch_size={patch_size} "
            f"(the image is cut into whole patches); got {height}x{width}."
        )
    if hidden_dim % num_heads:
        raise ValueError(
            f"hidden_dim must be divisible by num_heads (every head is hidden_dim / num_heads wide); got "
            f"hidden_dim={hidden_dim}, num_heads={num_heads}."
        )
    check_rate(dropout, "dropout")
    check_positive_float(layer_norm_epsilon, "layer_norm_epsilon")
    return shape


def check_image_batch(images, image_shape, patch_size, what="x"):
    """Raises a `ValueError` when an array of images does not have the shape the model was built for,
    naming the channels when only they differ. Datasets and generators are left to Keras."""
    array = as_array(images)
    if array is None or (array.ndim == 4 and tuple(array.shape[1:]) == tuple(image_shape)):
        return
    height, width, channels = image_shape
    expected = f"(batch, {height}, {width}, {channels})"
    if array.ndim == 4 and tuple(array.shape[1:3]) == (height, width):
        raise ValueError(
            f"{what} has {array.shape[3]} channels; the model was built for {channels} (input_shape="
            f"{tuple(image_shape)}). Got shape {array.shape}."
        )
    raise ValueError(
        f"{what} must be channels-last images of shape {expected}, the input_shape the model was built for "
        f"with patch_size={patch_size}; got shape {array.shape}. Resize the images or build the model for "
        f"their size (height and width multiples of patch_size)."
    )


class ImageInputChecks:
    """`fit`, `evaluate` and `predict` check that array images have the model's `image_shape`, before
    `CheckedModel`'s checks of finite values and labels."""

    def fit(self, x=None, y=None, *args, **kwargs):
        check_image_batch(x, self.image_shape, self.patch_size, "x")
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and validation:
            check_image_batch(validation[0], self.image_shape, self.patch_size, "validation_data x")
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        check_image_batch(x, self.image_shape, self.patch_size, "x")
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        check_image_batch(x, self.image_shape, self.patch_size, "x")
        return super().predict(x, *args, **kwargs)


@keras.saving.register_keras_serializable(package="keras_models")
class ViTBackbone(ImageInputChecks, CheckedModel):
    """The Vision Transformer (Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words: Transformers for
    Image Recognition at Scale"), a functional `keras.Model`: channels-last images `(batch, height,
    width, channels)` to token features `(batch, 1 + num_patches, hidden_dim)`, the class token first.

    A `PatchEmbedding` (the image cut into `patch_size` squares, each projected linearly, a learned
    class token in front), a learned position embedding, dropout, `num_layers` pre-norm encoder
    `TransformerBlock`s (no causal mask, GELU feed-forward) and a final layer normalization. The
    position table starts from N(0, 0.02) and the class token from zeros, as in the paper. The
    feed-forward GELU is the tanh approximation of the library's `FeedForward` (the paper uses the
    exact form; the parameters are the same).

    Args:
        image_shape: `(height, width, channels)`; height and width multiples of `patch_size`.
        patch_size: the side of a square patch in pixels.
        num_layers: transformer blocks.
        num_heads: attention heads; `hidden_dim` must be divisible by it.
        hidden_dim: the width of a token.
        intermediate_dim: the width inside each feed-forward network (the paper's MLP size).
        dropout: dropout rate on the embeddings, the attention weights and every residual branch.
        layer_norm_epsilon: of every layer normalization.
        name: the model name and the prefix of every layer name.
    """

    def __init__(self, image_shape=(28, 28, 1), patch_size=4, num_layers=2, num_heads=4, hidden_dim=64,
                 intermediate_dim=256, dropout=0.0, layer_norm_epsilon=1e-6, name="vit", **kwargs):
        image_shape = check_vit_config(image_shape, patch_size, num_layers, num_heads, hidden_dim,
                                       intermediate_dim, dropout, layer_norm_epsilon)
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string; got name={name!r}.")
        num_patches = (image_shape[0] // patch_size) * (image_shape[1] // patch_size)
        patch_embedding = PatchEmbedding(patch_size, hidden_dim, class_token=True, name=name + "_patch_embedding")
        position_embedding = PositionEmbedding(1 + num_patches,
                                               initializer=keras.initializers.RandomNormal(stddev=0.02),
                                               name=name + "_position_embedding")
        blocks = [
            TransformerBlock(num_heads, intermediate_dim, activation="gelu", dropout=dropout,
                             normalization="layer_norm", norm_first=True, epsilon=layer_norm_epsilon, causal=False,
                             name=f"{name}_block{index + 1}")
            for index in range(num_layers)
        ]
        final_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name=name + "_final_norm")

        images = keras.Input(image_shape, name=name + "_images")
        tokens = patch_embedding(images)  # (batch, 1 + num_patches, hidden_dim)
        x = keras.layers.Add(name=name + "_embeddings")([tokens, position_embedding(tokens)])
        x = keras.layers.Dropout(dropout, name=name + "_embedding_dropout")(x)
        for block in blocks:
            x = block(x)
        x = final_norm(x)  # (batch, 1 + num_patches, hidden_dim)
        super().__init__(inputs=images, outputs=x, name=name, **kwargs)

        self.image_shape = image_shape
        self.patch_size = int(patch_size)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.hidden_dim = int(hidden_dim)
        self.intermediate_dim = int(intermediate_dim)
        self.dropout = float(dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.patch_embedding = patch_embedding
        self.position_embedding = position_embedding
        self.transformer_layers = blocks
        self.final_norm = final_norm

    @property
    def num_patches(self) -> int:
        return (self.image_shape[0] // self.patch_size) * (self.image_shape[1] // self.patch_size)

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "image_shape": list(self.image_shape),
            "patch_size": self.patch_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "image_shape": tuple(config["image_shape"])})
