"""The registered GAN variants: one generic builder, per-variant settings as data.

    >>> gan = keras_models.build("dcgan", image_shape=(8, 8, 1), latent_dim=32)
    >>> gan.fit(images, epochs=10)
    >>> gan.generate(16, seed=0).shape
    (16, 8, 8, 1)
"""

from __future__ import annotations

import keras

from keras_models.gan import networks
from keras_models.gan.base import GAN
from keras_models.gan.models import SRGAN, CycleGAN, InfoGAN, Pix2Pix, StyleGAN
from keras_models.registry import register_model


def _adam(learning_rate, beta_1=0.5, beta_2=0.999):
    """The config of the library's Adam (Keras' Adam, one fused update per step on PyTorch)."""
    return {"class_name": "keras_models>Adam",
            "config": {"learning_rate": learning_rate, "beta_1": beta_1, "beta_2": beta_2}}


def _rmsprop(learning_rate):
    return {"class_name": "RMSprop", "config": {"learning_rate": learning_rate}}


# The networks of each architecture: `(image_shape, num_classes, latent_dim, width, pixel_range, options)`
# to the keyword arguments (networks) of the variant's model class.


def _dense_networks(image_shape, num_classes, latent_dim, width, pixel_range, options):
    return {
        "generator": networks.dense_generator(image_shape, latent_dim, num_classes, width, pixel_range=pixel_range),
        "discriminator": networks.dense_discriminator(image_shape, num_classes, width, pixel_range=pixel_range),
    }


def _dcgan_networks(image_shape, num_classes, latent_dim, width, pixel_range, options):
    return {
        "generator": networks.dcgan_generator(image_shape, latent_dim, num_classes, width, pixel_range=pixel_range),
        "discriminator": networks.dcgan_discriminator(
            image_shape, num_classes, width, norm=options["critic_norm"], pixel_range=pixel_range
        ),
    }


def _infogan_networks(image_shape, num_classes, latent_dim, width, pixel_range, options):
    num_continuous = options["num_continuous"]
    return {
        "generator": networks.infogan_generator(image_shape, latent_dim, num_classes, num_continuous, width, pixel_range=pixel_range),
        "discriminator": networks.infogan_discriminator(image_shape, num_classes, num_continuous, width, pixel_range=pixel_range),
    }


def _pix2pix_networks(image_shape, num_classes, latent_dim, width, pixel_range, options):
    return {
        "generator": networks.unet_generator(image_shape, image_shape[-1], width, pixel_range=pixel_range),
        "discriminator": networks.patch_discriminator(image_shape, width, "batch", paired=True, pixel_range=pixel_range),
    }


def _cyclegan_networks(image_shape, num_classes, latent_dim, width, pixel_range, options):
    blocks = options["num_blocks"]
    shared = {"pixel_range": pixel_range}
    shape = {"downsamples": options["downsamples"], "kernel_size": options["kernel_size"]}
    return {
        "generator": networks.resnet_generator(image_shape, width, blocks, name="generator_ab", **shape, **shared),
        "generator_ba": networks.resnet_generator(image_shape, width, blocks, name="generator_ba", **shape, **shared),
        "discriminator": networks.patch_discriminator(image_shape, width, "instance", False, name="discriminator_b", **shared),
        "discriminator_a": networks.patch_discriminator(image_shape, width, "instance", False, name="discriminator_a", **shared),
    }


def _srgan_networks(image_shape, num_classes, latent_dim, width, pixel_range, options):
    scale = options["scale"]
    if image_shape[0] % scale or image_shape[1] % scale:
        raise ValueError(f"image_shape {tuple(image_shape)} (high resolution) must be divisible by scale={scale!r}.")
    low_res = (image_shape[0] // scale, image_shape[1] // scale, image_shape[2])
    return {
        "generator": networks.srresnet_generator(
            low_res, scale, width, options["num_blocks"], options["residual"], pixel_range=pixel_range
        ),
        "discriminator": networks.sr_discriminator(image_shape, width, pixel_range=pixel_range),
    }


def _stylegan_networks(image_shape, num_classes, latent_dim, width, pixel_range, options):
    w_dim = options["w_dim"]
    return {
        "mapping": networks.stylegan_mapping(latent_dim, w_dim, options["mapping_layers"]),
        "synthesis": networks.stylegan_synthesis(image_shape, w_dim, width, pixel_range=pixel_range),
        "discriminator": networks.stylegan_discriminator(image_shape, width, pixel_range=pixel_range),
    }


def _biggan_networks(image_shape, num_classes, latent_dim, width, pixel_range, options):
    return {
        "generator": networks.biggan_generator(image_shape, latent_dim, num_classes, width, pixel_range=pixel_range),
        "discriminator": networks.biggan_discriminator(image_shape, num_classes, width, pixel_range=pixel_range),
    }


SMALL_IMAGE = 16

# What each variant is, as data; adding a variant is adding an entry.
# - `conditional`: "never", "optional" (num_classes makes it conditional), "required", or "codes"
#   (InfoGAN's categorical code).
# - `networks`: the function building its networks; `model_class`: the GAN class trained.
# - `model`: default options of the model class; `options`: further options it accepts;
#   `network_options`: options of the networks (with defaults), not of the model.
# - `optimizers`: (discriminator, generator) configs; different learning rates are TTUR.
# - `image_shape`: the default; `fit`: how it is trained, for its docstring.
# - `small_images`: `model` options, `network_options` and `optimizers` replacing the defaults for
#   images of SMALL_IMAGE pixels a side or fewer.
CONFIGS = {
    "gan": {
        "networks": _dense_networks,
        "description": "GAN with dense networks, non-saturating loss (Goodfellow et al., 2014)",
        "paper": "Goodfellow et al., 2014, Generative Adversarial Nets",
        "conditional": "optional",
        "width": 128,
        "latent_dim": 32,
        "model": {"loss": "non_saturating"},
        "optimizers": (_adam(2e-4), _adam(2e-4)),
    },
    "dcgan": {
        "networks": _dcgan_networks,
        "network_options": {"critic_norm": "batch"},
        "description": "Deep convolutional GAN (Radford et al., 2016)",
        "paper": "Radford et al., 2016, Unsupervised Representation Learning with Deep Convolutional GANs",
        "conditional": "optional",
        "width": 32,
        "latent_dim": 32,
        "model": {"loss": "non_saturating"},
        "optimizers": (_adam(2e-4), _adam(2e-4)),
    },
    "cgan": {
        "networks": _dcgan_networks,
        "network_options": {"critic_norm": "batch"},
        "description": "Class-conditional DCGAN: label embedding into G and D (Mirza & Osindero, 2014)",
        "paper": "Mirza & Osindero, 2014, Conditional Generative Adversarial Nets",
        "conditional": "required",
        "width": 32,
        "latent_dim": 32,
        "model": {"loss": "non_saturating"},
        "optimizers": (_adam(2e-4), _adam(2e-4)),
    },
    "infogan": {
        "networks": _infogan_networks,
        "model_class": InfoGAN,
        "options": ("info_weight", "continuous_weight"),
        "network_options": {"num_continuous": 2},
        "description": "InfoGAN: categorical and continuous codes, mutual-information term (Chen et al., 2016)",
        "paper": "Chen et al., 2016, InfoGAN: Interpretable Representation Learning by Information Maximizing GANs",
        "conditional": "codes",
        "width": 32,
        "latent_dim": 32,
        "model": {"loss": "non_saturating", "info_weight": 1.0, "continuous_weight": 0.5},
        "optimizers": (_adam(2e-4), _adam(1e-3)),
    },
    "lsgan": {
        "networks": _dcgan_networks,
        "network_options": {"critic_norm": "batch"},
        "description": "Least-squares GAN on DCGAN networks (Mao et al., 2017)",
        "paper": "Mao et al., 2017, Least Squares Generative Adversarial Networks",
        "conditional": "optional",
        "width": 32,
        "latent_dim": 32,
        "model": {"loss": "least_squares"},
        "optimizers": (_adam(2e-4), _adam(2e-4)),
    },
    "wgan": {
        "networks": _dcgan_networks,
        "network_options": {"critic_norm": None},
        "description": "Wasserstein GAN with weight clipping, RMSprop, 5 critic steps (Arjovsky et al., 2017)",
        "paper": "Arjovsky et al., 2017, Wasserstein GAN",
        "conditional": "optional",
        "width": 32,
        "latent_dim": 32,
        "model": {"loss": "wasserstein", "clip_value": 0.01, "n_critic": 5},
        "optimizers": (_rmsprop(5e-5), _rmsprop(5e-5)),
    },
    "wgan_gp": {
        "networks": _dcgan_networks,
        "network_options": {"critic_norm": "layer"},
        "description": "Wasserstein GAN with gradient penalty, layer-norm critic (Gulrajani et al., 2017)",
        "paper": "Gulrajani et al., 2017, Improved Training of Wasserstein GANs",
        "conditional": "optional",
        "width": 32,
        "latent_dim": 32,
        "model": {"loss": "wasserstein", "gradient_penalty_weight": 10.0, "n_critic": 5},
        "optimizers": (_adam(1e-4, 0.0, 0.9), _adam(1e-4, 0.0, 0.9)),
    },
    "pix2pix": {
        "networks": _pix2pix_networks,
        "model_class": Pix2Pix,
        "options": ("l1_weight",),
        "fit": "`fit(source_images, target_images)`",
        "description": "pix2pix: U-Net generator, PatchGAN, L1 (Isola et al., 2017)",
        "paper": "Isola et al., 2017, Image-to-Image Translation with Conditional Adversarial Networks",
        "conditional": "never",
        "width": 32,
        "latent_dim": None,
        "model": {"loss": "non_saturating", "l1_weight": 100.0},
        "optimizers": (_adam(2e-4), _adam(2e-4)),
    },
    "cyclegan": {
        "networks": _cyclegan_networks,
        "model_class": CycleGAN,
        "options": ("cycle_weight", "identity_weight"),
        "network_options": {"num_blocks": 3, "downsamples": 1, "kernel_size": 7},
        # A local generator: 3x3 convolutions, no downsampling, one residual block (a 9x9 window). The
        # 7x7 stem and downsampling see the whole of a small image, and unpaired training then learns to
        # swap digits for others that cycle back (8x8 digits: 31.8% judged the right class against
        # 90.2%, BENCHMARKS.md).
        "small_images": {"network_options": {"num_blocks": 1, "downsamples": 0, "kernel_size": 3}},
        "fit": "`fit(images_a, images_b)`",
        "description": "CycleGAN: two ResNet generators, two PatchGANs, cycle + identity (Zhu et al., 2017)",
        "paper": "Zhu et al., 2017, Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks",
        "conditional": "never",
        "width": 16,
        "latent_dim": None,
        "model": {"loss": "least_squares", "cycle_weight": 10.0, "identity_weight": 0.5},
        "optimizers": (_adam(2e-4), _adam(2e-4)),
    },
    "srgan": {
        "networks": _srgan_networks,
        "model_class": SRGAN,
        "options": ("content_model", "content_weight", "pixel_weight", "adversarial_weight"),
        "network_options": {"scale": 4, "num_blocks": 4, "residual": "bicubic"},
        "image_shape": (32, 32, 1),
        "fit": "`pretrain(low_res_images, high_res_images)` (content only), then `fit(low_res_images, high_res_images)`",
        "description": "SRGAN: SRResNet with sub-pixel upsampling and a global residual over the bicubic upsampling, "
        "content + adversarial loss (Ledig et al., 2017)",
        "paper": "Ledig et al., 2017, Photo-Realistic Single Image Super-Resolution Using a GAN",
        "conditional": "never",
        "width": 32,
        "latent_dim": None,
        "model": {"loss": "non_saturating", "content_weight": 1.0, "pixel_weight": 1.0, "adversarial_weight": 1e-3},
        "optimizers": (_adam(1e-4, 0.9), _adam(1e-4, 0.9)),
    },
    "stylegan": {
        "networks": _stylegan_networks,
        "model_class": StyleGAN,
        "options": ("style_mixing", "w_avg_decay"),
        "network_options": {"w_dim": 64, "mapping_layers": 4},
        "description": "Small StyleGAN: mapping net, modulated convs, noise, style mixing (Karras et al., 2019/2020)",
        "paper": "Karras et al., 2019, A Style-Based Generator Architecture for GANs; 2020, StyleGAN2",
        "conditional": "never",
        "width": 16,
        "latent_dim": 32,
        "model": {"loss": "non_saturating", "r1_weight": 1.0, "style_mixing": 0.9},
        "optimizers": (_adam(1e-3, 0.0, 0.99), _adam(1e-3, 0.0, 0.99)),
        # At 8 pixels the generator has two resolutions: mixing swaps the 8x8 styles between latents and
        # asks them to fit any coarse digit. On 8x8 digits, after 100 epochs, FD 91 and 8 of 10 classes
        # with it; without it FD 24-50 over three seeds, every class (BENCHMARKS.md).
        "small_images": {"model": {"style_mixing": 0.0}},
    },
    "biggan": {
        "networks": _biggan_networks,
        "description": "Small BigGAN: conditional BN, self-attention, hinge, spectral norm (Brock et al., 2019)",
        "paper": "Brock et al., 2019, Large Scale GAN Training for High Fidelity Natural Image Synthesis",
        "conditional": "required",
        "width": 16,
        "latent_dim": 32,
        "model": {"loss": "hinge", "n_critic": 2},
        "optimizers": (_adam(4e-4, 0.0, 0.999), _adam(1e-4, 0.0, 0.999)),
        # The paper's rates and two critic steps are for batches of 2,048 at 128 pixels; on 8x8 digits at
        # batch 64 they leave the labels unfollowed (10% after 30 epochs; 97% with these, BENCHMARKS.md).
        "small_images": {"model": {"n_critic": 1}, "optimizers": (_adam(1e-3, 0.0, 0.999), _adam(1e-3, 0.0, 0.999))},
    },
}

# Options of the GAN class every variant accepts as keyword arguments.
_COMMON_OPTIONS = (
    "loss", "n_critic", "clip_value", "gradient_penalty_weight", "r1_weight", "label_smoothing",
    "instance_noise", "instance_noise_steps", "seed",
)


def _accepted(config):
    return set(_COMMON_OPTIONS) | set(config.get("options", ())) | set(config.get("network_options", {}))


def _check_image_shape(image_shape):
    try:
        shape = tuple(int(s) for s in image_shape)
    except (TypeError, ValueError):
        raise ValueError(f"image_shape must be (height, width, channels); got image_shape={image_shape!r}.") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (height, width, channels) of positive sizes; got image_shape={image_shape!r}.")
    if shape[0] != shape[1] or shape[0] < 4:
        raise ValueError(f"image_shape must be square and at least 4x4; got image_shape={image_shape!r}.")
    return shape


def _gan(
    variant,
    image_shape=(8, 8, 1),
    num_classes=None,
    latent_dim=None,
    width=None,
    name=None,
    pixel_range=(0.0, 1.0),
    compile=True,
    jit_compile=None,
    d_optimizer=None,
    g_optimizer=None,
    d_learning_rate=None,
    g_learning_rate=None,
    **options,
):
    config = CONFIGS[variant]
    image_shape = _check_image_shape(image_shape)
    if max(image_shape[:2]) <= SMALL_IMAGE and "small_images" in config:
        small = config["small_images"]
        config = {**config, "model": {**config["model"], **small.get("model", {})},
                  "network_options": {**config.get("network_options", {}), **small.get("network_options", {})},
                  "optimizers": small.get("optimizers", config["optimizers"])}
    allowed = _accepted(config)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} for {variant!r}; accepted: {sorted(allowed)}.")
    conditional = config["conditional"]
    if conditional in ("required", "codes") and num_classes is None:
        num_classes = 10
    if conditional == "never" and num_classes is not None:
        raise ValueError(f"{variant} takes no classes; got num_classes={num_classes!r}.")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(f"num_classes must be an integer >= 2; got num_classes={num_classes!r}.")
    if config["latent_dim"] is None:
        if latent_dim is not None:
            raise ValueError(f"{variant} translates images and has no latent_dim; got latent_dim={latent_dim!r}.")
    else:
        latent_dim = config["latent_dim"] if latent_dim is None else latent_dim
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer; got latent_dim={latent_dim!r}.")
    width = config["width"] if width is None else width
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer; got width={width!r}.")
    pixel_range = tuple(float(v) for v in pixel_range)
    if len(pixel_range) != 2 or not pixel_range[0] < pixel_range[1]:
        raise ValueError(f"pixel_range must be (low, high) with low < high; got pixel_range={pixel_range!r}.")
    network_options = {**config.get("network_options", {})}
    network_options.update({k: v for k, v in options.items() if k in network_options})
    model_options = {**config["model"], **{k: v for k, v in options.items() if k not in network_options}}
    if "num_continuous" in network_options:  # InfoGAN's model needs it too
        model_options["num_continuous"] = network_options["num_continuous"]
    nets = config["networks"](image_shape, num_classes, latent_dim, width, pixel_range, network_options)
    model = config.get("model_class", GAN)(
        **nets,
        latent_dim=latent_dim,
        num_classes=num_classes,
        pixel_range=pixel_range,
        name=name or variant,
        **model_options,
    )
    if compile:
        d_default, g_default = config["optimizers"]
        model.compile(
            d_optimizer=d_optimizer or _optimizer(d_default, d_learning_rate),
            g_optimizer=g_optimizer or _optimizer(g_default, g_learning_rate),
            jit_compile=jit_compile,
        )
    return model


def _optimizer(config, learning_rate):
    config = {"class_name": config["class_name"], "config": dict(config["config"])}
    if learning_rate is not None:
        config["config"]["learning_rate"] = learning_rate
    return keras.optimizers.deserialize(config)


_DOC = """Builds {variant}: {description}.

    Paper: {paper}.

    Args:
        image_shape: `(height, width, channels)` of the generated (target) images; square, sizes
            that halve to 4 or an odd size (8, 16, 28, 32, ...).
        num_classes: {classes}
        latent_dim: the size of z{latent_default}.
        width: base filter count (units for the dense GAN); default {width}.
        name: the model name (default "{variant}").
        pixel_range: `(low, high)` of the training images; the generator outputs this range.
        compile: compile with the variant's optimizers and losses ({optimizers}).
        jit_compile: XLA on/off; `None` for `keras_models.default_jit_compile("gan")`.
        d_optimizer, g_optimizer: replace the default optimizers.
        d_learning_rate, g_learning_rate: replace the default learning rates (TTUR).
        **options: options of the model class ({options}).

    Returns:
        A compiled `{model_class}` ready for {fit}.
    """

_CLASS_TEXT = {
    "optional": "`None` (unconditional, default) or the number of classes for a conditional model.",
    "required": "the number of classes (default 10); the model is conditional on them.",
    "codes": "values of the categorical code (default 10).",
    "never": "must be `None`.",
}


def _optimizer_text(config):
    def rates(optimizers):
        return ", ".join(f"{o['class_name']}(lr={o['config']['learning_rate']})" for o in optimizers)

    text = rates(config["optimizers"])
    small = config.get("small_images")
    if small:
        changed = [rates(small["optimizers"])] if "optimizers" in small else []
        changed += [f"{key}={value!r}" for key, value in small.get("model", {}).items()]
        text += f"; at {SMALL_IMAGE} pixels a side or fewer, {', '.join(changed)}"
    return text


def _make_builder(variant):
    config = CONFIGS[variant]

    def builder(image_shape=config.get("image_shape", (8, 8, 1)), num_classes=None, latent_dim=None, name=None, **kwargs):
        return _gan(variant, image_shape=image_shape, num_classes=num_classes, latent_dim=latent_dim, name=name, **kwargs)

    builder.__name__ = builder.__qualname__ = variant
    builder.__doc__ = _DOC.format(
        variant=variant,
        description=config["description"],
        paper=config["paper"],
        classes=_CLASS_TEXT[config["conditional"]],
        latent_default="" if config["latent_dim"] is None else f" (default {config['latent_dim']})",
        width=config["width"],
        optimizers=_optimizer_text(config),
        options=", ".join(sorted(_accepted(config))),
        model_class=config.get("model_class", GAN).__name__,
        fit=config.get("fit", "`fit(images)` or, conditional, `fit(images, labels)`"),
    )
    return register_model(variant, family="gan", description=config["description"])(builder)


BUILDERS = {variant: _make_builder(variant) for variant in CONFIGS}
