"""Diffusion sampling on a device: the library's DDIM and DDPM loops over an exported denoiser.

A diffusion model (`keras_models.build("ddpm", ...)`) ships one network, the EMA denoiser of one step
(`model.export_targets()["denoiser"]`: `[images, times]`, and `labels` for a conditional model, ->
epsilon or v). `save_denoiser` writes it as TFLite or ONNX with the schedule beside it
(`<file>.diffusion.json`); `sample` runs the same host loop as `DiffusionModel.generate`
(`keras_models.likelihood.diffusion_sampling`) with the file in LiteRT or onnxruntime, so the same seed
gives the same images, up to the runtimes' rounding.

    >>> export.diffusion.save_denoiser(model, "ddpm.tflite")
    >>> export.diffusion.sample("ddpm.tflite", 16, labels=3, steps=50, guidance=2.0, seed=0)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from export._common import ExportError

CONFIG_SUFFIX = ".diffusion.json"
_CONFIG_KEYS = ("schedule", "timesteps", "prediction", "num_classes", "pixel_range", "image_shape")


def config_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + CONFIG_SUFFIX)


def save_denoiser(model, path, **export_kwargs):
    """Exports `model`'s EMA denoiser to `path` (`.tflite` or `.onnx`) and its sampling configuration
    beside it; returns the export report."""
    from keras_models.files import atomic_write

    import export

    path = Path(path)
    if not hasattr(model, "sampling_config"):
        raise ExportError(f"save_denoiser takes a diffusion model (ddpm); got {type(model).__name__}.")
    writers = {".tflite": export.to_tflite, ".onnx": export.to_onnx}
    if path.suffix not in writers:
        raise ExportError(f"path must end in .tflite or .onnx; got {str(path)!r}.")
    report = writers[path.suffix](model.export_targets()["denoiser"], path, **export_kwargs)
    with atomic_write(config_path(path)) as temporary:
        temporary.write_text(json.dumps(model.sampling_config(), indent=1))
    return report


def _input_role(name: str) -> str:
    for role in ("images", "times", "labels"):
        if role in name:
            return role
    raise ExportError(f"denoiser input {name!r} is none of images, times, labels.")


class _TFLiteDenoiser:
    def __init__(self, path: Path):
        from export.verification import _check_builtin_ops, _interpreter

        self.interpreter = _interpreter(path)
        _check_builtin_ops(path)
        self.path = path
        self.batch = None

    def __call__(self, x, times, labels):
        details = self.interpreter.get_input_details()
        values = {"images": x, "times": times, "labels": labels}
        if self.batch != len(x):
            for detail in details:
                shape = list(detail["shape"])
                shape[0] = len(x)
                self.interpreter.resize_tensor_input(detail["index"], shape)
            self.interpreter.allocate_tensors()
            self.batch = len(x)
            details = self.interpreter.get_input_details()
        for detail in details:
            self.interpreter.set_tensor(detail["index"], values[_input_role(detail["name"])].astype(detail["dtype"]))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.interpreter.get_output_details()[0]["index"])


class _OnnxDenoiser:
    def __init__(self, path: Path):
        import onnxruntime

        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:
            raise ExportError(f"{path} does not load in onnxruntime: {error}") from error
        types = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64}
        self.feeds = [(f.name, _input_role(f.name), types[f.type]) for f in self.session.get_inputs()]

    def __call__(self, x, times, labels):
        values = {"images": x, "times": times, "labels": labels}
        return self.session.run(None, {name: values[role].astype(dtype) for name, role, dtype in self.feeds})[0]


def load_denoiser(path):
    """The exported denoiser as `denoise(x, times, labels) -> output` (numpy), in LiteRT for `.tflite`,
    onnxruntime for `.onnx`."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"No denoiser file at {str(path)!r}.")
    runners = {".tflite": _TFLiteDenoiser, ".onnx": _OnnxDenoiser}
    if path.suffix not in runners:
        raise ExportError(f"path must end in .tflite or .onnx; got {str(path)!r}.")
    return runners[path.suffix](path)


def read_config(path) -> dict:
    """The sampling configuration `save_denoiser` wrote beside `path`."""
    beside = config_path(path)
    if not beside.is_file():
        raise ExportError(f"No sampling configuration at {str(beside)!r}: write the file with "
                          "export.diffusion.save_denoiser, or pass config=model.sampling_config().")
    config = json.loads(beside.read_text())
    missing = [key for key in _CONFIG_KEYS if key not in config]
    if missing:
        raise ExportError(f"{beside} lacks {missing}.")
    return config


def sample(path, num_samples, labels=None, steps=50, guidance=0.0, sampler="ddim", seed=None, eta=0.0, config=None):
    """Samples images with the denoiser file at `path`, as `DiffusionModel.generate` does with the
    same arguments (the same seed gives the same images): numpy `(num_samples, *image_shape)` in the
    model's `pixel_range`.

    Args:
        path: a `.tflite` or `.onnx` denoiser written by `save_denoiser` (or by `export.to_tflite` /
            `to_onnx` of `model.export_targets()["denoiser"]`, with `config` given).
        config: the model's `sampling_config()`; read from beside `path` when `None`.
        num_samples, labels, steps, guidance, sampler, seed, eta: as for `DiffusionModel.generate`.
    """
    from keras_models.checks import check_choice, check_count, check_labels
    from keras_models.likelihood.diffusion_sampling import SAMPLERS, run_sampler
    from keras_models.likelihood.diffusion_schedules import NoiseSchedule

    config = read_config(path) if config is None else config
    count = check_count(num_samples)
    check_choice(sampler, SAMPLERS, "sampler")
    schedule = NoiseSchedule(config["schedule"], config["timesteps"])
    if sampler == "ddim":
        schedule.sampling_timesteps(steps)  # checks steps (DDPM visits every timestep)
    num_classes = config["num_classes"]
    if num_classes is None:
        if labels is not None or guidance:
            raise ValueError("the denoiser is unconditional: sample without labels and with guidance=0.")
    else:
        if labels is None:
            labels = np.arange(count) % num_classes
        elif np.ndim(labels) == 0:
            labels = np.full((count,), labels)
        labels = check_labels(labels, num_classes, count)
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not np.isfinite(guidance) or guidance < 0:
        raise ValueError(f"guidance must be a finite number >= 0; got guidance={guidance!r}.")
    denoise = load_denoiser(path)
    rng = np.random.default_rng(seed)
    latents = rng.standard_normal((count, *config["image_shape"])).astype(np.float32)  # as sample_latents draws them
    x = run_sampler(denoise, schedule, latents, labels, sampler=sampler, steps=steps, eta=float(eta),
                    guidance=float(guidance), prediction=config["prediction"], null_label=num_classes, rng=rng)
    low, high = config["pixel_range"]
    return (low + (np.clip(x, -1.0, 1.0) + 1.0) * ((high - low) / 2.0)).astype(np.float32)
