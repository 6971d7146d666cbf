"""Layers more than one family uses. A family's private layers live beside it (`gan/gan_layers.py`).

- `SpectralNorm`: a kernel divided by its largest singular value (GAN discriminators).
- `InstanceNormalization`: per-sample, per-channel normalization (image translation).
- `SelfAttention2D`: self-attention over the positions of a feature map.
- `PixelShuffle`: sub-pixel upsampling, channels to space.
- `ChannelLayout`: channels-last data to a channels-first network and back.
- `unet`: the U-Net encoder-decoder with skip connections, as a block.
- `Conv2D`, `Conv2DTranspose`, `BatchNormalization`: Keras' own, the same arguments, variables and
  files; on PyTorch the kernel lives in PyTorch's memory order and batch normalization is PyTorch's fused kernel, so a
  training step copies no kernel (the convolutional builders use them; `match_optimizer_layout`).
- `MaxPooling2D`, `AveragePooling2D`: Keras' own likewise; on PyTorch they pool channels-last
  activations in place instead of copying them to channels-first.
- `MaskedConv2D`: a convolution masked to the pixels before the centre in raster order (PixelCNN).

Transformer layers (the transformer family; encoder and encoder-decoder models build on them too):

- `CachedMultiHeadAttention`: multi-head or grouped-query attention, separate query and key/value
  inputs, padding and causal masks, an additive bias, rotary positions and a fixed-size KV cache.
- `TransformerBlock`: self-attention and feed-forward residual branches, pre- or post-norm, causal or not.
- `TransformerDecoderBlock`: causal self-attention, cross-attention to an encoder's outputs and a
  feed-forward network (encoder-decoders), with a self-attention cache and precomputed cross keys/values.
- `RelativePositionBias`: T5's bucketed relative position bias, added to attention scores.
- `FeedForward`: the position-wise network, GELU, ReLU, SwiGLU or GeGLU.
- `RMSNorm`: root-mean-square normalization.
- `PatchEmbedding`: images cut into patches, each projected to a token, and a class token (ViT).
- `PositionEmbedding` (learned), `SinusoidalPositionEmbedding`, `RotaryEmbedding`: positions.
- `ReversibleEmbedding`: a token embedding that also gives logits through its table (tied embeddings).

Speech: `LogMelSpectrogram`, waveforms to Whisper's normalized log-mel features in the graph (the DFT
as a strided convolution, no FFT operator).

Every layer exports to builtin TFLite operators and plain ONNX operators, and runs on the TensorFlow,
JAX and PyTorch backends.
"""

from keras_models.layers.batch_normalization import BatchNormalization
from keras_models.layers.cached_multi_head_attention import CachedMultiHeadAttention
from keras_models.layers.conv2d import Conv2D, Conv2DTranspose, match_optimizer_layout
from keras_models.layers.feed_forward import FeedForward
from keras_models.layers.instance_normalization import InstanceNormalization
from keras_models.layers.layout import ChannelLayout
from keras_models.layers.log_mel_spectrogram import LogMelSpectrogram
from keras_models.layers.masked_conv2d import MaskedConv2D
from keras_models.layers.patch_embedding import PatchEmbedding
from keras_models.layers.pixel_shuffle import PixelShuffle
from keras_models.layers.pooling import AveragePooling2D, MaxPooling2D
from keras_models.layers.position_embedding import PositionEmbedding
from keras_models.layers.relative_position_bias import RelativePositionBias
from keras_models.layers.reversible_embedding import ReversibleEmbedding
from keras_models.layers.rms_norm import RMSNorm
from keras_models.layers.rotary_embedding import RotaryEmbedding
from keras_models.layers.self_attention_2d import SelfAttention2D
from keras_models.layers.sinusoidal_position_embedding import SinusoidalPositionEmbedding
from keras_models.layers.spectral_normalization import SpectralNorm
from keras_models.layers.transformer_block import TransformerBlock
from keras_models.layers.transformer_decoder_block import TransformerDecoderBlock
from keras_models.layers.unet import unet

__all__ = [
    "AveragePooling2D",
    "BatchNormalization",
    "CachedMultiHeadAttention",
    "ChannelLayout",
    "Conv2D",
    "Conv2DTranspose",
    "FeedForward",
    "InstanceNormalization",
    "LogMelSpectrogram",
    "MaskedConv2D",
    "MaxPooling2D",
    "PatchEmbedding",
    "PixelShuffle",
    "PositionEmbedding",
    "RMSNorm",
    "RelativePositionBias",
    "ReversibleEmbedding",
    "RotaryEmbedding",
    "SelfAttention2D",
    "SinusoidalPositionEmbedding",
    "SpectralNorm",
    "TransformerBlock",
    "TransformerDecoderBlock",
    "match_optimizer_layout",
    "unet",
]
