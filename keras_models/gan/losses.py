"""Adversarial losses on raw discriminator scores (logits or critic values), and their regularizers.

| loss             | paper                                     | discriminator                            | generator            |
|------------------|-------------------------------------------|------------------------------------------|----------------------|
| `minimax`        | Goodfellow et al., 2014                   | -log D(x) - log(1 - D(G(z)))             | log(1 - D(G(z)))     |
| `non_saturating` | Goodfellow et al., 2014 (the practical G) | same as minimax                          | -log D(G(z))         |
| `wasserstein`    | Arjovsky et al., 2017 (WGAN)              | f(G(z)) - f(x) (+ clipping or GP)        | -f(G(z))             |
| `least_squares`  | Mao et al., 2017 (LSGAN)                  | (D(x) - 1)^2 / 2 + D(G(z))^2 / 2          | (D(G(z)) - 1)^2 / 2  |
| `hinge`          | Lim & Ye, 2017; Miyato et al., 2018       | relu(1 - D(x)) + relu(1 + D(G(z)))       | -D(G(z))             |
"""

from __future__ import annotations

import keras
from keras import ops

from keras_models.gradients import input_gradient

LOSSES = ("minimax", "non_saturating", "wasserstein", "least_squares", "hinge")


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}; got loss={loss!r}.")
    return loss


def _sigmoid_cross_entropy(logits, target):
    # -t log sigmoid(x) - (1 - t) log(1 - sigmoid(x)), written without overflow
    return ops.softplus(logits) - target * logits


def discriminator_loss(loss: str, real_scores, fake_scores, label_smoothing: float = 0.0):
    """The discriminator's (critic's) loss to minimize.

    Args:
        loss: one of `LOSSES`.
        real_scores, fake_scores: raw scores on real and generated samples, any shape.
        label_smoothing: one-sided label smoothing (Salimans et al., 2016): real targets become
            `1 - label_smoothing` for the cross-entropy and least-squares losses.
    """
    check_loss(loss)
    real_target = 1.0 - label_smoothing
    if loss in ("minimax", "non_saturating"):
        return ops.mean(_sigmoid_cross_entropy(real_scores, real_target)) + ops.mean(
            _sigmoid_cross_entropy(fake_scores, 0.0)
        )
    if loss == "wasserstein":
        return ops.mean(fake_scores) - ops.mean(real_scores)
    if loss == "least_squares":
        return 0.5 * ops.mean(ops.square(real_scores - real_target)) + 0.5 * ops.mean(ops.square(fake_scores))
    return ops.mean(ops.relu(1.0 - real_scores)) + ops.mean(ops.relu(1.0 + fake_scores))


def generator_loss(loss: str, fake_scores):
    """The generator's loss to minimize, given the discriminator's scores on its samples."""
    check_loss(loss)
    if loss == "minimax":
        return -ops.mean(_sigmoid_cross_entropy(fake_scores, 0.0))  # log(1 - D(G(z)))
    if loss == "non_saturating":
        return ops.mean(_sigmoid_cross_entropy(fake_scores, 1.0))  # -log D(G(z))
    if loss == "least_squares":
        return 0.5 * ops.mean(ops.square(fake_scores - 1.0))
    return -ops.mean(fake_scores)  # wasserstein and hinge


def discriminator_accuracy(loss: str, real_scores, fake_scores):
    """The share of real samples scored as real and fakes scored as fake, at the loss's decision
    threshold (0 for logits, critics and hinge; 0.5 for least squares). 1.0 means the discriminator wins
    completely."""
    threshold = 0.5 if loss == "least_squares" else 0.0
    real_right = ops.cast(ops.greater(real_scores, threshold), "float32")
    fake_right = ops.cast(ops.less_equal(fake_scores, threshold), "float32")
    return 0.5 * (ops.mean(real_right) + ops.mean(fake_right))


def _input_gradient_norms(critic, images, extra_inputs):
    gradients = input_gradient(lambda x: critic(x, *extra_inputs), images)  # (batch, h, w, c)
    axes = list(range(1, len(images.shape)))
    return ops.sum(ops.square(gradients), axis=axes)  # (batch,)


def gradient_penalty(critic, real, fake, seed_generator, extra_inputs=()):
    """WGAN-GP's penalty (Gulrajani et al., 2017): `E[(||grad_x critic(x_hat)||_2 - 1)^2]` at random
    points `x_hat` on lines between real and generated samples.

    The inner gradient stays differentiable (`keras_models.gradients.input_gradient`), so the penalty's
    gradient with respect to the critic's weights (a second derivative) reaches the critic's update.

    Args:
        critic: `critic(images, *extra_inputs) -> scores`.
        real, fake: `(batch, h, w, c)` samples.
        seed_generator: the `keras.random.SeedGenerator` that draws the interpolation weights.
        extra_inputs: further critic inputs (labels of a conditional critic).
    """
    batch = ops.shape(real)[0]
    alpha_shape = (batch,) + (1,) * (len(real.shape) - 1)
    alpha = keras.random.uniform(alpha_shape, seed=seed_generator)
    interpolated = real + alpha * (fake - real)
    squared_norms = _input_gradient_norms(critic, interpolated, extra_inputs)
    return ops.mean(ops.square(ops.sqrt(squared_norms + 1e-12) - 1.0))


def r1_penalty(critic, real, extra_inputs=()):
    """The R1 penalty (Mescheder et al., 2018) StyleGAN uses: `E[||grad_x D(x)||^2] / 2` on real data;
    multiply by the weight gamma."""
    return 0.5 * ops.mean(_input_gradient_norms(critic, real, extra_inputs))
