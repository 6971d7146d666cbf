"""`VAE`: a variational autoencoder trained by `fit()` on its negative ELBO (or the IWAE bound).

One optimizer and a custom loss: the loss is `compute_loss`, which Keras' TensorFlow, JAX and PyTorch
trainers all call, so the model trains with plain `fit()` on every backend. The reparameterisation
noise comes from a `keras.random.SeedGenerator` inside the step; the encoder and decoder themselves
draw nothing, so the networks a device runs have no random ops.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from keras_models.checks import check_count
from keras_models.generative import ImageGenerativeModel
from keras_models.gradients import replica_share
from keras_models.likelihood import distributions

_PACKAGE = "keras_models"
OBJECTIVES = ("elbo", "iwae")


def _serialize(obj):
    return keras.saving.serialize_keras_object(obj)


def _deserialize(config):
    return keras.saving.deserialize_keras_object(config)


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class VAE(ImageGenerativeModel):
    """A variational autoencoder (Kingma & Welling, 2014); `beta` weighs the KL term (Higgins et al.,
    2017); `objective="iwae"` trains on the importance-weighted bound (Burda et al., 2016).

    `fit(images)` trains an unconditional model; a conditional one (`num_classes`) takes
    `fit(images, labels)`, and both networks see the label. Calling the model gives its deterministic
    reconstruction of `images` (or `[images, labels]`): the decoder's mean image at the posterior mean.

    With `likelihood="bernoulli"` pixels are modelled in {0, 1}: every image (training, `elbo`,
    `log_likelihood`) is binarized at half the `pixel_range`, a pixel at or above the middle being 1.

    Args:
        encoder: images (and labels) -> `[mean, log_variance]` of q(z | x), `(batch, latent_dim)` each.
        decoder: `z` (and labels) -> the likelihood's parameters (`networks.DECODER_OUTPUTS`).
        likelihood: `"bernoulli"`, `"gaussian"` (learned mean and scale per pixel) or
            `"logistic_mixture"` (discretized logistics over 256 levels spread over `pixel_range`).
        beta: the KL term's weight in the ELBO objective (1 is the ELBO itself).
        objective: `"elbo"` or `"iwae"`.
        num_samples: latent samples per image in a training step (k of the IWAE bound).
        latent_dim, num_classes, pixel_range, seed: as for `ImageGenerativeModel`.
    """

    def __init__(self, encoder, decoder, likelihood="bernoulli", beta=1.0, objective="elbo", num_samples=1,
                 latent_dim=None, num_classes=None, pixel_range=(0.0, 1.0), seed=None, **kwargs):
        latent_dim = int(encoder.outputs[0].shape[-1]) if latent_dim is None else latent_dim
        super().__init__(latent_dim=latent_dim, num_classes=num_classes, pixel_range=pixel_range, seed=seed, **kwargs)
        distributions.check_likelihood(likelihood)
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}; got objective={objective!r}.")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
            raise ValueError(f"beta must be a number >= 0; got beta={beta!r}.")
        check_count(num_samples, "num_samples")
        if objective == "iwae" and beta != 1.0:
            raise ValueError(f"the IWAE bound has no KL weight; got beta={beta!r} with objective='iwae'.")
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.beta = float(beta)
        self.objective = objective
        self.num_samples = int(num_samples)
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        # Built on the shapes it is called on, so that Keras (and export) know the model's inputs.
        image_shape = (None, *self.image_shape)
        self.build([image_shape, (None,)] if self.conditional else image_shape)

    def build(self, input_shape):
        pass  # the encoder and decoder arrive built
    # ---------------------------------------------------------------------------------------------
    # Structure

    @property
    def image_shape(self) -> tuple:
        return tuple(self.encoder.inputs[0].shape[1:])

    def export_targets(self) -> dict:
        """The encoder (images -> posterior mean and log-variance) and the decoder (z -> likelihood
        parameters); the noise of `z = mean + exp(log_variance / 2) * noise` is the caller's. A
        Bernoulli model's encoder is trained on binarized images (`model_images`): binarize at half
        the range before calling the exported encoder."""
        return {"encoder": self.encoder, "decoder": self.decoder}

    def _split(self, x, y=None):
        """`(images, labels)` from `x` = images or `[images, labels]`, and `y` = labels."""
        if isinstance(x, (list, tuple)):
            images, labels = x
        else:
            images, labels = x, y
        if not self.conditional:
            return images, None
        if labels is None:
            raise ValueError(f"{self.name} is conditional on {self.num_classes} classes: call it on [images, labels].")
        return images, ops.cast(ops.reshape(labels, (-1,)), "int32")

    def _with_labels(self, tensor, labels):
        return [tensor, labels] if labels is not None else tensor

    def model_images(self, images):
        """The images as the model sees them: binarized to {low, high} for a Bernoulli likelihood (the
        encoder too sees the binary image whose probability the model gives), else unchanged."""
        if self.likelihood != "bernoulli":
            return images
        low, high = self.pixel_range
        return low + distributions.binarize(images, self.pixel_range) * (high - low)

    def posterior(self, images, labels=None, training=False):
        """`(mean, log_variance)` of q(z | x) as tensors (Bernoulli models binarize `images` first)."""
        images = ops.convert_to_tensor(self.model_images(images))
        labels = None if labels is None else ops.convert_to_tensor(labels)
        mean, log_variance = self.encoder(self._with_labels(images, labels), training=training)
        return mean, log_variance

    def decode(self, z, labels=None, training=False):
        """The likelihood's parameters for latents `z` as a list of tensors."""
        return _as_list(self.decoder(self._with_labels(z, labels), training=training))

    def call(self, inputs, training=False):
        images, labels = self._split(inputs)
        mean, _ = self.posterior(images, labels, training=training)
        params = self.decode(mean, labels, training=training)
        low, high = self.pixel_range
        if self.likelihood == "bernoulli":
            unit = ops.sigmoid(params[0])
        elif self.likelihood == "gaussian":
            return ops.clip(params[0], low, high)
        else:
            logits, loc, _ = params
            unit = (ops.clip(ops.sum(ops.softmax(logits, axis=-1) * loc, axis=-1), -1.0, 1.0) + 1.0) / 2.0
        return low + unit * (high - low)

    # ---------------------------------------------------------------------------------------------
    # The bounds

    def log_weights(self, images, labels, noise, training=False):
        """The terms of the bounds for `noise` `(batch, k, latent_dim)` of standard normal draws.

        Returns:
            `(log_px_z, log_pz, log_qz, kl)`: log p(x | z_i), log p(z_i), log q(z_i | x) `(batch, k)`
            and the analytic KL(q(z | x) || p(z)) `(batch,)`, in nats.
        """
        mean, log_variance = self.posterior(images, labels, training=training)
        z = ops.expand_dims(mean, 1) + ops.expand_dims(ops.exp(0.5 * log_variance), 1) * noise  # (batch, k, d)
        batch, count = ops.shape(noise)[0], ops.shape(noise)[1]
        flat_z = ops.reshape(z, (-1, self.latent_dim))  # (batch * k, d)
        flat_labels = None if labels is None else ops.reshape(ops.repeat(ops.expand_dims(labels, 1), count, axis=1), (-1,))
        params = self.decode(flat_z, flat_labels, training=training)
        targets = distributions.pixel_targets(self.likelihood, images, self.pixel_range)
        targets = ops.reshape(ops.repeat(ops.expand_dims(targets, 1), count, axis=1), (-1, *self.image_shape))
        log_px_z = ops.reshape(distributions.image_log_prob(self.likelihood, params, targets), (batch, count))
        log_qz, log_pz = distributions.latent_log_probs(z, ops.expand_dims(mean, 1), ops.expand_dims(log_variance, 1))
        kl = distributions.kl_to_standard_normal(mean, log_variance)
        return log_px_z, log_pz, log_qz, kl

    @staticmethod
    def importance_weighted_bound(log_px_z, log_pz, log_qz):
        """log (1/k) sum_i p(x, z_i) / q(z_i | x): `(batch,)`."""
        count = ops.cast(ops.shape(log_px_z)[1], "float32")
        return ops.logsumexp(log_px_z + log_pz - log_qz, axis=1) - ops.log(count)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The negative ELBO (with `beta`) or the negative IWAE bound, averaged over the batch, in nats."""
        images, labels = self._split(x, y)
        batch = ops.shape(images)[0]
        noise = keras.random.normal((batch, self.num_samples, self.latent_dim), seed=self.seed_generator)
        log_px_z, log_pz, log_qz, kl = self.log_weights(images, labels, noise, training=training)
        reconstruction = -ops.mean(log_px_z, axis=1)  # (batch,)
        if self.objective == "iwae":
            loss = -ops.mean(self.importance_weighted_bound(log_px_z, log_pz, log_qz))
        else:
            loss = ops.mean(reconstruction + self.beta * kl)
        # per example, so the epoch means weigh examples as Keras' own loss tracker does
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        if self.losses:
            loss = loss + ops.sum(self.losses)
        return replica_share(loss)  # the whole batch's loss under tf.distribute

    # ---------------------------------------------------------------------------------------------
    # Training data: a conditional model's labels are inputs of both networks, so they travel with the
    # images as the model's input rather than as targets (Keras' trainers call the model on x alone).

    def _pack(self, x, y):
        if self.conditional and y is not None:
            return [x, y], None
        return x, y

    def fit(self, x=None, y=None, **kwargs):
        """`fit(images)`, or `fit(images, labels)` for a conditional model; Keras' `fit` arguments."""
        self.check_training_data(x, y)
        validation = kwargs.get("validation_data")
        if isinstance(validation, (list, tuple)) and len(validation) == 2 and self.conditional:
            self.check_training_data(*validation)
            kwargs["validation_data"] = (self._pack(*validation)[0],)
        return keras.Model.fit(self, *self._pack(x, y), **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        """The mean negative ELBO (`loss`) and its terms on `images` (and `labels`)."""
        self.check_training_data(x, y)
        return keras.Model.evaluate(self, *self._pack(x, y), **kwargs)

    # ---------------------------------------------------------------------------------------------
    # Likelihoods per example, in nats

    def _per_example(self, images, labels, num_samples, seed, batch_size, reduce):
        num_samples = check_count(num_samples, "num_samples")
        batch_size = check_count(batch_size, "batch_size")
        images, labels = self.checked_examples(images, labels)
        rng = np.random.default_rng(seed)
        parts = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            chunk_labels = None if labels is None else labels[start : start + batch_size]
            noise = rng.standard_normal((len(chunk), num_samples, self.latent_dim)).astype(np.float32)
            tensors = [None if a is None else ops.convert_to_tensor(a) for a in (chunk, chunk_labels, noise)]
            terms = [ops.stop_gradient(term) for term in self.log_weights(*tensors)]
            parts.append(keras.ops.convert_to_numpy(reduce(*terms)))
        return np.concatenate(parts).astype(np.float64)

    def elbo(self, images, labels=None, num_samples=1, seed=None, batch_size=256):
        """The evidence lower bound per example, in nats: E_q[log p(x | z)] - KL(q(z | x) || p(z)),
        the expectation estimated with `num_samples` draws and the KL exact. Bernoulli models bound
        the probability of the binarized images, the logistic mixture that of the 8-bit levels.

        Returns:
            float64 numpy `(n,)`.
        """
        return self._per_example(images, labels, num_samples, seed, batch_size,
                                 lambda log_px_z, log_pz, log_qz, kl: ops.mean(log_px_z, axis=1) - kl)

    def log_likelihood(self, images, labels=None, num_samples=100, seed=None, batch_size=64):
        """The importance-weighted lower bound on log p(x) per example, in nats (Burda et al., 2016):
        log (1/k) sum_i p(x, z_i) / q(z_i | x) with `k = num_samples` draws from q. Its expectation is
        at most log p(x), at least the ELBO, and does not decrease as k grows.

        Returns:
            float64 numpy `(n,)`.
        """
        return self._per_example(images, labels, num_samples, seed, batch_size,
                                 lambda log_px_z, log_pz, log_qz, kl: self.importance_weighted_bound(log_px_z, log_pz, log_qz))

    # ---------------------------------------------------------------------------------------------
    # Sampling

    def _images_from(self, params, pixels, seed):
        params = [np.asarray(p) for p in params]
        if pixels == "mean":
            return distributions.image_mean(self.likelihood, params, self.pixel_range)
        return distributions.image_sample(self.likelihood, params, self.pixel_range, np.random.default_rng(seed))

    def _decoder_outputs(self, latents, labels, batch_size=256):
        """The decoder's outputs on numpy latents (and labels), in batches, as a list of numpy arrays."""
        parts = []
        for start in range(0, len(latents), batch_size):
            chunk_labels = None if labels is None else labels[start : start + batch_size]
            outputs = self.decode(latents[start : start + batch_size], chunk_labels)
            parts.append([keras.ops.convert_to_numpy(o) for o in outputs])
        return [np.concatenate(part) for part in zip(*parts)]

    def generate_from_latents(self, latents, labels=None, pixels="mean", seed=None):
        """Images for latents `(n, latent_dim)` (and labels of a conditional model), in `pixel_range`.

        Args:
            pixels: `"mean"`, the decoder's expected image, or `"sample"`, pixels drawn from the
                likelihood (binary images for Bernoulli, 256 levels for the logistic mixture).
            seed: seed of the pixel draws.
        """
        if pixels not in ("mean", "sample"):
            raise ValueError(f"pixels must be 'mean' or 'sample'; got pixels={pixels!r}.")
        latents = np.asarray(latents, np.float32)
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"latents must have shape (n, {self.latent_dim}); got {latents.shape}.")
        if not np.all(np.isfinite(latents)):
            raise ValueError("latents contain NaN or infinity.")
        labels = self.labels_for(labels, len(latents))
        outputs = self._decoder_outputs(latents, labels)
        return self._images_from(outputs, pixels, seed)

    def generate(self, num_samples, labels=None, seed=None, pixels="mean"):
        """Draws `num_samples` images as numpy, scaled like the training data (`pixel_range`).

        Args:
            num_samples: how many images.
            labels: for a conditional model, one class per sample (or one for all); `None` cycles
                through the classes. Unconditional models take no labels.
            seed: seed of the latent (and pixel) draws; the same seed gives the same images.
            pixels: `"mean"` or `"sample"` (see `generate_from_latents`).
        """
        return self.generate_from_latents(self.sample_latents(num_samples, seed), labels, pixels, seed)

    def reconstruct(self, images, labels=None):
        """The decoder's mean image at the posterior mean of each image, numpy in `pixel_range`."""
        images, labels = self.checked_examples(images, labels)
        return self.run_network(self, [images, labels] if labels is not None else images)

    def encode(self, images, labels=None):
        """`(mean, log_variance)` of q(z | x) per image, numpy `(n, latent_dim)` each."""
        images, labels = self.checked_examples(images, labels)
        return tuple(keras.ops.convert_to_numpy(o) for o in self.posterior(images, labels))

    def traverse(self, dimension, values=None, start=None, labels=None, seed=None):
        """Images along one latent axis: `start` with coordinate `dimension` set to each of `values`
        (default seven values from -3 to 3), the others fixed (Higgins et al., 2017).

        Returns:
            `(images, latents)`: `(len(values), *image_shape)` and `(len(values), latent_dim)`.
        """
        if isinstance(dimension, bool) or not isinstance(dimension, (int, np.integer)) or not 0 <= dimension < self.latent_dim:
            raise ValueError(f"dimension must be an integer in [0, {self.latent_dim}); got dimension={dimension!r}.")
        values = np.linspace(-3.0, 3.0, 7) if values is None else np.asarray(values, np.float32).reshape(-1)
        start = self.sample_latents(1, seed)[0] if start is None else np.asarray(start, np.float32)
        if start.shape != (self.latent_dim,):
            raise ValueError(f"start must have shape ({self.latent_dim},); got {start.shape}.")
        latents = np.repeat(start[None], len(values), axis=0).astype(np.float32)
        latents[:, dimension] = values
        if self.num_classes is not None:
            labels = np.full((len(values),), 0 if labels is None else labels)
        return self.generate_from_latents(latents, labels), latents

    # ---------------------------------------------------------------------------------------------
    # Serialization

    def get_config(self):
        return {
            "name": self.name,
            "encoder": _serialize(self.encoder),
            "decoder": _serialize(self.decoder),
            "likelihood": self.likelihood,
            "beta": self.beta,
            "objective": self.objective,
            "num_samples": self.num_samples,
            "latent_dim": self.latent_dim,
            "num_classes": self.num_classes,
            "pixel_range": list(self.pixel_range),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = _deserialize(config["encoder"])
        config["decoder"] = _deserialize(config["decoder"])
        return cls(**config)


def bits_per_dimension(nats, image_shape):
    """Nats per image as bits per pixel value."""
    return np.asarray(nats) / (math.log(2.0) * float(np.prod(image_shape)))
