"""`keras_models.layers.Conv2D` and `BatchNormalization` on PyTorch: Keras' results without Keras' copies.

On the PyTorch backend the convolution lays its kernel out in PyTorch's memory order (the shape stays
Keras') and batch normalization calls PyTorch's fused kernel. The worker below, run on that backend,
compares both with Keras' own layers (outputs, gradients, moving statistics, training with momentum),
counts the kernel copies in a training step, and writes files that TensorFlow then loads, optimizer
state included; it also loads a file written under TensorFlow.
"""

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_models
from keras_models.layers import BatchNormalization, Conv2D, Conv2DTranspose, match_optimizer_layout

ROOT = Path(__file__).parents[2]

def network(conv, norm, data_format="channels_last"):
    """Two convolutions with batch normalization and a dense head; `conv` and `norm` the layer classes."""
    inputs = keras.Input((16, 16, 8))
    x = inputs
    if data_format == "channels_first":
        x = keras_models.layers.ChannelLayout("channels_first")(x)
    axis = -1 if data_format == "channels_last" else 1
    # No bias before batch normalization: its gradient is rounding noise, which Adam would scale to
    # steps of the learning rate, different in any two implementations.
    x = conv(32, 3, padding="same", use_bias=False, data_format=data_format, name="c1")(x)
    x = keras.layers.Activation("relu")(norm(axis=axis, name="bn1")(x))
    x = conv(32, 3, strides=2, padding="same", use_bias=False, data_format=data_format, name="c2")(x)
    x = norm(axis=axis, name="bn2")(x)
    pooled = keras.layers.GlobalAveragePooling2D(data_format=data_format, name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(pooled))


WORKER = textwrap.dedent("""
    import itertools, json, sys
    import keras, numpy as np, torch
    import keras_models
    from keras_models.layers import BatchNormalization, Conv2D, match_optimizer_layout
    from keras_models.layers import Conv2DTranspose as ConvTranspose
    NETWORK

    out = sys.argv[1]
    rng = np.random.default_rng(0)
    result = {"conv": 0.0, "conv_grad": 0.0, "grad_layout_is_kernel_layout": True}

    def numpy(x):
        return keras.ops.convert_to_numpy(x)

    def relative(a, b):
        return float(np.abs(numpy(a) - numpy(b)).max() / max(np.abs(numpy(b)).max(), 1e-12))

    # Convolutions: every padding, stride, dilation, group count and layout against keras.layers.Conv2D.
    for fmt, padding, stride, dilation, groups, size in itertools.product(
            ["channels_last", "channels_first"], ["same", "valid"], [1, 2], [1, 2], [1, 2], [1, 3, 4]):
        if stride > 1 and dilation > 1:
            continue
        x = rng.normal(size=(2, 9, 10, 4)).astype("float32")
        x = x if fmt == "channels_last" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        ours = Conv2D(6, size, strides=stride, padding=padding, dilation_rate=dilation, groups=groups,
                      data_format=fmt)
        theirs = keras.layers.Conv2D(6, size, strides=stride, padding=padding, dilation_rate=dilation,
                                     groups=groups, data_format=fmt)
        ours.build(x.shape)
        theirs.build(x.shape)
        theirs.set_weights(ours.get_weights())
        xt = torch.tensor(x)
        y_ours, y_theirs = ours(xt), theirs(xt)
        result["conv"] = max(result["conv"], relative(y_ours, y_theirs))
        (y_ours ** 2).sum().backward()
        (y_theirs ** 2).sum().backward()
        grad = ours._kernel.value.grad
        result["conv_grad"] = max(result["conv_grad"], relative(grad, theirs._kernel.value.grad))
        result["grad_layout_is_kernel_layout"] &= grad.stride() == ours._kernel.value.stride()
    # Transposed convolutions: every padding, output padding, stride, dilation, size, bias and layout
    # against keras.layers.Conv2DTranspose (the configurations Keras' PyTorch path accepts).
    transposed = {"output": 0.0, "input_grad": 0.0, "kernel_grad": 0.0, "bias_grad": 0.0, "cases": 0,
                  "grad_layout_is_kernel_layout": True}
    for fmt, padding, size, stride, output_padding, dilation, bias in itertools.product(
            ["channels_last", "channels_first"], ["same", "valid"], [1, 2, 3, 4, 5], [1, 2, 3], [None, 0, 1],
            [1, 2], [True, False]):
        if (output_padding is not None and output_padding >= stride) or (dilation > 1 and stride > 1):
            continue
        options = dict(filters=3, kernel_size=size, strides=stride, padding=padding, output_padding=output_padding,
                       dilation_rate=dilation, data_format=fmt, use_bias=bias, bias_initializer="random_normal")
        ours, theirs = ConvTranspose(**options), keras.layers.Conv2DTranspose(**options)
        x = rng.normal(size=(2, 5, 6, 4) if fmt == "channels_last" else (2, 4, 5, 6)).astype("float32")
        ours.build(x.shape)
        theirs.build(x.shape)
        theirs.set_weights(ours.get_weights())
        x_ours, x_theirs = torch.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
        weights = torch.tensor(rng.normal(size=tuple(y_theirs.shape)).astype("float32"))
        (y_ours * weights).sum().backward()
        (y_theirs * weights).sum().backward()
        transposed["output"] = max(transposed["output"], relative(y_ours, y_theirs))
        transposed["input_grad"] = max(transposed["input_grad"], relative(x_ours.grad, x_theirs.grad))
        grad = ours.kernel.value.grad
        transposed["kernel_grad"] = max(transposed["kernel_grad"], relative(grad, theirs.kernel.value.grad))
        transposed["grad_layout_is_kernel_layout"] &= grad.stride() == ours.kernel.value.stride()
        if bias:
            # A bias gradient is a sum of the output gradients over batch and positions, added in another
            # order on each path: its error against the sum of their magnitudes (float32 summation).
            axes = (0, 1, 2) if fmt == "channels_last" else (0, 2, 3)
            magnitude = float(weights.abs().sum(dim=axes).max())
            gap = float((ours.bias.value.grad - theirs.bias.value.grad).abs().max())
            transposed["bias_grad"] = max(transposed["bias_grad"], gap / magnitude)
        transposed["cases"] += 1
    layer = ConvTranspose(8, (3, 5), strides=2, padding="same")
    layer.build((None, 12, 12, 4))
    transposed["layout"] = {"shape": list(layer.kernel.shape), "strides": list(layer.kernel.value.stride())}
    result["transposed"] = transposed

    # The kernel's shape is Keras'; its memory is PyTorch's order.
    last, first = Conv2D(8, (3, 5), data_format="channels_last"), Conv2D(8, (3, 5), data_format="channels_first")
    last.build((None, 12, 12, 4))
    first.build((None, 4, 12, 12))
    result["layout"] = {"shape": list(last._kernel.shape), "get_weights": list(last.get_weights()[0].shape),
                        "last": list(last._kernel.value.stride()), "first": list(first._kernel.value.stride())}

    # Batch normalization: training outputs, input gradients, moving statistics and inference.
    result["bn"] = {"train": 0.0, "grad": 0.0, "moving": 0.0, "inference": 0.0}
    for shape, axis, center, scale in itertools.product([(4, 5, 6, 3), (8, 3), (2, 3, 7)], [-1, 1],
                                                        [True, False], [True, False]):
        x = (rng.normal(size=shape) * 3 + 1).astype("float32")
        ours = BatchNormalization(axis=axis, center=center, scale=scale, momentum=0.9)
        theirs = keras.layers.BatchNormalization(axis=axis, center=center, scale=scale, momentum=0.9)
        ours.build(shape)
        theirs.build(shape)
        weights = [np.abs(rng.normal(size=v.shape)).astype("float32") + 0.5 for v in ours.weights]
        ours.set_weights(weights)
        theirs.set_weights(weights)
        x_ours, x_theirs = torch.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y_ours, y_theirs = ours(x_ours, training=True), theirs(x_theirs, training=True)
        (y_ours ** 3).sum().backward()
        (y_theirs ** 3).sum().backward()
        bn = result["bn"]
        bn["train"] = max(bn["train"], relative(y_ours, y_theirs))
        bn["grad"] = max(bn["grad"], relative(x_ours.grad, x_theirs.grad))
        bn["moving"] = max([bn["moving"]] + [relative(a, b) for a, b in
                                            zip(ours.non_trainable_weights, theirs.non_trainable_weights)])
        bn["inference"] = max(bn["inference"], relative(ours(x, training=False), theirs(x, training=False)))

    # One value per channel: the output is beta (x - mean is 0 up to rounding, times 1 / sqrt(epsilon)),
    # the batch variance 0, as in Keras.
    x = np.array([[1.5, -2.0, 3.0]], "float32")
    ours, theirs = BatchNormalization(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)
    ours.build(x.shape)
    theirs.build(x.shape)
    y_ours, y_theirs = numpy(ours(x, training=True)), numpy(theirs(x, training=True))
    result["bn_single"] = {"output": float(np.abs(y_ours - y_theirs).max()),
                           "moving": max(float(np.abs(numpy(a) - numpy(b)).max()) for a, b in
                                         zip(ours.non_trainable_weights, theirs.non_trainable_weights))}

    # Training: the same losses as Keras' layers (SGD with momentum, then Adam), slots in the kernels' layout,
    # and no kernel copied forward or backward.
    x = rng.normal(size=(16, 16, 16, 8)).astype("float32")
    y = np.arange(16) % 3
    kernel_shapes = {str(s) for s in ([3, 3, 8, 32], [3, 3, 32, 32], [32, 8, 3, 3], [32, 32, 3, 3],
                                      [32, 3, 3, 8], [32, 3, 3, 32])}
    result["training"] = {}
    for fmt in ("channels_last", "channels_first"):
        for optimizer in ("sgd", "adam"):
            losses, copies = {}, {}
            keras.utils.set_random_seed(3)
            theirs = network(keras.layers.Conv2D, keras.layers.BatchNormalization, fmt)
            ours = network(Conv2D, BatchNormalization, fmt)
            ours.set_weights(theirs.get_weights())
            for label, model in (("ours", ours), ("keras", theirs)):
                made = (keras.optimizers.SGD(0.01, momentum=0.9) if optimizer == "sgd"
                        else keras.optimizers.Adam(1e-3))
                model.compile(made, keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
                if label == "ours":
                    moved = match_optimizer_layout(model)
                losses[label] = [float(model.train_on_batch(x, y)) for _ in range(3)]
                with torch.profiler.profile(record_shapes=True) as profile:  # forward and backward
                    model(x, training=True).square().sum().backward()
                copies[label] = sum(event.count for event in profile.key_averages(group_by_input_shape=True)
                                    if event.key in ("aten::copy_", "aten::clone")
                                    and str(event.input_shapes[0]) in kernel_shapes)
                if label == "ours":
                    strides = {tuple(v.value.shape): v.value.stride() for v in model.trainable_variables
                               if v.value.dim() == 4}
                    slots_follow = all(v.value.stride() == strides[tuple(v.value.shape)]
                                       for v in model.optimizer.variables if v.value.dim() == 4)
            result["training"][f"{fmt}, {optimizer}"] = {
                "losses": losses, "copies": copies, "moved": moved, "slots_follow": slots_follow,
                # Relative to the largest weight: conv biases before batch normalization stay near 0.
                "weights": max(float(np.abs(a - b).max()) for a, b in zip(ours.get_weights(), theirs.get_weights()))
                / max(float(np.abs(b).max()) for b in theirs.get_weights())}

    # Under torch.compile (jit_compile=True) the same first step as eager.
    keras.utils.set_random_seed(4)
    eager = network(Conv2D, BatchNormalization)
    compiled = network(Conv2D, BatchNormalization)
    compiled.set_weights(eager.get_weights())
    steps = []
    for model, jit in ((eager, False), (compiled, True)):
        model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=jit)
        steps.append([float(model.train_on_batch(x[:8], y[:8])) for _ in range(2)])
    result["compiled_steps"] = steps

    # The library's own models match their optimizer's slots themselves, in fit.
    resnet = keras_models.build("resnet18", input_shape=(32, 32, 3), num_classes=4, width_multiplier=0.125)
    resnet.fit(rng.uniform(size=(8, 32, 32, 3)).astype("float32"), np.arange(8) % 4, batch_size=4, verbose=0)
    kernels = {tuple(v.value.shape): v.value.stride() for v in resnet.trainable_variables if v.value.dim() == 4}
    slots = [v.value for v in resnet.optimizer.variables if v.value.dim() == 4]
    result["resnet_slots_follow"] = bool(slots) and all(s.stride() == kernels[tuple(s.shape)] for s in slots)

    # Files: one trained here with momentum, for TensorFlow to load; one written under TensorFlow, loaded here.
    keras.utils.set_random_seed(1)
    model = network(Conv2D, BatchNormalization)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    match_optimizer_layout(model)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(out + "/torch.keras")
    model.save_weights(out + "/torch.weights.h5")
    np.save(out + "/torch_outputs.npy", numpy(model.predict(x, verbose=0)))
    np.save(out + "/torch_momentum.npy", numpy(model.optimizer.variables[2]))  # c1's kernel's
    np.save(out + "/x.npy", x)
    model = network(Conv2D, BatchNormalization)
    model.load_weights(out + "/tf.weights.h5")
    result["from_tensorflow"] = float(np.abs(numpy(model.predict(np.load(out + "/tf_x.npy"), verbose=0))
                                             - np.load(out + "/tf_outputs.npy")).max())
    print(json.dumps(result))
""").replace("NETWORK\n", inspect.getsource(network), 1)  # the same `network` on both sides


@pytest.fixture(scope="module")
def torch_result(tmp_path_factory):
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("native_layers")
    # A file written under TensorFlow, for the worker to load on PyTorch.
    keras.utils.set_random_seed(2)
    model = network(Conv2D, BatchNormalization)
    x = np.random.default_rng(0).normal(size=(16, 16, 16, 8)).astype("float32")
    model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, np.arange(16) % 3, batch_size=8, epochs=1, verbose=0)
    model.save_weights(out / "tf.weights.h5")
    np.save(out / "tf_x.npy", x)
    np.save(out / "tf_outputs.npy", model.predict(x, verbose=0))
    env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", WORKER, str(out)], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), out


def test_convolution_equals_keras_on_pytorch(torch_result):
    result, _ = torch_result
    # PyTorch's own convolution in both: at most float32 rounding apart, on every configuration.
    assert result["conv"] <= 1e-6
    assert result["conv_grad"] <= 1e-6
    # The kernel's gradient arrives in the kernel's memory layout: nothing to copy when it accumulates.
    assert result["grad_layout_is_kernel_layout"]


def test_transposed_convolution_equals_keras_on_pytorch(torch_result):
    transposed = torch_result[0]["transposed"]
    assert transposed["cases"] > 300  # padding, output padding, stride, dilation, size, bias, layout
    assert transposed["output"] <= 1e-6 and transposed["input_grad"] <= 1e-6
    assert transposed["kernel_grad"] <= 1e-6
    assert transposed["bias_grad"] <= 1e-6  # against the summed magnitudes: float32's epsilon is 1.2e-7
    assert transposed["grad_layout_is_kernel_layout"]
    # (h, w, out, in) in PyTorch's channels-last weight order: in slowest, then h, w, out.
    layout = transposed["layout"]
    assert layout["shape"] == [3, 5, 8, 4] and layout["strides"] == [5 * 8, 8, 1, 3 * 5 * 8]


def test_kernel_keeps_keras_shape_in_pytorch_memory_order(torch_result):
    layout = torch_result[0]["layout"]
    assert layout["shape"] == [3, 5, 4, 8] and layout["get_weights"] == [3, 5, 4, 8]
    # (h, w, in, out) strides: out slowest, then h, w, in (channels-last) or in, h, w (channels-first).
    assert layout["last"] == [5 * 4, 4, 1, 3 * 5 * 4]
    assert layout["first"] == [5, 1, 3 * 5, 4 * 3 * 5]


def test_batch_normalization_equals_keras_on_pytorch(torch_result):
    bn = torch_result[0]["bn"]
    assert bn["train"] <= 1e-5 and bn["grad"] <= 1e-5 and bn["inference"] <= 1e-5
    # The moving variance comes from PyTorch's 1 / sqrt(variance + epsilon).
    assert bn["moving"] <= 1e-6
    single = torch_result[0]["bn_single"]
    assert single["output"] <= 1e-5 and single["moving"] <= 1e-7


@pytest.mark.parametrize("case", ["channels_last, sgd", "channels_last, adam", "channels_first, sgd",
                                  "channels_first, adam"])
def test_training_matches_keras_layers_and_copies_no_kernel(torch_result, case):
    run = torch_result[0]["training"][case]
    np.testing.assert_allclose(run["losses"]["ours"], run["losses"]["keras"], rtol=1e-5)
    assert run["weights"] <= 1e-4
    assert run["moved"] == (4 if "adam" in case else 2)  # a slot per kernel (Adam: two)
    assert run["slots_follow"]
    # Channels-first: none. Channels-last: PyTorch's own channels-last convolution converts each kernel
    # gradient once into the kernel's layout (it does so for PyTorch's modules too): one per convolution.
    assert run["copies"]["ours"] == (0 if case.startswith("channels_first") else 2)
    assert run["copies"]["keras"] >= 4  # Keras' layers: each kernel forward, each kernel gradient back


def test_torch_compile_trains_them_as_eager_does(torch_result):
    eager, compiled = torch_result[0]["compiled_steps"]
    np.testing.assert_allclose(compiled, eager, rtol=1e-5)


def test_library_models_match_their_optimizer_in_fit(torch_result):
    assert torch_result[0]["resnet_slots_follow"]


def test_files_move_between_pytorch_and_tensorflow_with_optimizer_state(torch_result):
    result, out = torch_result
    x, expected = np.load(out / "x.npy"), np.load(out / "torch_outputs.npy")
    # Trained on PyTorch with momentum, loaded under TensorFlow with its optimizer.
    loaded = keras.saving.load_model(out / "torch.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-5)
    momentum = keras.ops.convert_to_numpy(loaded.optimizer.variables[2])
    assert momentum.shape == (3, 3, 8, 32)
    np.testing.assert_array_equal(momentum, np.load(out / "torch_momentum.npy"))
    # The weights alone, into Keras' own layers.
    plain = network(keras.layers.Conv2D, keras.layers.BatchNormalization)
    plain.load_weights(out / "torch.weights.h5")
    np.testing.assert_allclose(plain.predict(x, verbose=0), expected, atol=1e-5)
    # Written under TensorFlow, loaded on PyTorch.
    assert result["from_tensorflow"] <= 1e-5


def test_under_tensorflow_they_are_keras_layers():
    layer = Conv2D(4, 3)
    layer.build((None, 8, 8, 2))
    assert tuple(layer.kernel.shape) == (3, 3, 2, 4)
    assert isinstance(layer, keras.layers.Conv2D)
    assert isinstance(BatchNormalization(), keras.layers.BatchNormalization)
    transposed = Conv2DTranspose(4, 3, strides=2, padding="same")
    transposed.build((None, 8, 8, 2))
    assert tuple(transposed.kernel.shape) == (3, 3, 4, 2) and isinstance(transposed, keras.layers.Conv2DTranspose)
    assert type(keras.layers.deserialize(keras.layers.serialize(transposed))) is Conv2DTranspose
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is Conv2D and restored.get_config() == layer.get_config()
    model = keras_models.build("resnet18", input_shape=(32, 32, 3), num_classes=2, width_multiplier=0.125)
    assert match_optimizer_layout(model) == 0  # nothing to match off PyTorch
