"""The VAEs: training raises the ELBO on digits, the bounds are ordered, sampling, labels, the shared
model check (XLA step, .keras round trip, encoder and decoder in TFLite and ONNX), bad input."""

import keras
import numpy as np
import pytest
from model_checks import check_model

import keras_models
from keras_models.data import load_digits
from keras_models.generative import SampleGrid
from keras_models.likelihood import VAE, distributions

SHAPE = (8, 8, 1)


def _tiny(name="vae", **kwargs):
    options = {"image_shape": SHAPE, "latent_dim": 4, "width": 8, "jit_compile": False, "seed": 0}
    options.update(kwargs)
    return keras_models.build(name, **options)


def _images(count=16, seed=0, low=0.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, (count, *SHAPE)).astype("float32")


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def trained(digits):
    """A dense Bernoulli VAE trained 5 epochs on scikit-learn's digits, and its test ELBO before."""
    keras.utils.set_random_seed(0)
    (x, _), (x_test, _) = digits
    vae = keras_models.build("vae", latent_dim=8, width=32, seed=0)
    before = vae.elbo(x_test[:200], num_samples=10, seed=0).mean()
    history = vae.fit(x, epochs=5, batch_size=64, verbose=0)
    return vae, before, history


def test_training_on_digits_raises_the_elbo(trained, digits):
    vae, before, history = trained
    _, (x_test, _) = digits
    after = vae.elbo(x_test[:200], num_samples=10, seed=0).mean()
    # An untrained decoder codes each of the 64 binarized pixels at about 0.7 nats (-45 per image);
    # five epochs reach about -26 on held-out digits.
    assert after - before > 12.0, (before, after)
    assert set(history.history) == {"loss", "reconstruction", "kl"}
    loss, reconstruction, kl = (history.history[key][-1] for key in ("loss", "reconstruction", "kl"))
    assert loss == pytest.approx(reconstruction + kl, rel=1e-4)  # beta = 1: the loss is the negative ELBO
    assert kl > 0.0


def test_importance_weighted_bound_is_ordered_and_grows_with_k(trained, digits):
    """E[L_k] is nondecreasing in k and E[L_1] is the ELBO (Burda et al., 2016, Theorem 1). On 200
    held-out digits, with the seeds fixed, the measured gaps (ELBO to L_10 about 0.45 nats, L_10 to
    L_100 about 0.09) are several times the spread of the means over seeds (0.08 for k = 1, 0.015 for
    k = 10, 0.005 for k = 100), so the ordering of the means is a property, not luck."""
    vae, _, _ = trained
    _, (x_test, _) = digits
    images = x_test[:200]
    elbo = vae.elbo(images, num_samples=10, seed=0)
    bounds = {k: vae.log_likelihood(images, num_samples=k, seed=1) for k in (1, 10, 100)}
    assert elbo.shape == bounds[100].shape == (200,)
    assert elbo.mean() < bounds[10].mean() < bounds[100].mean()
    assert bounds[1].mean() < bounds[10].mean()
    assert np.all(bounds[100] < 0.0)  # probabilities of binary images


def test_importance_weighted_bound_is_above_the_mean_log_weight_per_example(trained, digits):
    """For the same k draws, log mean exp(w) >= mean w for every example (Jensen): no sampling luck."""
    vae, _, _ = trained
    _, (x_test, _) = digits
    noise = np.random.default_rng(0).standard_normal((50, 20, vae.latent_dim)).astype("float32")
    log_px_z, log_pz, log_qz, _ = (np.asarray(t) for t in vae.log_weights(x_test[:50], None, noise))
    bound = np.asarray(VAE.importance_weighted_bound(log_px_z, log_pz, log_qz))
    assert np.all(bound >= (log_px_z + log_pz - log_qz).mean(axis=1) - 1e-4)


def test_bernoulli_models_images_binarized_at_half_the_range():
    vae = _tiny(pixel_range=(-1.0, 1.0))
    images = _images(8, low=-1.0, high=1.0)
    binary = np.where(images >= 0.0, 1.0, -1.0).astype("float32")
    np.testing.assert_allclose(vae.elbo(images, seed=3), vae.elbo(binary, seed=3), rtol=1e-6)
    drawn = vae.generate(6, seed=0, pixels="sample")
    assert set(np.unique(drawn)) <= {-1.0, 1.0}


@pytest.mark.parametrize("likelihood", distributions.LIKELIHOODS)
def test_generate_shapes_and_range(likelihood):
    vae = _tiny(likelihood=likelihood, pixel_range=(-1.0, 1.0), architecture="conv")
    for pixels in ("mean", "sample"):
        images = vae.generate(5, seed=1, pixels=pixels)
        assert images.shape == (5, *SHAPE) and images.dtype == np.float32
        assert images.min() >= -1.0 and images.max() <= 1.0
        np.testing.assert_array_equal(images, vae.generate(5, seed=1, pixels=pixels))
        assert not np.array_equal(images, vae.generate(5, seed=2, pixels=pixels))
    if likelihood == "logistic_mixture":
        levels = (vae.generate(5, seed=1, pixels="sample") + 1.0) / 2.0 * 255.0
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)  # 256 levels over the range


def test_conditional_generation_depends_on_labels(tmp_path):
    vae = _tiny("conditional_vae", num_classes=3)
    assert vae.conditional and set(vae.export_targets()) == {"encoder", "decoder"}
    grid = SampleGrid(tmp_path, num_samples=6)  # the GAN family's sample grids work unchanged
    vae.fit(_images(), np.arange(16) % 3, batch_size=8, epochs=1, verbose=0, callbacks=[grid])
    assert [path.name for path in grid.paths] == ["samples_epoch_001.png"] and grid.paths[0].stat().st_size > 0
    latents = np.repeat(vae.sample_latents(1, seed=0), 3, axis=0)
    images = vae.generate_from_latents(latents, labels=[0, 1, 2])
    assert not np.allclose(images[0], images[1]) and not np.allclose(images[1], images[2])
    np.testing.assert_allclose(vae.generate_from_latents(latents, labels=1), images[[1, 1, 1]], atol=1e-6)
    assert vae.generate(6, seed=0).shape == (6, *SHAPE)  # labels cycle through the classes
    elbo = vae.elbo(_images(4), labels=[0, 1, 2, 0], seed=0)
    assert not np.allclose(elbo, vae.elbo(_images(4), labels=[1, 2, 0, 1], seed=0))


def test_interpolation_and_traversal(trained):
    vae, _, _ = trained
    images, latents = vae.interpolate(5, seed=0)
    assert images.shape == (5, 8, 8, 1) and latents.shape == (5, 8)
    images, latents = vae.traverse(2, values=[-2.0, 0.0, 2.0], seed=0)
    assert images.shape == (3, 8, 8, 1)
    np.testing.assert_array_equal(latents[:, 2], [-2.0, 0.0, 2.0])
    np.testing.assert_array_equal(latents[0, [0, 1, 3]], latents[2, [0, 1, 3]])
    with pytest.raises(ValueError, match="dimension"):
        vae.traverse(8)


def test_iwae_objective_trains_on_the_bound():
    vae = _tiny(objective="iwae", num_samples=4)
    history = vae.fit(_images(), batch_size=16, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    # the IWAE loss is the negative bound, not reconstruction + KL
    assert history.history["loss"][-1] != pytest.approx(history.history["reconstruction"][-1] + history.history["kl"][-1])
    with pytest.raises(ValueError, match="beta"):
        _tiny(objective="iwae", beta=4.0)


def test_beta_vae_weighs_the_kl_term():
    vae = _tiny("beta_vae")
    assert vae.beta == 4.0
    loss = float(vae.compute_loss(x=_images()))
    reconstruction, kl = float(vae.reconstruction_tracker.result()), float(vae.kl_tracker.result())
    assert kl > 0.0 and loss == pytest.approx(reconstruction + 4.0 * kl, rel=1e-5)


# XLA-compiling the convolutional mixture's step and exporting it takes a minute on two busy cores.
@pytest.mark.parametrize("likelihood, architecture", [
    ("bernoulli", "dense"), pytest.param("logistic_mixture", "conv", marks=pytest.mark.slow),
])
def test_shared_model_check_exports_encoder_and_decoder(likelihood, architecture, tmp_path):
    vae = _tiny(likelihood=likelihood, architecture=architecture, num_mixtures=2, jit_compile=True)
    rng = np.random.default_rng(1)
    inputs = {"encoder": _images(3, seed=1), "decoder": rng.standard_normal((3, 4)).astype("float32")}
    shapes = {"encoder": [(3, 4), (3, 4)],
              "decoder": (3, *SHAPE) if likelihood == "bernoulli" else [(3, *SHAPE, 2)] * 3}
    results = check_model(vae, _images(), tmp_path=tmp_path, inputs=inputs, expected_shape=shapes)
    assert results["train"]["hlo_instructions"] > 100
    assert set(results) >= {"encoder_tflite", "encoder_onnx", "decoder_tflite", "decoder_onnx"}
    loaded = keras.saving.load_model(tmp_path / "vae.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.elbo(_images(4), seed=0), vae.elbo(_images(4), seed=0), rtol=1e-6)
    np.testing.assert_allclose(loaded.generate(3, seed=0), vae.generate(3, seed=0), atol=1e-6)
    assert loaded.likelihood == likelihood and loaded.get_config()["num_samples"] == 1


def test_bad_input_names_the_problem():
    vae = _tiny()
    with pytest.raises(ValueError, match=r"shape \(batch, 8, 8, 1\)"):
        vae.fit(np.zeros((4, 8, 8, 3), "float32"), verbose=0)
    nan = _images(4)
    nan[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        vae.elbo(nan)
    with pytest.raises(ValueError, match="pixel_range"):
        vae.log_likelihood(_images(4) * 3.0)
    with pytest.raises(ValueError, match="num_samples"):
        vae.log_likelihood(_images(4), num_samples=0)
    with pytest.raises(ValueError, match="unconditional"):
        vae.generate(2, labels=[0, 1])
    conditional = _tiny("conditional_vae", num_classes=3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        conditional.fit(_images(4), np.array([0, 1, 2, 3]), verbose=0)
    with pytest.raises(ValueError, match="labels"):
        conditional.elbo(_images(4))
    with pytest.raises(ValueError, match="likelihood=.*'poisson'"):
        _tiny(likelihood="poisson")
    with pytest.raises(ValueError, match="architecture=.*'rnn'"):
        _tiny(architecture="rnn")
    with pytest.raises(ValueError, match="divisible by 4"):
        _tiny(image_shape=(6, 6, 1), architecture="conv")
    with pytest.raises(ValueError, match="image_shape"):
        _tiny(image_shape=(8, 8))
    with pytest.raises(ValueError, match="latent_dim"):
        _tiny(latent_dim=0)
    with pytest.raises(ValueError, match="pixels"):
        vae.generate(2, pixels="median")


def test_every_variant_is_registered_in_the_likelihood_family():
    registered = {info.name for info in keras_models.list_models(family="likelihood")}
    assert registered == {"vae", "conditional_vae", "beta_vae", "ddpm", "pixelcnn"}
    assert _tiny(jit_compile=None).jit_compile == keras_models.default_jit_compile("likelihood")
