"""`keras_models.optimizers.AdamW` and `keras_models.losses.SparseCategoricalCrossentropy` against Keras'.

Both are Keras' classes with a faster path on PyTorch: AdamW's update as PyTorch's fused kernel on
Keras' slots, the loss's logits passed to PyTorch's cross-entropy as `(rows, classes)`. The worker below,
run on PyTorch, compares each with Keras' own over several steps and options, and checks which path ran;
the tests at the end check that on TensorFlow and JAX they train exactly as Keras' classes.
"""

import textwrap

import keras
import numpy as np
import pytest

import keras_models
from keras_models.losses import SparseCategoricalCrossentropy
from keras_models.optimizers import cosine_decay_at
from torch_worker import run_on_backend, run_on_torch

WORKER = textwrap.dedent("""
    import json, os, sys, tempfile
    import keras, numpy as np, torch
    import keras_models
    from keras_models.losses import SparseCategoricalCrossentropy
    from keras_models.optimizers import Adam, AdamW

    rng = np.random.default_rng(0)
    result = {}
    kernel_calls = [0]
    fused = torch._fused_adamw_

    def counted(*args, **kwargs):
        kernel_calls[0] += 1
        return fused(*args, **kwargs)

    torch._fused_adamw_ = counted

    def numpy(x):
        return keras.ops.convert_to_numpy(x)

    def network(seed):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8), keras.layers.LayerNormalization(),
                                  keras.layers.Dense(3)])
        return model

    def gap(ours, theirs):
        return max(float(np.abs(numpy(a) - numpy(b)).max() / max(np.abs(numpy(b)).max(), 1e-30))
                   for a, b in zip(ours, theirs))

    schedule = keras.optimizers.schedules.CosineDecay(0.0, 20, alpha=0.1, warmup_target=1e-2, warmup_steps=3)
    options = {
        "schedule_clip_decay_excluded": dict(learning_rate=schedule, global_clipnorm=1.0, weight_decay=0.1),
        "constant": dict(learning_rate=1e-2, weight_decay=0.05, epsilon=1e-3),
        "amsgrad": dict(learning_rate=1e-2, amsgrad=True),
        "clipnorm": dict(learning_rate=1e-2, clipnorm=0.5),
        "ema": dict(learning_rate=1e-2, use_ema=True),
        "accumulation": dict(learning_rate=1e-2, gradient_accumulation_steps=2),
    }
    updates = {}
    for name, kwargs in options.items():
        ours_model, theirs_model = network(1), network(1)
        ours, theirs = AdamW(**kwargs), keras.optimizers.AdamW(**kwargs)
        if name.endswith("excluded"):
            for optimizer in (ours, theirs):
                optimizer.exclude_from_weight_decay(var_names=["gamma", "beta"])
        kernel_calls[0] = 0
        for step in range(12):
            scale = (1e-3, 0.1, 10.0)[step % 3]  # the global norm below and above the clipping norm
            grads = [torch.tensor(rng.normal(size=v.shape).astype("float32") * scale)
                     for v in ours_model.trainable_variables]
            copies = [g.clone() for g in grads]
            with torch.no_grad():
                ours.apply(grads, ours_model.trainable_variables)
                theirs.apply(copies, theirs_model.trainable_variables)
        updates[name] = {"weights": gap(ours_model.trainable_variables, theirs_model.trainable_variables),
                         "slots": gap(ours.variables[1:], theirs.variables[1:]),
                         "iterations": [int(ours.iterations), int(theirs.iterations)],
                         "kernel_calls": kernel_calls[0]}
    result["updates"] = updates

    # Keras' CosineDecay is evaluated on the host by the fused update; a subclass of it is Keras' own.
    schedule_calls, keras_schedule = {}, keras.optimizers.schedules.CosineDecay.__call__

    def counted_schedule(self, step):
        schedule_calls["count"] += 1
        return keras_schedule(self, step)

    class Subclass(keras.optimizers.schedules.CosineDecay):
        pass

    keras.optimizers.schedules.CosineDecay.__call__ = counted_schedule
    for name, cls in (("cosine", keras.optimizers.schedules.CosineDecay), ("subclass", Subclass)):
        model, optimizer = network(5), AdamW(learning_rate=cls(1e-2, 10, warmup_target=2e-2, warmup_steps=2))
        schedule_calls["count"], kernel_calls[0] = 0, 0
        for _ in range(3):
            with torch.no_grad():
                optimizer.apply([torch.ones(v.shape) for v in model.trainable_variables], model.trainable_variables)
        schedule_calls[name] = [schedule_calls["count"], kernel_calls[0]]
    keras.optimizers.schedules.CosineDecay.__call__ = keras_schedule
    del schedule_calls["count"]
    result["schedule_calls"] = schedule_calls
    cosine = keras.optimizers.schedules.CosineDecay(0.0, 150, alpha=0.1, warmup_target=1e-3, warmup_steps=15)
    result["schedule_gap"] = max(abs(keras_models.optimizers.cosine_decay_at(cosine, step) - float(cosine(step)))
                                 for step in range(200)) / 1e-3

    # The gradients are read, not changed; a NaN gradient poisons every weight, as in Keras.
    kept = []
    for clipnorm in (1.0, None):  # the norm of these gradients is above 1: clipped, and not
        model, optimizer = network(2), AdamW(learning_rate=1e-2, global_clipnorm=clipnorm)
        grads = [torch.tensor(rng.normal(size=v.shape).astype("float32")) for v in model.trainable_variables]
        copies = [g.clone() for g in grads]
        with torch.no_grad():
            optimizer.apply(grads, model.trainable_variables)
        kept.append(all(bool(torch.equal(g, c)) for g, c in zip(grads, copies)))
    result["grads_unchanged"] = kept
    nan = {}
    for cls in (AdamW, keras.optimizers.AdamW):
        model, optimizer = network(2), cls(learning_rate=1e-2, global_clipnorm=1.0)
        grads = [torch.ones(v.shape) for v in model.trainable_variables]
        grads[0][0, 0] = float("nan")
        with torch.no_grad():
            optimizer.apply(grads, model.trainable_variables)
        nan[cls.__module__] = [bool(np.isnan(numpy(v)).all()) for v in model.trainable_variables]
    result["nan"] = list(nan.values())

    # stateless_apply: Keras' update (the new values returned through the scope).
    model = network(3)
    stateless = {}
    for cls in (AdamW, keras.optimizers.AdamW):
        optimizer = cls(learning_rate=1e-2, global_clipnorm=1.0)
        optimizer.build(model.trainable_variables)
        trainable = [v.value.detach().clone() for v in model.trainable_variables]
        slots = [v.value.detach().clone() for v in optimizer.variables]
        grads = [torch.full(v.shape, 0.5) for v in model.trainable_variables]
        kernel_calls[0] = 0
        new_trainable, new_slots = optimizer.stateless_apply(slots, grads, trainable)
        stateless[cls.__module__] = {
            "values": [numpy(t) for t in new_trainable],
            "kernel_calls": kernel_calls[0]}
    ours, theirs = stateless.values()
    result["stateless"] = {"gap": gap(ours["values"], theirs["values"]), "kernel_calls": ours["kernel_calls"]}

    # fit on a GPT with both optimizers and both losses; then a .keras file round trip.
    losses = {}
    for kind in ("ours", "keras"):
        keras.utils.set_random_seed(4)
        gpt = keras_models.build("gpt_causal_lm", vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=16,
                                 intermediate_dim=32, max_sequence_length=12, dropout=0.0, compile=False)
        optimizer = (AdamW if kind == "ours" else keras.optimizers.AdamW)(1e-2, global_clipnorm=1.0)
        loss = (SparseCategoricalCrossentropy if kind == "ours" else keras.losses.SparseCategoricalCrossentropy)(
            from_logits=True)
        gpt.compile(optimizer=optimizer, loss=loss)
        tokens = np.random.default_rng(5).integers(0, 30, size=(16, 13)).astype("int32")
        kernel_calls[0] = 0
        history = gpt.fit(tokens[:, :-1], tokens[:, 1:], batch_size=4, epochs=2, shuffle=False, verbose=0)
        losses[kind] = {"loss": history.history["loss"], "kernel_calls": kernel_calls[0]}
        if kind == "ours":
            path = os.path.join(tempfile.mkdtemp(), "gpt.keras")
            gpt.save(path)
            loaded = keras.saving.load_model(path)
            result["saved"] = {
                "optimizer": type(loaded.optimizer).__module__ + "." + type(loaded.optimizer).__name__,
                "loss": type(loaded.loss).__module__ + "." + type(loaded.loss).__name__,
                "iterations": [int(loaded.optimizer.iterations), int(gpt.optimizer.iterations)],
                "slots": gap(loaded.optimizer.variables, gpt.optimizer.variables)}
    result["fit"] = losses

    # Adam (the library models' default) on a ResNet of the library's Conv2D layers, whose kernels are laid
    # out in PyTorch's order and their slots likewise (`match_optimizer_layout`, before the first step).
    resnet = {}
    x = rng.normal(size=(8, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, size=8)
    for kind in ("ours", "keras"):
        keras.utils.set_random_seed(8)
        model = keras_models.build("resnet18", input_shape=(32, 32, 3), num_classes=3, width_multiplier=0.25,
                                   compile=False)
        model.compile(optimizer=(Adam if kind == "ours" else keras.optimizers.Adam)(1e-3, weight_decay=0.01),
                      loss="sparse_categorical_crossentropy")
        kernel_calls[0] = 0
        history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        resnet[kind] = {"loss": history.history["loss"], "kernel_calls": kernel_calls[0],
                        "strided": sum(not v.value.is_contiguous() for v in model.trainable_variables)}
    result["resnet"] = resnet
    # A DCGAN (the library's Conv2D, Conv2DTranspose and BatchNormalization): both optimizers fused, their
    # slots in their kernels' layouts from compile on.
    keras.utils.set_random_seed(9)
    gan = keras_models.build("dcgan", image_shape=(32, 32, 1), jit_compile=False)
    strided = [v for v in gan.trainable_variables if not v.value.is_contiguous()]
    slots_follow = True
    for optimizer, variables in ((gan.d_optimizer, gan.discriminator_variables()),
                                 (gan.g_optimizer, gan.generator_variables())):
        for variable in variables:
            index = optimizer._get_variable_index(variable)
            layout = [st for st, n in zip(variable.value.stride(), variable.shape) if n != 1]
            slots_follow &= all([st for st, n in zip(slot[index].value.stride(), variable.shape) if n != 1] == layout
                                for slot in (optimizer._momentums, optimizer._velocities))
    kernel_calls[0] = 0
    gan.fit(rng.uniform(size=(16, 32, 32, 1)).astype("float32"), batch_size=8, epochs=1, verbose=0)
    result["gan"] = {"strided": len(strided), "slots_follow": bool(slots_follow), "kernel_calls": kernel_calls[0],
                     "optimizers": [type(gan.d_optimizer).__module__, type(gan.g_optimizer).__module__]}
    # Slots laid out otherwise than their kernel (the layout not matched): Keras' update, the same values.
    mixed = []
    for cls in (Adam, keras.optimizers.Adam):
        keras.utils.set_random_seed(8)
        model = keras_models.build("resnet18", input_shape=(32, 32, 3), num_classes=3, width_multiplier=0.25,
                                   compile=False)
        optimizer = cls(1e-3)
        optimizer.build(model.trainable_variables)
        grads = [torch.empty_strided(tuple(v.shape), v.value.stride()).copy_(torch.full(tuple(v.shape), 0.1))
                 for v in model.trainable_variables]
        kernel_calls[0] = 0
        with torch.no_grad():
            optimizer.apply(grads, model.trainable_variables)
        mixed.append(([numpy(v) for v in model.trainable_variables], kernel_calls[0]))
    result["mixed_layout"] = {"gap": gap(mixed[0][0], mixed[1][0]), "kernel_calls": mixed[0][1]}

    # The loss: values and gradients against Keras' for the shapes and reductions Keras takes.
    cases = {}
    for name, logits_shape, target_shape, kwargs, weighted in [
            ("steps", (3, 5, 7), (3, 5), {}, False),
            ("int32_targets_sum", (3, 5, 7), (3, 5), {"reduction": "sum"}, False),
            ("steps_weighted", (3, 5, 7), (3, 5), {}, True),
            ("steps_trailing_one", (3, 5, 7), (3, 5, 1), {}, False),
            ("rows", (4, 7), (4,), {}, False),
            ("mean_with_sample_weight", (3, 5, 7), (3, 5), {"reduction": "mean_with_sample_weight"}, True),
            ("no_reduction", (3, 5, 7), (3, 5), {"reduction": None}, False),
            ("ignore_class", (3, 5, 7), (3, 5), {"ignore_class": 0}, False)]:
        logits = rng.normal(size=logits_shape).astype("float32") * 3
        targets = rng.integers(0, logits_shape[-1], size=target_shape)
        weights = rng.uniform(size=target_shape[:2]).astype("float32") if weighted else None
        values = []
        for cls in (SparseCategoricalCrossentropy, keras.losses.SparseCategoricalCrossentropy):
            x = torch.tensor(logits, requires_grad=True)
            value = cls(from_logits=True, **kwargs)(torch.tensor(targets), x, sample_weight=weights)
            value.sum().backward()
            values.append((numpy(value.detach()), numpy(x.grad)))
        (ours_value, ours_grad), (their_value, their_grad) = values
        cases[name] = {"value": float(np.abs(ours_value - their_value).max()),
                       "grad": float(np.abs(ours_grad - their_grad).max()),
                       "shape": [list(ours_value.shape), list(their_value.shape)]}
    errors = []
    for cls in (SparseCategoricalCrossentropy, keras.losses.SparseCategoricalCrossentropy):
        try:
            cls(from_logits=True)(torch.zeros((3, 4), dtype=torch.int64), torch.zeros((3, 5, 7)))
            errors.append("no error")
        except Exception as error:
            errors.append(type(error).__name__)
    result["loss"] = {"cases": cases, "shape_errors": errors}
    print(json.dumps(result))
""")


@pytest.fixture(scope="module")
def torch_result():
    return run_on_torch(WORKER)


@pytest.mark.parametrize("name", ["schedule_clip_decay_excluded", "constant"])
def test_fused_adamw_is_keras_adamw_on_torch(torch_result, name):
    run = torch_result["updates"][name]
    # One kernel call per weight-decay group each step: two groups where the norm's weights are excluded.
    assert run["kernel_calls"] == 12 * (2 if name.endswith("excluded") else 1)
    # Float32 rounding of the same update over 12 steps, with the clipping both on and off.
    assert run["weights"] <= 1e-5 and run["slots"] <= 1e-5
    assert run["iterations"] == [12, 12]


def test_cosine_decay_is_read_on_the_host_by_the_fused_update(torch_result):
    # [schedule calls in Keras operators, fused kernel calls] over three updates
    assert torch_result["schedule_calls"] == {"cosine": [0, 3], "subclass": [3, 3]}
    # the host's rates against Keras' operators on PyTorch, over the warm-up, the decay and past its end
    assert torch_result["schedule_gap"] <= 1e-6


@pytest.mark.parametrize("kwargs", [
    dict(initial_learning_rate=0.0, decay_steps=150, alpha=0.1, warmup_target=1e-3, warmup_steps=15),
    dict(initial_learning_rate=3e-4, decay_steps=1000),
    dict(initial_learning_rate=1e-2, decay_steps=7, alpha=0.3, warmup_target=2e-2, warmup_steps=0),
    dict(initial_learning_rate=6e-4, decay_steps=500, alpha=0.1, warmup_target=6e-4, warmup_steps=70),
    dict(initial_learning_rate=5.0, decay_steps=3, warmup_target=1, warmup_steps=4)])
def test_cosine_decay_at_is_keras_schedule(kwargs):
    schedule = keras.optimizers.schedules.CosineDecay(**kwargs)
    steps = range(kwargs["decay_steps"] + kwargs.get("warmup_steps", 0) + 10)  # past the end: held
    ours = np.array([cosine_decay_at(schedule, step) for step in steps])
    theirs = np.array([float(schedule(step)) for step in steps])
    peak = max(kwargs["initial_learning_rate"], kwargs.get("warmup_target") or 0)
    # Keras' float32 operators on this backend; the cosine's last bit may differ
    assert np.abs(ours - theirs).max() <= 1e-6 * peak
    assert len(set(ours[-10:])) == 1


def test_cosine_decay_at_declines_what_is_not_a_number():
    # a variable, or an integer rate (Keras computes the schedule in the integer's dtype)
    for rate in (keras.Variable(1e-3), 1):
        assert cosine_decay_at(keras.optimizers.schedules.CosineDecay(rate, 10), 3) is None


@pytest.mark.parametrize("name", ["amsgrad", "clipnorm", "ema", "accumulation"])
def test_options_the_kernel_lacks_take_keras_update(torch_result, name):
    run = torch_result["updates"][name]
    assert run["kernel_calls"] == 0
    assert run["weights"] <= 1e-6 and run["slots"] <= 1e-6
    # Keras counts the applied updates: one per two calls when gradients accumulate over two.
    assert run["iterations"] == [6, 6] if name == "accumulation" else [12, 12]


def test_gradients_are_read_not_changed_and_nan_poisons_as_in_keras(torch_result):
    assert torch_result["grads_unchanged"] == [True, True]
    ours, theirs = torch_result["nan"]
    assert ours == theirs == [True] * len(ours)


def test_stateless_apply_is_keras_update(torch_result):
    stateless = torch_result["stateless"]
    assert stateless["kernel_calls"] == 0
    assert stateless["gap"] <= 1e-6


def test_fit_with_both_equals_keras_and_saves(torch_result):
    fit = torch_result["fit"]
    assert fit["ours"]["kernel_calls"] == 8 and fit["keras"]["kernel_calls"] == 0  # 2 epochs of 4 steps
    np.testing.assert_allclose(fit["ours"]["loss"], fit["keras"]["loss"], rtol=1e-5)
    saved = torch_result["saved"]
    assert saved["optimizer"] == "keras_models.optimizers.AdamW"
    assert saved["loss"] == "keras_models.losses.SparseCategoricalCrossentropy"
    assert saved["iterations"] == [8, 8] and saved["slots"] == 0.0


def test_adam_fuses_over_kernels_laid_out_in_pytorch_order(torch_result):
    ours, theirs = torch_result["resnet"]["ours"], torch_result["resnet"]["keras"]
    assert ours["strided"] > 10 and ours["kernel_calls"] == 4  # 2 epochs of 2 steps, every weight decayed
    np.testing.assert_allclose(ours["loss"], theirs["loss"], rtol=1e-5)


def test_gan_optimizers_fuse_over_the_library_layers(torch_result):
    gan = torch_result["gan"]
    assert gan["optimizers"] == ["keras_models.optimizers"] * 2
    # Eight convolution kernels, transposed or not, in PyTorch's order; the generator's last (one output
    # channel) reads the same in either order, so seven differ from Keras' contiguous layout.
    assert gan["strided"] == 7 and gan["slots_follow"]
    assert gan["kernel_calls"] == 4  # 2 steps, one discriminator and one generator update each


def test_slots_laid_out_otherwise_take_keras_update(torch_result):
    mixed = torch_result["mixed_layout"]
    assert mixed["kernel_calls"] == 0 and mixed["gap"] <= 1e-6


@pytest.mark.parametrize("name", ["steps", "int32_targets_sum", "steps_weighted", "steps_trailing_one", "rows",
                                  "mean_with_sample_weight", "no_reduction", "ignore_class"])
def test_loss_equals_keras_on_torch(torch_result, name):
    case = torch_result["loss"]["cases"][name]
    ours, theirs = case["shape"]
    assert ours == theirs
    assert case["value"] <= 1e-5 and case["grad"] <= 1e-6


def test_loss_rejects_mismatched_shapes_as_keras_does(torch_result):
    ours, theirs = torch_result["loss"]["shape_errors"]
    assert ours == theirs == "ValueError"


@pytest.mark.parametrize("name, kwargs", [("AdamW", dict(learning_rate=1e-2, global_clipnorm=1.0)),
                                          ("SGD", dict(learning_rate=5e-2, momentum=0.9, nesterov=True))])
def test_on_tensorflow_they_are_keras_classes(name, kwargs):
    assert keras.backend.backend() == "tensorflow"
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, size=16)
    ours_class = getattr(keras_models.optimizers, name)
    models = []
    for cls, loss in ((ours_class, SparseCategoricalCrossentropy),
                      (getattr(keras.optimizers, name), keras.losses.SparseCategoricalCrossentropy)):
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile(optimizer=cls(**kwargs), loss=loss(from_logits=True))
        models.append((model, model.fit(x, y, batch_size=4, epochs=2, verbose=0).history["loss"]))
    (ours, ours_loss), (theirs, their_loss) = models
    assert ours_loss == their_loss
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(a, b)
    config = keras.optimizers.serialize(ours.optimizer)
    restored = keras.optimizers.deserialize(config)
    assert type(restored) is ours_class and restored.get_config() == ours.optimizer.get_config()
    assert type(keras.losses.deserialize(keras.losses.serialize(ours.loss))) is SparseCategoricalCrossentropy


JAX_WORKER = textwrap.dedent("""
    import json
    import keras, numpy as np
    from keras_models.losses import SparseCategoricalCrossentropy
    from keras_models.optimizers import Adam, AdamW

    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, size=16)
    runs = []
    for optimizer, loss in ((AdamW, SparseCategoricalCrossentropy), (keras.optimizers.AdamW,
                                                                     keras.losses.SparseCategoricalCrossentropy),
                            (Adam, SparseCategoricalCrossentropy), (keras.optimizers.Adam,
                                                                    keras.losses.SparseCategoricalCrossentropy)):
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile(optimizer=optimizer(1e-2, global_clipnorm=1.0), loss=loss(from_logits=True))
        history = model.fit(x, y, batch_size=4, epochs=2, verbose=0).history["loss"]
        runs.append({"loss": history, "weights": [w.tolist() for w in model.get_weights()]})
    print(json.dumps(runs))
""")


def test_on_jax_they_are_keras_classes():
    ours_adamw, keras_adamw, ours_adam, keras_adam = run_on_backend(JAX_WORKER, "jax")
    for ours, theirs in ((ours_adamw, keras_adamw), (ours_adam, keras_adam)):
        assert ours["loss"] == theirs["loss"] and ours["weights"] == theirs["weights"]
