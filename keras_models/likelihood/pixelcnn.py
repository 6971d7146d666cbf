"""`PixelCNN` and the registered `pixelcnn`: a gated PixelCNN trained by `fit()` on the exact negative
log-likelihood, with exact per-example log-likelihoods and a sampler that runs the network only on the
rows each pixel can see.

    >>> model = keras_models.build("pixelcnn", image_shape=(8, 8, 1), num_classes=10)
    >>> model.fit(images, labels, epochs=20)
    >>> model.log_likelihood(test_images, test_labels)      # nats per image, exact
    >>> model.bits_per_dimension(test_images, test_labels)
    >>> model.generate(16, labels=3, seed=0)                # method="naive" re-runs the whole image

One optimizer and a custom loss: the loss is `compute_loss`, which Keras' TensorFlow, JAX and PyTorch
trainers all call, written with `keras.ops`. The network (`pixelcnn_network`) is the deployable part:
image (and label) in, logits out. Sampling draws one uniform number per pixel value up front from a
seeded numpy generator and inverts each conditional's CDF at it, either in one compiled loop over the
pixels (`CompiledSampler`, the network run on the rows each pixel sees) or in Python's loop over the
whole network (`method="naive"`, the reference the benchmark times it against).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from keras_models import optimizers
from keras_models.checks import check_choice, check_count, check_shape
from keras_models.generative import ImageGenerativeModel
from keras_models.gradients import replica_share
from keras_models.likelihood import distributions
from keras_models.likelihood.pixelcnn_network import band_network, pixelcnn_network, receptive_radius
from keras_models.likelihood.vae import bits_per_dimension
from keras_models.registry import register_model
from keras_models.training import compile_model

_PACKAGE = "keras_models"
LIKELIHOODS = ("bernoulli", "categorical")
LEVELS = 256
SAMPLING_METHODS = ("fast", "naive")


def _serialize(obj):
    return keras.saving.serialize_keras_object(obj)


def _deserialize(config):
    return keras.saving.deserialize_keras_object(config)


def pixel_log_probs(likelihood, logits, targets):
    """Per-pixel-value log P(target), `(batch, h, w, c)`, in nats: Bernoulli on binary targets and
    `logits` `(batch, h, w, c)`, or categorical on integer levels and `logits` `(batch, h, w, c, 256)`."""
    if likelihood == "bernoulli":
        return distributions.bernoulli_log_prob_ops(logits, targets)
    log_probs = ops.log_softmax(logits, axis=-1)
    return ops.sum(log_probs * ops.one_hot(ops.cast(targets, "int32"), LEVELS), axis=-1)


def draw_pixel(likelihood, logits, uniforms):
    """One position's pixel values on the network's scale, from its logits `(n, c)` (Bernoulli) or
    `(n, c, 256)` (categorical), by inverting the conditional's CDF at `uniforms` `(n, c)`; the same
    uniforms give the same pixels, in the compiled loop and in Python's."""
    logits = ops.cast(logits, "float32")
    if likelihood == "bernoulli":
        return ops.where(ops.convert_to_tensor(uniforms) < ops.sigmoid(logits), 1.0, -1.0)
    cdf = ops.cumsum(ops.softmax(logits, axis=-1), axis=-1)
    below = ops.cast(cdf < ops.expand_dims(ops.convert_to_tensor(uniforms), -1) * cdf[..., -1:], "float32")
    levels = ops.minimum(ops.sum(below, axis=-1), LEVELS - 1.0)
    return levels / ((LEVELS - 1) / 2.0) - 1.0


class _Cache:
    """A plain holder, so that Keras does not track (and save) the compiled samplers it keeps."""

    def __init__(self):
        self.cache = {}


class CompiledSampler(keras.Model):
    """Every pixel of a batch in one compiled call: a loop over the h w pixels in raster order whose
    body runs `network` on the band of rows pixel (i, j) sees (`band_network`; the whole image when
    the band is), reads its logits at (i, j), draws the pixel from its uniform and writes it into the
    image. `predict_on_batch` compiles it (a `tf.function`, `jax.jit`; eager on PyTorch).

    Inputs: uniforms `(n, h, w, c)` in [0, 1) (and int labels `(n,)`). Output: images on the
    network's scale. Not saved: `PixelCNN` builds it from its network when sampling.
    """

    def __init__(self, network, likelihood, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.likelihood = likelihood
        self.rows = int(network.inputs[0].shape[1])

    def call(self, inputs):
        uniforms, labels = (inputs[0], inputs[1]) if isinstance(inputs, (list, tuple)) else (inputs, None)
        uniforms = ops.cast(uniforms, "float32")
        count = ops.shape(uniforms)[0]
        _, height, width, channels = uniforms.shape
        rows = self.rows

        def step(index, values):
            i, j = index // width, index % width
            top = ops.clip(i - (rows - 1), 0, height - rows)  # row i and the rows above it
            band = ops.slice(values, (0, top, 0, 0), (count, rows, width, channels))
            logits = self.network([band, labels] if labels is not None else band)
            tail = tuple(logits.shape[4:])  # () or (levels,)
            logits = ops.slice(logits, (0, i - top, j, 0) + (0,) * len(tail), (count, 1, 1, channels) + tail)
            uniform = ops.reshape(ops.slice(uniforms, (0, i, j, 0), (count, 1, 1, channels)), (count, channels))
            pixel = draw_pixel(self.likelihood, ops.reshape(logits, (count, channels) + tail), uniform)
            return ops.slice_update(values, (0, i, j, 0), ops.reshape(pixel, (count, 1, 1, channels)))

        return ops.fori_loop(0, height * width, step, ops.zeros_like(uniforms))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PixelCNN(ImageGenerativeModel):

    """An autoregressive image model (van den Oord et al., 2016): p(x) = prod_i p(x_i | x_<i) over the
    pixels in raster order, every conditional from one pass of a masked network; class-conditional
    when `num_classes` is given (the label enters every gated block).

    The likelihood is exact. The channels of one pixel are independent given the pixels before it.

    - `likelihood="bernoulli"`: pixels in {0, 1}. Every image (training, `log_likelihood`) is
      binarized at half the `pixel_range`, a pixel at or above the middle being 1, and samples are
      `low` or `high`.
    - `likelihood="categorical"`: a 256-way softmax per pixel value over 256 levels spread evenly over
      `pixel_range` (images are rounded to the nearest level), for 8-bit images; samples lie on the
      levels.

    `fit(images)` trains an unconditional model, `fit(images, labels)` a conditional one. Calling the
    model on images (or `[images, labels]`) gives the network's logits.

    Args:
        network: `pixelcnn_network`'s model: `[images in [-1, 1]` (and labels)`]` -> logits.
        likelihood: `"bernoulli"` or `"categorical"`.
        num_classes, pixel_range, seed: as for `ImageGenerativeModel`.
    """

    def __init__(self, network, likelihood="bernoulli", num_classes=None, pixel_range=(0.0, 1.0), seed=None, **kwargs):
        super().__init__(num_classes=num_classes, pixel_range=pixel_range, seed=seed, **kwargs)
        self.likelihood = check_choice(likelihood, LIKELIHOODS, "likelihood")
        expected_inputs = 2 if num_classes is not None else 1
        if len(network.inputs) != expected_inputs:
            raise ValueError(f"network takes {len(network.inputs)} input(s); a model with num_classes={num_classes!r} "
                             f"needs {expected_inputs}: images" + (" and labels." if num_classes else "."))
        image_shape = tuple(int(d) for d in network.inputs[0].shape[1:])
        expected_output = image_shape + ((LEVELS,) if likelihood == "categorical" else ())
        if tuple(network.outputs[0].shape[1:]) != expected_output:
            raise ValueError(f"a {likelihood} model needs network logits of shape (batch, {expected_output}); "
                             f"the network gives {tuple(network.outputs[0].shape)}.")
        self.network = network
        self._image_shape = image_shape
        self.nll_tracker = keras.metrics.Mean(name="bits_per_dimension")
        self._samplers = _Cache()
        shape = (None, *image_shape)
        self.build([shape, (None,)] if self.conditional else shape)

    def build(self, input_shape):
        pass  # the network arrives built

    # ---------------------------------------------------------------------------------------------
    # Structure

    @property
    def image_shape(self) -> tuple:
        return self._image_shape

    @property
    def receptive_radius(self) -> int:
        """Output row i of the network depends on input rows i - R to i only: R."""
        return receptive_radius(self.network)

    def export_targets(self) -> dict:
        """The network: `images` as the model sees them (`network_inputs`: binarized to {-1, 1} for a
        Bernoulli model, 256 levels scaled to [-1, 1] for a categorical one) and, conditional,
        int32 `labels` -> logits; sampling loops over it, one pixel at a time."""
        return {"network": self.network}

    def network_inputs(self, images):
        """Images from `pixel_range` to the network's input: {-1, 1} (Bernoulli) or the nearest of 256
        levels on [-1, 1] (categorical). Tensors or numpy."""
        if self.likelihood == "bernoulli":
            return 2.0 * distributions.binarize(images, self.pixel_range) - 1.0
        return distributions.to_unit_interval(images, self.pixel_range)

    def targets(self, images):
        """What the likelihood scores: bits {0, 1} (Bernoulli) or float levels 0..255 (categorical)."""
        if self.likelihood == "bernoulli":
            return distributions.binarize(images, self.pixel_range)
        return ops.round((self.network_inputs(images) + 1.0) * ((LEVELS - 1) / 2.0))

    def from_network_scale(self, values):
        """Network-scale values ([-1, 1]) as float32 numpy images in `pixel_range`."""
        low, high = self.pixel_range
        return (low + (np.asarray(values, np.float64) + 1.0) * ((high - low) / 2.0)).astype(np.float32)

    def _split(self, x, y=None):
        """`(images, labels)` from `x` = images or `[images, labels]`, and `y` = labels."""
        images, labels = (x[0], x[1]) if isinstance(x, (list, tuple)) else (x, y)
        if not self.conditional:
            return images, None
        if labels is None:
            raise ValueError(f"{self.name} is conditional on {self.num_classes} classes: call it on [images, labels].")
        return images, ops.cast(ops.reshape(labels, (-1,)), "int32")

    def call(self, inputs, training=False):
        """The network's logits for images (a conditional model: `[images, labels]`)."""
        if training and self.conditional and not isinstance(inputs, (list, tuple)):
            # Keras' trainers call the model on the images alone, the labels being `y`: the loss runs
            # the network itself, so this call has nothing to compute.
            return inputs
        images, labels = self._split(inputs)
        values = self.network_inputs(ops.cast(images, "float32"))
        return self.network([values, labels] if labels is not None else values, training=training)

    # ---------------------------------------------------------------------------------------------
    # Training

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The exact negative log-likelihood in nats per image, averaged over the batch; the tracker
        reports it in bits per dimension. A conditional model's labels are `y` (or `x[1]`)."""
        images, labels = self._split(x, y)
        if y_pred is None or (self.conditional and not isinstance(x, (list, tuple))):
            y_pred = self([images, labels] if labels is not None else images, training=training)
        log_probs = pixel_log_probs(self.likelihood, y_pred, self.targets(ops.cast(images, "float32")))
        nll = -ops.sum(ops.reshape(log_probs, (ops.shape(log_probs)[0], -1)), axis=-1)  # (batch,)
        self.nll_tracker.update_state(nll / (math.log(2.0) * float(np.prod(self.image_shape))))
        loss = ops.mean(nll)
        if self.losses:
            loss = loss + ops.sum(self.losses)
        return replica_share(loss)  # the whole batch's loss under tf.distribute

    # Evaluation calls the model with `training=False`, so a conditional model's labels travel with the
    # images as its input there.

    def _pack(self, x, y):
        return ([x, y], None) if self.conditional and y is not None else (x, y)

    def fit(self, x=None, y=None, **kwargs):
        """`fit(images)`, or `fit(images, labels)` for a conditional model; Keras' `fit` arguments
        (`validation_data=(images, labels)` too)."""
        validation = kwargs.get("validation_data")
        if isinstance(validation, (list, tuple)) and len(validation) == 2 and self.conditional:
            self.check_training_data(*validation)
            kwargs["validation_data"] = (self._pack(*validation)[0],)
        return super().fit(x, y, **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        """The mean negative log-likelihood (`loss`, nats per image) on `images` (and `labels`)."""
        self.check_training_data(x, y)
        return keras.Model.evaluate(self, *self._pack(x, y), **kwargs)

    # ---------------------------------------------------------------------------------------------
    # Exact likelihoods

    def logits(self, images, labels=None, batch_size=256):
        """The network's logits on `images` (and labels) as float32 numpy: `(n, h, w, c)` (Bernoulli)
        or `(n, h, w, c, 256)` (categorical)."""
        images, labels = self.checked_examples(images, labels)
        values = np.asarray(ops.convert_to_numpy(self.network_inputs(images)), np.float32)
        return self.run_network(self.network, [values, labels] if labels is not None else values,
                                check_count(batch_size, "batch_size"))

    def log_likelihood(self, images, labels=None, batch_size=256):
        """The exact log p(x) per example in nats: the sum over pixels of log p(x_i | x_<i). Bernoulli
        models score the binarized images, categorical ones the 256 levels.

        Returns:
            float64 numpy `(n,)`.
        """
        batch_size = check_count(batch_size, "batch_size")
        images, labels = self.checked_examples(images, labels)
        parts = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            chunk_labels = None if labels is None else labels[start : start + batch_size]
            logits = self([chunk, chunk_labels] if chunk_labels is not None else chunk, training=False)
            log_probs = pixel_log_probs(self.likelihood, logits, self.targets(ops.convert_to_tensor(chunk)))
            parts.append(np.asarray(ops.convert_to_numpy(log_probs), np.float64).reshape(len(chunk), -1).sum(axis=1))
        return np.concatenate(parts) if parts else np.zeros((0,))

    def bits_per_dimension(self, images, labels=None, batch_size=256):
        """`-log_likelihood` in bits per pixel value, float64 numpy `(n,)`."""
        return bits_per_dimension(-self.log_likelihood(images, labels, batch_size), self.image_shape)

    # ---------------------------------------------------------------------------------------------
    # Sampling

    def _sampler(self, method):
        """The compiled call that samples a batch: `[uniforms (, labels)]` -> images on the network's
        scale. Kept outside Keras' tracking: it is rebuilt on demand, never saved."""
        if method not in self._samplers.cache:
            if method == "fast":
                rows = min(self.receptive_radius + 1, self.image_shape[0])
                network = band_network(self.network, rows) if rows < self.image_shape[0] else self.network
                self._samplers.cache[method] = CompiledSampler(network, self.likelihood).predict_on_batch
            else:
                self._samplers.cache[method] = self.network.predict_on_batch
        return self._samplers.cache[method]

    def _sample_naive(self, uniforms, labels):
        """Python's loop over the pixels, the whole network run for each."""
        _, height, width, _ = uniforms.shape
        values = np.zeros(uniforms.shape, np.float32)
        predict = self._sampler("naive")
        for i in range(height):
            for j in range(width):
                logits = np.asarray(predict([values, labels] if labels is not None else values))[:, i, j]
                values[:, i, j] = ops.convert_to_numpy(draw_pixel(self.likelihood, logits, uniforms[:, i, j]))
        return values

    def _sample_batch(self, uniforms, labels, method):
        if method == "naive":
            return self._sample_naive(uniforms, labels)
        sample = self._sampler("fast")
        return np.asarray(sample([uniforms, labels] if labels is not None else uniforms), np.float32)

    def generate(self, num_samples, labels=None, seed=None, method="fast", batch_size=256):
        """Draws `num_samples` images pixel by pixel in raster order, as numpy scaled like the training
        data (`pixel_range`): `low` or `high` (Bernoulli), or on the 256 levels (categorical).

        Args:
            num_samples: how many images.
            labels: for a conditional model, one class per sample (or one for all); `None` cycles
                through the classes. Unconditional models take no labels.
            seed: seed of the uniform numbers behind every pixel (drawn up front, one per pixel value);
                the same seed gives the same images, whichever `method`.
            method: `"fast"`, one compiled loop over the pixels (`CompiledSampler`) that runs the
                network, per pixel, on the R + 1 rows that pixel can see (`receptive_radius`);
                `"naive"`, Python's loop of h w calls of the whole network.
            batch_size: images sampled together.
        """
        count = check_count(num_samples)
        check_choice(method, SAMPLING_METHODS, "method")
        batch_size = check_count(batch_size, "batch_size")
        labels = self.labels_for(labels, count)
        uniforms = np.random.default_rng(seed).random((count, *self.image_shape)).astype(np.float32)
        parts = []
        for start in range(0, count, batch_size):
            chunk_labels = None if labels is None else labels[start : start + batch_size]
            parts.append(self._sample_batch(uniforms[start : start + batch_size], chunk_labels, method))
        return self.from_network_scale(np.concatenate(parts))

    # ---------------------------------------------------------------------------------------------
    # Serialization

    def get_config(self):
        return {
            "name": self.name,
            "network": _serialize(self.network),
            "likelihood": self.likelihood,
            "num_classes": self.num_classes,
            "pixel_range": list(self.pixel_range),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = _deserialize(config["network"])
        return cls(**config)


# -- the registered builder ---------------------------------------------------------------------------

DESCRIPTION = "Gated PixelCNN: masked convolutions without a blind spot, exact likelihood, class-conditional"


def _check_odd(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise ValueError(f"{what} must be an odd positive integer; got {what}={value!r}.")


@register_model("pixelcnn", family="likelihood", description=DESCRIPTION)
def pixelcnn(image_shape=(8, 8, 1), num_classes=None, pixel_range=(0.0, 1.0), likelihood="bernoulli", filters=32,
             num_layers=5, kernel_size=3, first_kernel_size=7, hidden_units=64, seed=None, learning_rate=1e-3,
             optimizer=None, name=None, compile=True, jit_compile=None):
    """Builds pixelcnn: a gated PixelCNN (van den Oord et al., 2016) with vertical and horizontal
    stacks (no blind spot), class-conditional when `num_classes` is given, trained on the exact
    negative log-likelihood.

    Paper: van den Oord et al., 2016, Conditional Image Generation with PixelCNN Decoders.

    Args:
        image_shape: `(height, width, channels)`; the channels of a pixel are predicted together.
        num_classes: `None` (unconditional, default) or the number of classes of a conditional model.
        pixel_range: `(low, high)` of the training images; `generate` returns images in this range.
        likelihood: `"bernoulli"` (images binarized at half the range) or `"categorical"` (a 256-way
            softmax over 256 levels spread over `pixel_range`, for 8-bit images).
        filters: channels of both stacks.
        num_layers: gated blocks; the first one's kernel is `first_kernel_size`, the others'
            `kernel_size` (odd). Each output sees every pixel before it within
            R = first_kernel_size // 2 + (num_layers - 1) * (kernel_size // 2) rows above and columns
            on either side.
        hidden_units: width of the 1x1 output network.
        seed: seed of the training steps' draws.
        learning_rate, optimizer: Adam at `learning_rate`, or this optimizer.
        name: the model name (default "pixelcnn"); the network is `<name>_network`.
        compile: compile with the negative log-likelihood (`compute_loss`).
        jit_compile: XLA on/off; `None` for `keras_models.default_jit_compile("likelihood")`.

    Returns:
        A compiled `PixelCNN`, ready for `fit(images)` or, conditional, `fit(images, labels)`.
    """
    image_shape = check_shape(image_shape, "image_shape", rank=3)
    check_choice(likelihood, LIKELIHOODS, "likelihood")
    for arg, value in (("filters", filters), ("num_layers", num_layers), ("hidden_units", hidden_units)):
        check_count(value, arg)
    _check_odd(kernel_size, "kernel_size")
    _check_odd(first_kernel_size, "first_kernel_size")
    if first_kernel_size < 3:
        raise ValueError(f"first_kernel_size must be at least 3 to see the row above; "
                         f"got first_kernel_size={first_kernel_size!r}.")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 2):
        raise ValueError(f"num_classes must be an integer >= 2 or None; got num_classes={num_classes!r}.")
    name = name or "pixelcnn"
    network = pixelcnn_network(image_shape, num_classes, likelihood, filters, num_layers, kernel_size,
                               first_kernel_size, hidden_units, LEVELS, name=name + "_network")
    model = PixelCNN(network, likelihood=likelihood, num_classes=num_classes, pixel_range=pixel_range, seed=seed,
                     name=name)
    if compile:
        compile_model(model, optimizer=optimizer or optimizers.Adam(learning_rate), loss=None,
                      jit_compile=jit_compile, family="likelihood")
    return model
