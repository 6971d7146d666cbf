"""Training on several devices, processes and machines with Keras' own engines (`keras.distribution`).

- `launch(script, processes=2, ...)` (and `python -m keras_models.distributed --processes 2 script.py`): local
  processes joined by `jax.distributed` on a free port of 127.0.0.1.
- `initialize()`: in the training script, joins the job the environment describes and sets
  `keras.distribution.DataParallel` (or the transformers' `ModelParallel`) over every device.
- `process_rows(arrays, global_batch_size)`: this process's rows, so that the job's global batches
  are those of one process.
- `transformer_layout_map(mesh)`, `transformer_model_parallel(model_devices)`: the transformers'
  kernels sharded over a "model" mesh axis.
- `multi_worker_strategy()`: `tf.distribute.MultiWorkerMirroredStrategy` on the TensorFlow backend, with
  the two mends Keras 3's `fit` needs under it (`launch(..., backend="tensorflow")` starts the workers).
- `StepBackupAndRestore(backup_dir, save_freq=N)`: backups every N steps, written atomically, from
  which a killed run resumes at the exact step (any backend, one process or several).

Only Keras' JAX backend spans devices and processes this way; PyTorch-backend training stays
single-process and TensorFlow has `tf.distribute`. Nothing here imports JAX or TensorFlow until it is
called.
"""

from keras_models.distributed.backup import CorruptBackupError, CorruptBackupWarning, StepBackupAndRestore
from keras_models.distributed.launcher import ProcessResult, WorkerFailed, free_port, launch
from keras_models.distributed.layouts import transformer_layout_map, transformer_model_parallel
from keras_models.distributed.tf_multi_worker import multi_worker_strategy
from keras_models.distributed.worker import initialize, process_count, process_index, process_rows

__all__ = ["CorruptBackupError", "CorruptBackupWarning", "ProcessResult", "StepBackupAndRestore", "WorkerFailed", "free_port", "initialize", "launch", "multi_worker_strategy", "process_count",
           "process_index",
           "process_rows", "transformer_layout_map", "transformer_model_parallel"]
