"""The GAN model's behaviour: XLA training, sampling, interpolation, data checks, callbacks, resume."""

import keras
import numpy as np
import pytest
from gan_cases import build_tiny, training_data

import keras_models
from keras_models.gan import GAN, SampleGrid, TrainingFailure, TrainingGuard, slerp


def _weights(model):
    return [np.array(w) for w in model.trainable_weights]


def _changed(before, model):
    return any(not np.array_equal(b, a) for b, a in zip(before, _weights(model)))


def test_dcgan_trains_with_xla_both_networks_moving():
    gan = build_tiny("dcgan", jit_compile=True)
    (images,) = training_data("dcgan")
    g_before, d_before = _weights(gan.generator), _weights(gan.discriminator)
    history = gan.fit(images, batch_size=8, epochs=1, verbose=0)
    assert gan.jit_compile is True  # Keras did not quietly turn XLA off
    report = keras_models.assert_xla_compiled(gan, images[:8])
    assert report["step_jit_compile"] and report["hlo_instructions"] > 100
    assert set(history.history) == {"d_loss", "g_loss", "d_accuracy"}
    assert all(np.isfinite(v[-1]) for v in history.history.values())
    assert _changed(g_before, gan.generator) and _changed(d_before, gan.discriminator)
    assert int(gan.d_optimizer.iterations) == 2 and int(gan.g_optimizer.iterations) == 2


def test_gradient_penalty_training_counts_critic_steps():
    gan = build_tiny("gan", jit_compile=False, loss="wasserstein", gradient_penalty_weight=10.0, n_critic=2)
    (images,) = training_data("gan")
    history = gan.fit(images, batch_size=8, epochs=1, verbose=0)
    assert history.history["penalty"][-1] > 0.0
    # two critic updates per generator update, over two batches
    assert int(gan.d_optimizer.iterations) == 4 and int(gan.g_optimizer.iterations) == 2


def test_weight_clipping_bounds_every_critic_weight():
    gan = build_tiny("gan", jit_compile=False, loss="wasserstein", clip_value=0.01, n_critic=2)
    (images,) = training_data("gan")
    gan.fit(images, batch_size=8, epochs=1, verbose=0)
    largest = max(float(np.abs(w).max()) for w in _weights(gan.discriminator))
    assert largest <= 0.01 + 1e-7


def test_default_xla_policy_and_explicit_override():
    gan = build_tiny("gan")
    assert gan.jit_compile == keras_models.default_jit_compile("gan")
    with pytest.raises(ValueError, match="jit_compile must be True, False or None"):
        build_tiny("gan", jit_compile="yes")


def test_ttur_learning_rates_and_optimizer_defaults():
    gan = build_tiny("dcgan", d_learning_rate=4e-4, g_learning_rate=1e-4, jit_compile=False)
    assert float(gan.d_optimizer.learning_rate) == pytest.approx(4e-4)
    assert float(gan.g_optimizer.learning_rate) == pytest.approx(1e-4)
    wgan = build_tiny("wgan", jit_compile=False)
    assert isinstance(wgan.d_optimizer, keras.optimizers.RMSprop) and wgan.clip_value == 0.01
    # BigGAN's TTUR (4e-4 / 1e-4) above 16 pixels; equal rates at or below (test_variants.py)
    biggan = build_tiny("biggan", image_shape=(32, 32, 1), jit_compile=False)
    assert float(biggan.d_optimizer.learning_rate) > float(biggan.g_optimizer.learning_rate)
    assert biggan.loss_name == "hinge"


def test_generate_is_seeded_and_in_the_data_range():
    gan = build_tiny("dcgan", pixel_range=(-1.0, 1.0), jit_compile=False)
    a, b, c = gan.generate(6, seed=3), gan.generate(6, seed=3), gan.generate(6, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.min() >= -1.0 and a.max() <= 1.0 and a.min() < 0.0  # tanh range, not [0, 1]
    np.testing.assert_allclose(a, np.array(gan(gan.sample_latents(6, seed=3))), atol=1e-6)


def test_conditional_generation_follows_labels():
    gan = build_tiny("cgan", jit_compile=False)
    z = gan.sample_latents(1, seed=0).repeat(3, axis=0)
    images = gan.generate_from_latents(z, labels=[0, 0, 7])
    np.testing.assert_allclose(images[0], images[1], atol=1e-6)
    assert not np.allclose(images[0], images[2])  # the label changes the image for the same z
    cycled = gan.generate(12, seed=0)  # no labels: classes 0..9, 0, 1
    np.testing.assert_allclose(cycled, gan.generate(12, labels=np.arange(12) % 10, seed=0), atol=1e-6)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\); got values from 0 to 12"):
        gan.generate(3, labels=[0, 1, 12])
    with pytest.raises(ValueError, match="labels must hold 3 entries"):
        gan.generate(3, labels=[0, 1])


def test_interpolation_ends_at_its_end_points():
    gan = build_tiny("dcgan", jit_compile=False)
    start, end = gan.sample_latents(2, seed=5)
    images, latents = gan.interpolate(5, start=start, end=end)
    assert images.shape == (5, 8, 8, 1)
    np.testing.assert_allclose(latents[0], start, atol=1e-6)
    np.testing.assert_allclose(latents[-1], end, atol=1e-6)
    np.testing.assert_allclose(images[[0, -1]], gan.generate_from_latents(np.stack([start, end])), atol=1e-6)
    # slerp keeps the norm of orthogonal unit vectors; a straight line shrinks it
    mid = slerp(np.array([1.0, 0.0]), np.array([0.0, 1.0]), [0.5])[0]
    assert np.linalg.norm(mid) == pytest.approx(1.0)
    linear, _ = gan.interpolate(3, start=start, end=end, method="linear")
    _, linear_latents = gan.interpolate(3, start=start, end=end, method="linear")
    np.testing.assert_allclose(linear_latents[1], (start + end) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="method must be 'slerp' or 'linear'"):
        gan.interpolate(3, method="cubic")


def test_bad_training_data_is_named():
    gan = build_tiny("dcgan", jit_compile=False)
    (images,) = training_data("dcgan")
    with pytest.raises(ValueError, match=r"images must have shape \(batch, 8, 8, 1\); got \(16, 8, 8\)"):
        gan.fit(images[..., 0], epochs=1, verbose=0)
    bad = images.copy()
    bad[3, 2, 2, 0] = np.nan
    with pytest.raises(ValueError, match="images contain NaN"):
        gan.fit(bad, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"range over \[0, 255\].*pixel_range=\(0.0, 1.0\)"):
        gan.fit(np.round(images * 255.0), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="unconditional: call fit\\(images\\) without labels"):
        gan.fit(images, np.zeros(16, "int32"), epochs=1, verbose=0)
    cgan = build_tiny("cgan", jit_compile=False)
    with pytest.raises(ValueError, match="conditional on 10 classes: call fit\\(images, labels\\)"):
        cgan.fit(images, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        cgan.fit(images, np.full(16, 10), epochs=1, verbose=0)
    pix2pix = build_tiny("pix2pix", jit_compile=False)
    with pytest.raises(ValueError, match="fit\\(source_images, target_images\\)"):
        pix2pix.fit(images, epochs=1, verbose=0)


def test_bad_builder_arguments_are_named():
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['l1_weight'\] for 'dcgan'"):
        keras_models.build("dcgan", l1_weight=3.0)
    with pytest.raises(ValueError, match="pix2pix takes no classes; got num_classes=10"):
        keras_models.build("pix2pix", num_classes=10)
    with pytest.raises(ValueError, match="image_shape must be square"):
        keras_models.build("dcgan", image_shape=(8, 16, 1))
    with pytest.raises(ValueError, match="latent_dim must be a positive integer; got latent_dim=0"):
        keras_models.build("dcgan", latent_dim=0)
    with pytest.raises(ValueError, match="n_critic must be a positive integer; got n_critic=0"):
        keras_models.build("wgan", n_critic=0)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        keras_models.build("dcgan", label_smoothing=1.5)
    with pytest.raises(ValueError, match="Unknown model name 'dcgna'"):
        keras_models.build("dcgna")


def test_label_smoothing_and_instance_noise_train_and_survive_saving(tmp_path):
    gan = build_tiny("gan", jit_compile=False, label_smoothing=0.1, instance_noise=0.1, instance_noise_steps=10)
    (images,) = training_data("gan")
    gan.fit(images, batch_size=8, epochs=1, verbose=0)
    gan.save(tmp_path / "noisy.keras")
    loaded = keras.saving.load_model(tmp_path / "noisy.keras")
    assert (loaded.label_smoothing, loaded.instance_noise, loaded.instance_noise_steps) == (0.1, 0.1, 10)
    # the annealed noise level after 2 of 10 generator steps
    noisy = np.array(loaded._with_instance_noise(np.zeros((4096, 1), "float32")))
    assert noisy.std() == pytest.approx(0.1 * (1 - 2 / 10), rel=0.06)


def test_sample_grid_writes_one_png_per_epoch(tmp_path):
    from matplotlib import image as mpimg

    gan = build_tiny("gan", num_classes=10, jit_compile=False)
    images, labels = training_data("cgan")
    grid = SampleGrid(tmp_path / "grids", num_samples=20)
    gan.fit(images, labels, batch_size=8, epochs=2, verbose=0, callbacks=[grid])
    assert [p.name for p in grid.paths] == ["samples_epoch_001.png", "samples_epoch_002.png"]
    picture = mpimg.imread(grid.paths[-1])
    # 2 rows x 10 classes of 8x8 with 1-pixel gaps (17 x 89 pixels) are enlarged 16 times, to a short
    # side of at least 256 pixels, under a 28-pixel band holding the title
    assert picture.shape[:2] == (28 + 16 * 17, 16 * 89)
    body = picture[28:, :, 0].reshape(17, 16, 89, 16)
    assert np.all(body == body[:, :1, :, :1])  # nearest neighbour: every pixel a uniform 16x16 square
    assert picture[:28].min() < 0.5 and picture[:2].min() == 1.0  # dark title text on a white band
    assert not list((tmp_path / "grids").glob(".*"))  # no temporary files left behind


def test_save_image_enlarges_by_nearest_neighbour_and_titles(tmp_path):
    from matplotlib import image as mpimg

    from keras_models.generative import save_image

    array = np.random.default_rng(0).uniform(size=(10, 20, 1)).astype(np.float32)
    picture = mpimg.imread(save_image(array, tmp_path / "plain.png", min_size=100))
    assert picture.shape[:2] == (100, 200)  # factor 10 on both axes, no title band
    np.testing.assert_allclose(picture[::10, ::10, 0], array[..., 0], atol=2 / 255)  # 256-level colour map, 8-bit PNG
    titled = mpimg.imread(save_image(array, tmp_path / "titled.png", title="gan, epoch 3"))
    assert titled.shape[:2] == (28 + 26 * 10, 26 * 20)  # ceil(256 / 10) = 26
    np.testing.assert_allclose(titled[28::26, ::26, 0], array[..., 0], atol=2 / 255)  # 256-level colour map, 8-bit PNG
    with pytest.raises(ValueError, match="min_size must be a positive integer"):
        save_image(array, tmp_path / "bad.png", min_size=0)


def test_training_guard_stops_on_nan_with_a_message():
    gan = build_tiny("gan", jit_compile=False)
    guard = TrainingGuard()
    guard.set_model(gan)
    with pytest.warns(RuntimeWarning, match="g_loss is nan"):
        guard.on_train_batch_end(4, {"d_loss": 0.7, "g_loss": float("nan")})
    assert gan.stop_training and "batch 4" in guard.stop_reason
    strict = TrainingGuard(raise_error=True)
    strict.set_model(gan)
    with pytest.raises(TrainingFailure, match="d_loss is inf"), pytest.warns(RuntimeWarning):
        strict.on_train_batch_end(0, {"d_loss": float("inf")})


def test_training_guard_stops_a_run_the_discriminator_wins():
    # A frozen generator (learning rate 0) against a fast discriminator: D separates them completely.
    gan = build_tiny(
        "gan", jit_compile=False, d_optimizer=keras.optimizers.Adam(1e-2), g_optimizer=keras.optimizers.SGD(0.0)
    )
    (images,) = training_data("gan", count=32)
    guard = TrainingGuard(patience=2)
    with pytest.warns(RuntimeWarning, match="the discriminator wins completely"):
        history = gan.fit(images, batch_size=16, epochs=30, verbose=0, callbacks=[guard])
    assert len(history.history["d_loss"]) < 30
    assert history.history["d_accuracy"][-1] >= 0.99
    assert "lower discriminator learning rate" in guard.stop_reason


def test_resume_restores_both_optimizers_and_continues_identically(tmp_path):
    gan = build_tiny("gan", jit_compile=False, seed=7)
    (images,) = training_data("gan")
    checkpoint = keras.callbacks.ModelCheckpoint(tmp_path / "checkpoint.keras")
    gan.fit(images, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[checkpoint])
    resumed = keras.saving.load_model(tmp_path / "checkpoint.keras")
    for name in ("d_optimizer", "g_optimizer"):
        original, restored = getattr(gan, name), getattr(resumed, name)
        assert int(restored.iterations) == int(original.iterations) == 2
        assert len(restored.variables) == len(original.variables) > 2
        for a, b in zip(original.variables, restored.variables):
            np.testing.assert_array_equal(np.array(a), np.array(b))  # Adam's moments, slot by slot
    # Same weights, slots and seed state: one more epoch gives the same networks.
    gan.fit(images, batch_size=8, epochs=1, verbose=0, shuffle=False)
    resumed.fit(images, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert int(resumed.g_optimizer.iterations) == 4
    for a, b in zip(gan.weights, resumed.weights):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-5)


def test_gan_rejects_one_optimizer_for_both_networks():
    gan = build_tiny("gan", compile=False)
    optimizer = keras.optimizers.Adam()
    with pytest.raises(ValueError, match="two optimizer instances"):
        gan.compile(d_optimizer=optimizer, g_optimizer=optimizer)
    assert isinstance(gan, GAN)


@pytest.mark.slow
def test_wgan_gp_nested_tape_step_compiles_with_xla():
    gan = build_tiny("wgan_gp", jit_compile=True, n_critic=2)
    (images,) = training_data("wgan_gp")
    history = gan.fit(images, batch_size=8, epochs=1, verbose=0)
    report = keras_models.assert_xla_compiled(gan, images[:8])
    assert report["hlo_instructions"] > 100
    assert history.history["penalty"][-1] > 0.0
    assert int(gan.d_optimizer.iterations) == 4 and int(gan.g_optimizer.iterations) == 2


def test_stylegan_style_mixing_and_truncation():
    gan = build_tiny("stylegan", jit_compile=False)
    first, second = gan.sample_latents(3, seed=1), gan.sample_latents(3, seed=2)
    plain = gan.generate_from_latents(first)
    np.testing.assert_allclose(gan.style_mix(first, second, crossover=gan.num_ws), plain, atol=1e-5)
    np.testing.assert_allclose(gan.style_mix(first, second, crossover=0), gan.generate_from_latents(second), atol=1e-5)
    mixed = gan.style_mix(first, second, crossover=2)
    assert not np.allclose(mixed, plain, atol=1e-4) and not np.allclose(mixed, gan.generate_from_latents(second), atol=1e-4)
    # psi = 0 maps every latent to the average style: identical images
    gan.w_avg.assign(np.ones(gan.w_avg.shape, "float32"))
    truncated = gan.generate(3, seed=0, truncation_psi=0.0)
    np.testing.assert_allclose(truncated, truncated[:1].repeat(3, axis=0), atol=1e-6)


def test_infogan_codes_drive_the_generator():
    gan = build_tiny("infogan", jit_compile=False)
    z = gan.sample_latents(1, seed=0).repeat(2, axis=0)
    codes = np.zeros((2, gan.num_continuous), "float32")
    by_category = gan.generate_from_latents(z, labels=[1, 4], continuous=codes)
    assert not np.allclose(by_category[0], by_category[1])
    by_code = gan.generate_from_latents(z, labels=[1, 1], continuous=np.array([[-1, 0], [1, 0]], "float32"))
    assert not np.allclose(by_code[0], by_code[1])
    with pytest.raises(ValueError, match=r"continuous must have shape \(2, 2\)"):
        gan.generate_from_latents(z, labels=[1, 1], continuous=np.zeros((2, 3), "float32"))


def test_cyclegan_translates_both_ways():
    gan = build_tiny("cyclegan", jit_compile=False)
    images, _ = training_data("cyclegan", count=3)
    forward, backward = gan.translate(images), gan.translate(images, direction="b_to_a")
    assert forward.shape == backward.shape == images.shape
    assert not np.allclose(forward, backward)  # two different generators
    with pytest.raises(ValueError, match="direction must be 'a_to_b' or 'b_to_a'"):
        gan.translate(images, direction="sideways")
