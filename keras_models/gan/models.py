"""GAN models whose training step differs from the base `GAN`: InfoGAN, pix2pix, CycleGAN, SRGAN,
StyleGAN. Each keeps the base's optimizers, XLA policy, trackers, sampling and serialization."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_models import gradients
from keras_models.gan import losses
from keras_models.checks import check_count, check_images
from keras_models.gan.base import GAN, _serialize
from keras_models.gan.networks import stylegan_generator

_PACKAGE = "keras_models"


# --------------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package=_PACKAGE)
class InfoGAN(GAN):
    """InfoGAN (Chen et al., 2016): the generator also takes a categorical code and continuous codes,
    and an auxiliary head Q on the discriminator's body recovers them; both networks minimize
    `info_weight * (cross-entropy(category) + continuous_weight * squared error(continuous))`, a lower
    bound on the mutual information between codes and images (Gaussian Q with unit variance).

    Trained unsupervised with `fit(images)`; `generate(n, labels=...)` sets the categorical code.

    Args:
        num_categories: values of the categorical code (`num_classes` of the base).
        num_continuous: continuous codes, drawn uniformly from [-1, 1].
        info_weight: lambda of the mutual-information term (1 in the paper).
        continuous_weight: relative weight of the continuous codes' term.
    """

    conditional_training = False

    def __init__(self, generator, discriminator, num_continuous=2, info_weight=1.0, continuous_weight=0.5, **kwargs):
        super().__init__(generator, discriminator, **kwargs)
        if self.num_classes is None:
            raise ValueError("InfoGAN needs num_classes, the number of values of its categorical code.")
        if not isinstance(num_continuous, int) or num_continuous < 0:
            raise ValueError(f"num_continuous must be an integer >= 0; got num_continuous={num_continuous!r}.")
        self.num_continuous = num_continuous
        self.info_weight = float(info_weight)
        self.continuous_weight = float(continuous_weight)
        self.info_tracker = keras.metrics.Mean(name="info_loss")

    @property
    def metrics(self):
        return super().metrics + [self.info_tracker]

    def _sample_codes(self, batch):
        category = keras.random.randint((batch,), 0, self.num_classes, seed=self.seed_generator, dtype="int32")
        continuous = keras.random.uniform((batch, self.num_continuous), -1.0, 1.0, seed=self.seed_generator)
        return category, continuous

    def _info_loss(self, category, continuous, category_logits, continuous_estimates):
        cross_entropy = ops.mean(
            keras.losses.sparse_categorical_crossentropy(category, category_logits, from_logits=True)
        )
        squared_error = ops.mean(ops.square(continuous - continuous_estimates)) if self.num_continuous else 0.0
        return self.info_weight * (cross_entropy + self.continuous_weight * squared_error)

    def adversarial_step(self, data):
        real, _ = self.unpack_images(data)
        batch = ops.shape(real)[0]
        d_variables, g_variables = self.discriminator_variables(), self.generator_variables()
        for _ in range(self.n_critic):
            category, continuous = self._sample_codes(batch)
            fake = self.generator([self.sample_latent(batch), category, continuous], training=True)
            fake = ops.stop_gradient(fake)

            def d_loss_fn():
                real_scores = self.discriminator(self._with_instance_noise(real), training=True)[0]
                fake_scores, category_logits, estimates = self.discriminator(self._with_instance_noise(fake), training=True)
                d_loss = losses.discriminator_loss(self.loss_name, real_scores, fake_scores, self.label_smoothing)
                info_loss = self._info_loss(category, continuous, category_logits, estimates)
                accuracy = losses.discriminator_accuracy(self.loss_name, real_scores, fake_scores)
                return d_loss + info_loss, (d_loss, info_loss, accuracy)

            _, (d_loss, info_loss, d_accuracy) = gradients.minimize(d_loss_fn, d_variables, self.d_optimizer)
        category, continuous = self._sample_codes(batch)
        z = self.sample_latent(batch)

        def g_loss_fn():
            fake = self.generator([z, category, continuous], training=True)
            fake_scores, category_logits, estimates = self.discriminator(fake, training=True)
            g_loss = losses.generator_loss(self.loss_name, fake_scores)
            return g_loss + self._info_loss(category, continuous, category_logits, estimates), g_loss

        _, g_loss = gradients.minimize(g_loss_fn, g_variables, self.g_optimizer)
        return self.update_trackers(d_loss=d_loss, g_loss=g_loss, d_accuracy=d_accuracy, info_loss=info_loss)

    def generate_from_latents(self, latents, labels=None, continuous=None, seed=None):
        """Images for latents `(n, latent_dim)`, categorical codes `labels` (cycled when `None`) and
        continuous codes `(n, num_continuous)` (uniform in [-1, 1] from `seed` when `None`)."""
        latents = np.asarray(latents, np.float32)
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"latents must have shape (n, {self.latent_dim}); got {latents.shape}.")
        count = len(latents)
        labels = self.labels_for(labels, count)
        if continuous is None:
            continuous = np.random.default_rng(seed).uniform(-1.0, 1.0, (count, self.num_continuous))
        continuous = np.asarray(continuous, np.float32)
        if continuous.shape != (count, self.num_continuous):
            raise ValueError(f"continuous must have shape ({count}, {self.num_continuous}); got {continuous.shape}.")
        return self.run_generator([latents, labels, continuous])

    def generate(self, num_samples, labels=None, seed=None, continuous=None):
        """Images with categorical codes `labels` (cycled when `None`) and continuous codes `continuous`."""
        return self.generate_from_latents(self.sample_latents(num_samples, seed), labels, continuous, seed)

    def get_config(self):
        return {
            **super().get_config(),
            "num_continuous": self.num_continuous,
            "info_weight": self.info_weight,
            "continuous_weight": self.continuous_weight,
        }


# --------------------------------------------------------------------------------------------------


class _TranslationGAN(GAN):
    """Image-to-image models: `fit(source, target)`, `translate(images)`; no latent prior."""

    conditional_training = False

    def check_training_data(self, x, y):
        if x is None or y is None:
            raise ValueError(f"{self.name} translates images: call fit(source_images, target_images).")
        check_images(x, self.source_shape, self.pixel_range, "source images")
        check_images(y, self.image_shape, self.pixel_range, "target images")
        if hasattr(x, "__len__") and hasattr(y, "__len__") and len(x) != len(y):
            raise ValueError(f"source and target images must be equally many; got {len(x)} and {len(y)}.")

    @property
    def source_shape(self):
        return tuple(self.generator.input_shape[1:])

    def translate(self, images, batch_size=256):
        """The generator's translation of `images` (numpy, in `pixel_range`)."""
        images = np.asarray(images)
        check_images(images, self.source_shape, self.pixel_range, "images")
        return self.run_generator(images.astype(np.float32), batch_size)

    def generate(self, num_samples, labels=None, seed=None, source=None):
        """Translations of the first `num_samples` of `source`: these models draw no latents, so the
        source images are required; `labels` and `seed` are not used."""
        count = check_count(num_samples)
        if source is None:
            raise ValueError(f"{self.name} translates images: call generate(num_samples, source=images).")
        if labels is not None:
            raise ValueError(f"{self.name} takes no labels.")
        if len(source) < count:
            raise ValueError(f"source holds {len(source)} images; asked for num_samples={count}.")
        return self.translate(np.asarray(source)[:count])

    def interpolate(self, *args, **kwargs):
        raise NotImplementedError(f"{self.name} has no latent space to interpolate in; translate images instead.")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Pix2Pix(_TranslationGAN):
    """pix2pix (Isola et al., 2017): a U-Net generator and a PatchGAN discriminator on
    `[source, target]` pairs; the generator adds `l1_weight` times the L1 distance to the target.

    Args:
        l1_weight: lambda of the L1 term (100 in the paper).
    """

    def __init__(self, generator, discriminator, l1_weight=100.0, **kwargs):
        super().__init__(generator, discriminator, **kwargs)
        if not l1_weight >= 0:
            raise ValueError(f"l1_weight must be >= 0; got l1_weight={l1_weight!r}.")
        self.l1_weight = float(l1_weight)
        self.l1_tracker = keras.metrics.Mean(name="l1")

    @property
    def metrics(self):
        return super().metrics + [self.l1_tracker]

    def adversarial_step(self, data):
        source, target, _ = keras.utils.unpack_x_y_sample_weight(data)
        fake = ops.stop_gradient(self.generator(source, training=True))

        def d_loss_fn():
            real_scores = self.discriminator([source, self._with_instance_noise(target)], training=True)
            fake_scores = self.discriminator([source, self._with_instance_noise(fake)], training=True)
            d_loss = losses.discriminator_loss(self.loss_name, real_scores, fake_scores, self.label_smoothing)
            return d_loss, losses.discriminator_accuracy(self.loss_name, real_scores, fake_scores)

        d_loss, d_accuracy = gradients.minimize(d_loss_fn, self.discriminator_variables(), self.d_optimizer)

        def g_loss_fn():
            fake = self.generator(source, training=True)
            adversarial = losses.generator_loss(self.loss_name, self.discriminator([source, fake], training=True))
            l1 = ops.mean(ops.abs(target - fake))
            return adversarial + self.l1_weight * l1, (adversarial, l1)

        _, (adversarial, l1) = gradients.minimize(g_loss_fn, self.generator_variables(), self.g_optimizer)
        return self.update_trackers(d_loss=d_loss, g_loss=adversarial, d_accuracy=d_accuracy, l1=l1)

    def get_config(self):
        return {**super().get_config(), "l1_weight": self.l1_weight}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CycleGAN(_TranslationGAN):
    """CycleGAN (Zhu et al., 2017): generators A->B (`generator`) and B->A (`generator_ba`),
    discriminators on B (`discriminator`) and on A (`discriminator_a`), trained on unpaired images
    `fit(images_a, images_b)` with adversarial, cycle-consistency and identity losses.

    Args:
        generator_ba, discriminator_a: the second generator and discriminator.
        cycle_weight: lambda of the L1 cycle loss (10 in the paper).
        identity_weight: weight of the identity loss relative to `cycle_weight` (0.5 in the paper).
    """

    _NESTED = ("generator", "discriminator", "generator_ba", "discriminator_a")

    def __init__(self, generator, discriminator, generator_ba, discriminator_a, cycle_weight=10.0, identity_weight=0.5, **kwargs):
        super().__init__(generator, discriminator, **kwargs)
        for arg, value in (("cycle_weight", cycle_weight), ("identity_weight", identity_weight)):
            if not value >= 0:
                raise ValueError(f"{arg} must be >= 0; got {arg}={value!r}.")
        self.generator_ba = generator_ba
        self.discriminator_a = discriminator_a
        self.cycle_weight = float(cycle_weight)
        self.identity_weight = float(identity_weight)
        self.cycle_tracker = keras.metrics.Mean(name="cycle")

    @property
    def metrics(self):
        return super().metrics + [self.cycle_tracker]

    def generator_variables(self):
        return self.generator.trainable_variables + self.generator_ba.trainable_variables

    def discriminator_variables(self):
        return self.discriminator.trainable_variables + self.discriminator_a.trainable_variables

    def translate(self, images, direction="a_to_b", batch_size=256):
        """Translates `images` from domain A to B (`"a_to_b"`) or back (`"b_to_a"`)."""
        if direction not in ("a_to_b", "b_to_a"):
            raise ValueError(f"direction must be 'a_to_b' or 'b_to_a'; got direction={direction!r}.")
        if direction == "a_to_b":
            return super().translate(images, batch_size)
        images = np.asarray(images)
        check_images(images, self.image_shape, self.pixel_range, "images")
        parts = [
            keras.ops.convert_to_numpy(self.generator_ba(images[i : i + batch_size].astype(np.float32), training=False))
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(parts, axis=0)

    def adversarial_step(self, data):
        real_a, real_b, _ = keras.utils.unpack_x_y_sample_weight(data)

        def g_loss_fn():
            fake_b = self.generator(real_a, training=True)
            fake_a = self.generator_ba(real_b, training=True)
            cycled_a = self.generator_ba(fake_b, training=True)
            cycled_b = self.generator(fake_a, training=True)
            cycle = ops.mean(ops.abs(real_a - cycled_a)) + ops.mean(ops.abs(real_b - cycled_b))
            identity = ops.mean(ops.abs(real_b - self.generator(real_b, training=True))) + ops.mean(
                ops.abs(real_a - self.generator_ba(real_a, training=True))
            )
            adversarial = losses.generator_loss(
                self.loss_name, self.discriminator(fake_b, training=True)
            ) + losses.generator_loss(self.loss_name, self.discriminator_a(fake_a, training=True))
            g_loss = adversarial + self.cycle_weight * (cycle + self.identity_weight * identity)
            return g_loss, (adversarial, cycle, fake_a, fake_b)

        _, (adversarial, cycle, fake_a, fake_b) = gradients.minimize(g_loss_fn, self.generator_variables(), self.g_optimizer)
        fake_a, fake_b = ops.stop_gradient(fake_a), ops.stop_gradient(fake_b)

        def d_loss_fn():
            real_b_scores = self.discriminator(self._with_instance_noise(real_b), training=True)
            fake_b_scores = self.discriminator(self._with_instance_noise(fake_b), training=True)
            real_a_scores = self.discriminator_a(self._with_instance_noise(real_a), training=True)
            fake_a_scores = self.discriminator_a(self._with_instance_noise(fake_a), training=True)
            d_loss = losses.discriminator_loss(
                self.loss_name, real_b_scores, fake_b_scores, self.label_smoothing
            ) + losses.discriminator_loss(self.loss_name, real_a_scores, fake_a_scores, self.label_smoothing)
            return d_loss, losses.discriminator_accuracy(self.loss_name, real_b_scores, fake_b_scores)

        d_loss, d_accuracy = gradients.minimize(d_loss_fn, self.discriminator_variables(), self.d_optimizer)
        return self.update_trackers(d_loss=d_loss, g_loss=adversarial, d_accuracy=d_accuracy, cycle=cycle)

    def get_config(self):
        return {
            **super().get_config(),
            "generator_ba": _serialize(self.generator_ba),
            "discriminator_a": _serialize(self.discriminator_a),
            "cycle_weight": self.cycle_weight,
            "identity_weight": self.identity_weight,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SRGAN(_TranslationGAN):
    """SRGAN (Ledig et al., 2017): `fit(low_res, high_res)` trains an SRResNet generator with a
    content loss plus `adversarial_weight` times the adversarial loss.

    The paper's content loss compares VGG features; no pretrained weights are downloaded here, so the
    content loss compares the features of `content_model` (any frozen Keras model taking high-resolution
    images, for example a classifier trained in the project) and adds `pixel_weight` times the pixel MSE.

    Training has two stages, as in the paper, where a generator trained on the pixel MSE alone
    (SRResNet) initialises the GAN:

        gan.pretrain(low_res, high_res, epochs=20, batch_size=32, learning_rate=1e-3)  # MSE only
        gan.fit(low_res, high_res, epochs=10, batch_size=32)  # content + adversarial

    `pretrain` leaves the discriminator and its optimizer untouched; `fit` alone trains the GAN from
    scratch.

    Args:
        content_model: the frozen feature network, or `None` for the pixel MSE alone.
        content_weight, pixel_weight, adversarial_weight: the loss weights (adversarial 1e-3 in the paper).
    """

    _NESTED = ("generator", "discriminator", "content_model")
    _content_only = False  # set by pretrain(): train_step then runs content_step

    def __init__(
        self, generator, discriminator, content_model=None, content_weight=1.0, pixel_weight=1.0, adversarial_weight=1e-3, **kwargs
    ):
        super().__init__(generator, discriminator, **kwargs)
        for arg, value in (
            ("content_weight", content_weight),
            ("pixel_weight", pixel_weight),
            ("adversarial_weight", adversarial_weight),
        ):
            if not value >= 0:
                raise ValueError(f"{arg} must be >= 0; got {arg}={value!r}.")
        if content_model is not None:
            if not isinstance(content_model, keras.Model):
                raise ValueError(f"content_model must be a keras.Model or None; got {type(content_model).__name__}.")
            if tuple(content_model.input_shape[1:]) != self.image_shape:
                raise ValueError(
                    f"content_model takes inputs {content_model.input_shape[1:]}, not the high-resolution "
                    f"images {self.image_shape}."
                )
            content_model.trainable = False
        self.content_model = content_model
        self.content_weight = float(content_weight)
        self.pixel_weight = float(pixel_weight)
        self.adversarial_weight = float(adversarial_weight)
        self.content_tracker = keras.metrics.Mean(name="content")

    @property
    def metrics(self):
        return super().metrics + [self.content_tracker]

    @property
    def scale(self):
        return self.image_shape[0] // self.source_shape[0]

    def content_loss(self, real, fake):
        loss = self.pixel_weight * ops.mean(ops.square(real - fake))
        if self.content_model is not None and self.content_weight:
            real_features = keras.tree.flatten(self.content_model(real, training=False))
            fake_features = keras.tree.flatten(self.content_model(fake, training=False))
            for r, f in zip(real_features, fake_features):
                loss = loss + self.content_weight * ops.mean(ops.square(r - f))
        return loss

    def pretrain(self, low_res, high_res, learning_rate=None, **fit_kwargs):
        """The content-only first stage (SRResNet): trains the generator on the pixel MSE alone, with
        `g_optimizer` (at `learning_rate` for this stage if given); the discriminator is not used.

        `fit_kwargs` go to `fit` (`epochs`, `batch_size`, `callbacks`, ...); returns its `History`,
        whose `content` is the pixel MSE."""
        if self.g_optimizer is None:
            raise ValueError(f"{self.name} is not compiled: call compile() before pretrain().")
        if learning_rate is not None:
            if not learning_rate > 0:
                raise ValueError(f"learning_rate must be positive or None; got learning_rate={learning_rate!r}.")
            if not isinstance(self.g_optimizer.learning_rate, keras.Variable):
                raise ValueError("learning_rate cannot be set when g_optimizer follows a learning-rate schedule.")
        previous_rate = keras.ops.convert_to_numpy(self.g_optimizer.learning_rate)
        self._content_only = True
        self.train_function = None  # fit() builds the content-only step, not the cached adversarial one
        try:
            if learning_rate is not None:
                self.g_optimizer.learning_rate.assign(learning_rate)
            return self.fit(low_res, high_res, **fit_kwargs)
        finally:
            if learning_rate is not None:
                self.g_optimizer.learning_rate.assign(previous_rate)
            self._content_only = False
            self.train_function = None

    def content_step(self, data):
        """One generator update on the pixel MSE alone; returns `{"content": mse}`."""
        low_res, high_res, _ = keras.utils.unpack_x_y_sample_weight(data)

        def loss_fn():
            return ops.mean(ops.square(high_res - self.generator(low_res, training=True)))

        mse, _ = gradients.minimize(loss_fn, self.generator_variables(), self.g_optimizer)
        self.content_tracker.update_state(mse)
        return {self.content_tracker.name: self.content_tracker.result()}

    def train_step(self, *args):
        step = self.content_step if self._content_only else self.adversarial_step
        return gradients.train_step(self, step, args)

    def adversarial_step(self, data):
        low_res, high_res, _ = keras.utils.unpack_x_y_sample_weight(data)
        fake = ops.stop_gradient(self.generator(low_res, training=True))

        def d_loss_fn():
            real_scores = self.discriminator(self._with_instance_noise(high_res), training=True)
            fake_scores = self.discriminator(self._with_instance_noise(fake), training=True)
            d_loss = losses.discriminator_loss(self.loss_name, real_scores, fake_scores, self.label_smoothing)
            return d_loss, losses.discriminator_accuracy(self.loss_name, real_scores, fake_scores)

        d_loss, d_accuracy = gradients.minimize(d_loss_fn, self.discriminator_variables(), self.d_optimizer)

        def g_loss_fn():
            fake = self.generator(low_res, training=True)
            adversarial = losses.generator_loss(self.loss_name, self.discriminator(fake, training=True))
            content = self.content_loss(high_res, fake)
            return content + self.adversarial_weight * adversarial, (adversarial, content)

        _, (adversarial, content) = gradients.minimize(g_loss_fn, self.generator_variables(), self.g_optimizer)
        return self.update_trackers(d_loss=d_loss, g_loss=adversarial, d_accuracy=d_accuracy, content=content)

    def get_config(self):
        return {
            **super().get_config(),
            "content_model": _serialize(self.content_model),
            "content_weight": self.content_weight,
            "pixel_weight": self.pixel_weight,
            "adversarial_weight": self.adversarial_weight,
        }


# --------------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StyleGAN(GAN):
    """A small StyleGAN (Karras et al., 2019; StyleGAN2 layers, 2020): mapping network z -> w, a
    synthesis network driven by one style per layer through modulated convolutions, per-layer noise,
    style mixing regularization in training, and the truncation trick in `generate`.

    The exported `generator` is `synthesis(broadcast(mapping(z)))`. Non-saturating loss with the R1
    penalty, as in the paper.

    Args:
        mapping: z `(batch, latent_dim)` -> w `(batch, w_dim)`.
        synthesis: ws `(batch, num_ws, w_dim)` -> images.
        discriminator: images -> scores.
        style_mixing: probability that a training batch mixes two latents at a random layer (0.9).
        w_avg_decay: decay of the running mean of w used by truncation.
    """

    _NESTED = ("mapping", "synthesis", "discriminator")

    def __init__(self, mapping, synthesis, discriminator, style_mixing=0.9, w_avg_decay=0.995, **kwargs):
        kwargs.pop("generator", None)
        generator = stylegan_generator(mapping, synthesis)
        super().__init__(generator, discriminator, **kwargs)
        if not 0.0 <= style_mixing <= 1.0:
            raise ValueError(f"style_mixing must be in [0, 1]; got style_mixing={style_mixing!r}.")
        if not 0.0 <= w_avg_decay < 1.0:
            raise ValueError(f"w_avg_decay must be in [0, 1); got w_avg_decay={w_avg_decay!r}.")
        self.mapping = mapping
        self.synthesis = synthesis
        self.style_mixing = float(style_mixing)
        self.w_avg_decay = float(w_avg_decay)
        self.num_ws = int(synthesis.input_shape[1])
        self.w_avg = self.add_weight(
            shape=(int(mapping.output_shape[-1]),), initializer="zeros", trainable=False, name="w_avg"
        )

    def mixed_styles(self, batch, training=True):
        """ws `(batch, num_ws, w_dim)` from two latents swapped at a random layer with probability
        `style_mixing` (style mixing regularization); also returns the first latents' w."""
        w1 = self.mapping(self.sample_latent(batch), training=training)
        w2 = self.mapping(self.sample_latent(batch), training=training)
        crossover = keras.random.randint((batch, 1), 1, self.num_ws, seed=self.seed_generator)
        mix = ops.less(keras.random.uniform((batch, 1), seed=self.seed_generator), self.style_mixing)
        crossover = ops.where(mix, crossover, self.num_ws)  # (batch, 1): no mixing -> all layers from w1
        first = ops.less(ops.arange(self.num_ws)[None, :], crossover)[:, :, None]  # (batch, num_ws, 1)
        return ops.where(first, w1[:, None, :], w2[:, None, :]), w1

    def adversarial_step(self, data):
        real, _ = self.unpack_images(data)
        batch = ops.shape(real)[0]
        for _ in range(self.n_critic):
            ws, _ = self.mixed_styles(batch)
            fake = ops.stop_gradient(self.synthesis(ws, training=True))

            def d_loss_fn():
                real_scores = self.discriminator(self._with_instance_noise(real), training=True)
                fake_scores = self.discriminator(self._with_instance_noise(fake), training=True)
                d_loss = losses.discriminator_loss(self.loss_name, real_scores, fake_scores, self.label_smoothing)
                penalty = ops.zeros(())
                if self.r1_weight:
                    penalty = losses.r1_penalty(lambda x: self.discriminator(x, training=True), real)
                accuracy = losses.discriminator_accuracy(self.loss_name, real_scores, fake_scores)
                return d_loss + self.r1_weight * penalty, (d_loss, accuracy, penalty)

            _, (d_loss, d_accuracy, penalty) = gradients.minimize(d_loss_fn, self.discriminator_variables(), self.d_optimizer)

        def g_loss_fn():
            ws, w1 = self.mixed_styles(batch)
            fake = self.synthesis(ws, training=True)
            return losses.generator_loss(self.loss_name, self.discriminator(fake, training=True)), w1

        g_loss, w1 = gradients.minimize(g_loss_fn, self.generator_variables(), self.g_optimizer)
        self.w_avg.assign(self.w_avg_decay * self.w_avg + (1.0 - self.w_avg_decay) * ops.mean(ops.stop_gradient(w1), axis=0))
        return self.update_trackers(d_loss=d_loss, g_loss=g_loss, d_accuracy=d_accuracy, penalty=penalty)

    def styles(self, latents, truncation_psi=1.0):
        """w for `latents` `(n, latent_dim)`, pulled towards the running mean by the truncation trick:
        `w_avg + psi * (w - w_avg)`."""
        if not 0.0 <= truncation_psi <= 1.0:
            raise ValueError(f"truncation_psi must be in [0, 1]; got truncation_psi={truncation_psi!r}.")
        w = keras.ops.convert_to_numpy(self.mapping(np.asarray(latents, np.float32), training=False))
        w_avg = keras.ops.convert_to_numpy(self.w_avg)
        return w_avg + truncation_psi * (w - w_avg)

    def synthesize(self, ws):
        """Images from per-layer styles `(n, num_ws, w_dim)`."""
        ws = np.asarray(ws, np.float32)
        if ws.ndim != 3 or ws.shape[1:] != tuple(self.synthesis.input_shape[1:]):
            raise ValueError(f"ws must have shape (n, {self.num_ws}, w_dim); got {ws.shape}.")
        parts = [keras.ops.convert_to_numpy(self.synthesis(ws[i : i + 256], training=False)) for i in range(0, len(ws), 256)]
        return np.concatenate(parts, axis=0)

    def generate(self, num_samples, labels=None, seed=None, truncation_psi=1.0):
        """Images from `num_samples` latents; `truncation_psi < 1` trades variety for fidelity."""
        self.labels_for(labels, check_count(num_samples))
        w = self.styles(self.sample_latents(num_samples, seed), truncation_psi)
        return self.synthesize(np.repeat(w[:, None, :], self.num_ws, axis=1))

    def style_mix(self, source_latents, style_latents, crossover, truncation_psi=1.0):
        """Images whose layers before `crossover` take the styles of `source_latents` and the rest
        those of `style_latents` (coarse styles from one, fine from the other)."""
        if not isinstance(crossover, int) or not 0 <= crossover <= self.num_ws:
            raise ValueError(f"crossover must be an integer in [0, {self.num_ws}]; got crossover={crossover!r}.")
        w1 = self.styles(source_latents, truncation_psi)
        w2 = self.styles(style_latents, truncation_psi)
        if w1.shape != w2.shape:
            raise ValueError(f"source_latents and style_latents must match in shape; got {w1.shape} and {w2.shape}.")
        ws = np.repeat(w1[:, None, :], self.num_ws, axis=1)
        ws[:, crossover:] = w2[:, None, :]
        return self.synthesize(ws)

    def get_config(self):
        config = super().get_config()
        del config["generator"]
        config.update(
            {
                "mapping": _serialize(self.mapping),
                "synthesis": _serialize(self.synthesis),
                "style_mixing": self.style_mixing,
                "w_avg_decay": self.w_avg_decay,
            }
        )
        return config
