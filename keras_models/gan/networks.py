"""Generators and discriminators of the GAN variants, as functional Keras models.

Every generator ends in `tanh` rescaled to the data's `pixel_range`, and every discriminator starts by
mapping `pixel_range` to [-1, 1], so the exported generator outputs images exactly like the training
data. Layer names are `name + "_..."` and stable. Block helpers take a tensor and return a tensor.
"""

from __future__ import annotations

import math

import keras

from keras_models.gan.gan_layers import (
    ConditionalBatchNormalization,
    InterpolatedUpsampling,
    LearnedConstant,
    MinibatchStdDev,
    ModulatedConv2D,
    NoiseInjection,
    PixelNormalization,
    ProjectionScore,
    SelectStyle,
    StyleBroadcast,
)
from keras_models.layers import (
    BatchNormalization,
    Conv2D,
    Conv2DTranspose,
    InstanceNormalization,
    PixelShuffle,
    SelfAttention2D,
    SpectralNorm,
    unet,
)

layers = keras.layers


# --------------------------------------------------------------------------------------------------
# Small pieces


def to_pixels(x, pixel_range, name, squash="tanh"):
    """`squash` (`tanh`, or `hard_tanh` to clip) into [-1, 1], then [-1, 1] -> `pixel_range`."""
    low, high = pixel_range
    x = layers.Activation(squash, name=f"{name}_{squash}")(x)
    return layers.Rescaling((high - low) / 2.0, offset=(high + low) / 2.0, name=name + "_to_pixels")(x)


def from_pixels(x, pixel_range, name):
    """`pixel_range` -> [-1, 1]."""
    low, high = pixel_range
    return layers.Rescaling(2.0 / (high - low), offset=-(high + low) / (high - low), name=name + "_from_pixels")(x)


def label_input(name):
    return keras.Input(shape=(), dtype="int32", name=name + "_labels")


def upsampling_plan(image_shape):
    """`(start_size, steps)`: the spatial size a generator starts from and how many 2x upsamplings
    reach `image_shape`. Halves while even and above 4."""
    height, width = int(image_shape[0]), int(image_shape[1])
    if height != width:
        raise ValueError(f"image_shape must be square; got image_shape={tuple(image_shape)!r}.")
    steps = 0
    while height % 2 == 0 and height > 4:
        height //= 2
        steps += 1
    return height, steps


def _normalization(kind, name):
    if kind is None:
        return None
    if kind == "batch":
        return BatchNormalization(momentum=0.9, name=name + "_bn")
    if kind == "layer":
        return layers.LayerNormalization(axis=[1, 2, 3], name=name + "_ln")
    if kind == "instance":
        return InstanceNormalization(name=name + "_in")
    raise ValueError(f"norm must be 'batch', 'layer', 'instance' or None; got norm={kind!r}.")


def _sn(layer, spectral_norm):
    return SpectralNorm(layer, name=layer.name + "_sn") if spectral_norm else layer


def conv_block(x, filters, strides, norm, activation, name, kernel_size=4, spectral_norm=False, transpose=False):
    """Convolution (or transposed convolution), optional normalization, activation."""
    # The library's convolutions (Keras' own, faster on PyTorch) unless spectral normalization wraps one.
    conv_cls = Conv2DTranspose if transpose else (layers.Conv2D if spectral_norm else Conv2D)
    conv = conv_cls(filters, kernel_size, strides=strides, padding="same", use_bias=norm is None, name=name + "_conv")
    x = (conv if transpose else _sn(conv, spectral_norm))(x)
    normalization = _normalization(norm, name)
    if normalization is not None:
        x = normalization(x)
    if activation == "leaky_relu":
        return layers.LeakyReLU(0.2, name=name + "_lrelu")(x)
    if activation is not None:
        return layers.Activation(activation, name=name + "_" + activation)(x)
    return x


# --------------------------------------------------------------------------------------------------
# Dense (Goodfellow et al., 2014)


def dense_generator(image_shape, latent_dim, num_classes=None, width=128, pixel_range=(0.0, 1.0), name="generator"):
    z = keras.Input(shape=(latent_dim,), name=name + "_z")
    inputs, x = [z], z
    if num_classes:
        labels = label_input(name)
        inputs.append(labels)
        embedded = layers.Embedding(num_classes, latent_dim, name=name + "_label_embedding")(labels)
        x = layers.Concatenate(name=name + "_concat")([z, embedded])
    for index in range(2):
        x = layers.Dense(width * (index + 1), name=f"{name}_dense{index + 1}")(x)
        x = layers.LeakyReLU(0.2, name=f"{name}_lrelu{index + 1}")(x)
    x = layers.Dense(math.prod(image_shape), name=name + "_dense_out")(x)
    x = layers.Reshape(tuple(image_shape), name=name + "_reshape")(x)
    return keras.Model(inputs if num_classes else z, to_pixels(x, pixel_range, name), name=name)


def dense_discriminator(image_shape, num_classes=None, width=128, pixel_range=(0.0, 1.0), name="discriminator"):
    images = keras.Input(shape=tuple(image_shape), name=name + "_images")
    x = layers.Flatten(name=name + "_flatten")(from_pixels(images, pixel_range, name))
    inputs = [images]
    if num_classes:
        labels = label_input(name)
        inputs.append(labels)
        embedded = layers.Embedding(num_classes, 16, name=name + "_label_embedding")(labels)
        x = layers.Concatenate(name=name + "_concat")([x, embedded])
    for index in range(2):
        x = layers.Dense(width * (2 - index), name=f"{name}_dense{index + 1}")(x)
        x = layers.LeakyReLU(0.2, name=f"{name}_lrelu{index + 1}")(x)
    scores = layers.Dense(1, name=name + "_score")(x)
    return keras.Model(inputs if num_classes else images, scores, name=name)


# --------------------------------------------------------------------------------------------------
# DCGAN (Radford et al., 2016); conditional by concatenation (Mirza & Osindero, 2014)


def dcgan_generator(
    image_shape, latent_dim, num_classes=None, width=32, pixel_range=(0.0, 1.0), name="generator", extra_inputs=()
):
    """Dense projection to `(start, start, width * 2^steps)`, then transposed convolutions with batch
    norm and ReLU doubling the size; `extra_inputs` are `(keras.Input, tensor to concatenate to z)`."""
    start, steps = upsampling_plan(image_shape)
    z = keras.Input(shape=(latent_dim,), name=name + "_z")
    inputs, parts = [z], [z]
    if num_classes:
        labels = label_input(name)
        inputs.append(labels)
        parts.append(layers.Embedding(num_classes, latent_dim, name=name + "_label_embedding")(labels))
    for extra_input, tensor in extra_inputs:
        inputs.append(extra_input)
        parts.append(tensor)
    x = layers.Concatenate(name=name + "_concat")(parts) if len(parts) > 1 else z
    filters = width * 2**steps
    x = layers.Dense(start * start * filters, use_bias=False, name=name + "_project")(x)
    x = layers.Reshape((start, start, filters), name=name + "_reshape")(x)  # (batch, start, start, filters)
    x = BatchNormalization(momentum=0.9, name=name + "_project_bn")(x)
    x = layers.ReLU(name=name + "_project_relu")(x)
    for step in range(steps):
        filters //= 2
        x = conv_block(x, filters, 2, "batch", "relu", f"{name}_up{step + 1}", transpose=True)
    x = Conv2D(image_shape[-1], 3, padding="same", name=name + "_to_rgb")(x)  # (batch, h, w, c)
    return keras.Model(inputs if len(inputs) > 1 else z, to_pixels(x, pixel_range, name), name=name)


def dcgan_features(x, image_shape, width, norm, name, spectral_norm=False):
    """The convolutional body of DCGAN's discriminator: strided convolutions with LeakyReLU, no
    normalization on the first; returns the flattened features."""
    _, steps = upsampling_plan(image_shape)
    for step in range(steps + 1):
        x = conv_block(
            x, width * 2**step, 2, norm if step else None, "leaky_relu", f"{name}_down{step + 1}", spectral_norm=spectral_norm
        )
    return layers.Flatten(name=name + "_flatten")(x)


def dcgan_discriminator(image_shape, num_classes=None, width=32, norm="batch", pixel_range=(0.0, 1.0), name="discriminator"):
    images = keras.Input(shape=tuple(image_shape), name=name + "_images")
    x = from_pixels(images, pixel_range, name)
    inputs = [images]
    if num_classes:
        labels = label_input(name)
        inputs.append(labels)
        height, width_px = image_shape[0], image_shape[1]
        plane = layers.Embedding(num_classes, height * width_px, name=name + "_label_embedding")(labels)
        plane = layers.Reshape((height, width_px, 1), name=name + "_label_plane")(plane)  # (batch, h, w, 1)
        x = layers.Concatenate(name=name + "_concat")([x, plane])
    features = dcgan_features(x, image_shape, width, norm, name)
    scores = layers.Dense(1, name=name + "_score")(features)
    return keras.Model(inputs if num_classes else images, scores, name=name)


# --------------------------------------------------------------------------------------------------
# InfoGAN (Chen et al., 2016)


def infogan_generator(image_shape, latent_dim, num_categories, num_continuous, width=32, pixel_range=(0.0, 1.0), name="generator"):
    """Inputs `[noise (latent_dim), category (int), continuous codes (num_continuous)]`."""
    category = keras.Input(shape=(), dtype="int32", name=name + "_category")
    # A frozen identity embedding is the one-hot code, as a gather every runtime has.
    one_hot = layers.Embedding(
        num_categories, num_categories, embeddings_initializer="identity", trainable=False, name=name + "_one_hot"
    )(category)
    continuous = keras.Input(shape=(num_continuous,), name=name + "_continuous")
    return dcgan_generator(
        image_shape, latent_dim, None, width, pixel_range, name, extra_inputs=((category, one_hot), (continuous, continuous))
    )


def infogan_discriminator(image_shape, num_categories, num_continuous, width=32, pixel_range=(0.0, 1.0), name="discriminator"):
    """Outputs `[score, category logits, continuous code estimates]`; the auxiliary network Q shares
    the discriminator's body."""
    images = keras.Input(shape=tuple(image_shape), name=name + "_images")
    features = dcgan_features(from_pixels(images, pixel_range, name), image_shape, width, "batch", name)
    scores = layers.Dense(1, name=name + "_score")(features)
    q = layers.Dense(width * 4, name=name + "_q_dense")(features)
    q = layers.LeakyReLU(0.2, name=name + "_q_lrelu")(q)
    category_logits = layers.Dense(num_categories, name=name + "_q_category")(q)
    continuous = layers.Dense(num_continuous, name=name + "_q_continuous")(q)
    return keras.Model(images, [scores, category_logits, continuous], name=name)


# --------------------------------------------------------------------------------------------------
# pix2pix (Isola et al., 2017) and CycleGAN (Zhu et al., 2017)


def unet_generator(source_shape, target_channels, width=32, depth=None, pixel_range=(0.0, 1.0), name="generator"):
    """U-Net: strided-convolution encoder, transposed-convolution decoder with skip connections and
    dropout in the innermost decoder blocks (pix2pix's source of noise)."""
    _, steps = upsampling_plan(source_shape)
    depth = steps + 1 if depth is None else depth
    if depth > steps + 1 or depth < 1:
        raise ValueError(f"depth must be in [1, {steps + 1}] for image_shape {tuple(source_shape)}; got depth={depth!r}.")
    source = keras.Input(shape=tuple(source_shape), name=name + "_source")
    x = from_pixels(source, pixel_range, name)
    x = unet(x, [width * 2 ** min(level, 3) for level in range(depth)], name=name)
    x = Conv2DTranspose(target_channels, 4, strides=2, padding="same", name=name + "_to_rgb")(x)
    return keras.Model(source, to_pixels(x, pixel_range, name), name=name)


def patch_discriminator(image_shape, width=32, norm="batch", paired=True, pixel_range=(0.0, 1.0), name="discriminator"):
    """PatchGAN: a fully convolutional discriminator scoring overlapping patches. `paired` takes
    `[source, target]` (pix2pix), else one image (CycleGAN)."""
    _, steps = upsampling_plan(image_shape)
    target = keras.Input(shape=tuple(image_shape), name=name + "_target")
    x = from_pixels(target, pixel_range, name)
    inputs = [target]
    if paired:
        source = keras.Input(shape=tuple(image_shape), name=name + "_source")
        inputs = [source, target]
        x = layers.Concatenate(name=name + "_concat")([from_pixels(source, pixel_range, name + "_source"), x])
    for step in range(max(1, steps)):
        x = conv_block(x, width * 2**step, 2, norm if step else None, "leaky_relu", f"{name}_down{step + 1}")
    x = conv_block(x, width * 2 ** max(1, steps), 1, norm, "leaky_relu", f"{name}_patch")
    scores = Conv2D(1, 4, padding="same", name=name + "_score")(x)  # (batch, patches, patches, 1)
    return keras.Model(inputs if paired else target, scores, name=name)


def residual_block(x, filters, norm, name):
    shortcut = x
    x = conv_block(x, filters, 1, norm, "relu", name + "_a", kernel_size=3)
    x = conv_block(x, filters, 1, norm, None, name + "_b", kernel_size=3)
    return layers.Add(name=name + "_add")([shortcut, x])


def resnet_generator(image_shape, width=32, num_blocks=3, downsamples=1, kernel_size=7, pixel_range=(0.0, 1.0),
                     name="generator"):
    """CycleGAN's generator: a `kernel_size` convolution (7 in the paper), strided downsampling,
    residual blocks, transposed upsampling, a `kernel_size` convolution; instance normalization
    throughout.

    The receptive field decides which translations the generator can make: one that sees the whole
    image can move content across it (and, unpaired, swap one class for another that cycles back),
    one that sees a few pixels only makes local changes."""
    if not isinstance(downsamples, int) or downsamples < 0 or image_shape[0] % (1 << downsamples):
        raise ValueError(f"downsamples must be an integer >= 0 that halves image_shape {tuple(image_shape)} evenly; "
                         f"got downsamples={downsamples!r}.")
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive integer; got kernel_size={kernel_size!r}.")
    source = keras.Input(shape=tuple(image_shape), name=name + "_source")
    x = conv_block(from_pixels(source, pixel_range, name), width, 1, "instance", "relu", name + "_stem",
                   kernel_size=kernel_size)
    for step in range(downsamples):
        x = conv_block(x, width * 2 ** (step + 1), 2, "instance", "relu", f"{name}_down{step + 1}", kernel_size=3)
    for block in range(num_blocks):
        x = residual_block(x, width * 2**downsamples, "instance", f"{name}_res{block + 1}")
    for step in reversed(range(downsamples)):
        x = conv_block(x, width * 2**step, 2, "instance", "relu", f"{name}_up{step + 1}", kernel_size=3, transpose=True)
    x = Conv2D(image_shape[-1], kernel_size, padding="same", name=name + "_to_rgb")(x)
    return keras.Model(source, to_pixels(x, pixel_range, name), name=name)


# --------------------------------------------------------------------------------------------------
# SRGAN (Ledig et al., 2017)


SR_RESIDUALS = ("bicubic", "bilinear", None)


def srresnet_generator(
    low_res_shape, scale=4, width=32, num_blocks=4, residual="bicubic", pixel_range=(0.0, 1.0), name="generator"
):
    """SRResNet: 9x9 stem with PReLU, residual blocks with batch norm, a global skip, and one sub-pixel
    convolution (convolution + pixel shuffle + PReLU) per factor 2.

    `residual="bicubic"` or `"bilinear"`: the network predicts the correction to that interpolation of
    its input (a global residual over the image); its last convolution starts at zero, so the untrained
    generator returns the interpolated input, and the sum is clipped to `pixel_range`. `None`: the
    network predicts the image itself (`tanh` output, as in the paper).
    """
    if scale not in (2, 4, 8):
        raise ValueError(f"scale must be 2, 4 or 8; got scale={scale!r}.")
    if residual not in SR_RESIDUALS:
        raise ValueError(f"residual must be one of {SR_RESIDUALS}; got residual={residual!r}.")
    source = keras.Input(shape=tuple(low_res_shape), name=name + "_low_res")
    pixels = from_pixels(source, pixel_range, name)  # [-1, 1]
    x = Conv2D(width, 9, padding="same", name=name + "_stem_conv")(pixels)
    x = stem = layers.PReLU(shared_axes=[1, 2], name=name + "_stem_prelu")(x)
    for block in range(num_blocks):
        block_name = f"{name}_res{block + 1}"
        y = Conv2D(width, 3, padding="same", use_bias=False, name=block_name + "_a_conv")(x)
        y = BatchNormalization(momentum=0.9, name=block_name + "_a_bn")(y)
        y = layers.PReLU(shared_axes=[1, 2], name=block_name + "_a_prelu")(y)
        y = Conv2D(width, 3, padding="same", use_bias=False, name=block_name + "_b_conv")(y)
        y = BatchNormalization(momentum=0.9, name=block_name + "_b_bn")(y)
        x = layers.Add(name=block_name + "_add")([x, y])
    x = Conv2D(width, 3, padding="same", use_bias=False, name=name + "_trunk_conv")(x)
    x = BatchNormalization(momentum=0.9, name=name + "_trunk_bn")(x)
    x = layers.Add(name=name + "_global_skip")([stem, x])
    for step in range(int(math.log2(scale))):
        x = Conv2D(width * 4, 3, padding="same", name=f"{name}_up{step + 1}_conv")(x)  # (b, h, w, 4 * width)
        x = PixelShuffle(2, name=f"{name}_up{step + 1}_shuffle")(x)  # (b, 2h, 2w, width)
        x = layers.PReLU(shared_axes=[1, 2], name=f"{name}_up{step + 1}_prelu")(x)
    if residual is None:
        x = Conv2D(low_res_shape[-1], 9, padding="same", name=name + "_to_rgb")(x)
        return keras.Model(source, to_pixels(x, pixel_range, name), name=name)
    correction = Conv2D(
        low_res_shape[-1], 9, padding="same", kernel_initializer="zeros", name=name + "_to_rgb"
    )(x)  # (b, scale * h, scale * w, channels), in [-1, 1] units
    interpolated = InterpolatedUpsampling(scale, residual, name=name + "_interpolate")(pixels)
    x = layers.Add(name=name + "_image_residual")([interpolated, correction])
    return keras.Model(source, to_pixels(x, pixel_range, name, squash="hard_tanh"), name=name)


def sr_discriminator(image_shape, width=32, pixel_range=(0.0, 1.0), name="discriminator"):
    """SRGAN's discriminator: 3x3 convolutions alternating stride 1 and 2 with batch norm and
    LeakyReLU, then a dense head."""
    _, steps = upsampling_plan(image_shape)
    images = keras.Input(shape=tuple(image_shape), name=name + "_images")
    x = conv_block(from_pixels(images, pixel_range, name), width, 1, None, "leaky_relu", name + "_stem", kernel_size=3)
    for step in range(max(1, steps)):
        x = conv_block(x, width * 2**step, 2, "batch", "leaky_relu", f"{name}_down{step + 1}", kernel_size=3)
    x = layers.Flatten(name=name + "_flatten")(x)
    x = layers.Dense(width * 4, name=name + "_dense")(x)
    x = layers.LeakyReLU(0.2, name=name + "_dense_lrelu")(x)
    return keras.Model(images, layers.Dense(1, name=name + "_score")(x), name=name)


# --------------------------------------------------------------------------------------------------
# StyleGAN (Karras et al., 2019; 2020)


def stylegan_mapping(latent_dim, w_dim=64, num_layers=4, name="mapping"):
    """z -> w: pixel norm, then `num_layers` dense layers with LeakyReLU."""
    z = keras.Input(shape=(latent_dim,), name=name + "_z")
    x = PixelNormalization(name=name + "_pixel_norm")(z)
    for index in range(num_layers):
        x = layers.Dense(w_dim, name=f"{name}_dense{index + 1}")(x)
        x = layers.LeakyReLU(0.2, name=f"{name}_lrelu{index + 1}")(x)
    return keras.Model(z, x, name=name)


def stylegan_num_ws(image_shape):
    _, steps = upsampling_plan(image_shape)
    return 2 + 3 * steps  # first block: conv + toRGB; each later block: two convs + toRGB


def stylegan_synthesis(image_shape, w_dim=64, width=32, pixel_range=(0.0, 1.0), name="synthesis", seed=None):
    """ws `(batch, num_ws, w_dim)` -> image: learned 4x4 constant, modulated convolutions with
    per-layer noise, bilinear upsampling, and toRGB outputs summed across resolutions (StyleGAN2's skip
    architecture). Style `i` drives the `i`-th layer, which is what style mixing swaps."""
    start, steps = upsampling_plan(image_shape)
    num_ws = stylegan_num_ws(image_shape)
    ws = keras.Input(shape=(num_ws, w_dim), name=name + "_ws")
    styles = iter(range(num_ws))

    def style(layer_name):
        return SelectStyle(next(styles), name=layer_name + "_style")(ws)

    def styled_conv(x, filters, layer_name, noise_seed):
        x = ModulatedConv2D(filters, 3, name=layer_name + "_modconv")([x, style(layer_name)])
        x = NoiseInjection(seed=noise_seed, name=layer_name + "_noise")(x)
        return layers.LeakyReLU(0.2, name=layer_name + "_lrelu")(x)

    def to_rgb(x, layer_name):
        return ModulatedConv2D(image_shape[-1], 1, demodulate=False, name=layer_name + "_to_rgb")([x, style(layer_name)])

    seed = 0 if seed is None else seed
    x = LearnedConstant((start, start, width * 2**steps), name=name + "_const")(layers.Flatten(name=name + "_flat_ws")(ws))
    x = styled_conv(x, width * 2**steps, f"{name}_b0_conv1", seed)
    rgb = to_rgb(x, f"{name}_b0")
    for step in range(steps):
        filters = width * 2 ** (steps - step - 1)
        block = f"{name}_b{step + 1}"
        x = layers.UpSampling2D(2, interpolation="bilinear", name=block + "_upsample")(x)
        x = styled_conv(x, filters, block + "_conv1", seed + 2 * step + 1)
        x = styled_conv(x, filters, block + "_conv2", seed + 2 * step + 2)
        rgb = layers.UpSampling2D(2, interpolation="bilinear", name=block + "_rgb_upsample")(rgb)
        rgb = layers.Add(name=block + "_rgb_add")([rgb, to_rgb(x, block)])
    return keras.Model(ws, to_pixels(rgb, pixel_range, name), name=name)


def stylegan_generator(mapping, synthesis, name="generator"):
    """z -> w -> one w per layer -> image: the exported generator (no mixing, no truncation)."""
    z = keras.Input(shape=mapping.input_shape[1:], name=name + "_z")
    ws = StyleBroadcast(synthesis.input_shape[1], name=name + "_broadcast")(mapping(z))
    return keras.Model(z, synthesis(ws), name=name)


def stylegan_discriminator(image_shape, width=32, pixel_range=(0.0, 1.0), name="discriminator"):
    """Residual discriminator with average-pool downsampling, minibatch standard deviation and a dense
    head (StyleGAN2's "resnet" discriminator)."""
    _, steps = upsampling_plan(image_shape)
    images = keras.Input(shape=tuple(image_shape), name=name + "_images")
    x = Conv2D(width, 1, name=name + "_from_rgb")(from_pixels(images, pixel_range, name))
    x = layers.LeakyReLU(0.2, name=name + "_from_rgb_lrelu")(x)
    for step in range(steps):
        filters = width * 2 ** (step + 1)
        block = f"{name}_b{step + 1}"
        shortcut = layers.AveragePooling2D(2, name=block + "_skip_pool")(x)
        shortcut = Conv2D(filters, 1, use_bias=False, name=block + "_skip_conv")(shortcut)
        y = conv_block(x, x.shape[-1], 1, None, "leaky_relu", block + "_a", kernel_size=3)
        y = conv_block(y, filters, 1, None, "leaky_relu", block + "_b", kernel_size=3)
        y = layers.AveragePooling2D(2, name=block + "_pool")(y)
        x = layers.Add(name=block + "_add")([shortcut, y])
        x = layers.Rescaling(1.0 / math.sqrt(2.0), name=block + "_scale")(x)
    x = MinibatchStdDev(group_size=4, name=name + "_mbstd")(x)
    x = conv_block(x, x.shape[-1] - 1, 1, None, "leaky_relu", name + "_final", kernel_size=3)
    x = layers.Flatten(name=name + "_flatten")(x)
    x = layers.Dense(width * 2**steps, name=name + "_dense")(x)
    x = layers.LeakyReLU(0.2, name=name + "_dense_lrelu")(x)
    return keras.Model(images, layers.Dense(1, name=name + "_score")(x), name=name)


# --------------------------------------------------------------------------------------------------
# BigGAN (Brock et al., 2019)


def _sn_conv(filters, kernel_size, name):
    return SpectralNorm(layers.Conv2D(filters, kernel_size, padding="same", name=name), name=name + "_sn")


def biggan_generator(image_shape, latent_dim, num_classes, width=32, embedding_dim=32, pixel_range=(0.0, 1.0), name="generator"):
    """Class-conditional residual generator: a shared class embedding concatenated with z conditions
    every batch norm (the skip-z of BigGAN-deep), spectral norm on every convolution and dense layer,
    self-attention after the first block."""
    start, steps = upsampling_plan(image_shape)
    z = keras.Input(shape=(latent_dim,), name=name + "_z")
    labels = label_input(name)
    embedded = layers.Embedding(num_classes, embedding_dim, name=name + "_shared_embedding")(labels)
    condition = layers.Concatenate(name=name + "_condition")([z, embedded])  # (batch, latent + embedding)
    filters = width * 2**steps
    x = SpectralNorm(layers.Dense(start * start * filters, name=name + "_project"), name=name + "_project_sn")(z)
    x = layers.Reshape((start, start, filters), name=name + "_reshape")(x)
    for step in range(steps):
        block = f"{name}_b{step + 1}"
        out_filters = filters // 2
        shortcut = layers.UpSampling2D(2, name=block + "_skip_upsample")(x)
        shortcut = _sn_conv(out_filters, 1, block + "_skip_conv")(shortcut)
        y = ConditionalBatchNormalization(use_spectral_norm=True, name=block + "_cbn1")([x, condition])
        y = layers.ReLU(name=block + "_relu1")(y)
        y = layers.UpSampling2D(2, name=block + "_upsample")(y)
        y = _sn_conv(out_filters, 3, block + "_conv1")(y)
        y = ConditionalBatchNormalization(use_spectral_norm=True, name=block + "_cbn2")([y, condition])
        y = layers.ReLU(name=block + "_relu2")(y)
        y = _sn_conv(out_filters, 3, block + "_conv2")(y)
        x = layers.Add(name=block + "_add")([shortcut, y])
        filters = out_filters
        if step == 0:
            x = SelfAttention2D(reduction=8, name=block + "_attention")(x)
    x = BatchNormalization(momentum=0.9, name=name + "_out_bn")(x)
    x = layers.ReLU(name=name + "_out_relu")(x)
    x = _sn_conv(image_shape[-1], 3, name + "_to_rgb")(x)
    return keras.Model([z, labels], to_pixels(x, pixel_range, name), name=name)


def biggan_discriminator(image_shape, num_classes, width=32, pixel_range=(0.0, 1.0), name="discriminator"):
    """Residual discriminator with spectral norm, self-attention after the first block, global
    pooling and a projection term for the class."""
    _, steps = upsampling_plan(image_shape)
    images = keras.Input(shape=tuple(image_shape), name=name + "_images")
    labels = label_input(name)
    x = from_pixels(images, pixel_range, name)
    for step in range(steps + 1):
        block = f"{name}_b{step + 1}"
        filters = width * 2**step
        shortcut = _sn_conv(filters, 1, block + "_skip_conv")(x)
        y = layers.ReLU(name=block + "_relu1")(x) if step else x
        y = _sn_conv(filters, 3, block + "_conv1")(y)
        y = layers.ReLU(name=block + "_relu2")(y)
        y = _sn_conv(filters, 3, block + "_conv2")(y)
        if step < steps:
            shortcut = layers.AveragePooling2D(2, name=block + "_skip_pool")(shortcut)
            y = layers.AveragePooling2D(2, name=block + "_pool")(y)
        x = layers.Add(name=block + "_add")([shortcut, y])
        if step == 0:
            x = SelfAttention2D(reduction=8, name=block + "_attention")(x)
    x = layers.ReLU(name=name + "_out_relu")(x)
    features = layers.GlobalAveragePooling2D(name=name + "_pool")(x)  # (batch, filters)
    unconditional = SpectralNorm(layers.Dense(1, name=name + "_score"), name=name + "_score_sn")(features)
    projection = ProjectionScore(num_classes, name=name + "_projection")([features, labels])
    scores = layers.Add(name=name + "_scores")([unconditional, projection])
    return keras.Model([images, labels], scores, name=name)
