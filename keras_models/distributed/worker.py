"""The worker's side: join the job, set Keras' distribution, and take this process's share of a batch.

A training script started by the launcher (or by Slurm, Kubernetes, ...) calls `initialize()` first:

    import keras_models
    from keras_models import distributed

    distributed.initialize()                   # jax.distributed + keras.distribution.DataParallel
    model = keras_models.build("resnet18", input_shape=(32, 32, 3), num_classes=10)
    x, y = distributed.process_rows((x, y), global_batch_size=64)
    model.fit(x, y, batch_size=64 // distributed.process_count(), shuffle=False)

Under `DataParallel` every weight is replicated and each global batch is split along its first axis
over all devices of all processes; XLA inserts the gradient all-reduce, so losses, gradients, batch
statistics and metrics are those of the global batch. Only Keras' JAX backend spans processes this
way: PyTorch-backend training stays single-process, and TensorFlow has `tf.distribute`.
"""

from __future__ import annotations

import os

import keras

from keras_models.distributed.launcher import JOB_ADDRESSES, NUM_PROCESSES, PROCESS_ID
from keras_models.distributed.layouts import transformer_model_parallel


def _require_jax(what):
    backend = keras.backend.backend()
    if backend != "jax":
        raise RuntimeError(
            f"{what} needs Keras' JAX backend, but KERAS_BACKEND is {backend!r}. Set KERAS_BACKEND=jax before "
            "keras is imported (the launcher does). PyTorch-backend training stays single-process; on "
            "TensorFlow use tf.distribute.MirroredStrategy.")


def _environment_settings():
    """(coordinator, processes, process id) from the environment; (None, 1, 0) when none is set."""
    names = (JOB_ADDRESSES, NUM_PROCESSES, PROCESS_ID)
    present = [name for name in names if os.environ.get(name)]
    if not present:
        return None, 1, 0
    if len(present) < len(names):
        missing = [name for name in names if name not in present]
        raise ValueError(f"{', '.join(present)} set but {', '.join(missing)} not: set all three or none")
    try:
        processes, process_id = int(os.environ[NUM_PROCESSES]), int(os.environ[PROCESS_ID])
    except ValueError:
        raise ValueError(f"{NUM_PROCESSES}={os.environ[NUM_PROCESSES]!r} and {PROCESS_ID}="
                         f"{os.environ[PROCESS_ID]!r} must be integers") from None
    if processes < 1 or not 0 <= process_id < processes:
        raise ValueError(f"{PROCESS_ID}={process_id} must lie in [0, {NUM_PROCESSES}={processes})")
    return os.environ[JOB_ADDRESSES], processes, process_id


def initialize(distribution: str = "data_parallel", model_parallel: int = 1, cpu_collectives: str = "gloo"):
    """Joins this process to the job described by the environment and sets Keras' distribution.

    Reads `KERAS_DISTRIBUTION_JOB_ADDRESSES` (the coordinator `host:port`, or every process's address
    separated by commas, the first being the coordinator), `KERAS_DISTRIBUTION_NUM_PROCESSES` and
    `KERAS_DISTRIBUTION_PROCESS_ID`, the variables `keras.distribution.initialize` reads; with none set
    the run is a single process over its local devices. CPU processes exchange gradients through
    `cpu_collectives` (JAX's `jax_cpu_collectives_implementation`; without it a multi-process CPU job
    has no cross-process collectives). Call it before building a model and before any JAX computation.

    Args:
        distribution: `"data_parallel"` (`keras.distribution.DataParallel` over every device of every
            process), `"model_parallel"` (`transformer_model_parallel`: the transformers' attention,
            feed-forward and embedding kernels sharded over a "model" axis of `model_parallel` devices),
            or `"none"` (join the job only).
        model_parallel: devices per model replica, with `distribution="model_parallel"`.
        cpu_collectives: `"gloo"` or `"mpi"`, used when the job spans processes on CPU.

    Returns:
        The `keras.distribution.Distribution` set globally, or None for `"none"`.

    Raises:
        RuntimeError: Keras' backend is not JAX, or JAX already ran a computation in a multi-process job.
        ValueError: a bad argument or environment variable (named).
    """
    _require_jax("keras_models.distributed.initialize")
    if distribution not in ("data_parallel", "model_parallel", "none"):
        raise ValueError(f"distribution must be 'data_parallel', 'model_parallel' or 'none', got {distribution!r}")
    if cpu_collectives not in ("gloo", "mpi"):
        raise ValueError(f"cpu_collectives must be 'gloo' or 'mpi', got {cpu_collectives!r}")
    coordinator, processes, process_id = _environment_settings()
    import jax

    if processes > 1 and not jax.distributed.is_initialized():
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            raise RuntimeError("initialize() must run before any JAX computation (JAX's devices are already set up "
                               "for one process): call it first in the training script")
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
        keras.distribution.initialize(coordinator, processes, process_id)
    if distribution == "none":
        return None
    if distribution == "model_parallel":
        chosen = transformer_model_parallel(model_parallel)
    else:
        chosen = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    # Each process feeds its own rows (`process_rows`), as arrays or any dataset: Keras' automatic
    # sharding would accept only a tf.data.Dataset and needs TensorFlow.
    chosen.auto_shard_dataset = False
    keras.distribution.set_distribution(chosen)
    return chosen


def process_count() -> int:
    """How many processes the job has (1 before `initialize()` or off a multi-process job)."""
    _require_jax("process_count")
    import jax

    return jax.process_count()


def process_index() -> int:
    """This process's id in the job, 0 to `process_count() - 1`."""
    _require_jax("process_index")
    import jax

    return jax.process_index()


def process_rows(arrays, global_batch_size: int, process_id: int | None = None, processes: int | None = None):
    """This process's rows of `arrays` so that the job's global batches are those of one process.

    Under `DataParallel` each process feeds `global_batch_size / processes` rows per step, and the
    global batch is the processes' rows in process order. For `fit(x, batch_size=global_batch_size)`
    on one process to see the same batches as `fit(rows, batch_size=global_batch_size // processes,
    shuffle=False)` on every process, process `p` takes rows `[p * b, (p + 1) * b)` of every global
    batch (`b = global_batch_size // processes`). Rows past the last full global batch are dropped.

    Args:
        arrays: an array or a nested structure (list, tuple, dict) of arrays with the same first axis.
        global_batch_size: rows per step over the whole job; a multiple of the process count.
        process_id: defaults to this process's id.
        processes: defaults to the job's process count.

    Returns:
        The same structure holding this process's rows.
    """
    processes = process_count() if processes is None else processes
    process_id = process_index() if process_id is None else process_id
    if not isinstance(global_batch_size, int) or global_batch_size < 1 or global_batch_size % processes:
        raise ValueError(f"global_batch_size must be a positive multiple of the process count {processes}, "
                         f"got {global_batch_size!r}")
    if not 0 <= process_id < processes:
        raise ValueError(f"process_id must lie in [0, {processes}), got {process_id!r}")
    share = global_batch_size // processes

    def rows(array):
        steps = len(array) // global_batch_size
        if steps == 0:
            raise ValueError(f"an array of {len(array)} rows holds no full global batch of {global_batch_size}")
        grouped = array[:steps * global_batch_size].reshape(steps, processes, share, *array.shape[1:])
        return grouped[:, process_id].reshape(steps * share, *array.shape[1:])

    return keras.tree.map_structure(lambda a: None if a is None else rows(a), arrays)
