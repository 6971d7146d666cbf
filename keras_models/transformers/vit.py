"""The `vit` and `vit_classifier` builders, and the paper's ViT sizes as presets.

Presets are data: `CONFIGS` maps a preset name to a ViT configuration, read by one private function
(`vit_config`), so a new size is one entry. `vit_parameter_count` gives the parameter count of a
configuration from the formula, without building the weights.
"""

from __future__ import annotations

from keras_models.heads import head_loss
from keras_models.registry import register_model
from keras_models.training import compile_model
from keras_models.transformers.presets import resolve_config
from keras_models.transformers.vit_backbone import ViTBackbone, check_vit_config
from keras_models.transformers.vit_classifier import ViTClassifier

FAMILY = "transformer"  # the family whose compile defaults the models take (keras_models.families)

# The sizes of Dosovitskiy et al. (2021), Table 1, at 224x224 RGB with their ImageNet dropout of 0.1.
# "vit_b16" is ViT-B/16: 86,567,656 weights with a 1,000-class head (85,798,656 without), the paper's
# "86M"; "vit_l16" 304,326,632 with the head (the paper's "307M", 0.9% more); "vit_h14" 632,045,800 ("632M").
_IMAGENET = {"image_shape": (224, 224, 3), "dropout": 0.1}
_BASE = {"num_layers": 12, "num_heads": 12, "hidden_dim": 768, "intermediate_dim": 3072}
_LARGE = {"num_layers": 24, "num_heads": 16, "hidden_dim": 1024, "intermediate_dim": 4096}
_HUGE = {"num_layers": 32, "num_heads": 16, "hidden_dim": 1280, "intermediate_dim": 5120}
CONFIGS = {
    "vit_b16": {**_IMAGENET, **_BASE, "patch_size": 16},
    "vit_b32": {**_IMAGENET, **_BASE, "patch_size": 32},
    "vit_l16": {**_IMAGENET, **_LARGE, "patch_size": 16},
    "vit_h14": {**_IMAGENET, **_HUGE, "patch_size": 14},
}
PRESET_NUM_CLASSES = 1000  # a preset's classifier is ImageNet's unless num_classes says otherwise

# The configuration without a preset: MNIST-sized images, small enough to train on a CPU in seconds.
DEFAULT_CONFIG = {"image_shape": (28, 28, 1), "patch_size": 4, "num_layers": 2, "num_heads": 4, "hidden_dim": 64,
                  "intermediate_dim": 256, "dropout": 0.0}
DEFAULT_NUM_CLASSES = 10


def vit_config(preset=None, shape_name="image_shape", **overrides):
    """The configuration of `preset` (`DEFAULT_CONFIG` for `None`) with the arguments in `overrides`
    that are not `None` replacing its values, checked (`shape_name` names the image shape in errors)."""
    config = resolve_config("ViT", preset, CONFIGS, DEFAULT_CONFIG, overrides)
    config["image_shape"] = check_vit_config(**config, shape_name=shape_name)
    return config


def vit_parameter_count(image_shape, patch_size, num_layers, num_heads, hidden_dim, intermediate_dim, dropout=0.0,
                        num_classes=None):
    """The number of weights of a ViT, from the formula; with a classifier of `num_classes` outputs on
    the class token, or the backbone alone for `None`.

    The patch projection (a `patch_size^2 * channels` by `hidden_dim` kernel and its bias), the class
    token, one position vector per patch and for the class token, then per block two layer
    normalizations (scale and offset), four attention projections with biases and two feed-forward
    projections with biases, the final layer normalization and the classifier's kernel and bias.
    `vit_parameter_count(**CONFIGS["vit_b16"], num_classes=1000)` is ViT-B/16's 86,567,656.
    """
    height, width, channels = image_shape
    d, f = hidden_dim, intermediate_dim
    tokens = 1 + (height // patch_size) * (width // patch_size)
    embeddings = (patch_size * patch_size * channels * d + d) + d + tokens * d
    block = 2 * (2 * d) + 4 * (d * d + d) + (d * f + f) + (f * d + d)
    classifier = 0 if num_classes is None else d * num_classes + num_classes
    return embeddings + num_layers * block + 2 * d + classifier


_ARGUMENTS_DOC = """
    Configuration names follow keras-hub's (its `mlp_dim` is `intermediate_dim`, as in the GPT
    builders); each `None` takes the preset's value, or without a preset the small default
    (`DEFAULT_CONFIG`: 28x28x1 images, 4x4 patches, 2 layers, 4 heads, width 64, feed-forward 256, no
    dropout).

    Args:
        input_shape: `(height, width, channels)`, channels-last; height and width multiples of
            `patch_size`.
{classifier_arguments}        patch_size: the side of a square patch in pixels.
        num_layers: transformer blocks.
        num_heads: attention heads; `hidden_dim` must be divisible by it.
        hidden_dim: the width of a token.
        intermediate_dim: the width inside each feed-forward network (the paper's MLP size).
        dropout: dropout rate on embeddings, attention weights and residual branches.
        preset: `None` or a key of `CONFIGS` (`"vit_b16"`: ViT-B/16, 224x224x3; `"vit_b32"`,
            `"vit_l16"`, `"vit_h14"`). No weights are downloaded: a preset is a size.
        name: the model name and the prefix of every layer name.
        compile: `False` returns the model uncompiled.
        jit_compile: `None` for the family's default on this backend and device; `True`/`False` force it.
"""


@register_model("vit", family=FAMILY,
                description="Vision Transformer backbone (ViT-B/16 and the paper's sizes as presets): images to tokens")
def vit(input_shape=None, patch_size=None, num_layers=None, num_heads=None, hidden_dim=None, intermediate_dim=None,
        dropout=None, preset=None, name="vit", compile=True, jit_compile=None):
    config = vit_config(preset, shape_name="input_shape", image_shape=input_shape, patch_size=patch_size,
                        num_layers=num_layers, num_heads=num_heads, hidden_dim=hidden_dim,
                        intermediate_dim=intermediate_dim, dropout=dropout)
    model = ViTBackbone(**config, name=name)
    if compile:
        compile_model(model, jit_compile=jit_compile, family=FAMILY)
    return model


vit.__doc__ = """A `ViTBackbone`: images `(batch, height, width, channels)` to token features `(batch, 1 +
    num_patches, hidden_dim)`, the class token first, compiled without a loss (a feature extractor;
    `vit_classifier` is the trainable task).
""" + _ARGUMENTS_DOC.format(classifier_arguments="")


@register_model("vit_classifier", family=FAMILY,
                description="Vision Transformer image classifier: a head on the class token")
def vit_classifier(input_shape=None, num_classes=None, head="softmax", include_top=True, pooling=None,
                   name="vit_classifier", compile=True, jit_compile=None, *, patch_size=None, num_layers=None,
                   num_heads=None, hidden_dim=None, intermediate_dim=None, dropout=None, preset=None):
    config = vit_config(preset, shape_name="input_shape", image_shape=input_shape, patch_size=patch_size,
                        num_layers=num_layers, num_heads=num_heads, hidden_dim=hidden_dim,
                        intermediate_dim=intermediate_dim, dropout=dropout)
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string; got name={name!r}.")
    if num_classes is None:
        num_classes = DEFAULT_NUM_CLASSES if preset is None else PRESET_NUM_CLASSES
    model = ViTClassifier(ViTBackbone(**config, name=name + "_backbone"), num_classes=num_classes, head=head,
                          include_top=include_top, pooling=pooling, name=name)
    if compile:
        loss, metrics = head_loss(head, num_classes) if include_top else (None, None)
        compile_model(model, loss=loss, metrics=metrics, jit_compile=jit_compile, family=FAMILY)
    return model


vit_classifier.__doc__ = """A `ViTClassifier`: images `(batch, height, width, channels)` to class scores `(batch,
    num_classes)` from the class token, compiled (Adam, the head's loss and metrics) for `fit(x, y)`.
    Its first arguments are those of the image builders (`simple_cnn`, `resnet50`, ...).
""" + _ARGUMENTS_DOC.format(classifier_arguments="""\
        num_classes: output units; `None` for 10, or 1,000 (ImageNet) with a preset.
        head: `"softmax"`, `"sigmoid"` (binary or multi-label) or `"linear"` (regression).
        include_top: `False` returns the features, pooled as `pooling` says, compiled without a loss.
        pooling: `None` (with a head the class token; without one every token), `"token"` (the class
            token), `"avg"` or `"max"` (of the patch tokens).
""")
