"""Convolutional networks: the textbook CNN, LeNet-5, AlexNet, VGG, ResNet, Inception, text and video.

    >>> import keras_models
    >>> model = keras_models.build("resnet50")  # exactly keras.applications.ResNet50's parameters
    >>> small = keras_models.build("resnet18", input_shape=(32, 32, 3), num_classes=10, width_multiplier=0.25)

Every builder shares `input_shape, num_classes, head, include_top, pooling, name, compile, jit_compile`.
"""

from __future__ import annotations

from keras_models.cnn.alexnet import alexnet
from keras_models.cnn.inception import googlenet, inception_v3
from keras_models.cnn.lenet import lenet5
from keras_models.cnn.resnet import (
    resnet18,
    resnet34,
    resnet50,
    resnet50v2,
    resnet101,
    resnet101v2,
    resnet152,
    resnet152v2,
)
from keras_models.cnn.simple import simple_cnn
from keras_models.cnn.text import text_cnn
from keras_models.cnn.video import SpatioTemporalMaxPooling, video_cnn
from keras_models.cnn.vgg import vgg16, vgg19

__all__ = [
    "SpatioTemporalMaxPooling",
    "alexnet",
    "googlenet",
    "inception_v3",
    "lenet5",
    "resnet101",
    "resnet101v2",
    "resnet152",
    "resnet152v2",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet50v2",
    "simple_cnn",
    "text_cnn",
    "vgg16",
    "vgg19",
    "video_cnn",
]
