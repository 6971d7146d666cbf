"""`PatchEmbedding`: an image cut into square patches, each projected to a token, with a class token."""

from __future__ import annotations

import keras
from keras import ops

from keras_models.checks import check_positive_int


@keras.saving.register_keras_serializable(package="keras_models")
class PatchEmbedding(keras.layers.Layer):
    """Images to a sequence of patch tokens (Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words").

    The image is cut into non-overlapping `patch_size x patch_size` patches, each flattened and
    projected to `hidden_dim` by one linear map: a `Conv2D` whose kernel and stride are the patch
    size, which is the same map written as a convolution. The patches are read row by row. With
    `class_token=True` a learned token (zeros at first, as in the paper) is put in front of them; a
    classifier reads the output at that position.

    Args:
        patch_size: the side of a patch in pixels; the image's height and width must be multiples of it.
        hidden_dim: the width of a token.
        class_token: prepend a learned class token.
        kernel_initializer, bias_initializer: of the projection.

    Call arguments:
        images: channels-last `(batch, height, width, channels)`.

    Returns:
        `(batch, class_token + (height / patch_size) * (width / patch_size), hidden_dim)`.
    """

    def __init__(self, patch_size: int, hidden_dim: int, class_token: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        patch_size = check_positive_int(patch_size, "patch_size")
        hidden_dim = check_positive_int(hidden_dim, "hidden_dim")
        if class_token not in (True, False):
            raise ValueError(f"class_token must be True or False; got class_token={class_token!r}.")
        super().__init__(**kwargs)
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.class_token = bool(class_token)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def _grid(self, input_shape):
        """`(rows, columns)` of patches for images of `input_shape`, or a `ValueError`."""
        if len(input_shape) != 4:
            raise ValueError(
                f"{self.name!r} takes images (batch, height, width, channels); got shape {tuple(input_shape)}."
            )
        height, width = input_shape[1], input_shape[2]
        if height is None or width is None:
            raise ValueError(f"{self.name!r} needs a known height and width; got shape {tuple(input_shape)}.")
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"Image height and width must be multiples of patch_size={self.patch_size}; got "
                f"{height}x{width}."
            )
        return height // self.patch_size, width // self.patch_size

    def build(self, input_shape):
        self._grid(input_shape)
        self.projection = keras.layers.Conv2D(
            self.hidden_dim, self.patch_size, strides=self.patch_size, padding="valid",
            kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy, name="projection",
        )
        self.projection.build(input_shape)
        if self.class_token:
            self.class_token_embedding = self.add_weight(shape=(1, 1, self.hidden_dim), initializer="zeros",
                                                         name="class_token")

    def call(self, images):
        rows, columns = self._grid(images.shape)
        patches = self.projection(images)  # (batch, rows, columns, hidden_dim)
        tokens = ops.reshape(patches, (-1, rows * columns, self.hidden_dim))  # (batch, patches, hidden_dim)
        if not self.class_token:
            return tokens
        token = ops.cast(self.class_token_embedding, self.compute_dtype)
        token = ops.broadcast_to(token, (ops.shape(tokens)[0], 1, self.hidden_dim))  # (batch, 1, hidden_dim)
        return ops.concatenate([token, tokens], axis=1)

    def compute_output_shape(self, input_shape):
        rows, columns = self._grid(input_shape)
        return (input_shape[0], int(self.class_token) + rows * columns, self.hidden_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "hidden_dim": self.hidden_dim,
            "class_token": self.class_token,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
