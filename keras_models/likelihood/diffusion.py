"""`DiffusionModel` and the registered `ddpm`: denoising diffusion trained by `fit()` on the simple
denoising loss, sampled by DDPM's ancestral chain or by DDIM in any number of steps.

    >>> ddpm = keras_models.build("ddpm", image_shape=(8, 8, 1), num_classes=10)
    >>> ddpm.fit(images, labels, epochs=50)
    >>> ddpm.generate(16, labels=3, steps=50, guidance=2.0, seed=0)
    >>> ddpm.bits_per_dimension(test_images, test_labels).mean()

One optimizer and a custom loss: the loss is `compute_loss`, which Keras' TensorFlow, JAX and PyTorch
trainers all call. The timesteps, noise and label dropout of a step come from a
`keras.random.SeedGenerator`; the exponential moving average of the weights is updated in the same
step, into a second denoiser (`ema_denoiser`) which is the one sampled, saved beside the trained one,
and exported. Samplers are host loops (`diffusion_sampling`) over that one-step network: every random
number enters it as data.
"""

from __future__ import annotations

import numpy as np
from scipy import special

import keras
from keras import ops

from keras_models import optimizers
from keras_models.checks import check_choice, check_count, check_rate, check_shape
from keras_models.generative import ImageGenerativeModel
from keras_models.gradients import replica_share
from keras_models.likelihood import diffusion_sampling, diffusion_unet, distributions
from keras_models.likelihood.diffusion_schedules import PREDICTIONS, SCHEDULES, NoiseSchedule, split_prediction, training_target
from keras_models.likelihood.vae import bits_per_dimension
from keras_models.registry import register_model
from keras_models.training import compile_model

_PACKAGE = "keras_models"
LEVELS = distributions.LEVELS


def _serialize(obj):
    return keras.saving.serialize_keras_object(obj)


def _deserialize(config):
    return keras.saving.deserialize_keras_object(config)


def discretized_gaussian_log_prob(x, mean, log_scale):
    """Per-pixel log P(x) of a Gaussian discretized to 256 levels on [-1, 1] (bins of width 2/255, the
    end bins taking the tails; Ho et al., 2020, section 3.3), float64 numpy, `x` on the levels."""
    half_bin = 1.0 / (LEVELS - 1)
    inverse_scale = np.exp(-log_scale)
    upper, lower = (x - mean + half_bin) * inverse_scale, (x - mean - half_bin) * inverse_scale
    # log(Phi(upper) - Phi(lower)), mirrored to the upper tail right of the mean so nothing cancels
    right = lower > 0
    big, small = np.where(right, -lower, upper), np.where(right, -upper, lower)
    log_big, log_small = special.log_ndtr(big), special.log_ndtr(small)
    inner = log_big + np.log1p(-np.exp(np.minimum(log_small - log_big, -1e-12)))
    return np.where(x <= -1.0 + 1e-6, special.log_ndtr(upper), np.where(x >= 1.0 - 1e-6, special.log_ndtr(-lower), inner))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DiffusionModel(ImageGenerativeModel):
    """A denoising diffusion model (Ho et al., 2020) sampled by DDPM or DDIM (Song et al., 2021),
    class-conditional with classifier-free guidance (Ho & Salimans, 2022).

    `fit(images)` trains an unconditional model, `fit(images, labels)` a conditional one; in each step
    the label is replaced by the null label (`num_classes`) with probability `label_dropout`, so the
    same network also learns the unconditional model that guidance subtracts.

    Calling the model on noise `x_T` `(batch, *image_shape)` (a conditional model: `[noise, labels]`,
    else the null label) gives the EMA denoiser's one-step estimate of `x_0` in `pixel_range`: the
    cheapest deterministic sample (a training call returns its input: the loss draws its own noisy
    images). `generate` runs the real samplers.

    Args:
        denoiser: the trained network, `[images, times]` (and labels) -> epsilon or v.
        ema_denoiser: the same architecture holding the moving average of `denoiser`'s weights; a
            copy of `denoiser` when `None`.
        schedule: `"linear"` or `"cosine"` (see `diffusion_schedules`).
        timesteps: T, the length of the diffusion chain.
        prediction: `"epsilon"` (the noise) or `"v"` (Salimans & Ho, 2022).
        label_dropout: probability of training on the null label (conditional models).
        ema_decay: the moving average's decay; the first updates use `min(decay, (1 + n) / (10 + n))`
            so the average forgets the initial weights quickly.
        num_classes, pixel_range, seed: as for `ImageGenerativeModel`.
    """

    def __init__(self, denoiser, ema_denoiser=None, schedule="linear", timesteps=1000, prediction="epsilon",
                 label_dropout=0.1, ema_decay=0.999, num_classes=None, pixel_range=(0.0, 1.0), seed=None, **kwargs):
        image_shape = tuple(int(d) for d in denoiser.inputs[0].shape[1:])
        super().__init__(latent_dim=int(np.prod(image_shape)), num_classes=num_classes, pixel_range=pixel_range,
                         seed=seed, **kwargs)
        self.schedule = NoiseSchedule(schedule, timesteps)
        self.prediction = check_choice(prediction, PREDICTIONS, "prediction")
        self.label_dropout = check_rate(label_dropout, "label_dropout")
        self.ema_decay = check_rate(ema_decay, "ema_decay")
        expected_inputs = 3 if num_classes is not None else 2
        if len(denoiser.inputs) != expected_inputs:
            raise ValueError(f"denoiser takes {len(denoiser.inputs)} inputs; a model with num_classes={num_classes!r} "
                             f"needs {expected_inputs}: images, times" + (" and labels." if num_classes else "."))
        self.denoiser = denoiser
        if ema_denoiser is None:
            ema_denoiser = keras.models.clone_model(denoiser)
            ema_denoiser.set_weights(denoiser.get_weights())
        ema_denoiser.trainable = False
        for layer in ema_denoiser._flatten_layers(include_self=False):
            layer.trainable = False  # sub-layers a layer built itself (attention projections) too
        self.ema_denoiser = ema_denoiser
        self.ema_updates = self.add_weight(shape=(), initializer="zeros", trainable=False, name="ema_updates")
        self._image_shape = image_shape
        self._predict = None
        self.build((None, *image_shape))

    def build(self, input_shape):
        pass  # the denoisers arrive built

    # ---------------------------------------------------------------------------------------------
    # Structure

    @property
    def image_shape(self) -> tuple:
        return self._image_shape

    @property
    def timesteps(self) -> int:
        return self.schedule.timesteps

    @property
    def null_label(self):
        return self.num_classes

    def export_targets(self) -> dict:
        """The EMA denoiser, one step: `[images, times]` (and `labels`, the null label being
        `num_classes`) -> epsilon or v; `export.diffusion` runs the samplers over its file."""
        return {"denoiser": self.ema_denoiser}

    def sampling_config(self) -> dict:
        """What a host loop needs besides the denoiser's file (JSON-ready)."""
        return {"schedule": self.schedule.name, "timesteps": self.timesteps, "prediction": self.prediction,
                "num_classes": self.num_classes, "pixel_range": list(self.pixel_range),
                "image_shape": list(self.image_shape)}

    def to_unit(self, images):
        """Images from `pixel_range` to [-1, 1] (tensors or numpy)."""
        low, high = self.pixel_range
        return (images - low) * (2.0 / (high - low)) - 1.0

    def from_unit(self, x):
        """[-1, 1] back to `pixel_range`, clipped, float32 numpy."""
        low, high = self.pixel_range
        return (low + (np.clip(np.asarray(x, np.float64), -1.0, 1.0) + 1.0) * ((high - low) / 2.0)).astype(np.float32)

    def _denoiser_inputs(self, x, times, labels):
        return [x, times, labels] if self.num_classes is not None else [x, times]

    def call(self, inputs, training=False):
        noise, labels = (inputs if isinstance(inputs, (list, tuple)) else (inputs, None))
        if training:
            # Keras' trainers call the model on the training images before `compute_loss`, which
            # draws its own noisy inputs: that call has nothing to compute.
            return noise
        batch = ops.shape(noise)[0]
        last = self.timesteps - 1
        if self.num_classes is not None and labels is None:
            labels = ops.full((batch,), self.null_label, dtype="int32")
        elif labels is not None:
            labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        times = ops.full((batch,), float(last), dtype="float32")
        output = self.ema_denoiser(self._denoiser_inputs(noise, times, labels), training=False)
        x0, _ = split_prediction(output, noise, float(self.schedule.alpha_bars[last]), self.prediction)
        low, high = self.pixel_range
        return low + (ops.clip(x0, -1.0, 1.0) + 1.0) * ((high - low) / 2.0)

    # ---------------------------------------------------------------------------------------------
    # Training

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The mean squared error of the denoiser's epsilon (or v) at a uniformly drawn timestep
        (Ho et al., 2020, L_simple); a training call also moves the EMA weights."""
        images = x[0] if isinstance(x, (list, tuple)) else x
        labels = x[1] if isinstance(x, (list, tuple)) else y
        x0 = self.to_unit(ops.cast(images, "float32"))
        batch = ops.shape(x0)[0]
        steps = keras.random.randint((batch,), 0, self.timesteps, seed=self.seed_generator)
        noise = keras.random.normal(ops.shape(x0), seed=self.seed_generator)
        alpha_bars = ops.convert_to_tensor(self.schedule.alpha_bars.astype(np.float32))
        alpha_bar = ops.reshape(ops.take(alpha_bars, steps), (-1, 1, 1, 1))
        x_t = ops.sqrt(alpha_bar) * x0 + ops.sqrt(1.0 - alpha_bar) * noise
        if self.conditional:
            if labels is None:
                raise ValueError(f"{self.name} is conditional on {self.num_classes} classes: call fit(images, labels).")
            labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
            dropped = keras.random.uniform((batch,), seed=self.seed_generator) < self.label_dropout
            labels = ops.where(dropped, ops.full_like(labels, self.null_label), labels)
        output = self.denoiser(self._denoiser_inputs(x_t, ops.cast(steps, "float32"), labels), training=training)
        loss = ops.mean(ops.square(output - training_target(x0, noise, alpha_bar, self.prediction)))
        if training:
            self._update_ema()
        if self.losses:
            loss = loss + ops.sum(self.losses)
        return replica_share(loss)  # the whole batch's loss under tf.distribute

    def _update_ema(self):
        count = ops.cast(self.ema_updates, "float32")
        decay = ops.minimum(self.ema_decay, (1.0 + count) / (10.0 + count))
        for average, weight in zip(self.ema_denoiser.weights, self.denoiser.weights):
            average.assign(decay * average + (1.0 - decay) * ops.stop_gradient(ops.cast(weight, average.dtype)))
        self.ema_updates.assign(self.ema_updates + 1.0)

    def reset_ema(self):
        """Copies the trained weights into the EMA denoiser (after loading other weights, say)."""
        self.ema_denoiser.set_weights(self.denoiser.get_weights())
        self.ema_updates.assign(0.0)

    # ---------------------------------------------------------------------------------------------
    # The one-step network on the host

    def denoise(self, x, times, labels=None):
        """The EMA denoiser's output on numpy `x` `(n, *image_shape)` (noise scale), float times `(n,)`
        and int32 labels (conditional models), as float32 numpy."""
        if self._predict is None:
            self._predict = self.ema_denoiser.predict_on_batch
        inputs = self._denoiser_inputs(np.asarray(x, np.float32), np.asarray(times, np.float32),
                                       None if labels is None else np.asarray(labels, np.int32))
        return np.asarray(keras.ops.convert_to_numpy(self._predict(inputs)), np.float32)

    def _sampler_options(self, steps, guidance, sampler, eta):
        check_choice(sampler, diffusion_sampling.SAMPLERS, "sampler")
        if sampler == "ddim":
            self.schedule.sampling_timesteps(steps)  # checks steps (DDPM visits every timestep)
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not np.isfinite(guidance) or guidance < 0:
            raise ValueError(f"guidance must be a finite number >= 0; got guidance={guidance!r}.")
        if guidance and self.num_classes is None:
            raise ValueError(f"guidance={guidance!r} needs a class-conditional model; {self.name} is unconditional.")
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be a number in [0, 1]; got eta={eta!r}.")
        return {"sampler": sampler, "steps": steps, "eta": float(eta), "guidance": float(guidance),
                "prediction": self.prediction, "null_label": self.null_label}

    # ---------------------------------------------------------------------------------------------
    # Sampling

    def generate(self, num_samples, labels=None, steps=50, guidance=0.0, sampler="ddim", seed=None, eta=0.0):
        """Draws `num_samples` images as numpy, scaled like the training data (`pixel_range`).

        Args:
            num_samples: how many images.
            labels: for a conditional model, one class per sample (or one for all); `None` cycles
                through the classes. Unconditional models take no labels.
            steps: timesteps DDIM visits (1 to T); DDPM always visits all T.
            guidance: classifier-free guidance weight w >= 0: `(1 + w) f(x, c) - w f(x, null)`.
            sampler: `"ddim"` (deterministic for `eta = 0`) or `"ddpm"` (ancestral, T steps).
            seed: seed of every draw: `x_T` first, then each step's noise; the same seed gives the same
                images, here and in `export.diffusion.sample` over the exported denoiser.
            eta: DDIM's noise scale (0 deterministic, 1 the DDPM posterior's).
        """
        count = check_count(num_samples)
        options = self._sampler_options(steps, guidance, sampler, eta)
        labels = self.labels_for(labels, count)
        rng = np.random.default_rng(seed)
        latents = rng.standard_normal((count, *self.image_shape)).astype(np.float32)  # as sample_latents draws them
        x = diffusion_sampling.run_sampler(self.denoise, self.schedule, latents, labels, rng=rng, **options)
        return self.from_unit(x)

    def generate_from_latents(self, latents, labels=None, steps=50, guidance=0.0):
        """Images from DDIM latents `x_T` (deterministic DDIM, eta = 0), flat `(n, latent_dim)` or
        image-shaped; `generate(n, seed=s)` equals `generate_from_latents(sample_latents(n, s))`."""
        latents = np.asarray(latents, np.float64)
        if latents.shape[1:] not in ((self.latent_dim,), self.image_shape):
            raise ValueError(f"latents must have shape (n, {self.latent_dim}) or (n, *{self.image_shape}); got {latents.shape}.")
        if not np.all(np.isfinite(latents)):
            raise ValueError("latents contain NaN or infinity.")
        options = self._sampler_options(steps, guidance, "ddim", 0.0)
        labels = self.labels_for(labels, len(latents))
        x = diffusion_sampling.run_sampler(self.denoise, self.schedule, latents.reshape(-1, *self.image_shape),
                                           labels, **options)
        return self.from_unit(x)

    def encode(self, images, labels=None, steps=50):
        """DDIM's deterministic latents `x_T` of `images` (Song et al., 2021): `generate_from_latents`
        maps them back to the images, so paths between them (`interpolate(start=..., end=...)`)
        pass through images of the model. Returns float32 `(n, latent_dim)`."""
        images, labels = self.checked_examples(images, labels, missing_labels=self.null_label)
        self.schedule.sampling_timesteps(steps)
        latents = diffusion_sampling.ddim_encode(self.denoise, self.schedule, self.to_unit(images.astype(np.float64)),
                                                 labels, steps=steps, prediction=self.prediction,
                                                 null_label=self.null_label)
        return latents.reshape(len(images), -1).astype(np.float32)

    # ---------------------------------------------------------------------------------------------
    # The variational bound

    def variational_bound(self, images, labels=None, seed=None, return_terms=False):
        """An upper bound on -log p(x) per example, in nats, from the variational bound (Ho et al.,
        2020, eq. 5): KL(q(x_T | x_0) || N(0, I)) + sum_{t >= 1} KL(q(x_{t-1} | x_t, x_0) ||
        p(x_{t-1} | x_t)) - log p(x_0 | x_1), p's variances fixed to the posterior's (beta~_t), the
        last term a Gaussian discretized to 256 levels over `pixel_range` with variance beta_1. Each
        term's KL is exact given one draw of x_t ~ q(x_t | x_0) (seeded); every one of the T timesteps
        is visited, so the cost is T denoiser calls per image. A conditional model is scored on
        `labels` (the null label, i.e. unconditionally, when `None`).

        Returns:
            float64 `(n,)`; with `return_terms`, also `(prior (n,), per-timestep terms (n, T))`.
        """
        images, labels = self.checked_examples(images, labels, missing_labels=self.null_label)
        schedule = self.schedule
        x0 = np.asarray(keras.ops.convert_to_numpy(distributions.to_unit_interval(images, self.pixel_range)), np.float64)
        rng = np.random.default_rng(seed)
        axes = tuple(range(1, x0.ndim))
        last = schedule.alpha_bars[-1]
        prior = 0.5 * np.sum(last * x0**2 + (1.0 - last) - 1.0 - np.log(1.0 - last), axis=axes)
        terms = np.zeros((len(x0), schedule.timesteps))
        for t in range(schedule.timesteps):
            alpha_bar = schedule.alpha_bars[t]
            x_t = np.sqrt(alpha_bar) * x0 + np.sqrt(1.0 - alpha_bar) * rng.standard_normal(x0.shape)
            output = self.denoise(x_t, np.full((len(x0),), float(t), np.float32), labels)
            estimate, _ = split_prediction(np.asarray(output, np.float64), x_t, alpha_bar, self.prediction)
            estimate = np.clip(estimate, -1.0, 1.0)
            if t == 0:
                log_scale = 0.5 * np.log(schedule.betas[0])
                terms[:, 0] = -np.sum(discretized_gaussian_log_prob(x0, estimate, log_scale), axis=axes)
            else:
                # the two means differ only through x_0: posterior_x0_coef (x_0 - estimate)
                squared = np.sum((schedule.posterior_x0_coef[t] * (x0 - estimate)) ** 2, axis=axes)
                terms[:, t] = squared / (2.0 * schedule.posterior_variance[t])
        total = prior + terms.sum(axis=1)
        return (total, prior, terms) if return_terms else total

    def bits_per_dimension(self, images, labels=None, seed=None):
        """`variational_bound` in bits per pixel value (an upper bound on the model's bits/dim)."""
        return bits_per_dimension(self.variational_bound(images, labels, seed), self.image_shape)

    # ---------------------------------------------------------------------------------------------
    # Serialization

    def get_config(self):
        return {
            "name": self.name,
            "denoiser": _serialize(self.denoiser),
            "ema_denoiser": _serialize(self.ema_denoiser),
            "schedule": self.schedule.name,
            "timesteps": self.timesteps,
            "prediction": self.prediction,
            "label_dropout": self.label_dropout,
            "ema_decay": self.ema_decay,
            "num_classes": self.num_classes,
            "pixel_range": list(self.pixel_range),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["denoiser"] = _deserialize(config["denoiser"])
        config["ema_denoiser"] = _deserialize(config["ema_denoiser"])
        return cls(**config)


# -- the registered builder ---------------------------------------------------------------------------

DESCRIPTION = "Denoising diffusion (DDPM) with a small U-Net, DDPM and DDIM samplers, classifier-free guidance"


@register_model("ddpm", family="likelihood", description=DESCRIPTION)
def ddpm(image_shape=(8, 8, 1), num_classes=None, pixel_range=(0.0, 1.0), width=32, channel_multipliers=(1, 2),
         num_res_blocks=1, groups=8, dropout=0.0, schedule="linear", timesteps=1000, prediction="epsilon",
         label_dropout=0.1, ema_decay=0.999, seed=None, learning_rate=1e-3, optimizer=None, name=None, compile=True,
         jit_compile=None):
    """Builds ddpm: a denoising diffusion model (Ho et al., 2020) with a U-Net denoiser, sampled by
    DDPM or DDIM (Song et al., 2021), class-conditional with classifier-free guidance (Ho & Salimans,
    2022) when `num_classes` is given.

    Paper: Ho et al., 2020, Denoising Diffusion Probabilistic Models.

    Args:
        image_shape: `(height, width, channels)`; height and width divisible by
            `2 ** (len(channel_multipliers) - 1)`.
        num_classes: `None` (unconditional, default) or the number of classes of a conditional model.
        pixel_range: `(low, high)` of the training images; `generate` returns images in this range.
        width, channel_multipliers, num_res_blocks, groups, dropout: the U-Net (`diffusion_unet.denoiser`).
        schedule: `"linear"` or `"cosine"` noise schedule.
        timesteps: T (default 1000).
        prediction: `"epsilon"` or `"v"`.
        label_dropout: probability of the null label in training (conditional models; default 0.1).
        ema_decay: decay of the weights' moving average (the EMA weights are sampled and exported).
        seed: seed of the training steps' draws.
        learning_rate, optimizer: Adam at `learning_rate`, or this optimizer.
        name: the model name (default "ddpm"); the networks are `<name>_denoiser` and `<name>_ema`.
        compile: compile with the denoising loss (`compute_loss`).
        jit_compile: XLA on/off; `None` for `keras_models.default_jit_compile("likelihood")`.

    Returns:
        A compiled `DiffusionModel`, ready for `fit(images)` or, conditional, `fit(images, labels)`.
    """
    image_shape = check_shape(image_shape, "image_shape", rank=3)
    for arg, value in (("width", width), ("num_res_blocks", num_res_blocks), ("groups", groups)):
        check_count(value, arg)
    multipliers = tuple(channel_multipliers) if isinstance(channel_multipliers, (list, tuple)) else None
    if not multipliers or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in multipliers):
        raise ValueError(f"channel_multipliers must be a non-empty sequence of positive integers; "
                         f"got channel_multipliers={channel_multipliers!r}.")
    check_rate(dropout, "dropout")
    check_choice(schedule, SCHEDULES, "schedule")
    check_choice(prediction, PREDICTIONS, "prediction")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(f"num_classes must be an integer >= 2 or None; got num_classes={num_classes!r}.")
    diffusion_unet.check_image_shape(image_shape, len(multipliers))
    name = name or "ddpm"
    networks = [diffusion_unet.denoiser(image_shape, num_classes, width, multipliers, num_res_blocks, groups, dropout,
                                        name=name + suffix) for suffix in ("_denoiser", "_ema")]
    networks[1].set_weights(networks[0].get_weights())
    model = DiffusionModel(networks[0], networks[1], schedule=schedule, timesteps=timesteps, prediction=prediction,
                           label_dropout=label_dropout, ema_decay=ema_decay, num_classes=num_classes,
                           pixel_range=pixel_range, seed=seed, name=name)
    if compile:
        compile_model(model, optimizer=optimizer or optimizers.Adam(learning_rate), loss=None,
                      jit_compile=jit_compile, family="likelihood")
    return model
