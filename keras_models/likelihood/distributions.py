"""Pixel likelihoods and the Gaussian latent densities of the VAEs, per example in nats.

Every function takes the decoder's (or encoder's) outputs and data as tensors and returns log-densities
with the event axes summed: `(batch,)` for images `(batch, h, w, c)`, `(..., )` for latents
`(..., latent_dim)`.

On the TensorFlow backend the densities are TensorFlow Probability distributions built here, inside the
loss (`tfp.layers` does not work with Keras 3); TFP is imported on first use, so `import keras_models`
never loads it. TFP has no PyTorch substrate and its JAX substrate does not import with current JAX,
so on JAX and PyTorch the same densities are written with `keras.ops` (`*_ops` functions); the tests
check both agree on TensorFlow to 1e-6.

Pixels:
- `"bernoulli"`: pixels in {0, 1}; images are binarized at half their `pixel_range`.
- `"gaussian"`: a normal density per pixel with a learned mean and scale (a density, not a probability:
  its nats are not comparable with the discrete likelihoods').
- `"logistic_mixture"`: a mixture of discretized logistics over 256 levels spread evenly over
  `pixel_range` (Salimans et al., 2017, PixelCNN++), the first and last levels taking the tails.
"""

from __future__ import annotations

import math

import keras
from keras import ops

LIKELIHOODS = ("bernoulli", "gaussian", "logistic_mixture")
LEVELS = 256
# Scales below exp(-7) (a thousandth of a level) only let the likelihood of constant pixels diverge.
MIN_LOG_SCALE = -7.0
_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def check_likelihood(likelihood):
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}; got likelihood={likelihood!r}.")
    return likelihood


def use_tfp() -> bool:
    """Whether the densities come from TensorFlow Probability (the TensorFlow backend)."""
    return keras.backend.backend() == "tensorflow"


def _tfd():
    import tensorflow_probability as tfp

    return tfp.distributions


# -- data in the units of each likelihood -----------------------------------------------------------

def binarize(images, pixel_range):
    """Pixels at or above half the range become 1, the rest 0."""
    low, high = pixel_range
    return ops.cast(images >= 0.5 * (low + high), "float32")


def to_unit_interval(images, pixel_range):
    """Images scaled from `pixel_range` to [-1, 1], the scale of the logistic mixture, rounded to the
    nearest of the 256 levels."""
    low, high = pixel_range
    levels = ops.round((images - low) / (high - low) * (LEVELS - 1))
    levels = ops.clip(levels, 0.0, LEVELS - 1.0)
    return levels / ((LEVELS - 1) / 2.0) - 1.0


def _sum_events(values):
    return ops.sum(ops.reshape(values, (ops.shape(values)[0], -1)), axis=-1)


# -- keras.ops densities (every backend) ------------------------------------------------------------

def bernoulli_log_prob_ops(logits, targets):
    """Per-pixel log P(targets) under Bernoulli(sigmoid(logits)), as TensorFlow's stable cross-entropy."""
    return -(ops.maximum(logits, 0.0) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits))))


def normal_log_prob_ops(mean, log_scale, x):
    """Per-element log-density of N(mean, exp(log_scale)^2) at `x`."""
    scale = ops.exp(log_scale)
    return -0.5 * ops.square(x / scale - mean / scale) - (_HALF_LOG_TWO_PI + ops.log(scale))


def standard_normal_log_prob_ops(x):
    return -0.5 * ops.square(x) - _HALF_LOG_TWO_PI


def normal_kl_ops(mean, log_variance):
    """Per-element KL(N(mean, exp(log_variance)) || N(0, 1))."""
    return 0.5 * (ops.square(mean) + ops.exp(log_variance) - 1.0 - log_variance)


def _logistic_log_cdf(t, loc, scale):
    return -ops.softplus(-(t - loc) / scale)


def _logistic_log_sf(t, loc, scale):
    return -ops.softplus((t - loc) / scale)


def discretized_logistic_log_prob_ops(loc, log_scale, x):
    """Per-element log P(x) of one discretized logistic on [-1, 1] with 256 levels (x on the levels).

    Works on the level scale (0..255) like TFP's `QuantizedDistribution`: the mass of level `l` is
    `F(l + 1/2) - F(l - 1/2)`, the first level takes everything below, the last everything above;
    the difference of two CDFs is taken as `exp(big) - exp(small)` in logs, from the survival functions
    right of the median and the CDFs left of it, as TFP does, so both agree to rounding.
    """
    half = (LEVELS - 1) / 2.0
    level = ops.round((x + 1.0) * half)
    loc = (loc + 1.0) * half
    scale = ops.exp(log_scale) * half
    upper, lower = level + 0.5, level - 0.5
    log_cdf_upper, log_cdf_lower = _logistic_log_cdf(upper, loc, scale), _logistic_log_cdf(lower, loc, scale)
    log_sf_upper, log_sf_lower = _logistic_log_sf(upper, loc, scale), _logistic_log_sf(lower, loc, scale)
    right = log_sf_upper < log_cdf_upper
    big = ops.where(right, log_sf_lower, log_cdf_upper)
    small = ops.where(right, log_sf_upper, log_cdf_lower)
    inner = big + ops.log1p(-ops.exp(small - big))
    return ops.where(level <= 0.0, log_cdf_upper, ops.where(level >= LEVELS - 1.0, log_sf_lower, inner))


def logistic_mixture_log_prob_ops(logits, loc, log_scale, x):
    """Per-pixel log P(x) of a mixture of discretized logistics; parameters `(..., k)`, `x` `(...)`."""
    components = discretized_logistic_log_prob_ops(loc, log_scale, ops.expand_dims(x, -1))
    return ops.logsumexp(components + ops.log_softmax(logits, axis=-1), axis=-1)


# -- TensorFlow Probability densities (TensorFlow backend) -----------------------------------------

def bernoulli_log_prob_tfp(logits, targets):
    return _tfd().Bernoulli(logits=logits, dtype="float32").log_prob(targets)


def normal_log_prob_tfp(mean, log_scale, x):
    return _tfd().Normal(mean, ops.exp(log_scale)).log_prob(x)


def standard_normal_log_prob_tfp(x):
    return _tfd().Normal(0.0, 1.0).log_prob(x)


def normal_kl_tfp(mean, log_variance):
    tfd = _tfd()
    return tfd.kl_divergence(tfd.Normal(mean, ops.exp(0.5 * log_variance)), tfd.Normal(0.0, 1.0))


def _discretized_logistic_tfp(loc, log_scale):
    import tensorflow_probability as tfp

    half = (LEVELS - 1) / 2.0
    logistic = tfp.distributions.Logistic((loc + 1.0) * half, ops.exp(log_scale) * half)
    # Shifted by -1/2 so that level l collects the logistic's mass on [l - 1/2, l + 1/2].
    shifted = tfp.distributions.TransformedDistribution(logistic, tfp.bijectors.Shift(-0.5))
    return tfp.distributions.QuantizedDistribution(shifted, low=0.0, high=LEVELS - 1.0)


def discretized_logistic_log_prob_tfp(loc, log_scale, x):
    level = ops.round((x + 1.0) * ((LEVELS - 1) / 2.0))
    return _discretized_logistic_tfp(loc, log_scale).log_prob(level)


def logistic_mixture_log_prob_tfp(logits, loc, log_scale, x):
    tfd = _tfd()
    mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=logits), _discretized_logistic_tfp(loc, log_scale))
    return mixture.log_prob(ops.round((x + 1.0) * ((LEVELS - 1) / 2.0)))


# -- what the model calls ----------------------------------------------------------------------------

def floor_log_scale(log_scale):
    return ops.maximum(log_scale, MIN_LOG_SCALE)


def pixel_targets(likelihood, images, pixel_range):
    """Images in the units the likelihood models: {0, 1}, the range itself, or [-1, 1] on 256 levels."""
    if likelihood == "bernoulli":
        return binarize(images, pixel_range)
    if likelihood == "logistic_mixture":
        return to_unit_interval(images, pixel_range)
    return images


def image_log_prob(likelihood, params, targets, tfp=None):
    """log p(targets | decoder outputs `params`), summed over pixels: `(batch,)`.

    Args:
        likelihood: one of `LIKELIHOODS`.
        params: the decoder's outputs: `[logits]`, `[mean, log_scale]` or `[logits, loc, log_scale]`
            (mixture parameters `(batch, h, w, c, k)`).
        targets: `pixel_targets(...)` of the images.
        tfp: use TensorFlow Probability (default: on the TensorFlow backend).
    """
    tfp = use_tfp() if tfp is None else tfp
    if likelihood == "bernoulli":
        per_pixel = (bernoulli_log_prob_tfp if tfp else bernoulli_log_prob_ops)(params[0], targets)
    elif likelihood == "gaussian":
        per_pixel = (normal_log_prob_tfp if tfp else normal_log_prob_ops)(params[0], floor_log_scale(params[1]), targets)
    else:
        logits, loc, log_scale = params
        function = logistic_mixture_log_prob_tfp if tfp else logistic_mixture_log_prob_ops
        per_pixel = function(logits, loc, floor_log_scale(log_scale), targets)
    return _sum_events(per_pixel)


def kl_to_standard_normal(mean, log_variance, tfp=None):
    """KL(q(z|x) || N(0, I)) summed over the latent axis: `(batch,)`."""
    tfp = use_tfp() if tfp is None else tfp
    return ops.sum((normal_kl_tfp if tfp else normal_kl_ops)(mean, log_variance), axis=-1)


def latent_log_probs(z, mean, log_variance, tfp=None):
    """`(log q(z | x), log p(z))` summed over the latent axis, for `z` `(..., latent_dim)`."""
    tfp = use_tfp() if tfp is None else tfp
    if tfp:
        log_q = normal_log_prob_tfp(mean, 0.5 * log_variance, z)
        log_p = standard_normal_log_prob_tfp(z)
    else:
        log_q = normal_log_prob_ops(mean, 0.5 * log_variance, z)
        log_p = standard_normal_log_prob_ops(z)
    return ops.sum(log_q, axis=-1), ops.sum(log_p, axis=-1)


def image_mean(likelihood, params, pixel_range):
    """The decoder's expected image, in `pixel_range` (numpy in, numpy out)."""
    import numpy as np

    low, high = pixel_range
    if likelihood == "bernoulli":
        unit = 1.0 / (1.0 + np.exp(-params[0]))
    elif likelihood == "gaussian":
        return np.clip(params[0], low, high)
    else:
        logits, loc, _ = params
        weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
        weights /= weights.sum(axis=-1, keepdims=True)
        unit = (np.clip((weights * loc).sum(axis=-1), -1.0, 1.0) + 1.0) / 2.0
    return (low + unit * (high - low)).astype(np.float32)


def image_sample(likelihood, params, pixel_range, rng):
    """Pixels drawn from the decoder's distribution with numpy's `rng`, in `pixel_range`."""
    import numpy as np

    low, high = pixel_range
    if likelihood == "bernoulli":
        probabilities = 1.0 / (1.0 + np.exp(-params[0]))
        unit = (rng.uniform(size=probabilities.shape) < probabilities).astype(np.float32)
    elif likelihood == "gaussian":
        mean, log_scale = params
        scale = np.exp(np.maximum(log_scale, MIN_LOG_SCALE))
        return np.clip(mean + scale * rng.standard_normal(mean.shape), low, high).astype(np.float32)
    else:
        logits, loc, log_scale = params
        gumbel = -np.log(-np.log(rng.uniform(1e-6, 1.0 - 1e-6, size=logits.shape)))
        component = np.argmax(logits + gumbel, axis=-1)[..., None]
        loc = np.take_along_axis(loc, component, axis=-1)[..., 0]
        scale = np.exp(np.maximum(np.take_along_axis(log_scale, component, axis=-1)[..., 0], MIN_LOG_SCALE))
        u = rng.uniform(1e-6, 1.0 - 1e-6, size=loc.shape)
        x = loc + scale * (np.log(u) - np.log1p(-u))
        levels = np.clip(np.round((x + 1.0) * (LEVELS - 1) / 2.0), 0, LEVELS - 1)
        unit = levels / (LEVELS - 1)
    return (low + unit * (high - low)).astype(np.float32)
