"""The library's pooling layers and `graph_runner` on PyTorch: Keras' results without Keras' per-layer work.

On the PyTorch backend `MaxPooling2D` and `AveragePooling2D` pool a view of channels-last activations
(Keras copies them to channels-first), and `CheckedModel` runs a functional graph through each layer's
`call` (`graph_runner`), folding a `ZeroPadding2D` into the convolution after it. The worker below, run
on that backend, compares both with Keras' own path: outputs, input gradients, memory layouts, a
training step's gradients and moving statistics, `fit` losses, `stateless_call`, and the cases that must
keep Keras' path.
"""

import textwrap

import keras
import numpy as np
import pytest

import keras_models
from keras_models import graph_runner
from keras_models.layers import AveragePooling2D, MaxPooling2D
from torch_worker import run_on_torch

WORKER = textwrap.dedent("""
    import functools, itertools, json, sys
    import keras, numpy as np, torch
    import keras_models
    from keras_models import graph_runner
    from keras.src.models.functional import Functional
    from keras_models.checks import CheckedModel
    from keras_models.layers import AveragePooling2D, MaxPooling2D

    rng = np.random.default_rng(0)
    result = {}

    def numpy(x):
        return keras.ops.convert_to_numpy(x)

    def relative(a, b):
        a, b = numpy(a), numpy(b)
        assert a.shape == b.shape, (a.shape, b.shape)
        return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))

    # Pooling: every size, stride, padding and layout against Keras' layers; output and gradient layouts.
    worst, worst_grad, layouts_kept, native = 0.0, 0.0, True, 0
    for (ours_cls, theirs_cls), fmt, padding, size, stride, rows in itertools.product(
            [(MaxPooling2D, keras.layers.MaxPooling2D), (AveragePooling2D, keras.layers.AveragePooling2D)],
            ["channels_last", "channels_first"], ["valid", "same"], [1, 2, 3], [1, 2, 3], [7, 8]):
        x = rng.normal(size=(2, rows, 9, 5)).astype("float32")
        x = x if fmt == "channels_last" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        ours = ours_cls(size, strides=stride, padding=padding, data_format=fmt)
        theirs = theirs_cls(size, strides=stride, padding=padding, data_format=fmt)
        own_path = ours._torch_pool(torch.tensor(x)) is not None
        native += own_path
        x_ours, x_theirs = torch.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
        worst = max(worst, relative(y_ours, y_theirs))
        weights = torch.tensor(rng.normal(size=tuple(y_theirs.shape)).astype("float32"))
        (y_ours * weights).sum().backward()
        (y_theirs * weights).sum().backward()
        worst_grad = max(worst_grad, relative(x_ours.grad, x_theirs.grad))
        if own_path:
            layouts_kept &= bool(y_ours.is_contiguous() and x_ours.grad.is_contiguous())
    result["pooling"] = {"output": worst, "grad": worst_grad, "layouts_kept": layouts_kept, "native": native}

    pads = [0]
    keras_pad = keras.layers.ZeroPadding2D.call

    def counted_pad(self, inputs):
        pads[0] += 1
        return keras_pad(self, inputs)

    keras.layers.ZeroPadding2D.call = counted_pad

    def keras_path(model):
        object.__setattr__(model, graph_runner._PLAN, None)

    def one_step(model, x, runner):
        # One training forward and backward pass from the same weights: outputs, gradients, moving stats.
        state = [numpy(v).copy() for v in model.variables]
        if not runner:
            keras_path(model)
        pads[0] = 0
        y = model(torch.tensor(x), training=True)
        (y * torch.linspace(-1.0, 1.0, y.shape[-1])).sum().backward()
        out = (numpy(y.detach()), [numpy(v.value.grad) for v in model.trainable_variables],
               [numpy(v).copy() for v in model.non_trainable_variables], pads[0])
        for variable, value in zip(model.variables, state):
            variable.assign(value)
        for variable in model.trainable_variables:  # model.zero_grad() misses variables added later (LoRA)
            variable.value.grad = None
        return out

    # Builders: a plan for each, and a step through it equal to Keras' path.
    builders = {
        "resnet18": dict(input_shape=(32, 32, 3), width_multiplier=0.25),
        "resnet18_channels_first": dict(input_shape=(32, 32, 3), width_multiplier=0.25,
                                        data_format="channels_first"),
        "resnet50": dict(input_shape=(32, 32, 3), width_multiplier=0.125),
        "lenet5": dict(input_shape=(32, 32, 1)),
        "vgg16": dict(input_shape=(32, 32, 3), width_multiplier=0.125),
        "simple_cnn": dict(input_shape=(16, 16, 3)),
    }
    result["builders"] = {}
    for key, kwargs in builders.items():
        keras.utils.set_random_seed(1)
        name = "resnet18" if key.startswith("resnet18") else key
        model = keras_models.build(name, num_classes=5, compile=False, **kwargs)
        plan = graph_runner.plan(model)
        x = rng.normal(size=(4, *kwargs["input_shape"])).astype("float32")
        ours = one_step(model, x, True)
        theirs = one_step(model, x, False)
        layers = [type(l).__name__ for l in model.layers]
        result["builders"][key] = {
            "plan": plan is not None,
            "output": relative(ours[0], theirs[0]),
            "grad": max(relative(a, b) for a, b in zip(ours[1], theirs[1])),
            "moving": max([relative(a, b) for a, b in zip(ours[2], theirs[2])] or [0.0]),
            "pads": [ours[3], theirs[3]], "pad_layers": layers.count("ZeroPadding2D"),
        }

    # Transformers: the GPT task (integer token ids, its backbone a nested functional model, the blocks'
    # sub-layers called through `layers.direct`) against Keras' path, counting `Layer.__call__`.
    calls = [0]
    keras_call = keras.layers.Layer.__call__

    def counted_call(self, *args, **kwargs):
        calls[0] += 1
        return keras_call(self, *args, **kwargs)

    def gradient_gap(ours, theirs):
        # Against the largest gradient of the model: the key projections' biases have a gradient of zero
        # in exact arithmetic (a softmax ignores what is added to every score of a query), so theirs are
        # rounding noise on both paths.
        scale = max(float(np.abs(numpy(b)).max()) for b in theirs)
        return max(float(np.abs(numpy(a) - numpy(b)).max()) for a, b in zip(ours, theirs)) / scale

    # Keras' operators the composite layers reach only off the plan (`layers.direct`): attention, GELU and
    # the blocks' layer normalization.
    keras_ops = {"dot_product_attention": keras.ops.dot_product_attention, "gelu": keras.ops.gelu}
    op_calls = dict.fromkeys([*keras_ops, "layer_norm"], 0)

    def counting(name, function):
        @functools.wraps(function)  # Keras reads a layer's call signature
        def counted(*args, **kwargs):
            op_calls[name] += 1
            return function(*args, **kwargs)
        return counted

    for name, function in keras_ops.items():
        setattr(keras.ops, name, counting(name, function))
    keras.layers.LayerNormalization.call = counting("layer_norm", keras.layers.LayerNormalization.call)
    keras.layers.Layer.__call__ = counted_call
    transformers = {}
    for dropout in (0.0, 0.1):
        keras.utils.set_random_seed(6)
        gpt = keras_models.build("gpt_causal_lm", vocabulary_size=40, num_layers=2, num_heads=4, hidden_dim=32,
                                 intermediate_dim=64, max_sequence_length=16, dropout=dropout, compile=False)
        tokens = rng.integers(0, 40, size=(3, 16)).astype("int32")
        entry = {"plan": graph_runner.plan(gpt) is not None}
        for runner in (True, False):
            calls[0] = 0
            op_calls.update(dict.fromkeys(op_calls, 0))
            keras.utils.set_random_seed(7)  # the same dropout masks on both paths
            entry["runner" if runner else "keras"] = one_step(gpt, tokens, runner)
            entry["calls_runner" if runner else "calls_keras"] = calls[0]
            entry["ops_runner" if runner else "ops_keras"] = dict(op_calls)
        ours, theirs = entry.pop("runner"), entry.pop("keras")
        entry["output"] = relative(ours[0], theirs[0])
        entry["grad"] = gradient_gap(ours[1], theirs[1])
        transformers[f"gpt_dropout_{dropout}"] = entry
    # LoRA on a projection inside a block: the direct path goes through `Dense.call`, equal to Keras'.
    keras.utils.set_random_seed(6)
    gpt = keras_models.build("gpt_causal_lm", vocabulary_size=40, num_layers=1, num_heads=4, hidden_dim=32,
                             intermediate_dim=64, max_sequence_length=16, dropout=0.0, compile=False)
    gpt.backbone.transformer_layers[0].attention.query_dense.enable_lora(2)
    tokens = rng.integers(0, 40, size=(3, 16)).astype("int64")  # int64 ids, converted as Keras converts them
    ours, theirs = one_step(gpt, tokens, True), one_step(gpt, tokens, False)
    transformers["gpt_lora"] = {"output": relative(ours[0], theirs[0]), "grad": gradient_gap(ours[1], theirs[1])}
    keras.layers.Layer.__call__ = keras_call
    for name, function in keras_ops.items():
        setattr(keras.ops, name, function)
    keras.utils.set_random_seed(6)
    gpt = keras_models.build("gpt_causal_lm", vocabulary_size=40, num_layers=1, num_heads=4, hidden_dim=32,
                             intermediate_dim=64, max_sequence_length=16, dropout=0.0, compile=False)
    before = graph_runner.plan(gpt) is not None
    gpt.quantize("int8")
    transformers["gpt_quantized_plan"] = [before, graph_runner.plan(gpt) is not None]
    bert = keras_models.build("bert_classifier", vocabulary_size=40, num_classes=2, num_layers=1, num_heads=2,
                              hidden_dim=16, intermediate_dim=32, max_sequence_length=16, compile=False)
    transformers["bert_plan"] = graph_runner.plan(bert) is not None  # a padding-mask input: Keras' path
    result["transformers"] = transformers

    # fit: three steps through the runner and through Keras' path, from the same weights.
    losses = {}
    for runner in (True, False):
        keras.utils.set_random_seed(3)
        model = keras_models.build("resnet18", input_shape=(32, 32, 3), num_classes=4, width_multiplier=0.25,
                                   compile=False)
        keras_models.compile_model(model, optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                                   loss="sparse_categorical_crossentropy", jit_compile=False, family="cnn")
        if not runner:
            keras_path(model)
        data = np.random.default_rng(4)
        x = data.normal(size=(24, 32, 32, 3)).astype("float32")
        y = data.integers(0, 4, size=24)
        history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        losses["runner" if runner else "keras"] = history.history["loss"]
        losses["runner_used" if runner else "keras_used"] = graph_runner.plan(model) is not None
    result["fit"] = losses

    # stateless_call: the moving statistics come back as new values; the variables stay as they were.
    keras.utils.set_random_seed(5)
    model = keras_models.build("resnet18", input_shape=(32, 32, 3), num_classes=3, width_multiplier=0.125,
                               compile=False)
    x = torch.tensor(rng.normal(size=(4, 32, 32, 3)).astype("float32"))
    before = [numpy(v).copy() for v in model.non_trainable_variables]
    _, new_stateless = model.stateless_call([v.value for v in model.trainable_variables],
                                            [v.value for v in model.non_trainable_variables], x, training=True)
    unchanged = all(np.array_equal(numpy(v), b) for v, b in zip(model.non_trainable_variables, before))
    model(x, training=True)
    result["stateless"] = {
        "variables_unchanged": unchanged,
        "new_values": max(relative(a, b) for a, b in zip(new_stateless, model.non_trainable_variables)),
        "moved": max(float(np.abs(numpy(a) - b).max()) for a, b in zip(new_stateless, before)),
    }

    # Keras' path where the runner cannot follow Keras: other layers, other dtypes, masks, regularizers.
    inputs = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(10, 4)(inputs)
    embedding_model = CheckedModel(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    inputs = keras.Input((4,))
    regularized = CheckedModel(inputs, keras.layers.Dense(2, activity_regularizer="l2")(inputs))
    inputs = keras.Input((4,))
    mixed = CheckedModel(inputs, keras.layers.Dense(2, dtype="mixed_bfloat16")(inputs))
    inputs = keras.Input((4,))
    plain = CheckedModel(inputs, keras.layers.Dense(2)(keras.layers.Dense(3)(inputs)))
    inputs = keras.Input((4,))
    always_dropping = CheckedModel(inputs, keras.layers.Dropout(0.5)(keras.layers.Dense(3)(inputs), training=True))
    inputs = keras.Input((4,))
    built_for_inference = CheckedModel(inputs, keras.layers.Dropout(0.5)(keras.layers.Dense(3)(inputs),
                                                                           training=False))
    features, weights = keras.Input((3, 4)), keras.Input((3,), dtype="bool")
    masked = CheckedModel([features, weights], keras.layers.BatchNormalization()(features, mask=weights))
    result["plans"] = {name: graph_runner.plan(m) is not None for name, m in
                       [("embedding", embedding_model), ("activity_regularizer", regularized),
                        ("mixed_bfloat16", mixed), ("dense", plain), ("dropout_training_true", always_dropping),
                        ("dropout_training_false", built_for_inference), ("mask_argument", masked)]}
    # A recorded `training=False` gives way to the call's, as in Keras: dropout on when training.
    x = rng.normal(size=(64, 4)).astype("float32")
    result["recorded_false_drops"] = bool((numpy(built_for_inference(x, training=True)) == 0).any())
    # Output structures as Keras' functional call returns them: a one-element list or tuple unpacked.
    structures = {}
    inputs = keras.Input((4,))
    first, second = keras.layers.Dense(2)(inputs), keras.layers.Dense(3)(inputs)
    x = rng.normal(size=(5, 4)).astype("float32")
    for name, outputs in [("tensor", first), ("list_of_one", [first]), ("tuple_of_one", (first,)),
                          ("list", [first, second]), ("dict", {"a": first, "b": second})]:
        model = CheckedModel(inputs, outputs)
        ours = model(x)
        theirs = Functional.call(model, torch.tensor(x))  # Keras' own functional call
        pairs = zip(keras.tree.flatten(ours), keras.tree.flatten(theirs))
        structures[name] = {"plan": graph_runner.plan(model) is not None,
                            "types": [type(ours).__name__, type(theirs).__name__],
                            "equal": max(relative(a, b) for a, b in pairs) == 0.0}
    result["structures"] = structures
    # Quantized after its plan was made: back to Keras' path, which computes with the int8 kernels.
    x = rng.normal(size=(8, 4)).astype("float32")
    plain(x)
    plain.quantize("int8")
    result["quantized"] = {"plan": graph_runner.plan(plain) is not None,
                           "kernel_dtype": str(plain.layers[1]._kernel.dtype)}
    print(json.dumps(result))
""")


@pytest.fixture(scope="module")
def torch_result():
    return run_on_torch(WORKER)


def test_pooling_equals_keras_and_keeps_the_layout(torch_result):
    pooling = torch_result["pooling"]
    # The same windows: max pooling exactly, averages to float32 rounding, gradients likewise.
    assert pooling["output"] <= 1e-6 and pooling["grad"] <= 1e-6
    # Outputs and input gradients stay in the activations' layout (Keras' path returns channels-first
    # memory for channels-last tensors).
    assert pooling["layouts_kept"]
    # PyTorch's kernel on all 144 configurations but "same" padding that TensorFlow places unevenly (the
    # 72 "valid" ones and some "same" ones).
    assert 72 < pooling["native"] < 144


@pytest.mark.parametrize("name", ["resnet18", "resnet18_channels_first", "resnet50", "lenet5", "vgg16",
                                  "simple_cnn"])
def test_builders_run_through_the_plan_as_keras_does(torch_result, name):
    run = torch_result["builders"][name]
    assert run["plan"]
    assert run["output"] <= 1e-5 and run["grad"] <= 1e-4 and run["moving"] <= 1e-5
    ours, theirs = run["pads"]
    assert theirs == run["pad_layers"]
    if name.startswith("resnet18"):
        # Four paddings before strided convolutions fold into them; the one before max pooling stays.
        assert (theirs, ours) == (5, 1)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_gpt_runs_through_the_plan_as_keras_does(torch_result, dropout):
    run = torch_result["transformers"][f"gpt_dropout_{dropout}"]
    assert run["plan"]
    # No `Layer.__call__` at all: the model's own outermost call runs the plan (`eager_step.call`), and the
    # backbone, its blocks and their attention, feed-forward, normalization and dropout sub-layers run
    # through `call` (Keras' path: one per layer and sub-layer).
    assert run["calls_runner"] == 0 and run["calls_keras"] > 30
    # On the plan the two blocks' attention, GELU and layer normalizations are PyTorch's operators called
    # directly; only the final normalization, a node of the graph, is Keras' layer. (With dropout on, the
    # attention weights are dropped explicitly on both paths.)
    attention = 0 if dropout else 2
    assert run["ops_runner"] == {"dot_product_attention": 0, "gelu": 0, "layer_norm": 1}
    assert run["ops_keras"] == {"dot_product_attention": attention, "gelu": 2, "layer_norm": 5}
    assert run["output"] <= 1e-6 and run["grad"] <= 1e-5


def test_gpt_with_lora_inside_a_block_runs_as_keras_does(torch_result):
    run = torch_result["transformers"]["gpt_lora"]
    assert run["output"] <= 1e-6 and run["grad"] <= 1e-5


def test_fit_through_the_plan_equals_keras(torch_result):
    fit = torch_result["fit"]
    assert fit["runner_used"] and not fit["keras_used"]
    np.testing.assert_allclose(fit["runner"], fit["keras"], rtol=1e-5)


def test_stateless_call_leaves_the_variables_alone(torch_result):
    stateless = torch_result["stateless"]
    assert stateless["variables_unchanged"]
    assert stateless["moved"] > 1e-4  # the step did move the statistics
    assert stateless["new_values"] <= 1e-6  # to the values a stateful call then gives


def test_keras_path_where_the_runner_cannot_follow(torch_result):
    assert {name: torch_result["plans"][name] for name in ("embedding", "activity_regularizer", "mixed_bfloat16",
                                                           "dense")} == {"embedding": False, "activity_regularizer": False,
                                                                         "mixed_bfloat16": False, "dense": True}
    assert not torch_result["transformers"]["bert_plan"]
    # Dropout recorded as always on, or a mask passed as an argument: Keras' path. A recorded
    # `training=False` runs through the plan and gives way to the call's `training`, as in Keras.
    plans = torch_result["plans"]
    assert not plans["dropout_training_true"] and not plans["mask_argument"] and plans["dropout_training_false"]
    assert torch_result["recorded_false_drops"]
    # A GPT quantized after its plan was made takes Keras' path (its projections compute in int8).
    assert torch_result["transformers"]["gpt_quantized_plan"] == [True, False]
    quantized = torch_result["quantized"]
    assert not quantized["plan"] and "int8" in quantized["kernel_dtype"]


def test_outputs_keep_the_structure_keras_returns(torch_result):
    structures = torch_result["structures"]
    for name, run in structures.items():
        assert run["plan"], name
        ours, theirs = run["types"]
        assert ours == theirs, (name, ours, theirs)
        assert run["equal"], name
    assert structures["list_of_one"]["types"][0] == "Tensor"  # unpacked, as Keras' functional call does


def test_under_tensorflow_they_are_keras_layers_and_no_plan_runs():
    for ours, theirs in [(MaxPooling2D, keras.layers.MaxPooling2D), (AveragePooling2D, keras.layers.AveragePooling2D)]:
        layer = ours(3, strides=2, padding="same")
        assert isinstance(layer, theirs)
        restored = keras.layers.deserialize(keras.layers.serialize(layer))
        assert type(restored) is ours and restored.get_config() == layer.get_config()
        x = np.random.default_rng(0).normal(size=(2, 7, 7, 3)).astype("float32")
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)),
                                      keras.ops.convert_to_numpy(theirs(3, strides=2, padding="same")(x)))
    model = keras_models.build("resnet18", input_shape=(32, 32, 3), num_classes=2, width_multiplier=0.125)
    assert model(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 2)
    assert graph_runner._PLAN not in model.__dict__  # the plan is never built off PyTorch
