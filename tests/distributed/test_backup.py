"""Kill-and-resume with `StepBackupAndRestore`: a run killed with SIGKILL in the middle of an epoch (or in
the middle of writing a backup), restarted with the same command, ends with exactly the weights,
optimizer states, seed states and metric states of a run that was never interrupted.

Each run is a subprocess executing this file (`python test_backup.py --case mlp ...`, see `_main`):
a run that kills itself, then the restarted run, which afterwards trains the case again from the seed
without backups (the uninterrupted reference). The slow suite runs more families, TensorFlow's op
determinism, and two processes under DataParallel started by `keras_models.distributed.launch`. The
backup files' integrity checks run in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

BATCH_SIZE = 4
SEED = 0
TIMEOUT = 600


# -------------------------------------------------------------------------------------------------
# The training run (subprocess side)


def _training_arguments(name, distributed=False):
    """`(model, fit positional arguments, batch size)` for the case `name` of `model_cases.CASES`; with
    `distributed`, this process's rows of the global batches (`keras_models.distributed.process_rows`)."""
    from model_cases import CASES, GAN

    case = CASES[name]
    model = case.build()
    data = case.data()
    arguments = data if case.kind == GAN else tuple(part for part in data if part is not None)
    if not distributed:
        return model, arguments, BATCH_SIZE
    from keras_models import distributed as job

    return model, job.process_rows(arguments, BATCH_SIZE), BATCH_SIZE // job.process_count()


class _KillAfter:
    """SIGKILLs this process at the end of global training step `step` (after the backup's turn)."""

    def __init__(self, step):
        import keras

        class Kill(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.done = 0

            def on_train_batch_end(self, batch, logs=None):
                self.done += 1
                if self.done == step:
                    os.kill(os.getpid(), signal.SIGKILL)

        self.callback = Kill()


def _kill_while_writing(module, global_step):
    """Makes the backup of `global_step` die half-written: its temporary file is cut to half its
    bytes and the process is SIGKILLed before the file is renamed into place."""
    write = module.atomic_write
    target = f"step-{global_step:012d}.npz"

    @contextlib.contextmanager
    def dying_write(path):
        with write(path) as temporary:
            yield temporary
            if Path(path).name == target:
                os.truncate(temporary, os.path.getsize(temporary) // 2)
                os.kill(os.getpid(), signal.SIGKILL)

    module.atomic_write = dying_write


def _train(args, with_backup):
    """Seeds, builds and trains the case; returns its final state and where it resumed from."""
    from keras_models.distributed import backup
    from keras_models.seeding import set_random_seed

    set_random_seed(SEED)
    model, arguments, batch_size = _training_arguments(args.case, args.distributed)
    callbacks = []
    restorer = None
    if with_backup:
        restorer = backup.StepBackupAndRestore(args.backup_dir, save_freq=args.save_freq)
        callbacks.append(restorer)
    if args.kill_after_step and args.kill_process in (None, backup._process_index()):
        callbacks.append(_KillAfter(args.kill_after_step).callback)
    if args.kill_while_writing:
        _kill_while_writing(backup, args.kill_while_writing)
    model.fit(*arguments, batch_size=batch_size, epochs=args.epochs, shuffle=True, verbose=0, callbacks=callbacks)
    arrays = {}
    for group, variables in backup.state_variables(model).items():
        if group != "global_seed":
            arrays.update({f"{group}/{i:05d}": backup._to_numpy(v) for i, v in enumerate(variables)})
    return arrays, restorer.restored if restorer is not None else None


def _main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--backup-dir", required=True, type=Path)
    parser.add_argument("--save-freq", type=int, default=3)
    parser.add_argument("--kill-after-step", type=int)
    parser.add_argument("--kill-process", type=int, help="with --kill-after-step: only this process dies")
    parser.add_argument("--kill-while-writing", type=int, help="global step of the backup to cut short")
    parser.add_argument("--then-reference", action="store_true",
                        help="after training, train the case again from the seed without backups (the reference)")
    parser.add_argument("--distributed", action="store_true",
                        help="join the job of keras_models.distributed.launch under DataParallel")
    parser.add_argument("--op-determinism", action="store_true",
                        help="TensorFlow: tf.config.experimental.enable_op_determinism() (Keras then runs no XLA)")
    args = parser.parse_args(argv)
    if args.op_determinism:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    writer = True
    if args.distributed:
        from keras_models import distributed

        distributed.initialize()
        writer = distributed.process_index() == 0
    arrays, restored = _train(args, with_backup=True)
    if writer:
        np.savez(args.out, **arrays)
        args.out.with_suffix(".json").write_text(json.dumps({"restored": restored}))
    if args.then_reference:
        arrays, _ = _train(args, with_backup=False)
        if writer:
            np.savez(args.out.with_name("reference.npz"), **arrays)
    return 0


# -------------------------------------------------------------------------------------------------
# The tests (pytest side)


def _run(tmp_path, tag, backend, case, *options, expect_kill=False):
    out = tmp_path / f"{tag}.npz"
    command = [sys.executable, __file__, "--case", case, "--out", str(out), *options]
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if expect_kill:
        assert done.returncode == -signal.SIGKILL, f"{tag}: exit {done.returncode}, not SIGKILL\n{done.stderr[-3000:]}"
        assert not out.exists()
        return None
    assert done.returncode == 0, f"{tag}: exit {done.returncode}\n{done.stderr[-5000:]}"
    return json.loads(out.with_suffix(".json").read_text())["restored"]


def _load(path):
    with np.load(path) as content:
        return {key: content[key] for key in content.files}


def _assert_same_state(resumed, reference):
    assert sorted(resumed) == sorted(reference)
    assert any(key.startswith("optimizer/") for key in reference)
    for key in reference:
        np.testing.assert_array_equal(resumed[key], reference[key], err_msg=f"{key} differs after the resume")


def kill_and_resume(tmp_path, backend, case, epochs, kill, restored, kept, save_freq=3, options=()):
    """A run killed as `kill` says (`("--kill-after-step", "10")`), then the same command again, which
    must resume from `restored` = (epoch, step, global step) and end with the state of an uninterrupted
    run, bit for bit: weights, seed states, optimizer slots and metric accumulators. The uninterrupted
    run is trained from the seed in the restarted process, once it is done (`--then-reference`).
    `kept`: the global steps of the backups in the folder after the kill, newest first."""
    from keras_models.distributed.backup import list_backups

    backups = tmp_path / "backups"
    common = ("--epochs", str(epochs), "--backup-dir", str(backups), "--save-freq", str(save_freq), *options)
    _run(tmp_path, "killed", backend, case, *common, *kill, expect_kill=True)
    assert backups.is_dir() and not list(backups.glob("*.corrupt"))
    assert [int(path.name[5:17]) for path in list_backups(backups)] == list(kept)
    if "--kill-while-writing" in kill:  # the half-written backup never took its final name
        step = int(kill[kill.index("--kill-while-writing") + 1])
        (partial,) = backups.glob(f".step-{step:012d}.npz.*.partial")
        assert 0 < partial.stat().st_size < list_backups(backups)[0].stat().st_size
    restored_from = _run(tmp_path, "resumed", backend, case, *common, "--then-reference")
    assert tuple(restored_from) == restored
    _assert_same_state(_load(tmp_path / "resumed.npz"), _load(tmp_path / "reference.npz"))
    assert not backups.exists(), "the backups outlived the completed run"


def test_dense_resumes_mid_epoch_on_tensorflow(tmp_path):
    # 16 samples in batches of 4: 4 steps per epoch. Backups at global steps 3, 4 (epoch end), 6, 8,
    # 9; killed after step 10, so step 10 is lost and training resumes after batch 1 of epoch 2,
    # metric accumulators included (the reference's final metrics are those of epoch 2).
    kill_and_resume(tmp_path, "tensorflow", "mlp", 3, ("--kill-after-step", "10"), (2, 1, 9), kept=(9, 8))


def test_dense_resumes_mid_epoch_on_jax(tmp_path):
    kill_and_resume(tmp_path, "jax", "mlp", 3, ("--kill-after-step", "10"), (2, 1, 9), kept=(9, 8))


def test_dense_resumes_mid_epoch_on_torch(tmp_path):
    # PyTorch-backend training is single-process; its resume is exact too, torch's random state included.
    kill_and_resume(tmp_path, "torch", "mlp", 3, ("--kill-after-step", "10"), (2, 1, 9), kept=(9, 8))


def test_gan_killed_while_writing_a_backup_resumes_from_the_one_before(tmp_path):
    # A GAN: two Adam optimizers and a seed generator. Backups at global steps 3, 4, 6; the one of
    # step 8 (the end of epoch 1) dies half-written, and the restart resumes from step 6 (after batch 2
    # of epoch 1), replaying steps 7 and 8.
    kill_and_resume(tmp_path, "tensorflow", "gan", 3, ("--kill-while-writing", "8"), (1, 2, 6), kept=(6, 4))


# -- the files themselves --------------------------------------------------------------------------


def _tiny_fit(backup_dir, epochs=2, save_freq=1, keep=2, delete_checkpoint=False, **kwargs):
    import keras

    from keras_models.distributed.backup import StepBackupAndRestore

    keras.utils.set_random_seed(SEED)
    layers = keras.layers
    model = keras.Sequential([keras.Input((3,)), layers.Dense(2), layers.Dropout(0.5), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse", **kwargs)
    x = np.random.default_rng(0).standard_normal((8, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    restorer = StepBackupAndRestore(backup_dir, save_freq=save_freq, keep=keep, delete_checkpoint=delete_checkpoint)
    model.fit(x, y, batch_size=4, epochs=epochs, shuffle=True, verbose=0, callbacks=[restorer])
    return model, restorer


def _state(model):
    from keras_models.distributed.backup import _to_numpy, state_variables

    groups = state_variables(model)
    return [_to_numpy(v) for group in ("model", "optimizer") for v in groups[group]]


def test_backups_are_kept_and_hold_the_whole_state(tmp_path):
    from keras_models.distributed.backup import list_backups, read_backup

    model, _ = _tiny_fit(tmp_path, epochs=2)
    names = [path.name for path in list_backups(tmp_path)]
    assert names == ["step-000000000004.npz", "step-000000000003.npz"]  # keep=2, newest first
    assert not list(tmp_path.glob(".*partial"))
    metadata, arrays = read_backup(tmp_path / names[0])
    assert (metadata["epoch"], metadata["step"], metadata["global_step"]) == (2, 0, 4)
    groups = [entry[0] for entry in metadata["variables"]]
    # two Dense layers (kernel, bias), the Dropout's seed state; Adam's iterations, learning rate and
    # two slots per weight; the loss tracker's total and count
    assert groups.count("model") == 5 and groups.count("optimizer") == 2 + 2 * 4 and groups.count("metrics") == 2
    saved = [arrays[f"{g}/{i:05d}"] for g in ("model", "optimizer") for i in range(groups.count(g))]
    for value, expected in zip(saved, _state(model)):
        np.testing.assert_array_equal(value, expected)


@pytest.mark.parametrize("damage", ["truncate", "flip_byte"])
def test_a_corrupt_newest_backup_falls_back_to_the_previous_one(tmp_path, damage):
    from keras_models.distributed.backup import CorruptBackupWarning, list_backups, read_backup

    _tiny_fit(tmp_path, epochs=2)
    newest, previous = list_backups(tmp_path)
    _, previous_arrays = read_backup(previous)
    _, newest_arrays = read_backup(newest)
    content = bytearray(newest.read_bytes())
    if damage == "truncate":
        content = content[: len(content) // 2]
    else:  # one bit of the first kernel: the zip's CRC-32 and the array's SHA-256 both catch it
        offset = content.index(newest_arrays["model/00000"].tobytes())
        content[offset] ^= 0x01
    newest.write_bytes(bytes(content))

    with pytest.warns(CorruptBackupWarning, match=newest.name) as caught:
        model, restorer = _tiny_fit(tmp_path, epochs=0)  # restores, trains no step
    assert len(caught) == 1
    assert restorer.restored == (1, 1, 3)  # backups after global steps 3 (batch 1 of epoch 1) and 4
    assert (tmp_path / (newest.name + ".corrupt")).exists()
    expected = [previous_arrays[k] for k in sorted(previous_arrays) if k.split("/")[0] in ("model", "optimizer")]
    np.testing.assert_equal(_state(model), expected)


def test_every_backup_corrupt_is_an_error_not_a_fresh_start(tmp_path):
    from keras_models.distributed.backup import CorruptBackupError, CorruptBackupWarning, list_backups

    _tiny_fit(tmp_path, epochs=1)
    for path in list_backups(tmp_path):
        path.write_bytes(path.read_bytes()[:100])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptBackupWarning)
        with pytest.raises(CorruptBackupError, match="Every backup in .* is corrupt"):
            _tiny_fit(tmp_path, epochs=1)


def test_a_write_cut_short_leaves_the_previous_backups_intact(tmp_path):
    """A kill between writing and renaming (simulated in this process by failing the write) leaves
    only a temporary file, which the next run deletes; the final names always hold whole backups."""
    from keras_models.distributed import backup

    _tiny_fit(tmp_path, epochs=1)
    before = {path.name: path.read_bytes() for path in backup.list_backups(tmp_path)}

    class Interrupted(Exception):
        pass

    write = backup.atomic_write

    @contextlib.contextmanager
    def failing_write(path):
        with write(path) as temporary:
            yield temporary
            raise Interrupted

    backup.atomic_write = failing_write
    try:
        with pytest.raises(Interrupted):
            _tiny_fit(tmp_path, epochs=2)
    finally:
        backup.atomic_write = write
    assert {path.name: path.read_bytes() for path in backup.list_backups(tmp_path)} == before


def test_a_backup_of_another_model_is_refused(tmp_path):
    import keras

    from keras_models.distributed.backup import StepBackupAndRestore

    _tiny_fit(tmp_path, epochs=1)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    other.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="does not match this model"):
        other.fit(np.zeros((4, 3)), np.zeros((4, 1)), epochs=1, verbose=0, callbacks=[StepBackupAndRestore(tmp_path)])


@pytest.mark.parametrize(
    "arguments, message",
    [({"backup_dir": ""}, "backup_dir"), ({"save_freq": 0}, "save_freq=0"),
     ({"save_freq": "batch"}, "save_freq='batch'"), ({"keep": 0}, "keep=0"), ({"save_freq": True}, "save_freq=True")],
)
def test_bad_arguments_are_named(tmp_path, arguments, message):
    from keras_models.distributed.backup import StepBackupAndRestore

    arguments = {"backup_dir": tmp_path, **arguments}
    with pytest.raises(ValueError, match=message):
        StepBackupAndRestore(**arguments)


# -- the slow suite ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend, case",
    [("tensorflow", "dcgan"), ("tensorflow", "wgan_gp"), ("jax", "dcgan"), ("tensorflow", "rnn_classifier"),
     ("tensorflow", "gpt_causal_lm"), ("tensorflow", "vae"), ("tensorflow", "ddpm"), ("jax", "gpt_causal_lm"),
     ("jax", "vae"), ("jax", "ddpm"), ("torch", "dcgan"), ("torch", "vae")],
)
def test_families_resume_mid_epoch(tmp_path, backend, case):
    kill_and_resume(tmp_path, backend, case, 3, ("--kill-after-step", "10"), (2, 1, 9), kept=(9, 8))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["mlp", "dcgan"])
def test_resume_under_tensorflow_op_determinism(tmp_path, case):
    """Op determinism is not needed for an exact resume on a CPU (the default suite resumes without it);
    with it on, Keras trains without XLA and the resume is exact too."""
    kill_and_resume(tmp_path, "tensorflow", case, 3, ("--kill-after-step", "10"), (2, 1, 9), kept=(9, 8),
                    options=("--op-determinism",))


@pytest.mark.slow
def test_data_parallel_processes_resume_after_a_worker_is_killed(tmp_path):
    """Two processes under DataParallel (JAX, one CPU device each, gradients exchanged through gloo):
    process 1 is SIGKILLed after step 10, the launcher stops process 0, and the relaunched job resumes
    from process 0's backup of step 9 and ends with the weights of an uninterrupted two-process run."""
    from keras_models import distributed
    from keras_models.distributed.backup import list_backups

    backups = tmp_path / "backups"
    args = [__file__, "--case", "mlp", "--out", str(tmp_path / "resumed.npz"), "--epochs", "3", "--backup-dir",
            str(backups), "--save-freq", "3", "--distributed"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("KERAS_DISTRIBUTION_")}
    env.update(KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    launch = dict(processes=2, timeout=TIMEOUT, devices_per_process=1, env=env, echo=False)
    with pytest.raises(distributed.WorkerFailed) as failed:
        distributed.launch(args[0], args=[*args[1:], "--kill-after-step", "10", "--kill-process", "1"], **launch)
    assert (failed.value.process_id, failed.value.returncode) == (1, -signal.SIGKILL)
    assert [int(path.name[5:17]) for path in list_backups(backups)] == [9, 8]
    distributed.launch(args[0], args=[*args[1:], "--then-reference"], **launch)
    restored = json.loads((tmp_path / "resumed.json").read_text())["restored"]
    assert tuple(restored) == (2, 1, 9)
    _assert_same_state(_load(tmp_path / "resumed.npz"), _load(tmp_path / "reference.npz"))


if __name__ == "__main__":
    sys.exit(_main())
