"""Tiny inputs for every GAN variant, shared by the GAN tests."""

import numpy as np

import keras_models

TRANSLATORS = ("pix2pix", "cyclegan", "srgan")
CONDITIONAL = ("cgan", "biggan")
VARIANTS = (
    "gan", "dcgan", "cgan", "infogan", "lsgan", "wgan", "wgan_gp",
    "pix2pix", "cyclegan", "srgan", "stylegan", "biggan",
)


def image_shape(variant):
    return (16, 16, 1) if variant == "srgan" else (8, 8, 1)


def build_tiny(variant, **kwargs):
    """The smallest sensible configuration of `variant`: width 4, one critic step, few blocks."""
    options = {"width": 4, "image_shape": image_shape(variant)}
    if variant in ("wgan", "wgan_gp", "biggan"):
        options["n_critic"] = 1
    if variant in ("cyclegan", "srgan"):
        options["num_blocks"] = 1
    if variant == "stylegan":
        options.update(mapping_layers=1, w_dim=8)
    options.update(kwargs)
    return keras_models.build(variant, **options)


def training_data(variant, count=16, seed=0):
    """`fit` arguments for `variant`: images in [0, 1] (and labels or paired images)."""
    rng = np.random.default_rng(seed)
    shape = image_shape(variant)
    images = rng.uniform(0.0, 1.0, (count, *shape)).astype("float32")
    if variant in CONDITIONAL:
        return images, (np.arange(count) % 10).astype("int32")
    if variant == "srgan":
        low = images.reshape(count, shape[0] // 4, 4, shape[1] // 4, 4, 1).mean(axis=(2, 4))
        return low, images
    if variant in TRANSLATORS:
        return images, 1.0 - images
    return (images,)


def generator_inputs(gan, count=3, seed=1):
    """Inputs for the exported generator: latents (and labels or codes), or source images."""
    rng = np.random.default_rng(seed)
    arrays = []
    for tensor in gan.generator.inputs:
        shape = (count, *tensor.shape[1:])
        if tensor.dtype == "int32":
            arrays.append((np.arange(count) % 10).astype("int32"))
        elif len(shape) == 4:
            arrays.append(rng.uniform(0.0, 1.0, shape).astype("float32"))
        else:
            arrays.append(rng.standard_normal(shape).astype("float32"))
    return arrays if len(arrays) > 1 else arrays[0]


def samples(gan, variant, count=4, seed=0):
    if variant in TRANSLATORS:
        return gan.generate(count, source=training_data(variant, count, seed)[0])
    return gan.generate(count, seed=seed)
