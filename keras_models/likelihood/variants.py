"""The registered VAEs: one generic builder, per-variant settings as data.

    >>> vae = keras_models.build("vae", image_shape=(8, 8, 1), latent_dim=8, architecture="conv")
    >>> vae.fit(images, epochs=20)
    >>> vae.log_likelihood(test_images, num_samples=100).mean()   # nats per image
"""

from __future__ import annotations

from keras_models import optimizers
from keras_models.checks import check_shape
from keras_models.likelihood import distributions, networks
from keras_models.likelihood.vae import OBJECTIVES, VAE
from keras_models.registry import register_model
from keras_models.training import compile_model

ARCHITECTURES = ("dense", "conv")

# What each variant is, as data; adding a variant is adding an entry.
# - `conditional`: "optional" (num_classes makes it conditional) or "required" (default 10 classes).
# - `model`: default options of the VAE class.
CONFIGS = {
    "vae": {
        "description": "Variational autoencoder, dense or convolutional, with TFP pixel likelihoods (Kingma & Welling, 2014)",
        "paper": "Kingma & Welling, 2014, Auto-Encoding Variational Bayes",
        "conditional": "optional",
        "model": {"beta": 1.0},
    },
    "conditional_vae": {
        "description": "Class-conditional VAE: the label enters encoder and decoder (Sohn et al., 2015)",
        "paper": "Sohn et al., 2015, Learning Structured Output Representation using Deep Conditional Generative Models",
        "conditional": "required",
        "model": {"beta": 1.0},
    },
    "beta_vae": {
        "description": "beta-VAE: the KL term weighted by beta = 4 for disentangled latents (Higgins et al., 2017)",
        "paper": "Higgins et al., 2017, beta-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework",
        "conditional": "optional",
        "model": {"beta": 4.0},
    },
}


def _vae(variant, image_shape=(8, 8, 1), num_classes=None, pixel_range=(0.0, 1.0), latent_dim=16,
         likelihood="bernoulli", architecture="dense", width=64, num_mixtures=5, beta=None, objective="elbo",
         num_samples=1, seed=None, learning_rate=1e-3, optimizer=None, name=None, compile=True, jit_compile=None):
    config = CONFIGS[variant]
    image_shape = check_shape(image_shape, "image_shape", rank=3)
    distributions.check_likelihood(likelihood)
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}; got architecture={architecture!r}.")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}; got objective={objective!r}.")
    for arg, value in (("latent_dim", latent_dim), ("width", width), ("num_mixtures", num_mixtures)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive integer; got {arg}={value!r}.")
    if config["conditional"] == "required" and num_classes is None:
        num_classes = 10
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(f"num_classes must be an integer >= 2 or None; got num_classes={num_classes!r}.")
    if architecture == "conv":
        networks.check_conv_shape(image_shape, 2)
    beta = config["model"]["beta"] if beta is None else beta
    name = name or variant
    model = VAE(
        networks.encoder(image_shape, latent_dim, num_classes, architecture, width, name=name + "_encoder"),
        networks.decoder(image_shape, latent_dim, likelihood, num_classes, architecture, width, num_mixtures,
                         name=name + "_decoder"),
        likelihood=likelihood, beta=beta, objective=objective, num_samples=num_samples, latent_dim=latent_dim,
        num_classes=num_classes, pixel_range=pixel_range, seed=seed, name=name,
    )
    if compile:
        compile_model(model, optimizer=optimizer or optimizers.Adam(learning_rate), loss=None,
                      jit_compile=jit_compile, family="likelihood")
    return model


_DOC = """Builds {variant}: {description}.

    Paper: {paper}.

    Args:
        image_shape: `(height, width, channels)` of the images; for `architecture="conv"`, height and
            width divisible by 4.
        num_classes: {classes}
        pixel_range: `(low, high)` of the training images; `generate` returns images in this range.
        latent_dim: the size of z (default 16).
        likelihood: `"bernoulli"` (pixels binarized at half the range), `"gaussian"` (learned mean and
            scale per pixel) or `"logistic_mixture"` (discretized logistics over 256 levels).
        architecture: `"dense"` (two hidden layers each way) or `"conv"` (two stride-2 convolutions
            each way).
        width: base width: hidden units `2 * width` and `width`, filters `width / 2` and `width`.
        num_mixtures: components of the logistic mixture.
        beta: weight of the KL term (default {beta}).
        objective: `"elbo"` or `"iwae"` (the importance-weighted bound with `num_samples` draws).
        num_samples: latent draws per image in a training step.
        seed: seed of the step's noise.
        learning_rate, optimizer: Adam at `learning_rate`, or this optimizer.
        name: the model name (default "{variant}"); the networks are `<name>_encoder` and `<name>_decoder`.
        compile: compile with the negative ELBO as the loss (`compute_loss`).
        jit_compile: XLA on/off; `None` for `keras_models.default_jit_compile("likelihood")`.

    Returns:
        A compiled `VAE`, ready for `fit(images)` or, conditional, `fit(images, labels)`.
    """

_CLASS_TEXT = {
    "optional": "`None` (unconditional, default) or the number of classes for a conditional model.",
    "required": "the number of classes (default 10); the model is conditional on them.",
}


def _make_builder(variant):
    config = CONFIGS[variant]

    def builder(image_shape=(8, 8, 1), num_classes=None, pixel_range=(0.0, 1.0), **kwargs):
        return _vae(variant, image_shape=image_shape, num_classes=num_classes, pixel_range=pixel_range, **kwargs)

    builder.__name__ = builder.__qualname__ = variant
    builder.__doc__ = _DOC.format(variant=variant, description=config["description"], paper=config["paper"],
                                  classes=_CLASS_TEXT[config["conditional"]], beta=config["model"]["beta"])
    return register_model(variant, family="likelihood", description=config["description"])(builder)


BUILDERS = {variant: _make_builder(variant) for variant in CONFIGS}
