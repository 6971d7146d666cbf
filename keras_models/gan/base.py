"""The `GAN` model: a generator and a discriminator trained against each other inside `train_step`.

Users call plain `fit()`; each step runs `n_critic` discriminator (critic) updates and one generator
update with two optimizers, on the XLA-compiled step Keras builds. All randomness inside the step comes
from a `keras.random.SeedGenerator`, so steps are stateless functions of the seed state.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_models.gan import losses
from keras_models.training import XLACompileError, default_jit_compile, layers_without_xla

_PACKAGE = "keras_models"


def _serialize(obj):
    return None if obj is None else keras.saving.serialize_keras_object(obj)


def _deserialize(config):
    return None if config is None else keras.saving.deserialize_keras_object(config)


def _as_array(data, what):
    if isinstance(data, np.ndarray):
        return data
    if hasattr(data, "numpy") and hasattr(data, "shape"):
        return np.asarray(data)
    return None  # datasets and generators are checked by Keras itself


def check_images(images, image_shape, pixel_range, what="images"):
    """Raises `ValueError` naming the problem when `images` do not fit a model built for `image_shape`
    and `pixel_range`: wrong rank or shape, non-float dtype, NaN or infinity, values out of range."""
    array = _as_array(images, what)
    if array is None:
        return
    if array.ndim != len(image_shape) + 1 or tuple(array.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"{what} must have shape (batch, {', '.join(map(str, image_shape))}); got {array.shape}."
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{what} must be floating point scaled to {tuple(pixel_range)}; got dtype {array.dtype}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contain NaN or infinity.")
    low, high = pixel_range
    margin = 1e-3 * (high - low)
    if array.size and (array.min() < low - margin or array.max() > high + margin):
        raise ValueError(
            f"{what} range over [{array.min():.4g}, {array.max():.4g}] but the model was built for "
            f"pixel_range={tuple(pixel_range)}; rescale them or build with a matching pixel_range."
        )


def check_labels(labels, num_classes, count=None, what="labels"):
    """Returns `labels` as an int32 vector, or raises `ValueError` on bad shapes, types or values."""
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{what} must be a vector of class indices; got shape {array.shape}.")
    if count is not None and len(array) != count:
        raise ValueError(f"{what} must hold {count} entries, one per sample; got {len(array)}.")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError(f"{what} must be integer class indices; got dtype {array.dtype}.")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(
            f"{what} must lie in [0, {num_classes}); got values from {array.min()} to {array.max()}."
        )
    return array.astype(np.int32)


def _check_count(num_samples):
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer; got num_samples={num_samples!r}.")
    return int(num_samples)


def slerp(start, end, fractions):
    """Spherical interpolation between latent vectors `start` and `end` `(d,)` at `fractions` `(n,)`;
    the path Gaussian latents should follow (White, 2016, "Sampling Generative Networks")."""
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    cosine = np.dot(start, end) / (np.linalg.norm(start) * np.linalg.norm(end))
    omega = np.arccos(np.clip(cosine, -1.0, 1.0))
    fractions = np.asarray(fractions, np.float64)[:, None]
    if np.sin(omega) < 1e-6:
        return (1.0 - fractions) * start + fractions * end
    return (np.sin((1.0 - fractions) * omega) * start + np.sin(fractions * omega) * end) / np.sin(omega)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GAN(keras.Model):
    """A generative adversarial network trained by `fit()` (Goodfellow et al., 2014).

    `fit(images)` trains an unconditional model, `fit(images, labels)` a class-conditional one (built
    with `num_classes`): the generator takes `[z, labels]` and the discriminator `[images, labels]`.
    Calling the model runs the generator.

    Args:
        generator: maps `z` `(batch, latent_dim)` (and labels) to images in `pixel_range`.
        discriminator: maps images (and labels) to raw scores `(batch, ...)`.
        latent_dim: the size of `z`.
        num_classes: the number of labels of a conditional model; `None` for an unconditional one.
        loss: one of `keras_models.gan.losses.LOSSES`.
        n_critic: discriminator updates per generator update (5 for WGAN).
        clip_value: clip the critic's weights to `[-clip_value, clip_value]` after each update (WGAN).
        gradient_penalty_weight: weight of WGAN-GP's gradient penalty (10 in the paper); 0 for none.
        r1_weight: weight gamma of the R1 penalty on real data; 0 for none.
        label_smoothing: one-sided label smoothing of real targets.
        instance_noise: standard deviation of Gaussian noise added to every discriminator input
            (Sonderby et al., 2017), annealed linearly to 0 over `instance_noise_steps` generator steps
            (0: constant).
        instance_noise_steps: see `instance_noise`.
        pixel_range: `(low, high)` of the training images; `generate` returns images in this range.
        seed: seed of the step's random numbers.
    """

    conditional_training = True  # whether labels given to fit() condition both networks

    def __init__(
        self,
        generator,
        discriminator,
        latent_dim=None,
        num_classes=None,
        loss="non_saturating",
        n_critic=1,
        clip_value=None,
        gradient_penalty_weight=0.0,
        r1_weight=0.0,
        label_smoothing=0.0,
        instance_noise=0.0,
        instance_noise_steps=0,
        pixel_range=(0.0, 1.0),
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        losses.check_loss(loss)
        if latent_dim is not None and (not isinstance(latent_dim, int) or latent_dim < 1):
            raise ValueError(f"latent_dim must be a positive integer; got latent_dim={latent_dim!r}.")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
            raise ValueError(f"num_classes must be an integer >= 2 or None; got num_classes={num_classes!r}.")
        if not isinstance(n_critic, int) or n_critic < 1:
            raise ValueError(f"n_critic must be a positive integer; got n_critic={n_critic!r}.")
        if clip_value is not None and not clip_value > 0:
            raise ValueError(f"clip_value must be positive or None; got clip_value={clip_value!r}.")
        for arg, value in (
            ("gradient_penalty_weight", gradient_penalty_weight),
            ("r1_weight", r1_weight),
            ("instance_noise", instance_noise),
        ):
            if not value >= 0:
                raise ValueError(f"{arg} must be >= 0; got {arg}={value!r}.")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1); got label_smoothing={label_smoothing!r}.")
        if not isinstance(instance_noise_steps, int) or instance_noise_steps < 0:
            raise ValueError(f"instance_noise_steps must be an integer >= 0; got {instance_noise_steps!r}.")
        pixel_range = tuple(float(v) for v in pixel_range)
        if len(pixel_range) != 2 or not pixel_range[0] < pixel_range[1]:
            raise ValueError(f"pixel_range must be (low, high) with low < high; got pixel_range={pixel_range!r}.")
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.loss_name = loss
        self.n_critic = n_critic
        self.clip_value = clip_value
        self.gradient_penalty_weight = float(gradient_penalty_weight)
        self.r1_weight = float(r1_weight)
        self.label_smoothing = float(label_smoothing)
        self.instance_noise = float(instance_noise)
        self.instance_noise_steps = instance_noise_steps
        self.pixel_range = pixel_range
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_accuracy_tracker = keras.metrics.Mean(name="d_accuracy")
        self.penalty_tracker = keras.metrics.Mean(name="penalty")
        self.d_optimizer = None
        self.g_optimizer = None
        self.built = True

    # ---------------------------------------------------------------------------------------------
    # Structure

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None and self.conditional_training

    @property
    def image_shape(self) -> tuple:
        return tuple(self.generator.output_shape[1:])

    @property
    def metrics(self):
        trackers = [self.d_loss_tracker, self.g_loss_tracker, self.d_accuracy_tracker]
        if self.gradient_penalty_weight or self.r1_weight:
            trackers.append(self.penalty_tracker)
        return trackers

    def generator_variables(self):
        return self.generator.trainable_variables

    def discriminator_variables(self):
        return self.discriminator.trainable_variables

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    # ---------------------------------------------------------------------------------------------
    # Compiling

    def compile(self, d_optimizer=None, g_optimizer=None, *, jit_compile=None, run_eagerly=False, steps_per_execution=1):
        """Sets the two optimizers and the XLA policy.

        Args:
            d_optimizer: the discriminator's optimizer (instance, name or config); Adam(2e-4,
                beta_1=0.5) by default (Radford et al., 2016). Different learning rates for the two
                networks are the two time-scale update rule (TTUR; Heusel et al., 2017).
            g_optimizer: the generator's optimizer; the same default.
            jit_compile: `True`/`False` to force XLA on or off; `None` for
                `keras_models.default_jit_compile("gan")`.
            run_eagerly, steps_per_execution: as for `keras.Model.compile`.

        Raises:
            XLACompileError: XLA was asked for explicitly and Keras would run without it.
        """
        if jit_compile not in (None, True, False):
            raise ValueError(f"jit_compile must be True, False or None; got jit_compile={jit_compile!r}.")
        if run_eagerly and jit_compile:
            raise ValueError("jit_compile=True cannot be combined with run_eagerly=True.")
        d_optimizer = self._optimizer(d_optimizer, "d_optimizer")
        g_optimizer = self._optimizer(g_optimizer, "g_optimizer")
        if d_optimizer is g_optimizer:
            raise ValueError("d_optimizer and g_optimizer must be two optimizer instances; got the same one twice.")
        requested = default_jit_compile("gan") if jit_compile is None else jit_compile
        if run_eagerly:
            requested = False
        blocking = layers_without_xla(self) if requested else []
        if blocking:
            if jit_compile:
                raise XLACompileError(f"jit_compile=True was requested but these layers do not support XLA: {blocking}.")
            requested = False
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        # Create the slot variables now, so that checkpoints restore both optimizers' state on load.
        d_optimizer.build(self.discriminator_variables())
        g_optimizer.build(self.generator_variables())
        super().compile(
            optimizer=g_optimizer, jit_compile=requested, run_eagerly=run_eagerly, steps_per_execution=steps_per_execution
        )
        if bool(self.jit_compile) != requested:
            raise XLACompileError(f"Keras changed jit_compile from {requested} to {self.jit_compile} for {self.name!r}.")

    @staticmethod
    def _optimizer(value, arg):
        if value is None:
            return keras.optimizers.Adam(learning_rate=2e-4, beta_1=0.5)
        try:
            optimizer = keras.optimizers.get(value)
        except ValueError as error:
            raise ValueError(f"{arg}={value!r} is not an optimizer: {error}") from error
        if optimizer.built:
            raise ValueError(f"{arg} has already been used by another model; pass a fresh optimizer.")
        return optimizer

    def get_compile_config(self):
        if not self.compiled:
            return {}
        return {
            "d_optimizer": _serialize(self.d_optimizer),
            "g_optimizer": _serialize(self.g_optimizer),
            "jit_compile": bool(self.jit_compile),
        }

    def compile_from_config(self, config):
        self.compile(
            d_optimizer=_deserialize(config["d_optimizer"]),
            g_optimizer=_deserialize(config["g_optimizer"]),
            jit_compile=config.get("jit_compile"),
        )

    # ---------------------------------------------------------------------------------------------
    # Training

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
            array = _as_array(x, "images")
            if y is None and array is not None:
                raise ValueError(f"{self.name} is conditional on {self.num_classes} classes: call fit(images, labels).")
            if y is not None and _as_array(y, "labels") is not None:
                check_labels(_as_array(y, "labels"), self.num_classes, len(array) if array is not None else None)
        elif y is not None and _as_array(y, "labels") is not None:
            raise ValueError(f"{self.name} is unconditional: call fit(images) without labels.")

    def _unpack(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels = ops.cast(ops.reshape(y, (-1,)), "int32") if (self.conditional and y is not None) else None
        return x, labels

    def sample_latent(self, batch):
        return keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)

    def generator_inputs(self, z, labels):
        return [z, labels] if self.conditional else z

    def discriminate(self, images, labels, training=True):
        return self.discriminator([images, labels] if self.conditional else images, training=training)

    def _with_instance_noise(self, images):
        if not self.instance_noise:
            return images
        std = self.instance_noise
        if self.instance_noise_steps:
            progress = ops.cast(self.g_optimizer.iterations, "float32") / float(self.instance_noise_steps)
            std = std * ops.maximum(0.0, 1.0 - progress)
        return images + std * keras.random.normal(ops.shape(images), seed=self.seed_generator)

    def discriminator_step(self, real, labels):
        """One discriminator (critic) update; returns `(loss, accuracy, penalty)`."""
        import tensorflow as tf

        batch = ops.shape(real)[0]
        fake = self.generator(self.generator_inputs(self.sample_latent(batch), labels), training=True)
        fake = ops.stop_gradient(fake)
        variables = self.discriminator_variables()
        with tf.GradientTape() as tape:
            real_scores = self.discriminate(self._with_instance_noise(real), labels)
            fake_scores = self.discriminate(self._with_instance_noise(fake), labels)
            loss = losses.discriminator_loss(self.loss_name, real_scores, fake_scores, self.label_smoothing)
            penalty = ops.zeros(())
            critic = lambda images: self.discriminate(images, labels)  # noqa: E731
            if self.gradient_penalty_weight:
                penalty = losses.gradient_penalty(critic, real, fake, self.seed_generator)
                total = loss + self.gradient_penalty_weight * penalty
            elif self.r1_weight:
                penalty = losses.r1_penalty(critic, real)
                total = loss + self.r1_weight * penalty
            else:
                total = loss
        gradients = tape.gradient(total, variables)
        self.d_optimizer.apply_gradients(zip(gradients, variables))
        if self.clip_value:
            for variable in variables:
                variable.assign(ops.clip(variable, -self.clip_value, self.clip_value))
        return loss, losses.discriminator_accuracy(self.loss_name, real_scores, fake_scores), penalty

    def generator_step(self, real, labels):
        """One generator update; returns its loss."""
        import tensorflow as tf

        batch = ops.shape(real)[0]
        z = self.sample_latent(batch)
        variables = self.generator_variables()
        with tf.GradientTape() as tape:
            fake = self.generator(self.generator_inputs(z, labels), training=True)
            loss = losses.generator_loss(self.loss_name, self.discriminate(fake, labels))
        gradients = tape.gradient(loss, variables)
        self.g_optimizer.apply_gradients(zip(gradients, variables))
        return loss

    def train_step(self, data):
        real, labels = self._unpack(data)
        for _ in range(self.n_critic):
            d_loss, d_accuracy, penalty = self.discriminator_step(real, labels)
        g_loss = self.generator_step(real, labels)
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.d_accuracy_tracker.update_state(d_accuracy)
        self.penalty_tracker.update_state(penalty)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        raise NotImplementedError(
            f"{type(self).__name__} has no evaluation loss; judge samples from generate() instead "
            "(benchmarks/gan_quality.py computes Frechet distances and classifier scores)."
        )

    # ---------------------------------------------------------------------------------------------
    # Sampling

    def sample_latents(self, num_samples, seed=None):
        """`num_samples` latent vectors from the standard normal prior, as float32 numpy."""
        rng = np.random.default_rng(seed)
        return rng.standard_normal((_check_count(num_samples), self.latent_dim)).astype(np.float32)

    def _labels_for(self, labels, count):
        if self.num_classes is None:
            if labels is not None:
                raise ValueError(f"{self.name} is unconditional; call generate() without labels.")
            return None
        if labels is None:
            return (np.arange(count) % self.num_classes).astype(np.int32)  # every class in turn
        if np.ndim(labels) == 0:
            labels = np.full((count,), labels)
        return check_labels(labels, self.num_classes, count)

    def run_generator(self, inputs, batch_size=256):
        """The generator's inference outputs on `inputs` (array or list of arrays) as numpy."""
        arrays = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        count = len(arrays[0])
        parts = []
        for start in range(0, count, batch_size):
            chunk = [a[start : start + batch_size] for a in arrays]
            outputs = self.generator(chunk if isinstance(inputs, (list, tuple)) else chunk[0], training=False)
            parts.append(keras.ops.convert_to_numpy(outputs))
        return np.concatenate(parts, axis=0)

    def generate_from_latents(self, latents, labels=None):
        """Images for the given latent vectors `(n, latent_dim)` (and labels of a conditional model)."""
        latents = np.asarray(latents, np.float32)
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"latents must have shape (n, {self.latent_dim}); got {latents.shape}.")
        if not np.all(np.isfinite(latents)):
            raise ValueError("latents contain NaN or infinity.")
        labels = self._labels_for(labels, len(latents))
        return self.run_generator(self.generator_inputs(latents, labels) if labels is not None else latents)

    def generate(self, num_samples, labels=None, seed=None):
        """Draws `num_samples` images as numpy, scaled like the training data (`pixel_range`).

        Args:
            num_samples: how many images.
            labels: for a conditional model, one class per sample (or one class for all); `None` cycles
                through the classes. Unconditional models take no labels.
            seed: seed of the latent draws; the same seed gives the same images.
        """
        return self.generate_from_latents(self.sample_latents(num_samples, seed), labels)

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
        if not isinstance(num_steps, int) or num_steps < 2:
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
    # Serialization

    def get_config(self):
        return {
            "name": self.name,
            "generator": _serialize(self.generator),
            "discriminator": _serialize(self.discriminator),
            "latent_dim": self.latent_dim,
            "num_classes": self.num_classes,
            "loss": self.loss_name,
            "n_critic": self.n_critic,
            "clip_value": self.clip_value,
            "gradient_penalty_weight": self.gradient_penalty_weight,
            "r1_weight": self.r1_weight,
            "label_smoothing": self.label_smoothing,
            "instance_noise": self.instance_noise,
            "instance_noise_steps": self.instance_noise_steps,
            "pixel_range": list(self.pixel_range),
            "seed": self.seed,
        }

    # The seed state is kept with the weights, so a run resumed from a checkpoint draws the same
    # latents it would have drawn without the interruption.
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

    _NESTED = ("generator", "discriminator")

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in cls._NESTED:
            config[key] = _deserialize(config.get(key))
        return cls(**config)
