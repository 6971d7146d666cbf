"""The diffusion model: schedules against their closed forms, the samplers (DDIM deterministic and, over
every timestep with eta = 1, equal to DDPM), the variational bound, training on digits, classifier-free
guidance, the shared model check of the exported denoiser, the host loop over the TFLite and ONNX files,
bad input."""

import math

import keras
import numpy as np
import pytest
from model_checks import check_model

import export.diffusion
import keras_models
from keras_models.data import load_digits
from keras_models.likelihood import DiffusionModel, NoiseSchedule, diffusion_schedules
from keras_models.likelihood.diffusion import discretized_gaussian_log_prob

SHAPE = (8, 8, 1)
# The smallest U-Net: one resolution (attention at 8x8), one residual block a level.
TINY = {"image_shape": SHAPE, "width": 8, "channel_multipliers": (1,), "groups": 4, "jit_compile": False, "seed": 0}


def _tiny(**kwargs):
    return keras_models.build("ddpm", **{**TINY, **kwargs})


def _images(count=16, seed=0, low=0.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, (count, *SHAPE)).astype("float32")


def _randomized(model, scale=0.2, seed=0):
    """`model` with random EMA weights (a fresh model's output layer is zero, so it predicts nothing)."""
    rng = np.random.default_rng(seed)
    model.ema_denoiser.set_weights([w + scale * rng.standard_normal(w.shape).astype(w.dtype)
                                    for w in model.ema_denoiser.get_weights()])
    return model


# -- schedules ---------------------------------------------------------------------------------------

def test_linear_schedule_matches_ho_et_al():
    schedule = NoiseSchedule("linear", 1000)
    betas = 1e-4 + (0.02 - 1e-4) * np.arange(1000) / 999.0
    np.testing.assert_allclose(schedule.betas, betas, rtol=1e-12)
    np.testing.assert_allclose(schedule.alpha_bars, np.exp(np.cumsum(np.log1p(-betas))), rtol=1e-10)
    assert schedule.alpha_bars[-1] == pytest.approx(4.04e-5, rel=0.01)  # almost pure noise at T
    short = NoiseSchedule("linear", 100)  # both ends scaled by 1000 / T
    assert short.betas[0] == pytest.approx(1e-3) and short.betas[-1] == pytest.approx(0.2)


def test_cosine_schedule_follows_its_alpha_bar_curve():
    schedule = NoiseSchedule("cosine", 200)
    t = np.arange(1, 201) / 200.0
    f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2.0) ** 2  # noqa: E731
    expected = f(t) / f(0.0)
    unclipped = schedule.betas < 0.999
    np.testing.assert_allclose(schedule.alpha_bars[:-1], expected[:-1], rtol=1e-9)
    assert unclipped[:-1].all() and schedule.betas[-1] == 0.999  # only the last beta is clipped


@pytest.mark.parametrize("name", diffusion_schedules.SCHEDULES)
def test_posterior_is_bayes_rule_of_the_forward_process(name):
    """q(x_{t-1} | x_t, x_0) from q(x_{t-1} | x_0) = N(sqrt(ab_{t-1}) x_0, 1 - ab_{t-1}) and
    q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t), by completing the square."""
    schedule = NoiseSchedule(name, 50)
    ab_prev, alphas, betas = schedule.alpha_bars[:-1], schedule.alphas[1:], schedule.betas[1:]
    precision = 1.0 / (1.0 - ab_prev) + alphas / betas
    np.testing.assert_allclose(schedule.posterior_variance[1:], 1.0 / precision, rtol=1e-9)
    np.testing.assert_allclose(schedule.posterior_x0_coef[1:], np.sqrt(ab_prev) / (1.0 - ab_prev) / precision, rtol=1e-9)
    np.testing.assert_allclose(schedule.posterior_xt_coef[1:], np.sqrt(alphas) / betas / precision, rtol=1e-9)
    assert schedule.posterior_variance[0] == 0.0 and schedule.posterior_x0_coef[0] == pytest.approx(1.0)


@pytest.mark.parametrize("prediction", diffusion_schedules.PREDICTIONS)
def test_training_target_and_split_prediction_are_inverse(prediction):
    rng = np.random.default_rng(0)
    x0, noise = rng.uniform(-1, 1, (4, 8, 8, 1)), rng.standard_normal((4, 8, 8, 1))
    alpha_bar = rng.uniform(0.01, 0.99, (4, 1, 1, 1))
    x_t = np.sqrt(alpha_bar) * x0 + np.sqrt(1.0 - alpha_bar) * noise
    target = diffusion_schedules.training_target(x0, noise, alpha_bar, prediction)
    estimate, epsilon = diffusion_schedules.split_prediction(target, x_t, alpha_bar, prediction)
    np.testing.assert_allclose(estimate, x0, atol=1e-12)
    np.testing.assert_allclose(epsilon, noise, atol=1e-12)


def test_sampling_timesteps_descend_and_cover_the_chain():
    schedule = NoiseSchedule("linear", 100)
    np.testing.assert_array_equal(schedule.sampling_timesteps(100), np.arange(100)[::-1])
    steps = schedule.sampling_timesteps(20)
    assert steps[0] == 99 and steps[-1] == 0 and len(set(steps)) == 20 and np.all(np.diff(steps) < 0)


def test_discretized_gaussian_sums_to_one_over_the_levels():
    levels = np.linspace(-1.0, 1.0, 256)
    for mean, log_scale in ((0.3, np.log(0.01)), (-0.99, np.log(0.5)), (1.0, np.log(0.002))):
        probabilities = np.exp(discretized_gaussian_log_prob(levels, mean, log_scale))
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-9)
        if log_scale < np.log(0.1):  # narrow: the most probable level is the mean's
            assert levels[probabilities.argmax()] == pytest.approx(mean, abs=1.0 / 255)
    # wide, near the edge: the end level takes the tail below it
    tail = np.exp(discretized_gaussian_log_prob(levels[:1], -0.99, np.log(0.5)))[0]
    assert tail == pytest.approx(0.5 * (1.0 + math.erf((-1.0 + 1.0 / 255 + 0.99) / (0.5 * math.sqrt(2.0)))), rel=1e-9)


# -- samplers ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def random_model():
    """A tiny conditional model with random EMA weights (T = 20), on pixel_range (-1, 1)."""
    return _randomized(_tiny(num_classes=3, timesteps=20, pixel_range=(-1.0, 1.0), compile=False))


def test_ddim_is_deterministic_and_reproducible_by_seed(random_model):
    images = random_model.generate(4, labels=[0, 1, 2, 0], steps=20, seed=5)
    assert images.shape == (4, *SHAPE) and images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0 and images.std() > 0.05
    np.testing.assert_array_equal(images, random_model.generate(4, labels=[0, 1, 2, 0], steps=20, seed=5))
    assert not np.allclose(images, random_model.generate(4, labels=[0, 1, 2, 0], steps=20, seed=6))
    # eta = 0 draws nothing after x_T: the same latents give the same images
    latents = random_model.sample_latents(4, seed=5)
    np.testing.assert_allclose(random_model.generate_from_latents(latents, labels=[0, 1, 2, 0], steps=20), images,
                               atol=1e-6)
    # the label is an input: changing it changes the sample from the same noise
    assert not np.allclose(random_model.generate(4, labels=1, steps=20, seed=5)[0], images[0])


def test_ddim_over_every_timestep_with_eta_one_is_ddpm(random_model):
    """Song et al. (2021): eta = 1 over the full chain gives DDPM's posterior variance and mean."""
    ddpm = random_model.generate(3, labels=[0, 1, 2], sampler="ddpm", seed=2)
    ddim = random_model.generate(3, labels=[0, 1, 2], sampler="ddim", steps=20, eta=1.0, seed=2)
    np.testing.assert_allclose(ddim, ddpm, atol=1e-5)
    assert not np.allclose(ddpm, random_model.generate(3, labels=[0, 1, 2], steps=20, seed=2), atol=1e-3)


def test_guidance_mixes_the_conditional_and_null_outputs(random_model):
    """With guidance w the sampler's network output is (1 + w) f(x, t, c) - w f(x, t, null); at
    w = 0 the null label is never asked for."""
    calls = []

    def recording(x, times, labels):
        calls.append(labels.copy())
        return random_model.denoise(x, times, labels)

    from keras_models.likelihood.diffusion_sampling import guided

    x = np.random.default_rng(0).standard_normal((2, *SHAPE))
    times, labels = np.array([7.0, 7.0], np.float32), np.array([0, 2], np.int32)
    mixed = guided(recording, labels, 2.0, 3)(x, times)
    conditional, unconditional = (random_model.denoise(x, times, lab) for lab in (labels, np.array([3, 3], np.int32)))
    np.testing.assert_allclose(mixed, 3.0 * conditional - 2.0 * unconditional, atol=1e-5)
    np.testing.assert_array_equal(calls[0], [0, 2, 3, 3])
    calls.clear()
    guided(recording, labels, 0.0, 3)(x, times)
    np.testing.assert_array_equal(calls[0], [0, 2])


def test_one_step_call_is_the_x0_estimate_from_noise(random_model):
    noise = np.random.default_rng(1).standard_normal((3, *SHAPE)).astype("float32")
    called = keras.ops.convert_to_numpy(random_model([noise, np.array([0, 1, 2], "int32")]))
    stepped = random_model.generate_from_latents(noise, labels=[0, 1, 2], steps=1)
    np.testing.assert_allclose(called, stepped, atol=1e-5)


# -- training on digits ----------------------------------------------------------------------------
# Twelve epochs of a small U-Net take about a minute on two quiet cores: the tests on the trained model
# are slow; the default suite checks one step's loss and moving average instead.

def test_first_step_loss_and_moving_average():
    """A fresh denoiser outputs zeros (its last convolution starts at zero), so the epsilon loss is the
    mean square of standard normal noise; one training call moves the EMA weights by the warm-up decay
    min(0.999, (1 + 0) / (10 + 0)) = 0.1 towards the trained ones."""
    model = _tiny(timesteps=10, compile=False)
    ema = model.ema_denoiser
    ema.set_weights([w + 1.0 for w in ema.get_weights()])
    before = [np.array(w) for w in ema.weights]
    trained = [np.array(w) for w in model.denoiser.weights]
    loss = float(model.compute_loss(x=_images(64), training=True))
    assert loss == pytest.approx(1.0, abs=0.1)  # 4096 squared normal draws
    for old, new, weight in zip(before, ema.weights, trained):
        np.testing.assert_allclose(np.array(new), 0.1 * old + 0.9 * weight, rtol=1e-5, atol=1e-6)
    assert float(keras.ops.convert_to_numpy(model.ema_updates)) == 1.0
    model.compute_loss(x=_images(8), training=False)  # evaluation leaves the average alone
    assert float(keras.ops.convert_to_numpy(model.ema_updates)) == 1.0


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def trained(digits):
    """A tiny unconditional model (T = 100) trained 12 epochs on scikit-learn's digits, and its test
    bits per dimension before training."""
    keras.utils.set_random_seed(0)
    (x, _), (x_test, _) = digits
    model = _tiny(timesteps=100, width=16, learning_rate=2e-3)
    before = model.bits_per_dimension(x_test[:100], seed=0).mean()
    history = model.fit(x, epochs=12, batch_size=64, verbose=0)
    return model, before, history


@pytest.mark.slow
def test_training_lowers_the_loss_and_the_bound_on_held_out_digits(trained, digits):
    model, before, history = trained
    _, (x_test, _) = digits
    losses = history.history["loss"]
    assert set(history.history) == {"loss"}
    # the noise the untrained network misses has variance 1; a working one halves that in an epoch
    assert losses[0] < 0.9 and losses[-1] < 0.6 * losses[0], losses
    after = model.bits_per_dimension(x_test[:100], seed=0)
    # untrained, the bound prices every pixel at about 8 bits (7.8 measured); 12 epochs reach 5.9
    assert before > 7.0 and after.mean() < before - 1.2, (before, after.mean())
    assert float(keras.ops.convert_to_numpy(model.ema_updates)) == 12 * int(np.ceil(len(digits[0][0]) / 64))


@pytest.mark.slow
def test_samples_look_like_digits_not_noise(trained, digits):
    """Digits are mostly background: in the data about half the pixels are 0 and a few percent are
    above 0.9. Samples of the trained model reproduce the mean image (its correlation with the data's
    mean image is high) and its mostly-dark pixels; uniform noise or a constant image cannot."""
    model, _, _ = trained
    (x, _), _ = digits
    samples = model.generate(200, steps=20, seed=0)
    correlation = np.corrcoef(samples.mean(0).ravel(), x.mean(0).ravel())[0, 1]
    dark = np.mean(samples < 0.1)
    assert correlation > 0.8, correlation
    assert abs(dark - np.mean(x < 0.1)) < 0.2, (dark, np.mean(x < 0.1))
    assert samples.std(axis=0).mean() > 0.15  # varied samples, not one image


@pytest.mark.slow
def test_ddim_encode_then_decode_reconstructs(trained, digits):
    model, _, _ = trained
    _, (x_test, _) = digits
    latents = model.encode(x_test[:8], steps=50)
    assert latents.shape == (8, 64) and abs(latents.std() - 1.0) < 0.35  # about standard normal
    reconstructed = model.generate_from_latents(latents, steps=50)
    error = np.abs(reconstructed - x_test[:8]).mean()
    assert error < 0.5 * np.abs(x_test[:8] - x_test[8:16]).mean(), error  # closer than another digit
    images, path = model.interpolate(4, start=latents[0], end=latents[1])
    assert images.shape == (4, *SHAPE) and path.shape == (4, 64)


@pytest.mark.slow
def test_guidance_pulls_samples_towards_the_label(digits):
    """A small class-conditional model trained 30 epochs on digits: a judge trained on real digits
    reads guided samples as the requested class far more often than unguided ones, both above chance."""
    from sklearn.linear_model import LogisticRegression

    (x, y), (x_test, y_test) = digits
    judge = LogisticRegression(max_iter=2000).fit(x.reshape(len(x), -1), y)
    assert judge.score(x_test.reshape(len(x_test), -1), y_test) > 0.9
    keras.utils.set_random_seed(0)
    model = _tiny(num_classes=10, timesteps=100, width=16, learning_rate=2e-3)
    model.fit(x, y, epochs=30, batch_size=64, verbose=0)
    labels = np.arange(200) % 10
    agreement = {w: np.mean(judge.predict(model.generate(200, labels=labels, steps=20, guidance=w, seed=0)
                                          .reshape(200, -1)) == labels) for w in (0.0, 3.0)}
    # measured: 0.245 unguided, 0.565 at w = 3 (chance 0.1; the binomial spread of 200 draws is 0.035)
    assert agreement[0.0] > 0.15 and agreement[3.0] > max(0.4, agreement[0.0] + 0.15), agreement


# -- the shared check, export and the host loop ----------------------------------------------------

# XLA-compiling the U-Net's step takes over a minute on two cores; the host-loop tests below export the
# denoiser to both formats in the default suite.
@pytest.mark.slow
def test_shared_model_check_exports_the_ema_denoiser(tmp_path):
    model = _tiny(num_classes=3, timesteps=50, jit_compile=True)
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((3, *SHAPE)).astype("float32"), np.array([0.0, 17.0, 49.0], "float32"),
              np.array([0, 2, 3], "int32")]  # 3: the null label
    before = [np.array(w) for w in model.ema_denoiser.weights]
    results = check_model(model, _images(), np.arange(16) % 3, tmp_path=tmp_path, inputs=inputs,
                          expected_shape=(3, *SHAPE), atol=1e-5)
    assert results["train"]["hlo_instructions"] > 100
    assert set(results) >= {"tflite", "onnx"}
    # the step moved the EMA weights towards the trained ones
    assert any(not np.array_equal(b, np.array(a)) for b, a in zip(before, model.ema_denoiser.weights))
    loaded = keras.saving.load_model(tmp_path / "ddpm.keras", safe_mode=True)
    assert isinstance(loaded, DiffusionModel) and loaded.sampling_config() == model.sampling_config()
    np.testing.assert_array_equal(loaded.generate(3, steps=5, seed=0), model.generate(3, steps=5, seed=0))
    assert float(keras.ops.convert_to_numpy(loaded.ema_updates)) == float(keras.ops.convert_to_numpy(model.ema_updates)) == 2.0


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_host_loop_over_the_exported_denoiser_reproduces_generate(suffix, tmp_path):
    model = _randomized(_tiny(num_classes=3, timesteps=30, prediction="v", schedule="cosine", compile=False))
    path = tmp_path / f"ddpm{suffix}"
    export.diffusion.save_denoiser(model, path)
    for options in ({"steps": 30}, {"steps": 10, "guidance": 1.5}, {"sampler": "ddpm"}):
        expected = model.generate(4, labels=[0, 1, 2, 1], seed=7, **options)
        exported = export.diffusion.sample(path, 4, labels=[0, 1, 2, 1], seed=7, **options)
        assert expected.std() > 0.05
        np.testing.assert_allclose(exported, expected, atol=1e-4, rtol=0)


# -- bad input ---------------------------------------------------------------------------------------

def test_bad_input_names_the_problem(random_model, tmp_path):
    unconditional = _tiny(timesteps=10, compile=False)
    with pytest.raises(ValueError, match=r"shape \(batch, 8, 8, 1\)"):
        unconditional.fit(np.zeros((4, 8, 8, 3), "float32"), verbose=0)
    with pytest.raises(ValueError, match="unconditional"):
        unconditional.fit(_images(4), np.zeros(4, "int32"), verbose=0)
    with pytest.raises(ValueError, match="conditional on 3 classes"):
        _tiny(num_classes=3, timesteps=10).fit(_images(4), verbose=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        random_model.generate(2, labels=[0, 3], steps=5)
    with pytest.raises(ValueError, match="guidance=.*unconditional"):
        unconditional.generate(2, guidance=1.0, steps=5)
    with pytest.raises(ValueError, match="guidance must be"):
        random_model.generate(2, guidance=-1.0, steps=5)
    with pytest.raises(ValueError, match=r"steps must be an integer in \[1, 20\]"):
        random_model.generate(2, steps=21)
    with pytest.raises(ValueError, match="sampler must be one of"):
        random_model.generate(2, sampler="euler")
    with pytest.raises(ValueError, match="eta must be"):
        random_model.generate(2, eta=2.0, steps=5)
    nan = _images(2)
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        unconditional.bits_per_dimension(nan)
    with pytest.raises(ValueError, match="pixel_range"):
        unconditional.encode(_images(2) * 3.0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        _tiny(schedule="sigmoid")
    with pytest.raises(ValueError, match="prediction must be one of"):
        _tiny(prediction="x0")
    with pytest.raises(ValueError, match="timesteps must be at least 2"):
        _tiny(timesteps=1)
    with pytest.raises(ValueError, match="divisible by 2"):
        _tiny(image_shape=(7, 7, 1), channel_multipliers=(1, 2))
    with pytest.raises(ValueError, match="channel_multipliers"):
        _tiny(channel_multipliers=())
    with pytest.raises(ValueError, match="label_dropout"):
        _tiny(label_dropout=1.5)
    with pytest.raises(export.ExportError, match=r"\.tflite or \.onnx"):
        export.diffusion.save_denoiser(random_model, tmp_path / "ddpm.pb")
    with pytest.raises(export.ExportError, match="sampling configuration"):
        export.diffusion.sample(tmp_path / "missing.onnx", 2)


def test_registered_in_the_likelihood_family():
    info = keras_models.get_model_info("ddpm")
    assert info.family == "likelihood"
    assert _tiny(jit_compile=None, timesteps=10).jit_compile == keras_models.default_jit_compile("likelihood")
