"""The pixel likelihoods and latent densities: keras.ops equal to TensorFlow Probability, and their
defining properties (binarization at half the range, 256 levels whose masses sum to one)."""

import numpy as np
import pytest
from keras import ops

from keras_models.likelihood import distributions as d

SHAPE = (3, 4, 4, 2)


@pytest.fixture()
def rng():
    return np.random.default_rng(0)


def _close(ops_values, tfp_values):
    np.testing.assert_allclose(np.asarray(ops_values), np.asarray(tfp_values), rtol=1e-6, atol=1e-6)


def test_bernoulli_matches_tfp(rng):
    logits = rng.normal(0.0, 4.0, SHAPE).astype("float32")
    targets = rng.integers(0, 2, SHAPE).astype("float32")
    _close(d.bernoulli_log_prob_ops(logits, targets), d.bernoulli_log_prob_tfp(logits, targets))


def test_gaussian_matches_tfp(rng):
    mean = rng.normal(size=SHAPE).astype("float32")
    log_scale = rng.uniform(-4.0, 1.0, SHAPE).astype("float32")
    x = rng.uniform(0.0, 1.0, SHAPE).astype("float32")
    _close(d.normal_log_prob_ops(mean, log_scale, x), d.normal_log_prob_tfp(mean, log_scale, x))
    _close(d.standard_normal_log_prob_ops(x), d.standard_normal_log_prob_tfp(x))


def test_normal_kl_matches_tfp(rng):
    mean = rng.normal(0.0, 2.0, (5, 8)).astype("float32")
    log_variance = rng.uniform(-5.0, 3.0, (5, 8)).astype("float32")
    _close(d.normal_kl_ops(mean, log_variance), d.normal_kl_tfp(mean, log_variance))
    _close(d.kl_to_standard_normal(mean, log_variance, tfp=False), d.kl_to_standard_normal(mean, log_variance, tfp=True))


def test_discretized_logistic_mixture_matches_tfp_on_every_level_and_the_edges(rng):
    k = 4
    # every level 0..255 appears, with locations beyond [-1, 1] and tiny scales, so both tails and
    # sharply peaked components are covered
    levels = np.arange(256, dtype="float32").reshape(4, 8, 8, 1)
    x = d.to_unit_interval(levels / 255.0, (0.0, 1.0))
    shape = (*levels.shape, k)
    logits = rng.normal(size=shape).astype("float32")
    loc = rng.uniform(-1.3, 1.3, shape).astype("float32")
    log_scale = rng.uniform(-7.0, 0.0, shape).astype("float32")
    _close(d.logistic_mixture_log_prob_ops(logits, loc, log_scale, x), d.logistic_mixture_log_prob_tfp(logits, loc, log_scale, x))
    single = (loc[..., 0], log_scale[..., 0], x)
    _close(d.discretized_logistic_log_prob_ops(*single), d.discretized_logistic_log_prob_tfp(*single))


def test_image_log_prob_is_the_same_through_tfp_and_keras_ops(rng):
    images = rng.uniform(0.0, 1.0, (2, 4, 4, 1)).astype("float32")
    params = {
        "bernoulli": [rng.normal(size=(2, 4, 4, 1)).astype("float32")],
        "gaussian": [rng.normal(size=(2, 4, 4, 1)).astype("float32"), rng.uniform(-9, 0, (2, 4, 4, 1)).astype("float32")],
        "logistic_mixture": [rng.normal(size=(2, 4, 4, 1, 3)).astype("float32") for _ in range(3)],
    }
    for likelihood, values in params.items():
        targets = d.pixel_targets(likelihood, images, (0.0, 1.0))
        by_ops = np.asarray(d.image_log_prob(likelihood, values, targets, tfp=False))
        by_tfp = np.asarray(d.image_log_prob(likelihood, values, targets, tfp=True))
        assert by_ops.shape == (2,)
        np.testing.assert_allclose(by_ops, by_tfp, rtol=1e-6, atol=1e-5)  # sums of 16 pixels


def test_logistic_mixture_puts_total_mass_one_on_the_256_levels(rng):
    k = 3
    x = (np.arange(256, dtype="float32") / 127.5 - 1.0).reshape(256, 1)
    params = [np.repeat(rng.normal(size=(1, 1, k)), 256, axis=0).astype("float32"),
              np.repeat(rng.uniform(-1.0, 1.0, (1, 1, k)), 256, axis=0).astype("float32"),
              np.repeat(rng.uniform(-4.0, -1.0, (1, 1, k)), 256, axis=0).astype("float32")]
    log_p = np.asarray(d.logistic_mixture_log_prob_ops(*params, x), np.float64)
    assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-5)


def test_binarization_is_at_half_the_range():
    images = np.array([-1.0, -0.01, 0.0, 0.5, 1.0], "float32")
    np.testing.assert_array_equal(np.asarray(d.binarize(images, (-1.0, 1.0))), [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(np.asarray(d.binarize(images[2:] / 1.0, (0.0, 1.0))), [0, 1, 1])


def test_levels_are_spread_over_the_pixel_range():
    images = np.array([0.0, 1.0, 2.0], "float32")  # pixel_range (0, 2): the middle is level 127.5 -> 128
    np.testing.assert_allclose(np.asarray(d.to_unit_interval(images, (0.0, 2.0))), [-1.0, 1.0 / 255.0, 1.0], atol=1e-7)


def test_unknown_likelihood_is_named():
    with pytest.raises(ValueError, match="likelihood=.*'poisson'"):
        d.check_likelihood("poisson")


def test_latent_log_probs_agree(rng):
    z = rng.normal(size=(3, 5, 4)).astype("float32")
    mean = rng.normal(size=(3, 1, 4)).astype("float32")
    log_variance = rng.uniform(-2, 1, (3, 1, 4)).astype("float32")
    for a, b in zip(d.latent_log_probs(z, mean, log_variance, tfp=False), d.latent_log_probs(z, mean, log_variance, tfp=True)):
        assert tuple(ops.shape(a)) == (3, 5)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-5)
