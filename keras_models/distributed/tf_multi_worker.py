"""`tf.distribute.MultiWorkerMirroredStrategy` with Keras 3's `fit`: the strategy, and the two mends
Keras needs for it.

Keras 3 (3.15 with TensorFlow 2.21, and every release since TensorFlow 2.16) cannot `fit` even a
plain `keras.Sequential` under `MultiWorkerMirroredStrategy` (upstream: keras-team/keras#20585,
tensorflow/tensorflow#72388). Two places in Keras' TensorFlow trainer fail, one after the other:

1. Before the first step, `fit` builds the model from one batch. It averages that batch over the
   replicas with `strategy.reduce("MEAN", batch)`, passing the whole `(x, y)` structure, which the
   collective strategy cannot convert: `ValueError: Attempt to convert a value (PerReplica:{...})
   with an unsupported type ... to a Tensor`. Building needs only the shapes of one replica's batch.
2. After each step, the metrics are averaged across workers with `strategy.reduce("MEAN", value,
   axis=0)`, and a metric is a scalar: `ValueError: Invalid reduction dimension 0 for input with 0
   dimensions`. The mean over replicas needs `axis=None`.

`multi_worker_strategy()` mends both (only under a multi-worker collective strategy; every other
strategy runs Keras' code unchanged) and returns the strategy. With them, two workers with global
batch B reach the weights of one process with batch B (tested), and every Keras family of the library
trains (tested: dense, GAN with its two optimizers and a gradient penalty, recurrent, GPT, VAE,
diffusion). TensorFlow is imported here, where it is used.
"""

from __future__ import annotations

import json
import os

from keras_models.distributed.launcher import JOB_ADDRESSES, NUM_PROCESSES, PROCESS_ID
from keras_models.distributed.worker import _environment_settings

UPSTREAM = "keras-team/keras#20585"
_MENDED = False


def _cluster_from_environment():
    """TF_CONFIG's value from the variables the launcher sets (every worker's address, comma-separated)."""
    addresses, processes, process_id = _environment_settings()
    if addresses is None:
        raise ValueError(
            f"multi_worker_strategy() needs the cluster: set TF_CONFIG, or {JOB_ADDRESSES}, {NUM_PROCESSES} "
            f"and {PROCESS_ID}; `keras-models launch --backend tensorflow` sets them")
    addresses = [address.strip() for address in addresses.split(",") if address.strip()]
    if len(addresses) != processes:
        raise ValueError(
            f"{JOB_ADDRESSES} lists {len(addresses)} address(es) but {NUM_PROCESSES}={processes}: "
            "TensorFlow's multi-worker strategy needs every worker's host:port")
    return {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": process_id}}


def mend_keras_for_multi_worker():
    """Installs the two mends described in this module's docstring into Keras' TensorFlow trainer
    (once; later calls do nothing). They act only under a multi-worker collective strategy.

    Raises:
        RuntimeError: this Keras has no such trainer internals (a release that changed them); the
            message names the Keras version.
    """
    global _MENDED
    if _MENDED:
        return
    import keras
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    needed = ("TensorFlowTrainer", "reduce_per_replica", "_collective_all_reduce_multi_worker")
    absent = [name for name in needed if not hasattr(trainer, name)]
    if absent or not hasattr(trainer.TensorFlowTrainer, "_maybe_symbolic_build"):
        raise RuntimeError(
            f"Keras {keras.__version__} has no {', '.join(absent) or 'TensorFlowTrainer._maybe_symbolic_build'}: "
            f"the mends for {UPSTREAM} do not apply to it. Check whether this Keras trains under "
            "MultiWorkerMirroredStrategy as it is, or use the JAX path (keras_models.distributed.initialize)")
    multi_worker = trainer._collective_all_reduce_multi_worker
    keras_build = trainer.TensorFlowTrainer._maybe_symbolic_build
    keras_reduce = trainer.reduce_per_replica

    def local_value(value, strategy):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or not multi_worker(strategy):
            return keras_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            # One replica's batch: building needs its shapes, not an average over the workers.
            data_batch = tf.nest.map_structure(lambda value: local_value(value, strategy), next(batches))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if multi_worker(strategy) and reduction in ("auto", "mean"):
            # The mean over replicas; Keras passes axis=0, which a scalar metric does not have.
            return tf.nest.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return keras_reduce(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica
    _MENDED = True


def multi_worker_strategy(communication: str = "auto"):
    """A `tf.distribute.MultiWorkerMirroredStrategy` that Keras 3's `fit` can train under.

    The cluster comes from `TF_CONFIG` when it is set, or else from the variables
    `keras-models launch --backend tensorflow` (or a scheduler) sets: `KERAS_DISTRIBUTION_JOB_ADDRESSES`
    (every worker's `host:port`, comma-separated, in process order), `KERAS_DISTRIBUTION_NUM_PROCESSES`
    and `KERAS_DISTRIBUTION_PROCESS_ID`. Call it first in the training script, before any other
    TensorFlow work; build and compile the model under `strategy.scope()` and pass `fit` the global
    batch size (each worker feeds its share of every batch; TensorFlow shards the data).

    Args:
        communication: `"auto"`, `"ring"` (gRPC) or `"nccl"` (GPUs): the collectives' implementation.

    Raises:
        RuntimeError: Keras' backend is not TensorFlow.
        ValueError: no cluster is described, or its description is inconsistent (named).
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"multi_worker_strategy() needs Keras' TensorFlow backend, but KERAS_BACKEND is "
            f"{keras.backend.backend()!r}; on JAX use keras_models.distributed.initialize()")
    import tensorflow as tf

    implementations = {"auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
                       "ring": tf.distribute.experimental.CommunicationImplementation.RING,
                       "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL}
    if communication not in implementations:
        raise ValueError(f"communication must be one of {sorted(implementations)}, got {communication!r}")
    if not os.environ.get("TF_CONFIG"):
        os.environ["TF_CONFIG"] = json.dumps(_cluster_from_environment())
    mend_keras_for_multi_worker()
    options = tf.distribute.experimental.CommunicationOptions(implementation=implementations[communication])
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
