"""Feeding `fit` from the accelerator's own memory on Keras' JAX backend.

Keras' JAX trainer feeds `fit(x, y)` from numpy arrays by gathering every batch on the host and copying
it to the device, one batch ahead. For images that is the slow part of a step on a GPU: a batch of 256
float32 images of 224x224x3 is 154 MB gathered and copied per step (measured on one H100:
`keras.applications.ResNet50` in bf16 trained at 3,316 images/s through `fit()` against 5,510 with the
data already on the device). When the arrays fit comfortably in the accelerator's memory, the
library's models copy them there once per `fit` and gather each (shuffled) batch on the device, inside
one jitted call that returns at once: no host copy and no host synchronisation per step.

`DeviceArrays` is that feed, a `keras.utils.PyDataset` whose batches are device arrays (Keras passes
them through unchanged). `device_fit_arguments` decides, for every `CheckedModel` (the dense, cnn,
recurrent and transformer models, whose `fit` calls it), whether to use it: `data_on_device=None`
(the default) uses it on JAX with an accelerator when the arrays take at most a quarter of the device's
free memory and `fit` asks for nothing it cannot honour (validation split, sample or class weights,
batch-wise shuffling, a `steps_per_epoch` of its own); `True` insists (on JAX's default device, a CPU
too; a `ValueError` says why it cannot); `False` keeps Keras' host path.
"""

from __future__ import annotations

import keras
import numpy as np

# The share of the device's free memory the training arrays may take before `fit` feeds from the host.
DEVICE_SHARE = 0.25
# `fit` arguments the device feed does not implement; any of them set keeps Keras' host path.
_HOST_ONLY = ("validation_split", "sample_weight", "class_weight", "steps_per_epoch")


class DeviceArrays(keras.utils.PyDataset):
    """Batches of `x` (and `y`) gathered on the accelerator, shuffled per epoch like Keras' `fit`.

    Args:
        x: a numpy array `(samples, ...)`.
        y: `None` or a numpy array with as many samples.
        batch_size: samples per batch; the last batch holds the remainder, as in Keras.
        shuffle: draw a new order of the samples at every epoch (`True`) or keep it (`False`).
        seed: the seed of the orders drawn (`None`: numpy's global generator, which
            `keras.utils.set_random_seed` seeds).

    Only on Keras' JAX backend.
    """

    def __init__(self, x, y=None, batch_size=32, shuffle=True, seed=None):
        super().__init__(workers=1, use_multiprocessing=False)
        if keras.backend.backend() != "jax":
            raise ValueError(f"DeviceArrays feeds Keras' JAX backend; the backend is {keras.backend.backend()!r}.")
        import jax

        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got batch_size={batch_size!r}.")
        arrays = (x,) if y is None else (x, y)
        count = len(x)
        for what, array in zip(("x", "y"), arrays):
            if not isinstance(array, np.ndarray) or array.ndim == 0:
                raise ValueError(f"DeviceArrays takes numpy arrays with a sample axis; got {what} of type "
                                 f"{type(array).__name__}.")
            if len(array) != count:
                raise ValueError(f"x and y must hold as many samples; got {count} and {len(array)}.")
        if count == 0:
            raise ValueError("DeviceArrays needs at least one sample.")
        self.batch_size, self.shuffle, self.num_samples = int(batch_size), bool(shuffle), count
        self._rng = np.random.default_rng(seed) if seed is not None else None
        # Keras casts float arrays to floatx before feeding them; so does this feed, once, on the host.
        floatx = keras.config.floatx()
        self._arrays = tuple(jax.device_put(a.astype(floatx, copy=False) if a.dtype.kind == "f" else a) for a in arrays)
        self._gather = jax.jit(lambda arrays, order, start: tuple(
            jax.numpy.take(a, jax.lax.dynamic_slice_in_dim(order, start, self.batch_size), axis=0)
            for a in arrays))
        self._order = None
        self._new_order()

    def _new_order(self):
        import jax

        if self.shuffle:
            order = (self._rng or np.random).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        self._host_order = order.astype("int32")
        self._order = jax.device_put(self._host_order)

    @property
    def num_batches(self):
        return -(-self.num_samples // self.batch_size)

    def __len__(self):
        return self.num_batches

    def __getitem__(self, index):
        import jax

        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch {index} of {self.num_batches}")
        start = index * self.batch_size
        if start + self.batch_size <= self.num_samples:
            batch = self._gather(self._arrays, self._order, start)
        else:  # the remainder: its own shape, as Keras' last batch
            rest = jax.device_put(self._host_order[start:])
            batch = tuple(jax.numpy.take(a, rest, axis=0) for a in self._arrays)
        return batch if len(batch) == 2 else batch[0]

    def on_epoch_end(self):
        if self.shuffle:
            self._new_order()


def _free_device_bytes():
    """Free bytes on the first accelerator JAX sees, or `None` without an accelerator or statistics."""
    import jax

    devices = [d for d in jax.devices() if d.platform != "cpu"]
    if not devices:
        return None
    stats = devices[0].memory_stats() or {}
    if "bytes_limit" not in stats:
        return None
    return stats["bytes_limit"] - stats.get("bytes_in_use", 0)


def device_fit_arguments(x, y, kwargs, data_on_device=None, free_bytes=None):
    """The `(x, y, kwargs)` a model's `fit` passes to Keras: a `DeviceArrays` feed where it applies.

    Args:
        x, y, kwargs: what the model's `fit` received (`kwargs` without `data_on_device`).
        data_on_device: `None` decides (JAX, an accelerator, arrays within a quarter of its free
            memory, no host-only argument); `True` insists (on JAX's default device, a CPU too);
            `False` returns the arguments unchanged.
        free_bytes: the device's free memory, for tests; `None` asks JAX.

    Raises:
        ValueError: `data_on_device` is not `None`, `True` or `False`, or `True` where the feed cannot
            apply (the message names the reason).
    """
    if data_on_device not in (None, True, False):
        raise ValueError(f"data_on_device must be None, True or False; got {data_on_device!r}.")
    if data_on_device is False:
        return x, y, kwargs
    reason = _why_not(x, y, kwargs, free_bytes, insist=data_on_device is True)
    if reason is not None:
        if data_on_device:
            raise ValueError(f"data_on_device=True, but {reason}.")
        return x, y, kwargs
    kwargs = dict(kwargs)
    feed = DeviceArrays(x, y, batch_size=kwargs.pop("batch_size", None) or 32,
                        shuffle=kwargs.pop("shuffle", True))
    kwargs["shuffle"] = False  # the feed shuffles samples; Keras would also reorder its batches
    return feed, None, kwargs


def _why_not(x, y, kwargs, free_bytes, insist):
    if keras.backend.backend() != "jax":
        return f"the device feed is for Keras' JAX backend (the backend is {keras.backend.backend()!r})"
    arrays = (x,) if y is None else (x, y)
    if not all(isinstance(a, np.ndarray) and a.ndim > 0 for a in arrays):
        return "x and y must be numpy arrays"
    for name in _HOST_ONLY:
        if kwargs.get(name) not in (None, 0, 0.0):
            return f"fit's {name} is fed from the host"
    if kwargs.get("shuffle", True) == "batch":
        return "fit's shuffle='batch' is fed from the host"
    if free_bytes is None:
        free_bytes = _free_device_bytes()
    if free_bytes is None:
        return None if insist else "there is no accelerator with memory statistics"
    need = sum(a.nbytes for a in arrays)
    if need > DEVICE_SHARE * free_bytes and not insist:
        return f"the arrays ({need / 2**30:.2f} GiB) exceed a quarter of the device's free memory"
    if need > free_bytes:
        return f"the arrays ({need / 2**30:.2f} GiB) exceed the device's free memory ({free_bytes / 2**30:.2f} GiB)"
    return None
