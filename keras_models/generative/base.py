"""`ImageGenerativeModel`: what every model of image distributions shares, whatever trains it.

GANs (adversarial `train_step`), and the VAEs, diffusion models and PixelCNNs to come (a likelihood in
`compute_loss`), all take images scaled to a `pixel_range`, optionally a class label per image, and
sample with one signature: `generate(num_samples, labels=None, seed=None, ...)` returning numpy images
scaled like the training data. Sequence models generate from token ids instead and do not derive from
this class.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_models.checks import as_array, check_count, check_images, check_labels
from keras_models.generative.latent import slerp


class ImageGenerativeModel(keras.Model):
    """Base class of the image generative models.

    Args:
        latent_dim: the size of the latent vector of a latent-variable model; `None` for models
            without one (image translation, PixelCNN).
        num_classes: the number of labels of a conditional model; `None` for an unconditional one.
        pixel_range: `(low, high)` of the training images; `generate` returns images in this range.
        seed: seed of the random numbers drawn inside training steps.

    Subclasses give `image_shape`, `generate`, the networks to deploy (`export_targets`) and, for
    latent-variable models, `generate_from_latents`.
    """

    conditional_training = True  # whether labels given to fit() condition the model

    def __init__(self, latent_dim=None, num_classes=None, pixel_range=(0.0, 1.0), seed=None, **kwargs):
        super().__init__(**kwargs)
        if latent_dim is not None and (isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1):
            raise ValueError(f"latent_dim must be a positive integer; got latent_dim={latent_dim!r}.")
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2):
            raise ValueError(f"num_classes must be an integer >= 2 or None; got num_classes={num_classes!r}.")
        pixel_range = tuple(float(v) for v in pixel_range)
        if len(pixel_range) != 2 or not pixel_range[0] < pixel_range[1]:
            raise ValueError(f"pixel_range must be (low, high) with low < high; got pixel_range={pixel_range!r}.")
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.pixel_range = pixel_range
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    # ---------------------------------------------------------------------------------------------
    # Structure

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None and self.conditional_training

    @property
    def image_shape(self) -> tuple:
        raise NotImplementedError(f"{type(self).__name__} must define image_shape.")

    def export_targets(self) -> dict:
        """The networks a device needs, by name: what `export` writes and `check_model` verifies."""
        raise NotImplementedError(f"{type(self).__name__} must define export_targets().")

    # ---------------------------------------------------------------------------------------------
    # Training data

    def fit(self, x=None, y=None, **kwargs):
        """`keras.Model.fit` after checking the data: `fit(images)` or, for a conditional model,
        `fit(images, labels)`."""
        self.check_training_data(x, y)
        return super().fit(x, y, **kwargs)

    def check_training_data(self, x, y):
        if x is None:
            raise ValueError("fit() needs training images as x.")
        check_images(x, self.image_shape, self.pixel_range)
        if self.conditional:
            array = as_array(x)
            if y is None and array is not None:
                raise ValueError(f"{self.name} is conditional on {self.num_classes} classes: call fit(images, labels).")
            if y is not None and as_array(y) is not None:
                check_labels(as_array(y), self.num_classes, len(array) if array is not None else None)
        elif y is not None and as_array(y) is not None:
            raise ValueError(f"{self.name} is unconditional: call fit(images) without labels.")

    def checked_examples(self, images, labels, what="images", missing_labels=None):
        """`images` as float32 numpy and `labels` as int32 `(n,)` (or `None`), checked against the
        model: shape and `pixel_range`, labels only for a conditional model and then one per image.

        A conditional model given no labels raises, unless `missing_labels` (a label) stands in for them.
        """
        images = np.asarray(images)
        check_images(images, self.image_shape, self.pixel_range, what)
        images = images.astype(np.float32)
        if self.num_classes is None:
            if labels is not None:
                raise ValueError(f"{self.name} is unconditional; call it without labels.")
            return images, None
        if labels is None:
            if missing_labels is None:
                raise ValueError(f"{self.name} is conditional on {self.num_classes} classes: pass labels.")
            return images, np.full((len(images),), missing_labels, np.int32)
        return images, check_labels(labels, self.num_classes, len(images))

    def unpack_images(self, data):
        """`(images, labels)` of a training batch; labels are int32 `(batch,)` or `None`."""
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels = keras.ops.cast(keras.ops.reshape(y, (-1,)), "int32") if (self.conditional and y is not None) else None
        return x, labels

    def update_trackers(self, **values):
        """Updates the trackers (`self.metrics`) named in `values`; returns every tracker's result."""
        for tracker in self.metrics:
            if tracker.name in values:
                tracker.update_state(values[tracker.name])
        return {tracker.name: tracker.result() for tracker in self.metrics}

    # ---------------------------------------------------------------------------------------------
    # Sampling

    def sample_latent(self, batch):
        """Standard normal latents `(batch, latent_dim)` inside a training step (stateless seeds)."""
        return keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)

    def sample_latents(self, num_samples, seed=None):
        """`num_samples` latent vectors from the standard normal prior, as float32 numpy."""
        if self.latent_dim is None:
            raise ValueError(f"{self.name} has no latent space.")
        rng = np.random.default_rng(seed)
        return rng.standard_normal((check_count(num_samples), self.latent_dim)).astype(np.float32)

    def labels_for(self, labels, count):
        """The labels of `count` samples: `None` for an unconditional model, every class in turn when
        `labels` is `None`, one label repeated, or the checked vector."""
        if self.num_classes is None:
            if labels is not None:
                raise ValueError(f"{self.name} is unconditional; call generate() without labels.")
            return None
        if labels is None:
            return (np.arange(count) % self.num_classes).astype(np.int32)
        if np.ndim(labels) == 0:
            labels = np.full((count,), labels)
        return check_labels(labels, self.num_classes, count)

    @staticmethod
    def run_network(network, inputs, batch_size=256):
        """`network`'s inference outputs on `inputs` (an array or a list of arrays), in batches, as numpy."""
        arrays = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        parts = []
        for start in range(0, len(arrays[0]), batch_size):
            chunk = [a[start : start + batch_size] for a in arrays]
            outputs = network(chunk if isinstance(inputs, (list, tuple)) else chunk[0], training=False)
            parts.append(keras.ops.convert_to_numpy(outputs))
        return np.concatenate(parts, axis=0)

    def generate(self, num_samples, labels=None, seed=None):
        """Draws `num_samples` images as numpy, scaled like the training data (`pixel_range`)."""
        raise NotImplementedError(f"{type(self).__name__} must define generate().")

    def generate_from_latents(self, latents, labels=None):
        """Images for the given latent vectors `(n, latent_dim)` (and labels of a conditional model)."""
        raise NotImplementedError(f"{self.name} has no latent space to generate from.")

    def interpolate(self, num_steps=8, start=None, end=None, labels=None, seed=None, method="slerp"):
        """Images along a path in latent space from `start` to `end` (drawn from `seed` when `None`).

        Args:
            num_steps: images on the path, both ends included.
            start, end: latent vectors `(latent_dim,)`.
            labels: for a conditional model, the class of every image (one int), `None` for class 0.
            seed: seed of the end points not given.
            method: `"slerp"` (spherical, for Gaussian latents) or `"linear"`.

        Returns:
            `(images, latents)`: `(num_steps, *image_shape)` and `(num_steps, latent_dim)`.
        """
        if method not in ("slerp", "linear"):
            raise ValueError(f"method must be 'slerp' or 'linear'; got method={method!r}.")
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
            raise ValueError(f"num_steps must be an integer >= 2; got num_steps={num_steps!r}.")
        drawn = self.sample_latents(2, seed)
        start = drawn[0] if start is None else np.asarray(start, np.float32)
        end = drawn[1] if end is None else np.asarray(end, np.float32)
        for arg, value in (("start", start), ("end", end)):
            if value.shape != (self.latent_dim,):
                raise ValueError(f"{arg} must have shape ({self.latent_dim},); got {value.shape}.")
        fractions = np.linspace(0.0, 1.0, num_steps)
        if method == "slerp":
            latents = slerp(start, end, fractions)
        else:
            latents = (1.0 - fractions[:, None]) * start + fractions[:, None] * end
        latents = latents.astype(np.float32)
        if self.num_classes is not None:
            labels = np.full((num_steps,), 0 if labels is None else labels)
        return self.generate_from_latents(latents, labels), latents

    # ---------------------------------------------------------------------------------------------
    # The seed state is kept with the weights, so a run resumed from a checkpoint draws the same random
    # numbers it would have drawn without the interruption.

    _SEED_KEY = "seed_generator_state"

    def save_own_variables(self, store):
        super().save_own_variables(store)
        store[self._SEED_KEY] = keras.ops.convert_to_numpy(self.seed_generator.state)

    def load_own_variables(self, store):
        keys = list(store.keys())
        if self._SEED_KEY in keys:
            self.seed_generator.state.assign(np.asarray(store[self._SEED_KEY]))
            store = {key: store[key] for key in keys if key != self._SEED_KEY}
        super().load_own_variables(store)
