"""The `GAN` model: a generator and a discriminator trained against each other inside `train_step`.

Users call plain `fit()`; each step runs `n_critic` discriminator (critic) updates and one generator
update with two optimizers, on the XLA-compiled step Keras builds. All randomness inside the step comes
from a `keras.random.SeedGenerator`, so steps are stateless functions of the seed state.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_models import gradients, optimizers
from keras_models.gan import losses
from keras_models.generative import ImageGenerativeModel
from keras_models.layers.conv2d import match_slot_layout
from keras_models.optimizer_group import OptimizerGroup
from keras_models.training import check_jit_compile_kept, resolve_jit_compile

_PACKAGE = "keras_models"


def _serialize(obj):
    return None if obj is None else keras.saving.serialize_keras_object(obj)


def _deserialize(config):
    return None if config is None else keras.saving.deserialize_keras_object(config)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GAN(ImageGenerativeModel):
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
        super().__init__(latent_dim=latent_dim, num_classes=num_classes, pixel_range=pixel_range, seed=seed, **kwargs)
        losses.check_loss(loss)
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
        self.generator = generator
        self.discriminator = discriminator
        self.loss_name = loss
        self.n_critic = n_critic
        self.clip_value = clip_value
        self.gradient_penalty_weight = float(gradient_penalty_weight)
        self.r1_weight = float(r1_weight)
        self.label_smoothing = float(label_smoothing)
        self.instance_noise = float(instance_noise)
        self.instance_noise_steps = instance_noise_steps
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
    def image_shape(self) -> tuple:
        return tuple(self.generator.output_shape[1:])

    def export_targets(self) -> dict:
        """The generator: what a device runs to sample."""
        return {"generator": self.generator}

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
            jit_compile: `True`/`False` to force a compiled step on or off; `None` for
                `keras_models.default_jit_compile("gan")` on this backend and device.
            run_eagerly, steps_per_execution: as for `keras.Model.compile`.

        Where the step cannot be compiled here (a gradient penalty on PyTorch, TensorFlow's op
        determinism, ...) it trains uncompiled and says why in `jit_compile_reason`; an explicit
        `jit_compile=True` also warns (`keras_models.training.JitCompileWarning`).
        """
        blockers = []
        if keras.backend.backend() == "torch" and (self.gradient_penalty_weight or self.r1_weight):
            blockers.append("the gradient penalty is a second derivative, which torch.compile cannot take "
                            "(no double backward through compiled graphs)")
        requested = resolve_jit_compile(self, jit_compile, "gan", run_eagerly=run_eagerly, blockers=blockers)
        d_optimizer = self._optimizer(d_optimizer, "d_optimizer")
        g_optimizer = self._optimizer(g_optimizer, "g_optimizer")
        if d_optimizer is g_optimizer:
            raise ValueError("d_optimizer and g_optimizer must be two optimizer instances; got the same one twice.")
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        # Create the slot variables now, so that checkpoints restore both optimizers' state on load.
        d_optimizer.build(self.discriminator_variables())
        g_optimizer.build(self.generator_variables())
        # On PyTorch, each optimizer's slots in the memory layout of the kernels they follow (the library's
        # Conv2D): Adam's update then runs as one fused kernel (`keras_models.optimizers`).
        match_slot_layout(d_optimizer, self.discriminator_variables())
        match_slot_layout(g_optimizer, self.generator_variables())
        super().compile(
            optimizer=OptimizerGroup([d_optimizer, g_optimizer], name=f"{self.name}_optimizers"),
            jit_compile=requested,
            run_eagerly=run_eagerly,
            steps_per_execution=steps_per_execution,
        )
        check_jit_compile_kept(self, requested)

    @staticmethod
    def _optimizer(value, arg):
        if value is None:
            return optimizers.Adam(learning_rate=2e-4, beta_1=0.5)
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
        batch = ops.shape(real)[0]
        fake = self.generator(self.generator_inputs(self.sample_latent(batch), labels), training=True)
        fake = ops.stop_gradient(fake)
        variables = self.discriminator_variables()

        def loss_fn():
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
            accuracy = losses.discriminator_accuracy(self.loss_name, real_scores, fake_scores)
            return total, (loss, accuracy, penalty)

        _, (loss, accuracy, penalty) = gradients.minimize(loss_fn, variables, self.d_optimizer)
        if self.clip_value:
            for variable in variables:
                variable.assign(ops.clip(variable, -self.clip_value, self.clip_value))
        return loss, accuracy, penalty

    def generator_step(self, real, labels):
        """One generator update; returns its loss."""
        batch = ops.shape(real)[0]
        z = self.sample_latent(batch)

        def loss_fn():
            fake = self.generator(self.generator_inputs(z, labels), training=True)
            return losses.generator_loss(self.loss_name, self.discriminate(fake, labels))

        loss, _ = gradients.minimize(loss_fn, self.generator_variables(), self.g_optimizer)
        return loss

    def train_step(self, *args):
        """`fit()`'s step on any backend: `(data)` on TensorFlow and PyTorch, `(state, data)` on JAX
        (see `keras_models.gradients.train_step`)."""
        return gradients.train_step(self, self.adversarial_step, args)

    def adversarial_step(self, data):
        """`n_critic` discriminator updates and one generator update; returns the logs."""
        real, labels = self.unpack_images(data)
        for _ in range(self.n_critic):
            d_loss, d_accuracy, penalty = self.discriminator_step(real, labels)
        g_loss = self.generator_step(real, labels)
        return self.update_trackers(d_loss=d_loss, g_loss=g_loss, d_accuracy=d_accuracy, penalty=penalty)

    def test_step(self, data):
        raise NotImplementedError(
            f"{type(self).__name__} has no evaluation loss; judge samples from generate() instead "
            "(benchmarks/gan_quality.py computes Frechet distances and classifier scores)."
        )

    # ---------------------------------------------------------------------------------------------
    # Sampling

    def run_generator(self, inputs, batch_size=256):
        """The generator's inference outputs on `inputs` (array or list of arrays) as numpy."""
        return self.run_network(self.generator, inputs, batch_size)

    def generate_from_latents(self, latents, labels=None):
        """Images for the given latent vectors `(n, latent_dim)` (and labels of a conditional model)."""
        latents = np.asarray(latents, np.float32)
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"latents must have shape (n, {self.latent_dim}); got {latents.shape}.")
        if not np.all(np.isfinite(latents)):
            raise ValueError("latents contain NaN or infinity.")
        labels = self.labels_for(labels, len(latents))
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

    _NESTED = ("generator", "discriminator")

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in cls._NESTED:
            config[key] = _deserialize(config.get(key))
        return cls(**config)
