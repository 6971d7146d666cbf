"""`StepBackupAndRestore`: back up training every N steps and resume at the exact step after a kill.

Keras' `keras.callbacks.BackupAndRestore` falls short of exact fault tolerance in three ways (Keras
3.15, `keras/src/callbacks/backup_and_restore.py`):
  - With an integer `save_freq` it writes the weights every N batches and the batch number into its
    metadata, but restoring reads only the epoch (`self.model._initial_epoch = epoch`): the weights
    of step k of epoch e are loaded and epoch e starts again from its first batch, so k batches are
    trained twice.
  - It writes `latest.weights.h5` in place (`self.model.save_weights(filepath=...)`), and its
    `double_checkpoint` copy is made by copying that file, so a kill during a write can leave a file
    that loads half or not at all.
  - The state of the data's random order (NumPy's and Python's generators on JAX, PyTorch's
    generator on PyTorch) is not saved, so a resumed epoch is shuffled differently.

`StepBackupAndRestore` keeps Keras' arguments and fixes all three. A backup is one `.npz` file holding
every variable a training step reads or writes: the model's variables (weights, non-trainable
statistics, `keras.random.SeedGenerator` states), every optimizer's variables (both of a GAN's, through
its `OptimizerGroup`), the metrics' accumulators, Keras' global seed generator, the epoch and step
counters, and the generators of the data order as they were when the epoch began. It is written to a
temporary file beside its final name, synced to disk, and renamed into place (`os.replace`); the
previous backups stay until the new one is complete. Each array carries a SHA-256 digest: a backup
that fails its check is renamed `*.corrupt` and the next older one is used, with a
`CorruptBackupWarning` naming the file; if none is intact, `CorruptBackupError` says so.

On restart, `fit` with the same arguments resumes at the backed-up epoch; within it, the batches the
interrupted run had already trained on are drawn again from the data pipeline (so its random order
and any random augmentation advance exactly as before) and skipped without a training step.

Exact resume, i.e. the final weights of an uninterrupted run, holds when:
  - the run is seeded before the model is built (`keras.utils.set_random_seed` or
    `keras_models.seeding.set_random_seed`), with the same seed on restart;
  - `fit` gets the same data and arguments (`batch_size`, `shuffle`, `epochs`, `steps_per_epoch`,
    `steps_per_execution`), and each epoch's batches depend only on the seed and on the random state
    when the epoch begins: in-memory arrays (with `shuffle=True` or not), a `keras.utils.PyDataset` or
    generator drawing from NumPy's or Python's global generator, a `tf.data.Dataset` iterated afresh
    each epoch. A `tf.data.Dataset` repeated across epochs under `steps_per_epoch`, or one that
    reshuffles with its own seed each iteration, is not rewound to the interrupted epoch's order;
  - the step itself is deterministic on the device (true on CPUs; on GPUs see
    `tf.config.experimental.enable_op_determinism` and XLA's flags).

With several processes (`keras.distribution` on JAX), every process runs the same program with the
same seed, and `backup_dir` is a folder all of them read: process 0 writes the backups, every process
restores from the same file.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np

from keras_models.files import atomic_write

FORMAT = "keras_models.step_backup"
FORMAT_VERSION = 1
_NAME = re.compile(r"^step-(\d{12})\.npz$")
_GROUPS = ("model", "optimizer", "metrics", "global_seed")


class CorruptBackupWarning(UserWarning):
    """A backup failed its integrity check and an older one was restored instead."""


class CorruptBackupError(ValueError):
    """No backup in the folder passed its integrity check."""


# -------------------------------------------------------------------------------------------------
# What a training step depends on


def _global_seed_generator():
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator

    return global_state.get_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR)


def state_variables(model) -> dict:
    """Every variable `fit`'s step reads or writes, by group, in a fixed order.

    `model`: the model's variables (weights, non-trainable statistics, seed generator states);
    `optimizer`: the compiled optimizer's (an `OptimizerGroup` lists each member's); `metrics`: the
    metrics' accumulators; `global_seed`: the state of Keras' global seed generator, which
    `keras.random` functions called without a seed draw from (empty when none was made).
    """
    optimizer = getattr(model, "optimizer", None)
    seed = _global_seed_generator()
    groups = {
        "model": list(model.variables),
        "optimizer": list(optimizer.variables) if optimizer is not None else [],
        "metrics": list(model.metrics_variables),
        "global_seed": [seed.state] if seed is not None else [],
    }
    seen = set()
    for name in _GROUPS:
        unique = []
        for variable in groups[name]:
            if id(variable) not in seen:
                seen.add(id(variable))
                unique.append(variable)
        groups[name] = unique
    return groups


def _to_numpy(variable) -> np.ndarray:
    value = variable.value
    if keras.backend.backend() == "jax":
        import jax

        if isinstance(value, jax.Array) and not value.is_fully_addressable:
            if value.is_fully_replicated:
                value = value.addressable_data(0)
            else:  # sharded across processes: every process takes part in gathering it
                from jax.experimental import multihost_utils

                value = multihost_utils.process_allgather(value, tiled=True)
    return np.array(keras.ops.convert_to_numpy(value))


def _data_random_state() -> dict:
    """The global generators a data pipeline draws its order and augmentation from."""
    version, internal, gauss = random.getstate()
    keys, position, has_gauss, cached = np.random.get_state()[1:]
    state = {
        "python": [version, list(internal), gauss],
        "numpy": {"keys": np.asarray(keys), "position": int(position), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
    }
    if keras.backend.backend() == "torch":
        state["torch"] = _torch_generator_state()
    return state


def _set_data_random_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"], numpy["position"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    if "torch" in state and keras.backend.backend() == "torch":
        _set_torch_generator_state(state["torch"])


def _torch_generator_state() -> np.ndarray:
    import torch

    return torch.get_rng_state().numpy().copy()


def _set_torch_generator_state(state) -> None:
    import torch

    torch.set_rng_state(torch.from_numpy(np.asarray(state, np.uint8)))


def _digest(array: np.ndarray) -> str:
    content = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    content.update(np.ascontiguousarray(array).tobytes())
    return content.hexdigest()


# -------------------------------------------------------------------------------------------------
# Backup files


def _write_backup(path: Path, arrays: dict, metadata: dict) -> None:
    """Writes one backup atomically: temporary file, fsync, rename, fsync of the folder."""
    metadata = dict(metadata, digests={key: _digest(value) for key, value in arrays.items()})
    payload = dict(arrays, metadata=np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8))
    with atomic_write(path) as temporary:
        with open(temporary, "wb") as file:
            np.savez(file, **payload)
            file.flush()
            os.fsync(file.fileno())
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Makes a rename in `folder` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_backup(path) -> tuple[dict, dict]:
    """Reads and checks one backup; returns `(metadata, arrays)`.

    Raises:
        CorruptBackupError: the file is truncated, unreadable, not a backup, or an array does not
            match its digest.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # reads every member and checks its CRC-32
        if damaged is not None:
            raise CorruptBackupError(f"member {damaged!r} fails its CRC-32 check")
        with np.load(path, allow_pickle=False) as content:
            arrays = {key: content[key] for key in content.files}
        metadata = json.loads(arrays.pop("metadata").tobytes().decode())
        if metadata.get("format") != FORMAT:
            raise CorruptBackupError(f"format {metadata.get('format')!r} is not {FORMAT!r}")
        digests = metadata["digests"]
        if set(digests) != set(arrays):
            raise CorruptBackupError("the arrays stored differ from those listed in its metadata")
        for key, value in arrays.items():
            if _digest(value) != digests[key]:
                raise CorruptBackupError(f"array {key!r} does not match its SHA-256 digest")
    except CorruptBackupError as error:
        raise CorruptBackupError(f"Backup {str(path)!r} is corrupt: {error}.") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as error:
        raise CorruptBackupError(f"Backup {str(path)!r} is corrupt: {type(error).__name__}: {error}.") from None
    return metadata, arrays


def list_backups(backup_dir) -> list[Path]:
    """The backups in `backup_dir`, newest (highest global step) first."""
    folder = Path(backup_dir)
    if not folder.is_dir():
        return []
    found = [entry for entry in folder.iterdir() if _NAME.match(entry.name)]
    return sorted(found, key=lambda entry: int(_NAME.match(entry.name).group(1)), reverse=True)


def _process_index() -> int:
    if keras.backend.backend() == "jax":
        import jax

        return jax.process_index()
    return 0


# -------------------------------------------------------------------------------------------------
# The callback


class StepBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Backs up the whole training state every `save_freq` steps; resumes at the exact step.

    A drop-in for `keras.callbacks.BackupAndRestore`: pass it to `fit`, and if the process dies, run
    the same script again. Training resumes at the step after the last backup and ends with the
    weights of a run that was never interrupted (see the module's documentation for the conditions).

    Args:
        backup_dir: folder of the backups, used by this run only.
        save_freq: back up every `save_freq` training steps (an integer), or `"epoch"`. Either way a
            backup is also written at the end of every epoch.
        keep: how many backups to keep (at least 1); with 2 or more, a backup found corrupt on
            restart falls back to the one before.
        delete_checkpoint: delete the backups when `fit` completes.

    Attributes:
        restored: `(epoch, step, global_step)` of the backup the last `fit` resumed from, `None`
            when it started afresh. `step` counts the batches of `epoch` already trained.
    """

    def __init__(self, backup_dir, save_freq="epoch", keep=2, delete_checkpoint=True):
        if not backup_dir:
            raise ValueError(f"backup_dir must name a folder; got backup_dir={backup_dir!r}.")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(f"save_freq must be 'epoch' or a positive integer; got save_freq={save_freq!r}.")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be a positive integer; got keep={keep!r}.")
        super().__init__(str(backup_dir), save_freq=save_freq, double_checkpoint=False,
                         delete_checkpoint=delete_checkpoint)
        self.backup_dir = Path(backup_dir)
        self.keep = keep
        self.restored = None
        self._pending = None  # what on_epoch_begin must restore: (epoch, step, data_random_state, metrics)
        self._pending_metrics = None  # (manifest, values) of the metrics, until they are built
        self._pending_torch_step = None  # torch's global generator after the last trained batch
        self._epoch = 0
        self._step = 0  # batches of the current epoch trained (or skipped) so far
        self._global_step = 0
        self._epoch_random_state = None
        self._skip_until = 0
        self._train_function = None

    # -- writing ----------------------------------------------------------------------------------

    def _collect(self, model) -> tuple[dict, list]:
        arrays, manifest = {}, []
        for group, variables in state_variables(model).items():
            for index, variable in enumerate(variables):
                value = _to_numpy(variable)
                arrays[f"{group}/{index:05d}"] = value
                manifest.append([group, variable.path, list(value.shape), str(value.dtype)])
        return arrays, manifest

    def _save_model(self, resume_epoch, resume_step, data_random_state=None):
        """Backs up the state: resuming will start at batch `resume_step` of `resume_epoch`, with the
        data's generators in `data_random_state` (default: as they were when this epoch began)."""
        model = self.model  # on JAX, reading `self.model` copies the step's state back into the variables
        arrays, manifest = self._collect(model)
        if _process_index() != 0:
            return
        random_state = dict(data_random_state or self._epoch_random_state)
        arrays["random/numpy_keys"] = random_state["numpy"]["keys"]
        if "torch" in random_state:
            arrays["random/torch"] = random_state["torch"]
            # Keras' PyTorch backend draws unseeded layers' noise (a Dropout built with seed=None) from
            # torch's global generator inside the training step: its state now, for a mid-epoch resume.
            arrays["random/torch_step"] = _torch_generator_state()
        metadata = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "epoch": int(resume_epoch),
            "step": int(resume_step),
            "global_step": int(self._global_step),
            "steps_per_execution": int(getattr(model, "steps_per_execution", 1) or 1),
            "variables": manifest,
            "random": {"python": random_state["python"],
                       "numpy": {k: v for k, v in random_state["numpy"].items() if k != "keys"}},
            "backend": keras.backend.backend(),
            "keras_version": keras.__version__,
        }
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        _write_backup(self.backup_dir / f"step-{self._global_step:012d}.npz", arrays, metadata)
        for old in list_backups(self.backup_dir)[self.keep:]:
            old.unlink(missing_ok=True)

    # -- reading ----------------------------------------------------------------------------------

    def _newest_intact(self):
        """The newest backup that passes its checks, as `(metadata, arrays)`; `None` when there is none."""
        corrupt = None
        for path in list_backups(self.backup_dir):
            try:
                return read_backup(path)
            except CorruptBackupError as error:
                corrupt = error
                if _process_index() == 0:
                    path.replace(path.with_name(path.name + ".corrupt"))
                warnings.warn(f"{error} It was renamed to {path.name + '.corrupt'!r}; restoring the backup "
                              "before it, if any.", CorruptBackupWarning, stacklevel=3)
        if corrupt is not None:
            raise CorruptBackupError(f"Every backup in {str(self.backup_dir)!r} is corrupt (the last one read: "
                                     f"{corrupt}) Delete the folder to train from the start.")
        return None

    def _load_model(self):
        model = self.model
        if not model.built:
            raise ValueError(f"{type(self).__name__} needs a built model before fit(); "
                             f"model {model.name!r} is not built.")
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        backup = self._newest_intact()
        if backup is None:
            return
        metadata, arrays = backup
        saved = {group: [entry for entry in metadata["variables"] if entry[0] == group] for group in _GROUPS}
        if saved["global_seed"] and _global_seed_generator() is None:
            from keras.src.random.seed_generator import global_seed_generator

            global_seed_generator()  # the interrupted run had drawn from it: create it to restore its state
        groups = state_variables(model)
        for group in ("model", "optimizer", "global_seed"):
            _check_matches(group, saved[group], groups[group])
            for index, variable in enumerate(groups[group]):
                variable.assign(arrays[f"{group}/{index:05d}"])
        epoch, step = metadata["epoch"], metadata["step"]
        steps_per_execution = int(getattr(model, "steps_per_execution", 1) or 1)
        if step % steps_per_execution:
            raise ValueError(f"The backup resumes at batch {step} of epoch {epoch}, which is not a multiple of "
                             f"steps_per_execution={steps_per_execution}; compile with the steps_per_execution "
                             f"of the interrupted run ({metadata['steps_per_execution']}).")
        random_state = {"python": metadata["random"]["python"],
                        "numpy": dict(metadata["random"]["numpy"], keys=arrays["random/numpy_keys"])}
        if "random/torch" in arrays:
            random_state["torch"] = arrays["random/torch"]
        self._pending_torch_step = arrays.get("random/torch_step") if step else None
        metrics = (saved["metrics"], [arrays[f"metrics/{index:05d}"] for index in range(len(saved["metrics"]))])
        self._pending = (epoch, step, random_state, metrics)
        self._global_step = metadata["global_step"]
        self.restored = (epoch, step, self._global_step)
        model._initial_epoch = epoch

    def _restore_metrics(self, model, build_batch=None):
        """Restores the metrics' accumulators of the interrupted epoch, once they exist: before the
        first step on JAX and PyTorch; on TensorFlow Keras builds compiled metrics when it traces the
        first step, so they are built here from the first skipped batch, as Keras' JAX trainer does."""
        manifest, values = self._pending_metrics
        if len(model.metrics_variables) != len(manifest) and build_batch is not None:
            model._symbolic_build(data_batch=build_batch)
        if len(model.metrics_variables) != len(manifest) and build_batch is None:
            return  # not built yet: the first skipped batch builds them
        _check_matches("metrics", manifest, list(model.metrics_variables))
        for variable, value in zip(model.metrics_variables, values):
            variable.assign(value)
        self._pending_metrics = None

    # -- fit's events -----------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self.restored = None
        self._pending = None
        self._pending_metrics = None
        self._pending_torch_step = None
        self._global_step = 0
        self._skip_until = 0
        self.model._initial_epoch = None  # a resume point left by an earlier fit() that did not finish
        if _process_index() == 0 and self.backup_dir.is_dir():
            for leftover in self.backup_dir.glob(".step-*.partial"):  # writes cut short by a kill
                leftover.unlink(missing_ok=True)
        self._load_model()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._step = 0
        if self._pending is not None and self._pending[0] == epoch:
            _, step, random_state, metrics = self._pending
            self._pending = None
            _set_data_random_state(random_state)
            if step:  # mid-epoch: fit has just reset the metrics; they resume from the backup
                self._pending_metrics = metrics
                self._restore_metrics(self.model)
            self._skip_until = step
        self._epoch_random_state = _data_random_state()

    def on_train_batch_begin(self, batch, logs=None):
        if not self._skip_until:
            return
        model = self._model  # not `self.model`: on JAX that would copy the state back at every batch
        if batch < self._skip_until:
            if self._train_function is None:
                self._train_function = model.train_function
                model.train_function = self._skip_step
        else:
            self._end_skipping()

    def _skip_step(self, *args):
        """Stands in for `model.train_function` on batches trained before the interruption: they are
        drawn from the data pipeline, as the interrupted run drew them, and dropped."""
        backend = keras.backend.backend()
        if backend in ("jax", "tensorflow"):  # the step reads its batches from the epoch's iterator
            batches = []
            for _ in range(int(self._model.steps_per_execution or 1)):
                try:
                    batches.append(next(args[-1]))
                except StopIteration:
                    break
        else:  # PyTorch: the batches are handed to the step
            batches = args[0]
        if self._pending_metrics is not None and batches:
            self._restore_metrics(self._model, build_batch=batches[0])
        if backend == "jax":  # (state, iterator) -> (logs, state): the state passes through
            return {}, args[0]
        return {}

    def _end_skipping(self):
        if self._train_function is not None:
            self._model.train_function = self._train_function
            self._train_function = None
        self._skip_until = 0
        if self._pending_torch_step is not None:  # the skipped steps drew none of the step's noise
            _set_torch_generator_state(self._pending_torch_step)
            self._pending_torch_step = None

    def on_train_batch_end(self, batch, logs=None):
        advance = batch + 1 - self._step  # batches in this call: steps_per_execution of them
        self._step = batch + 1
        if self._train_function is not None:  # a skipped batch, trained before the interruption
            return
        previous = self._global_step
        self._global_step += advance
        if self.save_freq == "epoch" or self._global_step // self.save_freq == previous // self.save_freq:
            return
        steps = self.params.get("steps") if self.params else None
        if steps and self._step >= steps:
            return  # the end of the epoch: on_epoch_end backs up there
        self._save_model(self._epoch, self._step)

    def on_epoch_end(self, epoch, logs=None):
        if self._skip_until:
            skipped = self._skip_until
            self._end_skipping()
            raise ValueError(f"The backup resumes at batch {skipped} of epoch {epoch}, but this epoch had "
                             f"{self._step} batches: fit must get the data of the interrupted run.")
        self._save_model(epoch + 1, 0, _data_random_state())

    def on_train_end(self, logs=None):
        self._end_skipping()
        if self._model is not None:
            self._model._initial_epoch = None
        if self.delete_checkpoint and _process_index() == 0 and self.backup_dir.is_dir():
            for path in self.backup_dir.iterdir():
                if _NAME.match(path.name) or (path.name.startswith("step-") and path.name.endswith(".corrupt")):
                    path.unlink(missing_ok=True)
            try:
                self.backup_dir.rmdir()
            except OSError:
                pass  # other files live there


def _check_matches(group, saved, variables):
    """Raises a `ValueError` naming the first variable of `group` whose backup does not fit it."""
    for entry, variable in zip(saved, variables):
        shape, dtype = list(variable.shape), str(np.dtype(variable.dtype))
        if entry[2:] != [shape, dtype]:
            raise ValueError(f"The backup does not match this model: it holds {group} variable {entry[1]!r} "
                             f"{tuple(entry[2])} {entry[3]} where the model has {variable.path!r} "
                             f"{tuple(shape)} {dtype}.")
    if len(saved) != len(variables):
        raise ValueError(f"The backup does not match this model: it holds {len(saved)} {group} variables, "
                         f"the model has {len(variables)}.")
