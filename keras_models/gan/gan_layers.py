"""The GAN family's own layers: conditional batch normalization, StyleGAN's modulated convolution,
noise, styles and constant input, the minibatch standard deviation, the projection score, and SRGAN's
interpolated upsampling.

Layers other families use too (spectral and instance normalization, self-attention, pixel shuffle)
live in `keras_models.layers`. Every layer here runs inside an XLA-compiled training step and exports
to builtin TFLite ops and plain ONNX ops: randomness only in training, state updates only in
training, fixed buffers at inference.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_models.layers import SpectralNorm

_PACKAGE = "keras_models"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConditionalBatchNormalization(keras.layers.Layer):
    """Batch normalization whose scale and offset are linear functions of a conditioning vector.

    `call([x, condition])`: `BN(x) * (1 + gamma(condition)) + beta(condition)`, with `condition` a class
    embedding (optionally concatenated with a latent chunk, as in BigGAN; de Vries et al., 2017; Brock et
    al., 2019). The batch statistics are Keras' `BatchNormalization` (moving averages at inference).

    Args:
        momentum, epsilon: of the batch normalization.
        use_spectral_norm: spectrally normalize the two projections (BigGAN does).
    """

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-4, use_spectral_norm: bool = False, **kwargs):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1); got momentum={momentum!r}.")
        super().__init__(**kwargs)
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_spectral_norm = use_spectral_norm
        self.batch_norm = keras.layers.BatchNormalization(
            momentum=momentum, epsilon=epsilon, center=False, scale=False, name="batch_norm"
        )

    def build(self, input_shape):
        x_shape, condition_shape = input_shape
        channels = int(x_shape[-1])
        gamma = keras.layers.Dense(channels, kernel_initializer="zeros", use_bias=False, name="gamma")
        beta = keras.layers.Dense(channels, kernel_initializer="zeros", use_bias=False, name="beta")
        if self.use_spectral_norm:
            # A zero kernel has no spectrum; start from small random weights instead.
            gamma = keras.layers.Dense(channels, use_bias=False, kernel_initializer="orthogonal", name="gamma")
            beta = keras.layers.Dense(channels, use_bias=False, kernel_initializer="orthogonal", name="beta")
            gamma, beta = SpectralNorm(gamma, name="gamma_sn"), SpectralNorm(beta, name="beta_sn")
        self.gamma, self.beta = gamma, beta
        self.batch_norm.build(x_shape)
        self.gamma.build(condition_shape)
        self.beta.build(condition_shape)

    def call(self, inputs, training=False):
        x, condition = inputs
        normalized = self.batch_norm(x, training=training)
        gamma = self.gamma(condition, training=training)[:, None, None, :]  # (batch, 1, 1, channels)
        beta = self.beta(condition, training=training)[:, None, None, :]
        return normalized * (1.0 + gamma) + beta

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "use_spectral_norm": self.use_spectral_norm,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ModulatedConv2D(keras.layers.Layer):
    """StyleGAN2's modulated convolution with weight demodulation (Karras et al., 2020, "Analyzing and
    Improving the Image Quality of StyleGAN").

    `call([x, w])`: an affine map of the intermediate latent `w` gives a per-sample style `s` (one scale
    per input channel, bias initialised to 1). The paper's per-sample kernel `W * s` followed by
    demodulation `1 / sqrt(sum (W * s)^2)` is computed in its equivalent batched form: scale the input
    channels by `s`, convolve with the shared kernel, scale each output channel by the per-sample
    demodulation factor. This keeps one shared kernel, which TFLite and ONNX run as a plain convolution.

    Args:
        filters: output channels.
        kernel_size: the square kernel size.
        demodulate: apply demodulation (off for the toRGB layers).
        use_bias: add a per-channel bias after demodulation.
        epsilon: added under the demodulation square root.
    """

    def __init__(
        self, filters: int, kernel_size: int = 3, demodulate: bool = True, use_bias: bool = True, epsilon: float = 1e-8, **kwargs
    ):
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(f"filters must be a positive integer; got filters={filters!r}.")
        if not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive integer; got kernel_size={kernel_size!r}.")
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.use_bias = use_bias
        self.epsilon = epsilon

    def build(self, input_shape):
        x_shape, w_shape = input_shape
        channels = int(x_shape[-1])
        self.kernel = self.add_weight(
            shape=(self.kernel_size, self.kernel_size, channels, self.filters),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="kernel",
        )
        # Equalized learning rate: weights drawn from N(0, 1) and scaled at run time by He's constant.
        self.weight_gain = 1.0 / float(self.kernel_size * self.kernel_size * channels) ** 0.5
        self.affine = keras.layers.Dense(channels, bias_initializer="ones", name="affine")
        self.affine.build(w_shape)
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias") if self.use_bias else None

    def call(self, inputs):
        x, w = inputs
        style = self.affine(w)  # (batch, in_channels)
        kernel = self.kernel * self.weight_gain  # (k, k, in, out)
        outputs = ops.conv(x * style[:, None, None, :], kernel, padding="same")  # (batch, h, w, out)
        if self.demodulate:
            # sum over (k, k, in) of (kernel * style)^2 = style^2 @ sum_k kernel^2: (batch, out)
            energy = ops.matmul(ops.square(style), ops.sum(ops.square(kernel), axis=(0, 1)))
            outputs = outputs * ops.rsqrt(energy + self.epsilon)[:, None, None, :]
        if self.bias is not None:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "demodulate": self.demodulate,
            "use_bias": self.use_bias,
            "epsilon": self.epsilon,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NoiseInjection(keras.layers.Layer):
    """StyleGAN's per-layer noise: adds single-channel Gaussian noise scaled by a learned per-channel
    strength (initialised to 0).

    Training draws fresh noise from a `keras.random.SeedGenerator`; inference uses a fixed noise map
    stored with the layer (StyleGAN2's "const" noise mode), so a generator is a deterministic function
    of its latent and exports with equal outputs.

    Args:
        seed: seed of the noise.
    """

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        height, width, channels = int(input_shape[1]), int(input_shape[2]), int(input_shape[3])
        self.strength = self.add_weight(shape=(channels,), initializer="zeros", name="strength")
        self.const_noise = self.add_weight(
            shape=(1, height, width, 1),
            initializer=keras.initializers.RandomNormal(stddev=1.0, seed=self.seed),
            trainable=False,
            name="const_noise",
        )

    def call(self, inputs, training=False):
        if training:
            shape = ops.shape(inputs)
            noise = keras.random.normal((shape[0], shape[1], shape[2], 1), seed=self.seed_generator)
        else:
            noise = self.const_noise
        return inputs + noise * self.strength

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MinibatchStdDev(keras.layers.Layer):
    """Appends the average standard deviation of features across groups of the batch as one channel
    (Karras et al., 2018, "Progressive Growing of GANs"). Lets the discriminator see sample diversity.

    Args:
        group_size: samples per group; the batch must be divisible by it (1 uses the whole batch).
        epsilon: added under the square root.
    """

    def __init__(self, group_size: int = 4, epsilon: float = 1e-8, **kwargs):
        if not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size must be a positive integer; got group_size={group_size!r}.")
        super().__init__(**kwargs)
        self.group_size = group_size
        self.epsilon = epsilon

    def call(self, inputs):
        shape = ops.shape(inputs)
        batch = shape[0]
        if isinstance(batch, int):
            # A static batch (JAX traces with one): the group size is a Python int, as reshape needs there.
            group = min(self.group_size, batch)
            group = group if batch % group == 0 else batch
        else:
            group = ops.minimum(self.group_size, batch)
            # Fall back to the whole batch when it does not divide into groups.
            group = ops.where(ops.equal(batch % group, 0), group, batch)
        grouped = ops.reshape(inputs, (group, -1, shape[1], shape[2], shape[3]))  # (g, b/g, h, w, c)
        std = ops.sqrt(ops.var(grouped, axis=0) + self.epsilon)  # (b/g, h, w, c)
        std = ops.mean(std, axis=(1, 2, 3))  # (b/g,)
        std = ops.tile(std, (group,))[:, None, None, None]  # (b, 1, 1, 1)
        feature = ops.ones_like(inputs[..., :1]) * std
        return ops.concatenate([inputs, feature], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)

    def get_config(self):
        return {**super().get_config(), "group_size": self.group_size, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PixelNormalization(keras.layers.Layer):
    """Normalizes each latent vector to unit average square (Karras et al., 2018); StyleGAN's input to
    the mapping network."""

    def __init__(self, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        return inputs * ops.rsqrt(ops.mean(ops.square(inputs), axis=-1, keepdims=True) + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LearnedConstant(keras.layers.Layer):
    """StyleGAN's learned constant input: ignores its input's values and returns a `(batch, h, w, c)`
    tensor of learned values, the batch taken from the input.

    Args:
        shape: `(height, width, channels)` of the constant.
    """

    def __init__(self, shape=(4, 4, 32), **kwargs):
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"shape must be (height, width, channels) of positive sizes; got shape={shape!r}.")
        super().__init__(**kwargs)
        self.shape = shape

    def build(self, input_shape):
        self.constant = self.add_weight(
            shape=(1, *self.shape), initializer=keras.initializers.RandomNormal(stddev=1.0), name="constant"
        )

    def call(self, inputs):
        # zeros of the right batch size, so the batch axis stays dynamic in exported graphs
        batch_zeros = ops.zeros_like(inputs[:, :1])[:, :, None, None]  # (batch, 1, 1, 1)
        return batch_zeros + self.constant

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.shape)

    def get_config(self):
        return {**super().get_config(), "shape": list(self.shape)}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StyleBroadcast(keras.layers.Layer):
    """Repeats an intermediate latent `w` `(batch, w_dim)` into one style per synthesis layer
    `(batch, num_ws, w_dim)`."""

    def __init__(self, num_ws: int, **kwargs):
        if not isinstance(num_ws, int) or num_ws < 1:
            raise ValueError(f"num_ws must be a positive integer; got num_ws={num_ws!r}.")
        super().__init__(**kwargs)
        self.num_ws = num_ws

    def call(self, inputs):
        return ops.repeat(inputs[:, None, :], self.num_ws, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_ws, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_ws": self.num_ws}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SelectStyle(keras.layers.Layer):
    """Takes style `index` from `(batch, num_ws, w_dim)`: the latent one synthesis layer sees."""

    def __init__(self, index: int, **kwargs):
        if not isinstance(index, int) or index < 0:
            raise ValueError(f"index must be a non-negative integer; got index={index!r}.")
        super().__init__(**kwargs)
        self.index = index

    def call(self, inputs):
        return inputs[:, self.index, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "index": self.index}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ProjectionScore(keras.layers.Layer):
    """The projection discriminator's class term (Miyato & Koyama, 2018): `sum(embed(y) * features)`,
    added to the unconditional score. Inputs `[features (batch, d), labels (batch,)]`, output `(batch, 1)`.

    Args:
        num_classes: number of labels.
        use_spectral_norm: spectrally normalize the class embedding (BigGAN does).
    """

    def __init__(self, num_classes: int, use_spectral_norm: bool = True, **kwargs):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer; got num_classes={num_classes!r}.")
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.use_spectral_norm = use_spectral_norm

    def build(self, input_shape):
        features_shape, _ = input_shape
        embedding = keras.layers.Embedding(self.num_classes, int(features_shape[-1]), name="embedding")
        self.embedding = SpectralNorm(embedding, name="embedding_sn") if self.use_spectral_norm else embedding
        self.embedding.build((None,))

    def call(self, inputs, training=False):
        features, labels = inputs
        class_vectors = self.embedding(ops.cast(labels, "int32"), training=training)  # (batch, d)
        return ops.sum(class_vectors * features, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "use_spectral_norm": self.use_spectral_norm}


def interpolation_matrix(size_in, size_out, interpolation):
    """The `(size_out, size_in)` matrix of one axis of TensorFlow's `tf.image.resize` (half-pixel
    centres; Keys' cubic kernel with a = -0.5 for `"bicubic"`, the tent for `"bilinear"`; taps outside
    the image dropped and the rest renormalized)."""
    centers = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5  # in input pixel coordinates
    distance = np.abs(centers[:, None] - np.arange(size_in)[None, :])  # (size_out, size_in)
    if interpolation == "bilinear":
        weights = np.maximum(0.0, 1.0 - distance)
    else:
        a = -0.5
        near = ((a + 2) * distance - (a + 3)) * distance**2 + 1
        far = ((a * distance - 5 * a) * distance + 8 * a) * distance - 4 * a
        weights = np.where(distance <= 1, near, np.where(distance < 2, far, 0.0))
    return (weights / weights.sum(axis=1, keepdims=True)).astype("float32")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class InterpolatedUpsampling(keras.layers.Layer):
    """Upsamples NHWC images by an integer `scale` with bicubic or bilinear interpolation, written as
    two fixed matrix products (the same values as `tf.image.resize`), so that it runs in XLA-compiled
    steps on every backend (TensorFlow's bicubic kernel has no XLA lowering) and exports as plain
    matrix products.

    Args:
        scale: the integer upsampling factor.
        interpolation: `"bicubic"` or `"bilinear"`.
    """

    def __init__(self, scale: int, interpolation: str = "bicubic", **kwargs):
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be a positive integer; got scale={scale!r}.")
        if interpolation not in ("bicubic", "bilinear"):
            raise ValueError(f"interpolation must be 'bicubic' or 'bilinear'; got interpolation={interpolation!r}.")
        super().__init__(**kwargs)
        self.scale = scale
        self.interpolation = interpolation

    def build(self, input_shape):
        height, width = int(input_shape[1]), int(input_shape[2])
        self._rows = interpolation_matrix(height, height * self.scale, self.interpolation)  # (H, h)
        self._columns = interpolation_matrix(width, width * self.scale, self.interpolation)  # (W, w)

    def call(self, images):
        _, height, width, channels = images.shape
        rows = ops.convert_to_tensor(self._rows, dtype=images.dtype)
        columns = ops.convert_to_tensor(self._columns, dtype=images.dtype)
        x = ops.reshape(images, (-1, height, width * channels))
        x = ops.matmul(rows[None], x)  # (batch, H, w * c)
        x = ops.reshape(x, (-1, width, channels))  # (batch * H, w, c)
        x = ops.matmul(columns[None], x)  # (batch * H, W, c)
        return ops.reshape(x, (-1, height * self.scale, width * self.scale, channels))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, height * self.scale, width * self.scale, channels)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "interpolation": self.interpolation}
