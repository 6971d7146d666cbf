"""Layers more than one family uses. A family's private layers live beside it (`gan/gan_layers.py`).

- `SpectralNorm`: a kernel divided by its largest singular value (GAN discriminators).
- `InstanceNormalization`: per-sample, per-channel normalization (image translation).
- `SelfAttention2D`: self-attention over the positions of a feature map.
- `PixelShuffle`: sub-pixel upsampling, channels to space.
- `ChannelLayout`: channels-last data to a channels-first network and back.
- `unet`: the U-Net encoder-decoder with skip connections, as a block.

Every layer exports to builtin TFLite operators and plain ONNX operators, and runs on the TensorFlow,
JAX and PyTorch backends.
"""

from keras_models.layers.instance_normalization import InstanceNormalization
from keras_models.layers.layout import ChannelLayout
from keras_models.layers.pixel_shuffle import PixelShuffle
from keras_models.layers.self_attention_2d import SelfAttention2D
from keras_models.layers.spectral_normalization import SpectralNorm
from keras_models.layers.unet import unet

__all__ = ["ChannelLayout", "InstanceNormalization", "PixelShuffle", "SelfAttention2D", "SpectralNorm", "unet"]
