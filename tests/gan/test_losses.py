"""Adversarial losses and penalties against closed forms and Keras' own cross-entropy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_models.gan import losses

REAL = np.array([[2.0], [-0.5], [0.3], [4.0]], np.float32)
FAKE = np.array([[-1.5], [0.7], [-3.0], [0.1]], np.float32)


def _bce(targets, logits):
    return float(keras.losses.BinaryCrossentropy(from_logits=True)(targets, logits))


@pytest.mark.parametrize("loss", ["minimax", "non_saturating"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_discriminator_loss_matches_keras(loss, smoothing):
    expected = _bce(np.full_like(REAL, 1.0 - smoothing), REAL) + _bce(np.zeros_like(FAKE), FAKE)
    got = float(losses.discriminator_loss(loss, REAL, FAKE, label_smoothing=smoothing))
    assert got == pytest.approx(expected, rel=1e-5)


def test_generator_losses_match_closed_forms():
    d_fake = 1.0 / (1.0 + np.exp(-FAKE.astype(np.float64)))
    assert float(losses.generator_loss("minimax", FAKE)) == pytest.approx(np.mean(np.log(1 - d_fake)), rel=1e-5)
    assert float(losses.generator_loss("non_saturating", FAKE)) == pytest.approx(-np.mean(np.log(d_fake)), rel=1e-5)
    assert float(losses.generator_loss("least_squares", FAKE)) == pytest.approx(0.5 * np.mean((FAKE - 1) ** 2), rel=1e-6)
    assert float(losses.generator_loss("wasserstein", FAKE)) == pytest.approx(-FAKE.mean(), rel=1e-6)
    assert float(losses.generator_loss("hinge", FAKE)) == pytest.approx(-FAKE.mean(), rel=1e-6)


def test_critic_losses_match_closed_forms():
    assert float(losses.discriminator_loss("wasserstein", REAL, FAKE)) == pytest.approx(FAKE.mean() - REAL.mean(), rel=1e-6)
    hinge = np.maximum(0, 1 - REAL).mean() + np.maximum(0, 1 + FAKE).mean()
    assert float(losses.discriminator_loss("hinge", REAL, FAKE)) == pytest.approx(hinge, rel=1e-6)
    least_squares = 0.5 * np.mean((REAL - 0.9) ** 2) + 0.5 * np.mean(FAKE**2)
    assert float(losses.discriminator_loss("least_squares", REAL, FAKE, 0.1)) == pytest.approx(least_squares, rel=1e-6)


def test_minimax_generator_saturates_where_non_saturating_does_not():
    # Early in training D(G(z)) is near 0: the minimax gradient vanishes, the non-saturating one does not.
    logits = tf.constant([[-8.0]])
    grads = {}
    for loss in ("minimax", "non_saturating"):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = losses.generator_loss(loss, logits)
        grads[loss] = abs(float(tape.gradient(value, logits)[0, 0]))
    assert grads["minimax"] < 1e-3 < 0.9 < grads["non_saturating"]


def test_discriminator_accuracy_counts_both_sides():
    # real: 3 of 4 above 0; fake: 2 of 4 at or below 0
    assert float(losses.discriminator_accuracy("hinge", REAL, FAKE)) == pytest.approx(0.5 * (0.75 + 0.5))
    assert float(losses.discriminator_accuracy("least_squares", REAL, FAKE)) == pytest.approx(0.5 * (0.5 + 0.75))


def test_gradient_penalty_of_a_linear_critic_is_exact_with_second_order_gradient():
    # f(x) = <w, x> has gradient w everywhere: the penalty is (||w|| - 1)^2 wherever it is sampled,
    # and its gradient with respect to w, through the nested tape, is 2 (||w|| - 1) w / ||w||.
    rng = np.random.default_rng(0)
    w = tf.Variable(rng.normal(size=(1, 4, 4, 1)).astype(np.float32))
    real = tf.constant(rng.normal(size=(6, 4, 4, 1)).astype(np.float32))
    fake = tf.constant(rng.normal(size=(6, 4, 4, 1)).astype(np.float32))
    critic = lambda x: tf.reduce_sum(x * w, axis=[1, 2, 3])  # noqa: E731
    with tf.GradientTape() as tape:
        penalty = losses.gradient_penalty(critic, real, fake, keras.random.SeedGenerator(1))
    norm = np.linalg.norm(w.numpy())
    assert float(penalty) == pytest.approx((norm - 1) ** 2, rel=1e-5)
    gradient = tape.gradient(penalty, w).numpy()
    np.testing.assert_allclose(gradient, 2 * (norm - 1) * w.numpy() / norm, rtol=1e-4, atol=1e-6)


def test_r1_penalty_of_a_linear_critic_is_half_the_squared_norm():
    w = tf.constant(np.arange(1, 17, dtype=np.float32).reshape(1, 4, 4, 1) / 10)
    real = tf.constant(np.ones((3, 4, 4, 1), np.float32))
    penalty = losses.r1_penalty(lambda x: tf.reduce_sum(x * w, axis=[1, 2, 3]), real)
    assert float(penalty) == pytest.approx(0.5 * float(tf.reduce_sum(w * w)), rel=1e-6)


def test_unknown_loss_is_named():
    with pytest.raises(ValueError, match="loss must be one of .* got loss='wasserstien'"):
        losses.discriminator_loss("wasserstien", REAL, FAKE)
