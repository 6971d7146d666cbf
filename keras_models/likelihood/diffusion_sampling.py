"""The diffusion samplers as host loops over a one-step denoiser, in float64 numpy.

Every random number is drawn here, from one `numpy.random.Generator`, and enters the denoiser as data:
the network itself draws nothing, so the same loop runs over the Keras denoiser (`DiffusionModel.
generate`) and over its TFLite or ONNX file (`export.diffusion.sample`) and, fed the same seed, gives
the same images. The images live on [-1, 1] here; the model rescales them to its `pixel_range`.

- `"ddpm"`: ancestral sampling through every timestep, `x_{t-1} ~ N(mu~(x0, x_t), beta~_t I)`
  (Ho et al., 2020).
- `"ddim"`: `x_prev = sqrt(alpha_bar_prev) x0 + sqrt(1 - alpha_bar_prev - sigma^2) epsilon + sigma z`
  over any subsequence of timesteps, `sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t))
  sqrt(1 - alpha_bar_t / alpha_bar_prev)`: deterministic for `eta = 0`; over every timestep with
  `eta = 1` it is the DDPM sampler (Song et al., 2021, "Denoising Diffusion Implicit Models").

Classifier-free guidance (Ho & Salimans, 2022): `(1 + w) f(x, t, c) - w f(x, t, null)` with the
null label `num_classes`; the conditional and unconditional calls go through the denoiser as one batch.
"""

from __future__ import annotations

import numpy as np

from keras_models.likelihood.diffusion_schedules import split_prediction

SAMPLERS = ("ddim", "ddpm")


def guided(denoise, labels, guidance, null_label):
    """`denoise(x, t)` for the sampler: `denoise(x, t, labels)`, mixed with the null label's output
    when `guidance` is not 0. `denoise` takes float32 images, float32 times `(n,)` and int32 labels
    (or `None`) and returns the network's output as numpy."""
    if labels is None or guidance == 0.0:
        return lambda x, t: np.asarray(denoise(x, t, labels), np.float64)
    nulls = np.full_like(labels, null_label)
    both = np.concatenate([labels, nulls])

    def mixed(x, t):
        out = np.asarray(denoise(np.concatenate([x, x]), np.concatenate([t, t]), both), np.float64)
        conditional, unconditional = out[: len(x)], out[len(x):]
        return (1.0 + guidance) * conditional - guidance * unconditional

    return mixed


def _predict(model_fn, schedule, x, t, prediction, clip):
    """`(x0, epsilon)` at timestep `t` (an int); with `clip`, x0 is clipped to [-1, 1] and epsilon
    recomputed from it, so the step stays consistent with the clipped estimate."""
    times = np.full((len(x),), float(t), np.float32)
    output = model_fn(x.astype(np.float32), times)
    alpha_bar = schedule.alpha_bars[t]
    x0, epsilon = split_prediction(output, x, alpha_bar, prediction)
    if clip:
        x0 = np.clip(x0, -1.0, 1.0)
        epsilon = (x - np.sqrt(alpha_bar) * x0) / np.sqrt(1.0 - alpha_bar)
    return x0, epsilon


def run_sampler(denoise, schedule, latents, labels=None, *, sampler="ddim", steps=50, eta=0.0, guidance=0.0,
                prediction="epsilon", null_label=None, rng=None, clip=True):
    """Samples from `latents` `x_T` `(n, h, w, c)`; returns x_0 on [-1, 1], float64 `(n, h, w, c)`.

    Args:
        denoise: `(x float32, t float32 (n,), labels int32 | None) -> output`, the one-step network.
        schedule: the model's `NoiseSchedule`.
        latents: the starting noise (standard normal draws).
        labels: int32 `(n,)` for a conditional model, else `None`.
        sampler: `"ddim"` or `"ddpm"` (which always visits every timestep).
        steps: timesteps visited by DDIM.
        eta: DDIM's stochasticity (0 deterministic, 1 DDPM-like).
        guidance: classifier-free guidance weight w (0: the conditional model alone).
        prediction: what the network outputs, `"epsilon"` or `"v"`.
        null_label: the label meaning "no class" (the number of classes).
        rng: the `numpy.random.Generator` of the noise added at each step (stochastic samplers only).
        clip: clip each x0 estimate to [-1, 1].
    """
    model_fn = guided(denoise, labels, guidance, null_label)
    x = np.asarray(latents, np.float64)
    if sampler == "ddpm":
        timesteps = np.arange(schedule.timesteps)[::-1]
    else:
        timesteps = schedule.sampling_timesteps(steps)
    stochastic = sampler == "ddpm" or eta > 0.0
    for index, t in enumerate(timesteps):
        x0, epsilon = _predict(model_fn, schedule, x, t, prediction, clip)
        if sampler == "ddpm":
            mean = schedule.posterior_x0_coef[t] * x0 + schedule.posterior_xt_coef[t] * x
            x = mean + np.sqrt(schedule.posterior_variance[t]) * rng.standard_normal(x.shape)
            continue
        alpha_bar = schedule.alpha_bars[t]
        alpha_bar_prev = schedule.alpha_bars[timesteps[index + 1]] if index + 1 < len(timesteps) else 1.0
        sigma = eta * np.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev))
        x = np.sqrt(alpha_bar_prev) * x0 + np.sqrt(max(1.0 - alpha_bar_prev - sigma**2, 0.0)) * epsilon
        if stochastic:
            x = x + sigma * rng.standard_normal(x.shape)
    return x


def ddim_encode(denoise, schedule, images, labels=None, *, steps=50, prediction="epsilon", null_label=None,
                guidance=0.0):
    """DDIM's deterministic latents of `images` on [-1, 1]: the eta = 0 update run from t = 0 up to
    T-1 (Song et al., 2021, section 4.3); `run_sampler(..., sampler="ddim", eta=0)` from them gives the
    images back, up to the discretization error of `steps` steps."""
    model_fn = guided(denoise, labels, guidance, null_label)
    timesteps = schedule.sampling_timesteps(steps)[::-1]  # ascending
    x = np.asarray(images, np.float64)
    for index, t in enumerate(timesteps):
        # the estimate at the level x is at; the clean images are read as the first timestep's level
        x0, epsilon = _predict(model_fn, schedule, x, timesteps[max(index - 1, 0)], prediction, clip=False)
        alpha_bar = schedule.alpha_bars[t]
        x = np.sqrt(alpha_bar) * x0 + np.sqrt(1.0 - alpha_bar) * epsilon
    return x
