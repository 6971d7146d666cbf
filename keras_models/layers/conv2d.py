"""`Conv2D`: Keras' 2-D convolution, its kernel laid out in memory as PyTorch computes on the PyTorch backend."""

from __future__ import annotations

import keras
from keras import ops

from keras_models.layers.batch_normalization import _as

_PACKAGE = "keras_models"


def _same_padding(size, kernel, stride, dilation):
    """TensorFlow's "same" padding along one axis: (before, after), the extra pixel after."""
    extent = (kernel - 1) * dilation + 1
    total = max((-(-size // stride) - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


def eager_torch() -> bool:
    """On the PyTorch backend and not inside `torch.compile`: where the library's own PyTorch paths run.
    Under `torch.compile` (`jit_compile=True`) Keras' paths run: the compiler plans its own layouts, and its
    dynamic shapes do not trace channels-last views."""
    if keras.backend.backend() != "torch":
        return False
    import torch

    return not torch.compiler.is_compiling()


def _pytorch_order(kernel, data_format):
    """Lays out the memory of a `(h, w, a, b)` kernel tensor in place in PyTorch's order for its weights,
    keeping its shape: `(b, h, w, a)` for channels-last data (PyTorch's channels-last weights), `(b, a, h,
    w)` for channels-first. For a convolution `a, b` are in and out; for a transposed one, out and in."""
    order = (3, 0, 1, 2) if data_format == "channels_last" else (3, 2, 0, 1)
    _restride(kernel, _strides(kernel.shape, order))


def _torch_operands(inputs, kernel, bias, data_format):
    """The activations as `(batch, channels, h, w)`, the `(h, w, a, b)` kernel as `(b, a, h, w)` and the
    bias (or None), as views where the dtypes agree, in the activations' dtype."""
    x = ops.convert_to_tensor(inputs)
    x = x.permute(0, 3, 1, 2) if data_format == "channels_last" else x  # a view, in channels-last memory
    w = _as(ops.convert_to_tensor(kernel).permute(3, 2, 0, 1), x.dtype)
    return x, w, None if bias is None else _as(ops.convert_to_tensor(bias), x.dtype)


def _strides(shape, order):
    """The strides of a tensor of `shape` laid out in memory in `order` (slowest dimension first)."""
    strides, step = [0] * len(shape), 1
    for axis in reversed(order):
        strides[axis] = step
        step *= shape[axis]
    return tuple(strides)


def _restride(tensor, strides):
    """Gives a PyTorch tensor, in place, the memory layout `strides`, keeping its shape, values and identity
    (a variable's parameter stays the object Keras, autograd and the optimizer know)."""
    import torch

    with torch.no_grad():
        moved = torch.empty_strided(tensor.shape, strides, dtype=tensor.dtype, device=tensor.device)
        moved.copy_(tensor)
        tensor.set_(moved.untyped_storage(), 0, moved.shape, moved.stride())


def match_optimizer_layout(model) -> int:
    """On the PyTorch backend, gives the optimizer's slots (momentum, Adam's moments, ...) the memory
    layout of the variables they follow, building the optimizer first if it is not yet built.

    An optimizer creates its slots contiguous; where a variable is laid out otherwise (the kernels of
    `keras_models.layers.Conv2D`), every update would read the two in different orders, several times
    slower. The library's models call this before their first training step; a model of your own that
    holds these layers and trains on PyTorch should call it once after `compile`. Returns the number of
    slots moved; a no-op on the other backends.
    """
    if keras.backend.backend() != "torch" or getattr(model, "optimizer", None) is None:
        return 0
    return match_slot_layout(model.optimizer, model.trainable_variables)


def match_slot_layout(optimizer, variables) -> int:
    """`match_optimizer_layout` for one optimizer and the variables it updates (a GAN's two optimizers
    each update their own network's): the slots moved; a no-op off PyTorch."""
    if keras.backend.backend() != "torch":
        return 0
    variables = list(variables)
    layouts = {}
    for variable in variables:
        value = variable.value
        if value.dim() > 1 and not value.is_contiguous():
            layouts.setdefault((tuple(value.shape), value.dtype), value.stride())
    if not layouts:
        return 0
    if not optimizer.built:
        optimizer.build(variables)
    moved = 0
    for slot in optimizer.variables:
        value = slot.value
        stride = layouts.get((tuple(value.shape), value.dtype))
        if stride is not None and value.stride() != stride:
            _restride(value, stride)
            moved += 1
    return moved


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Conv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D`: the same arguments, variables, outputs and files, faster on PyTorch.

    On the PyTorch backend Keras' convolution copies channels-last activations to channels-first (and
    back into channels-last memory) around every convolution, and copies every kernel from Keras'
    `(h, w, in, out)` order into PyTorch's in each forward pass and each kernel gradient back in each
    backward pass: on a CPU these copies take a large part of a ResNet's training step.

    Built on PyTorch, this layer keeps the kernel variable's shape, `(h, w, in, out)`, and lays its
    memory out in PyTorch's order: `(out, h, w, in)` for channels-last data (PyTorch's channels-last
    weights), `(out, in, h, w)` for channels-first. The convolution then receives the kernel and the
    activations as views: no kernel is copied channels-first, and channels-last only each kernel
    gradient once, as PyTorch's own channels-last modules do. The bias is added inside the convolution,
    as PyTorch's modules add it. Everything Keras sees is Keras' own: the
    shape, `get_weights()`, saved files and the optimizer's state, so weights and checkpoints move
    between backends unchanged.

    The optimizer's slots must follow the kernel's layout (`match_optimizer_layout`); the library's
    models see to it. Under `torch.compile` (`jit_compile=True`), and on TensorFlow and JAX, the
    convolution is `keras.layers.Conv2D`'s: the compilers choose layouts themselves.
    """

    def build(self, input_shape):
        super().build(input_shape)
        if keras.backend.backend() == "torch":
            _pytorch_order(self._kernel.value, self.data_format)  # (h, w, in, out) stored out-major

    def call(self, inputs):
        if not eager_torch():
            return super().call(inputs)
        return self.call_padded(inputs, (0, 0))

    def call_padded(self, inputs, padding):
        """`call` on `inputs` zero-padded by `padding = (rows, columns)` on both sides of each axis, the
        padding done inside the convolution (PyTorch path only; `graph_runner` fuses a `ZeroPadding2D`
        into the convolution after it). The bias is added by the convolution too, as PyTorch's modules do."""
        if not eager_torch():
            rows, columns = padding
            pads = ((0, 0), (rows, rows), (columns, columns), (0, 0)) if self.data_format == "channels_last" \
                else ((0, 0), (0, 0), (rows, rows), (columns, columns))
            return super().call(ops.pad(inputs, pads))
        y = self._torch_convolution(inputs, self.kernel, padding, self.bias if self.use_bias else None)
        return y if self.activation is None else self.activation(y)

    def convolution_op(self, inputs, kernel):
        if not eager_torch():
            return super().convolution_op(inputs, kernel)
        return self._torch_convolution(inputs, kernel, (0, 0), None)

    def _torch_convolution(self, inputs, kernel, extra, bias):
        import torch.nn.functional as F

        channels_last = self.data_format == "channels_last"
        x, w, bias = _torch_operands(inputs, kernel, bias, self.data_format)  # w: (out, in, h, w)
        padding = extra
        if self.padding == "same":
            rows = _same_padding(x.shape[2] + 2 * extra[0], w.shape[2], self.strides[0], self.dilation_rate[0])
            columns = _same_padding(x.shape[3] + 2 * extra[1], w.shape[3], self.strides[1], self.dilation_rate[1])
            if rows[0] == rows[1] and columns[0] == columns[1]:
                padding = (extra[0] + rows[0], extra[1] + columns[0])
            else:
                x = F.pad(x, (extra[1] + columns[0], extra[1] + columns[1], extra[0] + rows[0], extra[0] + rows[1]))
                padding = (0, 0)
        y = F.conv2d(x, w, bias, stride=self.strides, padding=padding, dilation=self.dilation_rate,
                     groups=self.groups)
        return y.permute(0, 2, 3, 1) if channels_last else y


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Conv2DTranspose(keras.layers.Conv2DTranspose):
    """`keras.layers.Conv2DTranspose`: the same arguments, variables, outputs and files, faster on PyTorch.

    As `Conv2D`: built on PyTorch, the kernel keeps its Keras shape, `(h, w, out, in)`, with its memory in
    PyTorch's order (`(in, h, w, out)` for channels-last data, PyTorch's channels-last weights; `(in, out,
    h, w)` for channels-first), and eagerly the transposed convolution receives the kernel and the
    activations as views, adds the bias itself, and trims Keras' "same" output from PyTorch's by a
    symmetric padding where Keras' crop is symmetric (a view of the output otherwise). Keras' own path
    copies the activations channels-first and back and the kernel into PyTorch's order in every pass.
    The optimizer's slots must follow the kernel's layout (`match_optimizer_layout`). Under
    `torch.compile`, and on TensorFlow and JAX, it is `keras.layers.Conv2DTranspose`.
    """

    def build(self, input_shape):
        super().build(input_shape)
        if keras.backend.backend() == "torch":
            _pytorch_order(self.kernel.value, self.data_format)  # (h, w, out, in) stored in-major

    def call(self, inputs):
        if not eager_torch():
            return super().call(inputs)
        import torch.nn.functional as F
        from keras.src.backend.common.backend_utils import compute_conv_transpose_output_crops_for_torch

        channels_last = self.data_format == "channels_last"
        x, w, bias = _torch_operands(inputs, self.kernel, self.bias if self.use_bias else None,
                                     self.data_format)  # w: (in, out, h, w)
        # Keras' output is PyTorch's unpadded one cropped by (left, right) per axis (negative: zeros added).
        crops = compute_conv_transpose_output_crops_for_torch(
            input_shape=tuple(x.shape), kernel_shape=tuple(self.kernel.shape), strides=self.strides,
            padding=self.padding, output_padding=self.output_padding, dilation_rate=self.dilation_rate)
        symmetric = all(left == right >= 0 for left, right in crops)
        pads = [max(0, -amount) for left, right in reversed(crops) for amount in (left, right)]  # F.pad's order
        inside = bias if not any(pads) else None  # zeros Keras adds take the bias too: added after them
        y = F.conv_transpose2d(x, w, inside, stride=self.strides, padding=tuple(left for left, _ in crops)
                               if symmetric else (0, 0), dilation=self.dilation_rate)
        if not symmetric:
            if any(pads):
                y = F.pad(y, pads)
            (top, bottom), (left, right) = ((max(0, before), y.shape[2 + axis] - max(0, after))
                                            for axis, (before, after) in enumerate(crops))
            y = y[:, :, top:bottom, left:right]
        if bias is not None and inside is None:
            y = y + bias.reshape(1, -1, 1, 1)
        y = y.permute(0, 2, 3, 1) if channels_last else y
        return y if self.activation is None else self.activation(y)
