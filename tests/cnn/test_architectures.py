"""The published architectures: parameter counts and weight layouts equal keras.applications' side by
side, LeNet-5 and AlexNet equal the papers' counts, and shapes shrink as the papers say."""

import collections

import keras
import pytest

import keras_models


def _weight_shapes(model):
    return collections.Counter(tuple(w.shape) for w in model.weights)


def _assert_same_as_keras(name, reference):
    ours = keras_models.build(name, compile=False)
    theirs = reference(weights=None)
    assert ours.count_params() == theirs.count_params()
    assert sum(w.numpy().size for w in ours.trainable_weights) == sum(
        w.numpy().size for w in theirs.trainable_weights)
    # Not just the totals: the same multiset of weight shapes, layer for layer.
    assert _weight_shapes(ours) == _weight_shapes(theirs)
    assert ours.output_shape == theirs.output_shape == (None, 1000)
    assert ours.input_shape == theirs.input_shape


@pytest.mark.parametrize("name, reference", [
    ("resnet50", "ResNet50"),
    ("inception_v3", "InceptionV3"),
])
def test_matches_keras_applications(name, reference):
    _assert_same_as_keras(name, getattr(keras.applications, reference))


@pytest.mark.slow
@pytest.mark.parametrize("name, reference", [
    ("vgg16", "VGG16"),
    ("vgg19", "VGG19"),
    ("resnet101", "ResNet101"),
    ("resnet152", "ResNet152"),
    ("resnet50v2", "ResNet50V2"),
    ("resnet101v2", "ResNet101V2"),
    ("resnet152v2", "ResNet152V2"),
])
def test_matches_keras_applications_slow(name, reference):
    _assert_same_as_keras(name, getattr(keras.applications, reference))


def test_published_counts_without_keras_reference():
    # LeNet-5: 156 + 2,416 + 48,120 + 10,164 + 850 (paper's layer sizes, full C3 connections).
    assert keras_models.build("lenet5", compile=False).count_params() == 61_706
    # Single-tower AlexNet at 227x227: the 62.4M usually quoted for the network.
    assert keras_models.build("alexnet", compile=False).count_params() == 62_378_344
    # The paper's two towers (grouped conv2, conv4, conv5): 60,965,224, the two-tower network's count.
    assert keras_models.build("alexnet", towers=2, compile=False).count_params() == 60_965_224
    # ResNet-18/34 as in the paper (with conv biases, as keras.applications' v1 ResNets).
    resnet18 = keras_models.build("resnet18", compile=False)
    assert resnet18.get_layer("resnet18_conv5_block2_out").output.shape == (None, 7, 7, 512)
    assert sum(1 for l in resnet18.layers if isinstance(l, keras.layers.Conv2D)) == 17 + 3  # + 3 projections


def test_googlenet_follows_table_1():
    model = keras_models.build("googlenet", compile=False)
    expected = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528, "4e": 832, "5a": 832,
                "5b": 1024}
    for label, channels in expected.items():
        assert model.get_layer(f"googlenet_inception{label}_concat").output.shape[-1] == channels
    assert model.get_layer("googlenet_inception3a_concat").output.shape[1:3] == (28, 28)
    assert model.get_layer("googlenet_inception5b_concat").output.shape[1:3] == (7, 7)


def test_width_multiplier_scales_filters():
    full = keras_models.build("vgg16", input_shape=(32, 32, 3), num_classes=10, compile=False)
    half = keras_models.build("vgg16", input_shape=(32, 32, 3), num_classes=10, compile=False,
                              width_multiplier=0.5)
    assert half.get_layer("vgg16_block5_conv3").filters == 256
    assert full.get_layer("vgg16_block5_conv3").filters == 512
    assert half.count_params() < full.count_params()


def test_layer_names_are_prefixed_and_stable():
    a = keras_models.build("resnet18", input_shape=(32, 32, 3), num_classes=10, compile=False, name="net")
    b = keras_models.build("resnet18", input_shape=(32, 32, 3), num_classes=10, compile=False, name="net")
    names = [layer.name for layer in a.layers]
    assert names == [layer.name for layer in b.layers]
    assert all(n.startswith("net_") for n in names)
    assert "net_conv2_block1_1_conv" in names
